// fieldsync head office: one page, no build step. It talks only to this server's /api/v1/ (docs/API.md):
// a session cookie (HttpOnly, set by POST /api/v1/session) plus the CSRF token from the session's body on
// every state-changing request. Times arrive as epoch milliseconds and are shown as dates in the viewer's
// time zone; money arrives in cents.
'use strict';

const API = '/api/v1';
const VIEWS = ['feed', 'orders', 'conflicts', 'reports', 'accounts', 'devices', 'people', 'catalogue', 'handover'];
// Whether this browser had a session: a hint only (the cookie is HttpOnly), so that a first visit shows the
// login form at once instead of asking the server and logging a 401.
const SESSION_HINT = 'fieldsync.session';
const FEED_MAX = 200;

const state = {
  session: null, // {user, role, display_name, csrf_token, expires_at_ms}
  view: null,
  stream: null,
  charts: {},
  names: new Map(), // "entity/id" -> display name, so the feed and tables show names, not ids
  accounts: [],
  selected: new Set(),
  territories: [],
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------------------
// Formatting: dates in the viewer's time zone and locale; money from cents.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const monthFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short' });

function fmtTime(ms) {
  if (ms === null || ms === undefined || ms === '' || !Number.isFinite(Number(ms))) return '–';
  return dateTime.format(new Date(Number(ms)));
}

function timeElement(ms) {
  const t = document.createElement('time');
  if (Number.isFinite(Number(ms)) && ms !== null && ms !== undefined) {
    t.dateTime = new Date(Number(ms)).toISOString();
    t.textContent = fmtTime(ms);
  } else {
    t.textContent = '–';
  }
  return t;
}

function fmtMoney(cents, currency) {
  if (cents === null || cents === undefined) return '–';
  const amount = Number(cents) / 100;
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: currency || 'EUR' }).format(amount);
  } catch (e) {
    return amount.toFixed(2) + (currency ? ' ' + currency : '');
  }
}

// A field's value as a person reads it: timestamps (by the model's naming: *_at, *_ms, valid_from/to,
// delivery_date, expected_close, start/end) as dates, money fields in currency.
const TIME_FIELD = /(_at|_ms|^valid_from|^valid_to|^delivery_date|^expected_close|^start|^end)$/;
function fmtValue(field, value) {
  if (value === null || value === undefined) return '∅';
  if (typeof value === 'number' && field && TIME_FIELD.test(field)) return fmtTime(value);
  if (typeof value === 'number' && field && /_cents$/.test(field)) return fmtMoney(value);
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function say(message, kind) {
  const s = $('status');
  s.textContent = message || '';
  s.className = 'status' + (kind ? ' ' + kind : '');
}

// ---------------------------------------------------------------------------------------------------------
// The API.

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || 'HTTP ' + status);
    this.status = status;
    this.code = (body && body.code) || 'http_' + status;
    this.field = body ? body.field : null;
  }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && state.session) headers['X-CSRF-Token'] = state.session.csrf_token;
  let res;
  try {
    res = await fetch(API + path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, { code: 'network', message: 'the server cannot be reached' });
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = null;
    }
  }
  if (!res.ok) {
    if (res.status === 401 && state.session && path !== '/session') loggedOut('Your session has ended; log in again.');
    throw new ApiError(res.status, data);
  }
  return data;
}

const query = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? '?' + s : '';
};

async function list(entity, params) {
  const r = await api('GET', '/entities/' + encodeURIComponent(entity) + query(params));
  return (r && r.items) || [];
}

// A record's display name, fetched once and cached (accounts and products have names; people their ids).
async function nameOf(entity, id) {
  if (!id) return '–';
  const key = entity + '/' + id;
  if (state.names.has(key)) return state.names.get(key);
  const p = api('GET', '/entities/' + entity + '/' + encodeURIComponent(id))
    .then((r) => {
      const rec = (r && r.record) || {};
      return rec.name || rec.title || rec.sku || id;
    })
    .catch(() => id);
  state.names.set(key, p);
  return p;
}

function nameCell(entity, id) {
  const span = el('span', { text: id || '–' });
  if (id) nameOf(entity, id).then((n) => (span.textContent = n));
  return span;
}

// ---------------------------------------------------------------------------------------------------------
// Session and navigation.

async function start() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', route);
  $('conflicts-resolved').addEventListener('change', loadConflicts);
  $('reports-form').addEventListener('submit', (e) => {
    e.preventDefault();
    loadReports();
  });
  $('reports-zone-switch').addEventListener('click', switchReportZone);
  $('accounts-q').addEventListener('input', () => {
    renderAccounts(); // at once over what is loaded, then the server's search over the whole book
    clearTimeout(state.searchTimer);
    state.searchTimer = setTimeout(loadAccounts, 300);
  });
  $('accounts-search').addEventListener('submit', (e) => e.preventDefault());
  $('accounts-territory').addEventListener('change', loadAccounts);
  $('reassign-form').addEventListener('submit', reassign);
  const today = new Date();
  const yearAgo = new Date(today.getFullYear() - 1, today.getMonth(), today.getDate());
  $('reports-from').value = isoDate(yearAgo);
  $('reports-to').value = isoDate(today);

  if (localStorage.getItem(SESSION_HINT)) {
    try {
      state.session = await api('GET', '/session');
    } catch (e) {
      state.session = null;
    }
  }
  if (state.session) loggedIn();
  else loggedOut();
}

