// fieldsync head office: the administration views (people and territories, device registration and the
// device audit trail, the catalogue, handover, credit limits). Loaded after app.js, whose helpers (api, el,
// $, say, list, fmtTime, timeElement, fmtMoney, state) it uses. Every control is offered only to the roles the
// API lets use it (docs/API.md); the server checks again.
'use strict';

const ROLES = ['rep', 'manager', 'head_office', 'partner'];
const roleLabel = (r) => String(r || '').replace('_', ' ');
const isHeadOffice = () => !!state.session && state.session.role === 'head_office';

// Elements marked data-roles="a b" exist only for those roles: hidden (and so out of the tab order) for others.
function applyRoles() {
  const role = state.session ? state.session.role : '';
  for (const e of document.querySelectorAll('[data-roles]')) e.hidden = !e.dataset.roles.split(' ').includes(role);
}

function viewAllowed(view) {
  const link = document.querySelector(`#nav a[data-view="${view}"]`);
  return !link || !link.dataset.roles || link.dataset.roles.split(' ').includes(state.session ? state.session.role : '');
}

// Amounts typed by people: "24.50" or "24,50" -> 2450 cents; null when it is not an amount.
function parseCents(text) {
  const m = /^\s*(\d{1,13})(?:[.,](\d{1,2}))?\s*$/.exec(String(text || ''));
  if (!m) return null;
  return Number(m[1]) * 100 + Number((m[2] || '0').padEnd(2, '0'));
}
const centsText = (c) => (c === null || c === undefined ? '' : (Number(c) / 100).toFixed(2));

// A date input's day as epoch ms at the viewer's local midnight (and back).
function dayStartMs(value) {
  return value ? new Date(value + 'T00:00').getTime() : null;
}

async function allUsers() {
  const r = await api('GET', '/users');
  return ((r && r.items) || []).sort((a, b) => String(a.id).localeCompare(String(b.id)));
}

async function allTerritories() {
  const r = await api('GET', '/territories');
  return (r && r.items) || [];
}

// Every row of an entity (keyset pages of 500), up to `max` rows.
async function listAll(entity, params, max) {
  const out = [];
  let cursor;
  do {
    const r = await api('GET', '/entities/' + entity + query(Object.assign({}, params, { limit: 500, cursor })));
    out.push(...((r && r.items) || []));
    cursor = r && r.next_cursor;
  } while (cursor && out.length < (max || 5000));
  return out;
}

// The audit trail is kept oldest first (GET /audit pages by id); the views show the newest entries matching
// `keep`, reading at most 20 pages (10,000 entries).
async function auditEntries(keep, count) {
  const found = [];
  let after = 0;
  for (let page = 0; page < 20; ++page) {
    const r = await api('GET', '/audit' + query({ after, limit: 500 }));
    for (const a of (r && r.items) || []) if (keep(a)) found.push(a);
    if (!r || r.next_after === null || r.next_after === undefined) break;
    after = r.next_after;
  }
  return found.reverse().slice(0, count);
}

function checkboxes(container, values, checked, name) {
  container.replaceChildren(
    ...values.map((v) =>
      el('label', { class: 'inline' }, el('input', { type: 'checkbox', value: v.value, name, checked: checked.includes(v.value) }), ' ' + v.label),
    ),
  );
}
const checkedValues = (container) => [...container.querySelectorAll('input[type="checkbox"]:checked')].map((b) => b.value);

function fillSelect(select, options, keep) {
  const before = keep ? select.value : '';
  select.replaceChildren(...options.map((o) => el('option', { value: o.value, text: o.label })));
  if (before && options.some((o) => o.value === before)) select.value = before;
}

// ---------------------------------------------------------------------------------------------------------
// People: users (role, name, territories or partner grants, team, disabled, password) and territories.

const people = { users: [], territories: [], editing: null };

async function loadPeople() {
  try {
    [people.users, people.territories] = await Promise.all([allUsers(), allTerritories()]);
  } catch (e) {
    return say('People could not be loaded: ' + e.message, 'bad');
  }
  state.territories = []; // the accounts view reads them again (one may have been added)
  $('people-scope').textContent = isHeadOffice()
    ? 'Everyone in the company. Every change is recorded in the audit trail.'
    : 'You and your team. Only head office changes people.';
  $('users-body').replaceChildren(...people.users.map(userRow));
  const byTerritory = new Map();
  for (const u of people.users) for (const t of u.territories || []) byTerritory.set(t, [...(byTerritory.get(t) || []), u.id]);
  $('territories-body').replaceChildren(
    ...people.territories.map((t) =>
      el('tr', { 'data-id': t.id }, el('td', { class: 'value', text: t.id }), el('td', { text: t.name || '' }),
        el('td', { text: (byTerritory.get(t.id) || []).join(', ') || '–' })),
    ),
  );
  const terr = people.territories.map((t) => ({ value: t.id, label: t.name ? t.name + ' (' + t.id + ')' : t.id }));
  if (isHeadOffice()) {
    fillSelect($('user-new-role'), ROLES.map((r) => ({ value: r, label: roleLabel(r) })), true);
    if (!$('user-new-territories').children.length || $('user-new-territories').dataset.count !== String(terr.length)) {
      checkboxes($('user-new-territories'), terr, [], 'new-territory');
      $('user-new-territories').dataset.count = String(terr.length);
    }
  }
}

function userRow(u) {
  const grants = u.role === 'partner' ? 'grants: ' : '';
  const row = el('tr', { 'data-id': u.id }, el('td', { class: 'value', text: u.id }), el('td', { text: u.display_name || '' }),
    el('td', { class: 'role', text: roleLabel(u.role) }), el('td', { class: 'territories', text: (u.territories || []).length ? grants + u.territories.join(', ') : '–' }),
    el('td', { text: (u.team || []).join(', ') || '–' }),
    el('td', { class: u.disabled ? 'error state' : 'state', text: u.disabled ? 'disabled' : 'active' }));
  if (isHeadOffice()) {
    const edit = el('button', { type: 'button', text: 'Edit', 'aria-label': 'Edit ' + u.id });
    edit.addEventListener('click', () => editUser(u));
    row.append(el('td', {}, edit));
  }
  return row;
}

function editUser(u) {
  people.editing = u;
  $('user-edit-id').textContent = u.id;
  $('user-edit-name').value = u.display_name || '';
  fillSelect($('user-edit-role'), ROLES.map((r) => ({ value: r, label: roleLabel(r) })));
  $('user-edit-role').value = u.role;
  checkboxes($('user-edit-territories'), people.territories.map((t) => ({ value: t.id, label: t.name ? t.name + ' (' + t.id + ')' : t.id })), u.territories || [], 'territory');
  const reps = people.users.filter((x) => x.id !== u.id && (x.role === 'rep' || x.role === 'manager'));
  checkboxes($('user-edit-team'), reps.map((x) => ({ value: x.id, label: x.display_name ? x.display_name + ' (' + x.id + ')' : x.id })), u.team || [], 'team');
  $('user-edit-team-box').hidden = u.role !== 'manager';
  $('user-edit-disabled').checked = !!u.disabled;
  $('user-edit-password').value = '';
  $('user-edit').hidden = false;
  $('user-edit-name').focus();
}

function closeEdit() {
  const id = people.editing && people.editing.id;
  people.editing = null;
  $('user-edit').hidden = true;
  const back = id && document.querySelector(`#users-body tr[data-id="${CSS.escape(id)}"] button`);
  if (back) back.focus();
}