function isoDate(d) {
  const p = (n) => String(n).padStart(2, '0');
  return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate());
}

async function login(e) {
  e.preventDefault();
  $('login-error').textContent = '';
  const user = $('login-user').value.trim();
  const password = $('login-password').value;
  const button = e.submitter || $('login-form').querySelector('button');
  button.disabled = true;
  try {
    state.session = await api('POST', '/session', { user, password });
    $('login-password').value = '';
    localStorage.setItem(SESSION_HINT, '1');
    loggedIn();
  } catch (err) {
    $('login-error').textContent =
      err.status === 401 ? 'Wrong user or password.' : err.status === 429 ? 'Too many attempts; wait a minute.' : err.message;
    $('login-password').focus();
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try {
    await api('DELETE', '/session');
  } catch (e) {
    // Logged out either way: the cookie is the server's to forget.
  }
  loggedOut('Logged out.');
}

function loggedIn() {
  const s = state.session;
  $('who-name').textContent = (s.display_name || s.user) + ' · ' + String(s.role || '').replace('_', ' ');
  $('who').hidden = false;
  $('nav').hidden = false;
  $('view-login').hidden = true;
  applyRoles(); // admin.js: controls the role may not use are not offered
  say('');
  openStream();
  refreshBadges();
  if (!VIEWS.includes(location.hash.slice(1))) location.hash = '#feed';
  else route();
}

function loggedOut(message) {
  state.session = null;
  state.companyZone = undefined; // asked again at the next sign-in (another user, maybe another role)
  localStorage.removeItem(SESSION_HINT);
  closeStream();
  state.streamGen = (state.streamGen || 0) + 1;
  state.lastSeq = undefined;
  state.shownSeq = undefined;
  feedRecords.clear();
  $('feed-list').replaceChildren();
  $('feed-empty').hidden = false;
  $('who').hidden = true;
  $('nav').hidden = true;
  for (const v of VIEWS) $('view-' + v).hidden = true;
  $('view-login').hidden = false;
  say(message || '', message ? 'ok' : '');
  $('login-user').focus();
}

function route() {
  if (!state.session) return;
  let view = VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'feed';
  if (!viewAllowed(view)) view = 'feed';
  if (state.view !== view) say('');
  state.view = view;
  for (const v of VIEWS) $('view-' + v).hidden = v !== view;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (view === 'feed') {
    $('feed-badge').hidden = true;
    state.unseen = 0;
  }
  const load = {
    orders: loadOrders,
    conflicts: loadConflicts,
    reports: loadReports,
    accounts: loadAccounts,
    devices: loadDevices,
    people: loadPeople,
    catalogue: loadCatalogue,
    handover: loadHandover,
  }[view];
  if (load) load();
}

async function refreshBadges() {
  if (!viewAllowed('orders')) return;
  try {
    const submitted = await list('order', { status: 'submitted', limit: 100 });
    $('orders-badge').textContent = submitted.length >= 100 ? '99+' : String(submitted.length);
    $('orders-badge').hidden = submitted.length === 0;
  } catch (e) {
    $('orders-badge').hidden = true;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Live feed: Server-Sent Events from GET /api/v1/changes/stream?since=SEQ, scope-filtered like a device. Each
// `change` event is one committed transaction ({server_seq, user, node, changes: [{entity, id, op, field,
// value, at_ms}]}); each `conflict` event one conflict record. The page opens the stream at the log's head (after
// showing the last few transactions) and, when the connection drops, reopens it from the last server_seq it
// saw, so nothing is missed or shown twice.

const FEED_BACKFILL = 50;
const RECONNECT_MS = 2000;

async function openStream() {
  closeStream();
  const gen = (state.streamGen = (state.streamGen || 0) + 1);
  if (state.lastSeq === undefined) {
    try {
      const head = (await api('GET', '/changes' + query({ since: 0, limit: 1 }))).head || 0;
      const r = await api('GET', '/changes' + query({ since: Math.max(0, head - FEED_BACKFILL), limit: 4000 }));
      for (const t of r.items || []) onTxn(t, false);
      for (const k of r.conflicts || []) onConflict(k, false);
      state.lastSeq = r.next_since !== undefined ? r.next_since : head;
    } catch (e) {
      if (gen !== state.streamGen || !state.session) return;
      setFeedState('down', 'unavailable');
      state.retry = setTimeout(openStream, RECONNECT_MS * 5);
      return;
    }
  }
  if (gen !== state.streamGen || !state.session) return;
  const es = new EventSource(API + '/changes/stream' + query({ since: state.lastSeq }));
  state.stream = es;
  es.addEventListener('open', () => setFeedState('live', 'live'));
  es.addEventListener('error', () => {
    // The browser would reconnect with the URL's old `since`; reopen from where the feed is instead, once the
    // session is known to be alive (an ended session logs out instead of retrying for ever).
    closeStream();
    setFeedState('down', 'reconnecting');
    if (state.session) state.retry = setTimeout(reopenStream, RECONNECT_MS);
  });
  es.addEventListener('change', (m) => {
    const t = parse(m.data);
    if (t) onTxn(t, true);
    advance(m.lastEventId);
  });
  es.addEventListener('conflict', (m) => {
    const k = parse(m.data);
    if (k) onConflict(k, true);
    advance(m.lastEventId);
  });
  es.addEventListener('message', (m) => advance(m.lastEventId));
}

async function reopenStream() {
  try {
    await api('GET', '/session');
  } catch (e) {
    if (e.status === 401) return loggedOut('Your session has ended; log in again.');
    state.retry = setTimeout(reopenStream, RECONNECT_MS * 5); // the server is unreachable: try again later
    return;
  }
  if (state.session) openStream();
}

function closeStream() {
  if (state.retry) clearTimeout(state.retry);
  state.retry = null;
  if (state.stream) state.stream.close();
  state.stream = null;
}

function advance(id) {
  const n = Number(id);
  if (id !== '' && Number.isFinite(n) && n > (state.lastSeq || 0)) state.lastSeq = n;
}

function setFeedState(kind, text) {
  const pill = $('feed-state');
  pill.textContent = text;
  pill.className = 'pill ' + kind;
}

function parse(data) {
  try {
    return JSON.parse(data);
  } catch (e) {
    return null;
  }
}

// What the feed knows of each visit and order it shows, merged from every transaction that touched it.
const feedRecords = new Map();

function onTxn(t, live) {
  if (t.server_seq !== undefined && t.server_seq <= (state.shownSeq || 0)) return; // already shown
  if (t.server_seq !== undefined) state.shownSeq = t.server_seq;
  const touched = new Map();
  let orders = false;
  for (const c of t.changes || []) {
    if (c.entity === 'order' || c.entity === 'order_line') orders = true;
    if (c.entity !== 'visit' && c.entity !== 'order') continue;
    const key = c.entity + '/' + c.id;
    const rec = feedRecords.get(key) || { entity: c.entity, id: c.id, fields: {}, user: t.user };
    if (c.field) rec.fields[c.field] = c.value;
    rec.at_ms = c.at_ms;
    rec.user = t.user;
    if (c.op === 'create') rec.created = true;
    feedRecords.set(key, rec);
    touched.set(key, rec);
  }
  for (const rec of touched.values()) showRecord(rec, live);
  if (orders && live) {
    if (state.view === 'orders') loadOrders();
    refreshBadges();
  }
}

async function showRecord(rec, live) {
  // A transaction that only checked a visit out or moved an order's status does not name the account.
  if (!rec.fields.account_id) {
    try {
      const r = await api('GET', '/entities/' + rec.entity + '/' + encodeURIComponent(rec.id));
      rec.fields = Object.assign({}, (r && r.record) || {}, rec.fields);
    } catch (e) {
      // Shown with what the change said.
    }
  }
  const f = rec.fields;
  let title;
  let what;
  let when;
  if (rec.entity === 'visit') {
    title = 'Visit';
    what = f.check_out_at ? 'Checked out at ' : 'Checked in at ';
    when = f.check_out_at || f.check_in_at || rec.at_ms;
  } else {
    title = 'Order';
    what = (f.status ? String(f.status).replace(/^./, (x) => x.toUpperCase()) : 'Order') + ' at ';
    when = rec.at_ms;
  }
  // Who made this change: the rep for their visits and orders, or head office approving an order.
  const by = rec.user || f.rep_id || '?';
  const detail = el('span', { class: 'detail' }, what, nameCell('account', f.account_id),
    f.outcome ? ' · ' + String(f.outcome).replace('_', ' ') : '',
    rec.entity === 'order' && f.rep_id && f.rep_id !== by ? ' · ' + f.rep_id + "'s order" : '', ' · by ' + by);
  addFeed(rec.entity, rec.entity + '/' + rec.id, title, detail, when, live);
}

function onConflict(k, live) {
  const key = 'conflict/' + k.server_seq + '/' + k.entity + '/' + k.record + '/' + (k.field || '');
  if (feedRecords.has(key)) return;
  feedRecords.set(key, k);
  const w = k.winner || {};
  const l = k.loser || {};
  const what = k.kind === 'scheduling' ? 'Double booking: ' : 'Concurrent edit of ';
  const detail = el('span', { class: 'detail' }, what, k.entity === 'account' ? nameCell('account', k.record) : k.entity || '',
    k.field ? ' ' + k.field : '', ': kept ', el('span', { class: 'value', text: fmtValue(k.field, w.value) }),
    ' by ' + (w.user || '?') + ', lost ', el('span', { class: 'value', text: fmtValue(k.field, l.value) }), ' by ' + (l.user || '?'));
  addFeed('conflict', key, 'Conflict', detail, l.at_ms || w.at_ms, live);
}

// One line per record: a later change of the same visit or order replaces its line and moves it to the top.
function addFeed(kind, key, title, detail, when, live) {
  const list_ = $('feed-list');
  const old = list_.querySelector(`li[data-key="${CSS.escape(key)}"]`);
  if (old) old.remove();
  const li = el('li', { class: (live ? 'fresh ' : '') + 'kind-' + kind, 'data-kind': kind, 'data-key': key },
    el('span', { class: 'kind', text: title }), detail, when ? timeElement(when) : el('time', { text: '–' }));
  list_.prepend(li);
  while (list_.children.length > FEED_MAX) list_.lastElementChild.remove();
  $('feed-empty').hidden = true;
  if (live && state.view !== 'feed') {
    state.unseen = (state.unseen || 0) + 1;
    $('feed-badge').textContent = String(state.unseen);
    $('feed-badge').hidden = false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Approvals.

async function loadOrders() {
  let orders;
  try {
    orders = await list('order', { status: 'submitted', sort: 'submitted_at', order: 'asc', limit: 100 });
  } catch (e) {
    return say('Orders could not be loaded: ' + e.message, 'bad');
  }
  const body = $('orders-body');
  // A row someone is working in (a rejection reason open, or the keyboard focus inside it) is kept as it is:
  // a live refresh, say another order arriving, must not throw away what they are typing.
  const active = document.activeElement;
  const keep = new Map();
  for (const tr of body.children) {
    const reason = tr.querySelector('input[aria-label="Reason for rejecting"]');
    if ((reason && !reason.hidden) || tr.contains(active)) keep.set(tr.dataset.id, tr);
  }
  body.replaceChildren(...orders.map((o) => keep.get(o.id) || orderRow(o)));
  if (active && body.contains(active) && document.activeElement !== active) active.focus();
  $('orders-empty').hidden = orders.length > 0;
}

function orderRow(o) {
  const total = el('td', { class: 'num', text: '…' });
  const lines = el('td', { text: '…' });
  api('GET', '/entities/order/' + encodeURIComponent(o.id))
    .then((r) => {
      const ls = ((r && r.children) || {}).order_line || [];
      let cents = 0;
      for (const l of ls) cents += Math.round((l.quantity * l.unit_price_cents * (10000 - (l.discount_bp || 0))) / 10000);
      const net = r && r.totals && r.totals.net_cents !== undefined ? r.totals.net_cents : cents;
      total.textContent = fmtMoney(net, o.currency);
      lines.textContent = String(ls.length);
      return creditWarning(o, net, total);
    })
    .catch(() => {
      total.textContent = '–';
      lines.textContent = '–';
    });
  const reason = el('input', { type: 'text', 'aria-label': 'Reason for rejecting', placeholder: 'reason', hidden: true, maxlength: '500' });
  const approve = el('button', { type: 'button', class: 'primary', text: 'Approve' });
  const reject = el('button', { type: 'button', class: 'danger', text: 'Reject' });
  const row = el('tr', { 'data-id': o.id }, el('td', {}, timeElement(o.submitted_at)), el('td', {}, nameCell('account', o.account_id)),
    el('td', { text: o.rep_id || '–' }), total, lines, el('td', {}, el('div', { class: 'actions' }, approve, reject, reason)));
  approve.addEventListener('click', () => decide(row, o, 'approve'));
  reject.addEventListener('click', () => {
    if (reason.hidden) {
      reason.hidden = false;
      reject.textContent = 'Send rejection';
      reason.focus();
      return;
    }
    if (!reason.value.trim()) {
      say('Say why the order is rejected: the rep sees it on the device.', 'bad');
      return reason.focus();
    }
    decide(row, o, 'reject', reason.value.trim());
  });
  reason.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') reject.click();
    if (e.key === 'Escape') {
      reason.hidden = true;
      reject.textContent = 'Reject';
      reject.focus();
    }
  });
  return row;
}

// The approver's cue: an order worth more than its account's credit limit (set by head office) is marked. The
// model does not refuse such an order -- head office decides -- so it is a warning, not a block.
async function creditWarning(o, net, cell) {
  try {
    const r = await api('GET', '/entities/account/' + encodeURIComponent(o.account_id));
    const limit = r && r.record ? r.record.credit_limit_cents : null;
    if (limit === null || limit === undefined || net <= limit) return;
    cell.append(el('br'), el('span', { class: 'warn over-limit', text: 'over the credit limit of ' + fmtMoney(limit, o.currency) }));
  } catch (e) {
    // No warning when the account cannot be read: the total is still shown.
  }
}

async function decide(row, order, action, reason) {
  for (const b of row.querySelectorAll('button')) b.disabled = true;
  try {
    await api('POST', '/orders/' + encodeURIComponent(order.id) + '/' + action, action === 'reject' ? { reason } : {});
    const next = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    $('orders-empty').hidden = $('orders-body').children.length > 0;
    say(action === 'approve' ? 'Order approved; it reaches the rep on their next sync.' : 'Order sent back to the rep as a draft.', 'ok');
    const focus = next && next.querySelector('button');
    if (focus) focus.focus();
    refreshBadges();
  } catch (e) {
    for (const b of row.querySelectorAll('button')) b.disabled = false;
    say('Could not ' + action + ' the order: ' + e.message, 'bad');
  }
}

// ---------------------------------------------------------------------------------------------------------
// Conflict inbox.

async function loadConflicts() {
  let items;
  try {
    const r = await api('GET', '/conflicts' + query({ resolved: $('conflicts-resolved').checked ? undefined : 'false', limit: 100 }));
    items = (r && r.items) || [];
  } catch (e) {
    return say('Conflicts could not be loaded: ' + e.message, 'bad');
  }
  $('conflicts-body').replaceChildren(...items.map(conflictRow));
  $('conflicts-empty').hidden = items.length > 0;
}

function side(field, s) {
  s = s || {};
  return el('td', {}, el('span', { class: 'value', text: fmtValue(field, s.value) }), el('br'),
    el('span', { class: 'by', text: 'by ' + (s.user || '?') + (s.at_ms ? ' · ' + fmtTime(s.at_ms) : '') }));
}

function conflictRow(k) {
  const res = k.resolution;
  const actions = el('div', { class: 'actions' });
  const when = (k.loser && k.loser.at_ms) || (k.winner && k.winner.at_ms);
  const record = k.entity === 'account' ? nameCell('account', k.record) : el('span', { class: 'value', text: shortId(k.record) });
  const row = el('tr', { 'data-id': String(k.id), class: res ? 'done' : null }, el('td', {}, timeElement(when)),
    el('td', {}, (k.entity || '') + ' ', record), el('td', { text: k.field || (k.kind === 'scheduling' ? 'overlap' : '–') }),
    side(k.field, k.winner), side(k.field, k.loser), el('td', { text: k.rule || k.kind || '' }), el('td', {}, actions));
  if (res) {
    actions.append(el('span', { text: (res.action === 'restore' ? 'restored' : 'kept winner') + ' by ' + (res.by || '?') + ' · ' }), timeElement(res.at_ms));
  } else if (k.field && k.kind !== 'scheduling') {
    const keep = el('button', { type: 'button', text: 'Keep winner' });
    const restore = el('button', { type: 'button', class: 'primary', text: 'Restore loser' });
    keep.addEventListener('click', () => resolve(row, k, 'accept'));
    restore.addEventListener('click', () => resolve(row, k, 'restore'));
    actions.append(keep, restore);
  } else {
    const keep = el('button', { type: 'button', text: 'Mark handled' });
    keep.addEventListener('click', () => resolve(row, k, 'accept'));
    actions.append(keep);
  }
  return row;
}

function shortId(id) {
  id = String(id || '');
  return id.length > 13 ? id.slice(0, 8) + '…' + id.slice(-4) : id;
}

async function resolve(row, k, action) {
  for (const b of row.querySelectorAll('button')) b.disabled = true;
  try {
    await api('POST', '/conflicts/' + encodeURIComponent(k.id) + '/resolve', { action });
    say(action === 'restore' ? 'The losing value is restored; it syncs out to the devices.' : 'The winner is kept.', 'ok');
    loadConflicts();
  } catch (e) {
    for (const b of row.querySelectorAll('button')) b.disabled = false;
    say('Could not resolve the conflict: ' + e.message, 'bad');
  }
}

// ---------------------------------------------------------------------------------------------------------
// Reports: the reports library's JSON drawn with Chart.js. A report the server does not offer (404) says so
// in its box instead of failing the page.

// Reports are in the company's time zone by default: head office compares days and months in one calendar
// wherever its people sit (DESIGN.md "Reports"). The zone is named above the charts. "My time zone" asks in
// the browser's zone instead: the viewer's own days, from the server's zone-independent rollup as fast as the
// company's (store format 9). The choice lasts for the session in this tab.
const BROWSER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || '';
const ZONE_CHOICE = 'fieldsync.report-zone';

// The company's zone: the server names it in the period of any report asked without a zone (an empty
// period's leads report is a few index steps). null if the server has no reports.
async function companyZone() {
  if (state.companyZone !== undefined) return state.companyZone;
  try {
    const r = await api('GET', '/reports/leads' + query({ from: 0, to: 1 }));
    state.companyZone = (r.period && r.period.time_zone) || 'UTC';
  } catch (e) {
    state.companyZone = null;
  }
  return state.companyZone;
}

const inMyZone = () => sessionStorage.getItem(ZONE_CHOICE) === 'mine' && BROWSER_ZONE !== '';

// Offset of `zone` from UTC at instant `ms`, in ms, from the browser's own zone database.
function zoneOffsetMs(zone, ms) {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).formatToParts(new Date(ms));
  const v = Object.fromEntries(parts.map((p) => [p.type, Number(p.value)]));
  return Date.UTC(v.year, v.month - 1, v.day, v.hour, v.minute, v.second) - Math.floor(ms / 1000) * 1000;
}

// The first instant of the local day "YYYY-MM-DD" (+ `plusDays`) in `zone`: the period's ends are midnights of
// the zone the report is asked in, so its first and last days are whole days there.
function midnightIn(zone, isoDay, plusDays) {
  const [y, m, d] = isoDay.split('-').map(Number);
  const utc = Date.UTC(y, m - 1, d + (plusDays || 0));
  let t = utc - zoneOffsetMs(zone, utc);
  t = utc - zoneOffsetMs(zone, t); // again at the instant itself: the offset may change that night
  return t;
}

function reportRange() {
  const zone = inMyZone() ? BROWSER_ZONE : state.companyZone;
  const day = (id, plus) => {
    const v = $(id).value;
    if (!v) return undefined;
    return zone ? midnightIn(zone, v, plus) : new Date(v + 'T00:00').getTime() + (plus || 0) * 86400000;
  };
  const range = { from: day('reports-from'), to: day('reports-to', 1) };
  if (inMyZone()) range.tz = BROWSER_ZONE; // otherwise neither tz nor offset: the company's zone
  return range;
}

// The line above the charts: whose days these are, and the switch to the other zone.
function showReportZone() {
  const note = $('reports-zone');
  const other = $('reports-zone-switch');
  const company = state.companyZone;
  if (!company) {
    note.textContent = '';
    other.hidden = true;
    return;
  }
  if (inMyZone()) {
    note.textContent = 'Days and months in your time zone, ' + BROWSER_ZONE + '. The company reports in ' + company + '.';
    other.textContent = "Use the company's time zone (" + company + ')';
    other.hidden = false;
  } else {
    note.textContent = "Days and months in the company's time zone, " + company + '.';
    other.textContent = 'Use my time zone (' + BROWSER_ZONE + ')';
    other.hidden = !BROWSER_ZONE || BROWSER_ZONE === company;
  }
  $('reports-zone-box').dataset.zone = inMyZone() ? 'mine' : 'company';
}

function switchReportZone() {
  if (inMyZone()) sessionStorage.removeItem(ZONE_CHOICE);
  else sessionStorage.setItem(ZONE_CHOICE, 'mine');
  loadReports();
}

async function report(name, extra) {
  return api('GET', '/reports/' + name + query(Object.assign(reportRange(), extra || {})));
}

function monthLabel(m) {
  if (m === null || m === undefined) return 'no date';
  const match = /^(\d{4})-(\d{2})/.exec(String(m));
  return match ? monthFmt.format(new Date(Number(match[1]), Number(match[2]) - 1, 1)) : String(m);
}

const COLOURS = ['#1a5fb4', '#26a269', '#e5a50a', '#c64600', '#613583', '#63452c', '#9a9996'];

function drawChart(id, config) {
  if (typeof Chart === 'undefined') throw new Error('the chart library did not load');
  if (state.charts[id]) state.charts[id].destroy();
  config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
  state.charts[id] = new Chart($(id), config);
}

async function chartBox(id, name, extra, build) {
  const note = $(id + '-box').querySelector('.note');
  note.textContent = 'Loading…';
  try {
    const r = await report(name, extra);
    const n = build(r);
    note.textContent = n || '';
    $(id + '-box').dataset.state = 'drawn';
  } catch (e) {
    if (state.charts[id]) state.charts[id].destroy();
    delete state.charts[id];
    note.textContent = e.status === 404 ? 'This server does not offer the ' + name + ' report yet.' : 'Could not load: ' + e.message;
    $(id + '-box').dataset.state = e.status === 404 ? 'absent' : 'failed';
  }
}

const sumAmounts = (list) => (list || []).reduce((n, x) => n + Number(x.amount_cents || 0), 0);

// The reports library's JSON (server/include/fieldsync/server/reports.h): funnel.stages, forecast.months,
// activity.by_rep, revenue.by_month. Amounts of several currencies are added as they come (one per company).
// The CSV exports of the same period, as plain links: a GET with the session cookie, saved by the browser as
// it streams (no copy in the page's memory); with the byte order mark so Excel reads names as UTF-8.
function exportLinks() {
  for (const kind of ['orders', 'visits', 'accounts'])
    $('export-' + kind).href = API + '/export/' + kind + '.csv' + query(Object.assign(reportRange(), { bom: 1 }));
}

async function loadReports() {
  await companyZone();
  showReportZone();
  exportLinks();
  chartBox('chart-funnel', 'funnel', {}, (r) => {
    const rows = (r.stages || []).filter((s) => s.stage !== 'won' && s.stage !== 'lost');
    drawChart('chart-funnel', {
      type: 'bar',
      data: {
        labels: rows.map((s) => s.stage),
        datasets: [
          { label: 'Open deals', data: rows.map((s) => s.open_deals || 0), backgroundColor: COLOURS[0], yAxisID: 'y' },
          { label: 'Amount', data: rows.map((s) => sumAmounts(s.open_amount) / 100), backgroundColor: COLOURS[1], yAxisID: 'y1' },
        ],
      },
      options: {
        scales: {
          y: { beginAtZero: true, position: 'left', ticks: { precision: 0 }, title: { display: true, text: 'deals' } },
          y1: { beginAtZero: true, position: 'right', grid: { drawOnChartArea: false }, title: { display: true, text: 'amount' } },
        },
      },
    });
    return rows.some((s) => s.open_deals) ? '' : 'No open deal.';
  });
  chartBox('chart-forecast', 'forecast', {}, (r) => {
    const months = new Map();
    for (const m of r.months || []) {
      const k = m.month === null || m.month === undefined ? '~' : m.month; // undated deals last
      const x = months.get(k) || { weighted: 0, won: 0 };
      x.weighted += Number(m.weighted_cents || 0) / 100;
      x.won += Number(m.won_cents || 0) / 100;
      months.set(k, x);
    }
    const keys = [...months.keys()].sort();
    drawChart('chart-forecast', {
      type: 'bar',
      data: {
        labels: keys.map((k) => (k === '~' ? 'no date' : monthLabel(k))),
        datasets: [
          { label: 'Weighted forecast', data: keys.map((k) => months.get(k).weighted), backgroundColor: COLOURS[0] },
          { label: 'Won', data: keys.map((k) => months.get(k).won), backgroundColor: COLOURS[1] },
        ],
      },
      options: { scales: { y: { beginAtZero: true } } },
    });
    return keys.length ? '' : 'No deal expected or won in this period.';
  });
  chartBox('chart-activity', 'activity', {}, (r) => {
    const rows = r.by_rep || [];
    drawChart('chart-activity', {
      type: 'bar',
      data: {
        labels: rows.map((x) => x.rep),
        datasets: [
          { label: 'Visits', data: rows.map((x) => x.visits || 0), backgroundColor: COLOURS[2] },
          { label: 'Orders', data: rows.map((x) => x.orders || 0), backgroundColor: COLOURS[1] },
        ],
      },
      options: { indexAxis: 'y', scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
    return rows.length ? '' : 'No visit in this period.';
  });
  chartBox('chart-revenue', 'revenue', {}, (r) => {
    const perMonth = new Map();
    for (const x of r.by_month || []) perMonth.set(x.month, (perMonth.get(x.month) || 0) + Number(x.revenue_cents || 0) / 100);
    const keys = [...perMonth.keys()].sort();
    drawChart('chart-revenue', {
      type: 'bar',
      data: { labels: keys.map(monthLabel), datasets: [{ label: 'Revenue', data: keys.map((k) => perMonth.get(k)), backgroundColor: COLOURS[0] }] },
      options: { scales: { y: { beginAtZero: true } } },
    });
    return keys.length ? '' : 'No order in this period.';
  });
}

// ---------------------------------------------------------------------------------------------------------
// Accounts: search (over the loaded page of the territory), select, reassign to another territory.

async function loadTerritories() {
  if (state.territories.length) return;
  try {
    const r = await api('GET', '/territories');
    state.territories = (r && (r.items || r.territories)) || (Array.isArray(r) ? r : []);
  } catch (e) {
    state.territories = [];
  }
  const options = state.territories.map((t) => el('option', { value: t.id, text: t.name ? t.name + ' (' + t.id + ')' : t.id }));
  $('accounts-territory').replaceChildren(el('option', { value: '', text: 'all' }), ...options.map((o) => o.cloneNode(true)));
  $('reassign-territory').replaceChildren(...options);
}

async function loadAccounts() {
  await loadTerritories();
  try {
    const all = [];
    let cursor;
    // Up to 1,000 accounts for the search box; a bigger book is narrowed by territory first.
    for (let page = 0; page < 5; ++page) {
      const r = await api('GET', '/entities/account' + query({ territory_id: $('accounts-territory').value, q: $('accounts-q').value.trim(), sort: 'name', order: 'asc', limit: 200, cursor }));
      all.push(...((r && r.items) || []));
      cursor = r && r.next_cursor;
      if (!cursor) break;
    }
    state.accounts = all;
    for (const a of all) state.names.set('account/' + a.id, Promise.resolve(a.name || a.id));
  } catch (e) {
    return say('Accounts could not be loaded: ' + e.message, 'bad');
  }
  renderAccounts();
}

function renderAccounts() {
  const q = $('accounts-q').value.trim().toLocaleLowerCase();
  const shown = state.accounts.filter((a) => !q || String(a.name || '').toLocaleLowerCase().includes(q) || String(a.city || '').toLocaleLowerCase().includes(q));
  $('accounts-body').replaceChildren(
    ...shown.map((a) => {
      const box = el('input', { type: 'checkbox', 'aria-label': 'Select ' + (a.name || a.id), checked: state.selected.has(a.id) });
      box.addEventListener('change', () => {
        if (box.checked) state.selected.add(a.id);
        else state.selected.delete(a.id);
        updateSelection();
      });
      // Reassignment is head office's: other roles get no selection column.
      return el('tr', { 'data-id': a.id }, isHeadOffice() ? el('td', {}, box) : null, el('td', { text: a.name || a.id }), el('td', { text: a.city || '' }),
        el('td', { text: a.segment ? String(a.segment).toUpperCase() : '' }), el('td', { class: 'territory', text: a.territory_id || '' }),
        creditCell(a));
    }),
  );
  $('accounts-empty').hidden = shown.length > 0;
  updateSelection();
}

function updateSelection() {
  const n = state.selected.size;
  $('reassign-count').textContent = n + (n === 1 ? ' account selected' : ' accounts selected');
  $('reassign-go').disabled = n === 0;
}

async function reassign(e) {
  e.preventDefault();
  const territory = $('reassign-territory').value;
  const accounts = [...state.selected];
  if (!accounts.length || !territory) return;
  $('reassign-go').disabled = true;
  try {
    await api('POST', '/accounts/reassign', { accounts, territory });
    state.selected.clear();
    say(accounts.length + (accounts.length === 1 ? ' account moves' : ' accounts move') + ' to ' + territory + '; the reps\' devices follow on their next sync.', 'ok');
    await loadAccounts();
  } catch (err) {
    say('Could not reassign: ' + err.message, 'bad');
    updateSelection();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Devices and sync health.

async function loadDevices() {
  let r;
  try {
    r = (await api('GET', '/sync-health')) || {};
  } catch (e) {
    return say('Sync health could not be loaded: ' + e.message, 'bad');
  }
  const devices = r.devices || [];
  $('devices-body').replaceChildren(
    ...devices.map((d) =>
      el('tr', { 'data-node': String(d.node) }, el('td', { class: 'value', text: String(d.node) }), el('td', { text: d.user || '' }),
        el('td', {}, el('span', { class: 'pill ' + (d.online ? 'live' : ''), text: d.online ? 'online' : 'offline' })),
        el('td', {}, timeElement(d.last_connected_ms)), el('td', {}, timeElement(d.last_push_ms)), el('td', {}, timeElement(d.last_pull_ms)),
        el('td', { class: 'num', text: String(d.last_node_seq || 0) }),
        el('td', { class: 'num', text: d.cursor === null || d.cursor === undefined ? '–' : String(Math.max(0, (d.log_head || 0) - d.cursor)) }),
        el('td', { class: 'num' }, String(d.rejections || 0), d.last_rejection_ms ? el('br') : null, d.last_rejection_ms ? timeElement(d.last_rejection_ms) : null),
        el('td', { text: (d.protocol_version ? 'v' + d.protocol_version : '–') + (d.schema_version ? ' / ' + d.schema_version : '') }),
        // An app that predates the version in the Hello, or one not connected since the server started.
        el('td', { class: 'app-version' + (d.app_version ? ' value' : ' muted'), text: d.app_version || 'unknown' }),
        el('td', { class: 'state' }, el('span', { class: d.revoked ? 'error' : '', text: d.revoked ? 'revoked' : 'active' }), ' ', deviceControls(d))),
    ),
  );
  loadDeviceAdmin();
  $('devices-empty').hidden = devices.length > 0;
  const reps = r.reps || [];
  $('reps-body').replaceChildren(
    ...reps.map((p) =>
      el('tr', { 'data-user': p.user }, el('td', { text: p.user }), el('td', {}, timeElement(p.last_change_reached_ms)),
        el('td', {}, timeElement(p.last_visit_check_in_ms)), el('td', {}, timeElement(p.last_order_submitted_ms))),
    ),
  );
  $('log-head').textContent = r.log_head !== undefined ? String(r.log_head) : '–';
}

document.addEventListener('DOMContentLoaded', start);