async function saveUser(e) {
  e.preventDefault();
  const u = people.editing;
  if (!u) return;
  const body = {};
  const name = $('user-edit-name').value.trim();
  if (name !== (u.display_name || '')) body.display_name = name;
  if ($('user-edit-role').value !== u.role) body.role = $('user-edit-role').value;
  const territories = checkedValues($('user-edit-territories'));
  if (territories.join() !== [...(u.territories || [])].sort().join() || territories.length !== (u.territories || []).length) body.territories = territories;
  if (!$('user-edit-team-box').hidden) {
    const team = checkedValues($('user-edit-team'));
    if (team.sort().join() !== [...(u.team || [])].sort().join()) body.team = team;
  }
  if ($('user-edit-disabled').checked !== !!u.disabled) body.disabled = $('user-edit-disabled').checked;
  if (!Object.keys(body).length) return closeEdit();
  try {
    await api('PATCH', '/users/' + encodeURIComponent(u.id), body);
    say(u.id + ' is updated' + (body.disabled ? ': signed out everywhere, their devices stop syncing.' : '.'), 'ok');
    people.editing = null;
    $('user-edit').hidden = true;
    await loadPeople();
    const back = document.querySelector(`#users-body tr[data-id="${CSS.escape(u.id)}"] button`);
    if (back) back.focus();
  } catch (err) {
    say('Could not update ' + u.id + ': ' + err.message, 'bad');
  }
}

async function resetPassword() {
  const u = people.editing;
  const password = $('user-edit-password').value;
  if (!u) return;
  if (password.length < 8) {
    say('A password has at least 8 characters.', 'bad');
    return $('user-edit-password').focus();
  }
  try {
    await api('POST', '/users/' + encodeURIComponent(u.id) + '/password', { password });
    $('user-edit-password').value = '';
    say('The password of ' + u.id + ' is reset.', 'ok');
  } catch (err) {
    say('Could not reset the password: ' + err.message, 'bad');
  }
}

async function createUser(e) {
  e.preventDefault();
  const body = {
    id: $('user-new-id').value.trim(),
    display_name: $('user-new-name').value.trim(),
    role: $('user-new-role').value,
    password: $('user-new-password').value,
    territories: checkedValues($('user-new-territories')),
  };
  try {
    await api('POST', '/users', body);
    $('user-form').reset();
    say('User ' + body.id + ' is created (' + roleLabel(body.role) + ').', 'ok');
    await loadPeople();
  } catch (err) {
    say('Could not create the user: ' + err.message, 'bad');
    $(err.field === 'password' ? 'user-new-password' : 'user-new-id').focus();
  }
}

async function createTerritory(e) {
  e.preventDefault();
  const id = $('territory-id').value.trim();
  const name = $('territory-name').value.trim();
  try {
    await api('POST', '/territories', name ? { id, name } : { id });
    $('territory-form').reset();
    say('Territory ' + id + ' is added.', 'ok');
    $('user-new-territories').replaceChildren();
    await loadPeople();
  } catch (err) {
    say('Could not add the territory: ' + err.message, 'bad');
  }
}

// ---------------------------------------------------------------------------------------------------------
// Devices (head office): register a device to a user, revoke one, and the audit trail of both. The sync
// health table itself is app.js's loadDevices, which calls deviceControls for each row.

function deviceControls(d) {
  if (!isHeadOffice()) return null;
  if (d.revoked) return null;
  const revoke = el('button', { type: 'button', class: 'danger', text: 'Revoke', 'aria-label': 'Revoke device ' + d.node });
  revoke.addEventListener('click', async () => {
    // Two steps: revoking erases the phone's unsynced work, so the first press only asks.
    if (revoke.dataset.armed !== '1') {
      revoke.dataset.armed = '1';
      revoke.textContent = 'Confirm revoke';
      return;
    }
    revoke.disabled = true;
    try {
      await api('POST', '/devices/' + encodeURIComponent(d.node) + '/revoke');
      say('Device ' + d.node + ' is revoked: it is disconnected and erases its data.', 'ok');
      await loadDevices();
      $('device-node').focus();
    } catch (err) {
      revoke.disabled = false;
      say('Could not revoke the device: ' + err.message, 'bad');
    }
  });
  revoke.addEventListener('blur', () => {
    revoke.dataset.armed = '';
    revoke.textContent = 'Revoke';
  });
  return revoke;
}

async function loadDeviceAdmin() {
  if (!isHeadOffice()) return;
  try {
    const users = (await allUsers()).filter((u) => u.role !== 'partner' && !u.disabled);
    fillSelect($('device-user'), users.map((u) => ({ value: u.id, label: u.display_name ? u.display_name + ' (' + u.id + ')' : u.id })), true);
    const trail = await auditEntries((a) => /^device\./.test(a.action), 50);
    $('device-audit-body').replaceChildren(
      ...trail.map((a) =>
        el('tr', { 'data-id': String(a.id) }, el('td', {}, timeElement(a.at_ms)), el('td', { text: a.actor }),
          el('td', { class: 'action', text: a.action === 'device.register' ? 'registered' : a.action === 'device.revoke' ? 'revoked' : a.action }),
          el('td', { class: 'value', text: a.target }), el('td', { text: a.detail && a.detail.user ? 'to ' + a.detail.user : '' })),
      ),
    );
    $('device-audit-empty').hidden = trail.length > 0;
  } catch (e) {
    say('The device audit trail could not be loaded: ' + e.message, 'bad');
  }
}

async function registerDevice(e) {
  e.preventDefault();
  const node = $('device-node').value.trim();
  const user = $('device-user').value;
  try {
    await api('POST', '/devices', { node, user });
    $('device-node').value = '';
    say('Device ' + node + ' is registered to ' + user + '; it can sign in now.', 'ok');
    await loadDevices();
  } catch (err) {
    say('Could not register the device: ' + err.message, 'bad');
    $('device-node').focus();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Catalogue: products and price list entries (head office edits; managers read).

const catalogue = { products: [], prices: [], editing: null };

async function loadCatalogue() {
  try {
    [catalogue.products, catalogue.prices] = await Promise.all([
      listAll('product', { sort: 'sku' }),
      listAll('price_list_entry', { sort: 'price_list' }),
    ]);
  } catch (e) {
    return say('The catalogue could not be loaded: ' + e.message, 'bad');
  }
  const byProduct = new Map();
  for (const p of catalogue.prices) byProduct.set(p.product_id, [...(byProduct.get(p.product_id) || []), p]);
  $('products-body').replaceChildren(
    ...catalogue.products.map((p) => {
      state.names.set('product/' + p.id, Promise.resolve(p.name || p.sku || p.id));
      const prices = (byProduct.get(p.id) || []).map((x) => x.price_list + ' ' + fmtMoney(x.unit_price_cents, x.currency)).join(' · ');
      const row = el('tr', { 'data-id': p.id }, el('td', { class: 'value', text: p.sku }), el('td', { class: 'name', text: p.name }),
        el('td', { text: p.unit || '' }), el('td', { class: 'active', text: p.active ? 'yes' : 'no' }), el('td', { text: prices || '–' }));
      if (isHeadOffice()) {
        const edit = el('button', { type: 'button', text: 'Edit', 'aria-label': 'Edit ' + p.sku });
        edit.addEventListener('click', () => editProduct(p));
        row.append(el('td', {}, edit));
      }
      return row;
    }),
  );
  $('products-empty').hidden = catalogue.products.length > 0;
  const productName = new Map(catalogue.products.map((p) => [p.id, p.name + ' (' + p.sku + ')']));
  $('prices-body').replaceChildren(
    ...catalogue.prices.map((x) => {
      const amount = el('td', { class: 'num amount', text: fmtMoney(x.unit_price_cents, x.currency) });
      const row = el('tr', { 'data-id': x.id }, el('td', { text: x.price_list }), el('td', { text: productName.get(x.product_id) || x.product_id }),
        amount, el('td', {}, x.valid_from ? timeElement(x.valid_from) : '–'), el('td', {}, x.valid_to ? timeElement(x.valid_to) : '–'));
      if (isHeadOffice()) row.append(el('td', {}, priceEditor(x, amount)));
      return row;
    }),
  );
  $('prices-empty').hidden = catalogue.prices.length > 0;
  if (isHeadOffice()) {
    fillSelect($('price-product'), catalogue.products.filter((p) => p.active).map((p) => ({ value: p.id, label: p.name + ' (' + p.sku + ')' })), true);
    $('price-lists').replaceChildren(...[...new Set(catalogue.prices.map((x) => x.price_list))].map((l) => el('option', { value: l })));
  }
}

// An inline price change: Edit opens an amount field; Enter saves, Escape closes.
function priceEditor(x, cell) {
  const box = el('div', { class: 'actions' });
  const input = el('input', { type: 'text', inputmode: 'decimal', 'aria-label': 'New unit price for ' + x.price_list, size: '8', hidden: true, value: centsText(x.unit_price_cents) });
  const button = el('button', { type: 'button', text: 'Change price' });
  const close = () => {
    input.hidden = true;
    button.textContent = 'Change price';
    button.focus();
  };
  const save = async () => {
    const cents = parseCents(input.value);
    if (cents === null) {
      say('A price is an amount like 24.50.', 'bad');
      return input.focus();
    }
    try {
      await api('PATCH', '/entities/price_list_entry/' + encodeURIComponent(x.id), { unit_price_cents: cents });
      x.unit_price_cents = cents;
      cell.textContent = fmtMoney(cents, x.currency);
      say('The ' + x.price_list + ' price is now ' + fmtMoney(cents, x.currency) + '; devices get it on their next sync.', 'ok');
      close();
    } catch (err) {
      say('Could not change the price: ' + err.message, 'bad');
    }
  };
  button.addEventListener('click', () => (input.hidden ? ((input.hidden = false), (button.textContent = 'Save price'), input.focus(), input.select()) : save()));
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') save();
    if (e.key === 'Escape') close();
  });
  box.append(button, input);
  return box;
}

function editProduct(p) {
  catalogue.editing = p;
  $('product-form-title').textContent = 'Edit ' + p.sku;
  $('product-sku').value = p.sku;
  $('product-sku').disabled = true; // the SKU is immutable in the model
  $('product-name').value = p.name || '';
  $('product-unit').value = p.unit || '';
  $('product-active').checked = !!p.active;
  $('product-save').textContent = 'Save product';
  $('product-cancel').hidden = false;
  $('product-name').focus();
}

function resetProductForm() {
  catalogue.editing = null;
  $('product-form').reset();
  $('product-sku').disabled = false;
  $('product-form-title').textContent = 'New product';
  $('product-save').textContent = 'Add product';
  $('product-cancel').hidden = true;
}

async function saveProduct(e) {
  e.preventDefault();
  const p = catalogue.editing;
  const fields = { name: $('product-name').value.trim(), unit: $('product-unit').value.trim() || null, active: $('product-active').checked };
  try {
    if (p) {
      const body = {};
      for (const [k, v] of Object.entries(fields)) if (v !== (p[k] === undefined ? null : p[k])) body[k] = v;
      if (Object.keys(body).length) await api('PATCH', '/entities/product/' + encodeURIComponent(p.id), body);
      say('Product ' + p.sku + ' is saved.', 'ok');
    } else {
      const body = Object.assign({ sku: $('product-sku').value.trim() }, fields);
      if (body.unit === null) delete body.unit;
      await api('POST', '/entities/product', body);
      say('Product ' + body.sku + ' is added; give it a price below.', 'ok');
    }
    resetProductForm();
    await loadCatalogue();
  } catch (err) {
    say('Could not save the product: ' + err.message, 'bad');
  }
}

async function createPrice(e) {
  e.preventDefault();
  const cents = parseCents($('price-amount').value);
  if (cents === null) {
    say('A price is an amount like 24.50.', 'bad');
    return $('price-amount').focus();
  }
  const body = {
    product_id: $('price-product').value,
    price_list: $('price-list').value.trim(),
    unit_price_cents: cents,
    currency: $('price-currency').value.trim().toUpperCase(),
  };
  const from = dayStartMs($('price-from').value);
  // "Last day" is the last day the price holds; the model's valid_to is exclusive: the next local midnight.
  const to = dayStartMs($('price-to').value);
  if (from !== null) body.valid_from = from;
  if (to !== null) body.valid_to = new Date(new Date(to).setDate(new Date(to).getDate() + 1)).getTime();
  try {
    await api('POST', '/entities/price_list_entry', body);
    $('price-form').reset();
    $('price-currency').value = body.currency;
    say('The price is added to ' + body.price_list + '.', 'ok');
    await loadCatalogue();
  } catch (err) {
    say('Could not add the price: ' + err.message, 'bad');
  }
}

// ---------------------------------------------------------------------------------------------------------
// Handover (head office): a departing user's territories, open deals and future appointments to a colleague.

async function loadHandover() {
  let users;
  try {
    users = await allUsers();
  } catch (e) {
    return say('People could not be loaded: ' + e.message, 'bad');
  }
  const label = (u) => (u.display_name ? u.display_name + ' (' + u.id + ')' : u.id) + ' · ' + roleLabel(u.role);
  const field = users.filter((u) => u.role === 'rep' || u.role === 'manager');
  fillSelect($('handover-from'), field.map((u) => ({ value: u.id, label: label(u) })), true);
  fillSelect($('handover-to'), field.filter((u) => !u.disabled).map((u) => ({ value: u.id, label: label(u) })), true);
  if ($('handover-to').value === $('handover-from').value && $('handover-to').options.length > 1)
    $('handover-to').selectedIndex = ($('handover-from').selectedIndex + 1) % $('handover-to').options.length;
  people.users = users;
  previewHandover();
  loadHandovers();
}

// What the departing user holds now, so the person sees what will move before pressing the button.
async function previewHandover() {
  const from = $('handover-from').value;
  const u = people.users.find((x) => x.id === from);
  const out = $('handover-preview');
  if (!u) return (out.textContent = '');
  out.textContent = 'Looking at what ' + from + ' holds…';
  try {
    const [deals, events] = await Promise.all([
      listAll('opportunity', { owner_id: from }, 2000),
      listAll('calendar_event', { owner_id: from, status: 'scheduled', 'start_at.gte': Date.now() }, 2000),
    ]);
    if ($('handover-from').value !== from) return;
    const open = deals.filter((d) => d.stage !== 'won' && d.stage !== 'lost').length;
    out.textContent = from + ' holds ' + ((u.territories || []).join(', ') || 'no territory') + '; ' + open + (open === 1 ? ' open deal' : ' open deals') +
      '; ' + events.length + (events.length === 1 ? ' future appointment' : ' future appointments') + '.';
  } catch (e) {
    out.textContent = '';
  }
}

async function loadHandovers() {
  try {
    const rows = await auditEntries((a) => a.action === 'user.handover', 20);
    $('handovers-body').replaceChildren(
      ...rows.map((a) =>
        el('tr', {}, el('td', {}, timeElement(a.at_ms)), el('td', { text: a.actor }), el('td', { text: a.target }),
          el('td', { text: (a.detail && a.detail.to) || '' }), el('td', { text: ((a.detail && a.detail.territories) || []).join(', ') || '–' })),
      ),
    );
    $('handovers-empty').hidden = rows.length > 0;
  } catch (e) {
    say('Earlier handovers could not be loaded: ' + e.message, 'bad');
  }
}

const MOVED_LABELS = { territories: 'Territories', deals: 'Open deals', appointments: 'Future appointments (re-booked)', orders: 'Open orders', accounts: 'Accounts' };

async function handover(e) {
  e.preventDefault();
  const from = $('handover-from').value;
  const to = $('handover-to').value;
  if (!from || !to || from === to) {
    say('Choose two different people.', 'bad');
    return $('handover-to').focus();
  }
  $('handover-go').disabled = true;
  try {
    const r = (await api('POST', '/users/' + encodeURIComponent(from) + '/handover', { to })) || {};
    const facts = [];
    for (const [k, v] of Object.entries(r)) {
      if (k === 'server_seq' || k === 'changes' || k === 'conflicts' || k === 'id') continue;
      const value = Array.isArray(v) ? (v.length ? v.join(', ') : 'none') : String(v);
      facts.push(el('dt', { text: MOVED_LABELS[k] || k.replace(/_/g, ' ') }), el('dd', { 'data-key': k, text: value }));
    }
    $('handover-result-title').textContent = 'What moved from ' + from + ' to ' + to;
    $('handover-moved').replaceChildren(...facts);
    $('handover-result').hidden = false;
    say(from + "'s work is with " + to + ' now; their devices follow on their next sync.', 'ok');
    await loadHandover();
    $('handover-result').focus();
  } catch (err) {
    say('Could not hand over: ' + err.message, 'bad');
  } finally {
    $('handover-go').disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Credit limits (head office) in the accounts table; app.js's renderAccounts calls creditCell for each row.

function creditCell(a) {
  const text = a.credit_limit_cents === null || a.credit_limit_cents === undefined ? '–' : fmtMoney(a.credit_limit_cents);
  const td = el('td', { class: 'num credit' }, el('span', { class: 'amount', text }));
  if (!isHeadOffice()) return td;
  const input = el('input', { type: 'text', inputmode: 'decimal', size: '9', hidden: true, 'aria-label': 'Credit limit for ' + (a.name || a.id), value: centsText(a.credit_limit_cents) });
  const button = el('button', { type: 'button', class: 'link', text: 'Set', 'aria-label': 'Set the credit limit of ' + (a.name || a.id) });
  const close = () => {
    input.hidden = true;
    button.textContent = 'Set';
    button.focus();
  };
  const save = async () => {
    const raw = input.value.trim();
    const cents = raw === '' ? null : parseCents(raw);
    if (raw !== '' && cents === null) {
      say('A credit limit is an amount like 1000.00 (empty: no limit).', 'bad');
      return input.focus();
    }
    try {
      await api('PATCH', '/entities/account/' + encodeURIComponent(a.id), { credit_limit_cents: cents });
      a.credit_limit_cents = cents;
      td.querySelector('.amount').textContent = cents === null ? '–' : fmtMoney(cents);
      say('The credit limit of ' + (a.name || a.id) + ' is ' + (cents === null ? 'removed' : fmtMoney(cents)) + '.', 'ok');
      close();
    } catch (err) {
      say('Could not set the credit limit: ' + err.message, 'bad');
    }
  };
  button.addEventListener('click', () => (input.hidden ? ((input.hidden = false), (button.textContent = 'Save'), input.focus(), input.select()) : save()));
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      save();
    }
    if (e.key === 'Escape') close();
  });
  td.append(' ', input, button);
  return td;
}

// ---------------------------------------------------------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  $('user-edit').addEventListener('submit', saveUser);
  $('user-edit-cancel').addEventListener('click', closeEdit);
  $('user-edit').addEventListener('keydown', (e) => e.key === 'Escape' && closeEdit());
  $('user-edit-set-password').addEventListener('click', resetPassword);
  $('user-edit-role').addEventListener('change', () => ($('user-edit-team-box').hidden = $('user-edit-role').value !== 'manager'));
  $('user-form').addEventListener('submit', createUser);
  $('territory-form').addEventListener('submit', createTerritory);
  $('device-form').addEventListener('submit', registerDevice);
  $('product-form').addEventListener('submit', saveProduct);
  $('product-cancel').addEventListener('click', resetProductForm);
  $('price-form').addEventListener('submit', createPrice);
  $('handover-form').addEventListener('submit', handover);
  $('handover-from').addEventListener('change', previewHandover);
});
