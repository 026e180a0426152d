// The head-office dashboard in a real browser (issue 18, section 5): Debian's headless Chromium driven by
// playwright-core against a real fieldsync-server process, seeded with fieldsync-admin, and reps' devices
// (FieldClient, through fieldsync-rep) syncing over TLS while the page is open. Steps: log in with the
// keyboard; a visit a rep syncs appears in the live feed without a reload; an order is approved and leaves the
// queue (and reaches the rep's device); a conflict's losing value is restored; an account is reassigned;
// the report charts are drawn; devices and their sync health are listed; the page fits a tablet. Times must
// show as dates in the browser's time zone (Asia/Kolkata here, UTC+05:30, so UTC or epoch ms cannot pass).
// Any console error or uncaught page error fails the test. Screenshots: OUT_DIR/screenshots/*.png.
//
// Usage: node dashboard.test.mjs --bin-dir DIR --out-dir DIR (tests/browser/run.sh installs playwright-core
// and passes FIELDSYNC_NODE_MODULES).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.FIELDSYNC_NODE_MODULES || path.dirname(new URL(import.meta.url).pathname), '/'));
const { chromium, request: apiRequest } = require('playwright-core');

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const BIN = args['bin-dir'];
const OUT = path.resolve(args['out-dir'] || 'browser-test');
if (!BIN) throw new Error('usage: dashboard.test.mjs --bin-dir DIR --out-dir DIR');
const RUN = path.join(OUT, 'run');
const DATA = path.join(RUN, 'server');
const SHOTS = path.join(OUT, 'screenshots');
fs.rmSync(RUN, { recursive: true, force: true });
fs.rmSync(SHOTS, { recursive: true, force: true });
fs.mkdirSync(DATA, { recursive: true });
fs.mkdirSync(SHOTS, { recursive: true });

const PASSWORD = 'browser-test-2026';
const TIME_ZONE = 'Asia/Kolkata';
const LOCALE = 'en-US';
const WAIT_MS = 30000; // generous: ctest runs it beside other tests, and under ASan the server is several times slower
const ROLE = { ho: 'head_office', alice: 'rep', bob: 'rep' };
const TOKEN = {};

let passed = 0;
let failed = 0;
function step(name) {
  console.log('-- ' + name);
}
function ok(name) {
  passed++;
  console.log('   ok: ' + name);
}
function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
  ok(what);
}

const run = (file, argv, env) =>
  execFileSync(file, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }).trim();
const admin = (...a) => run(path.join(BIN, 'fieldsync-admin'), ['--data-dir', DATA, ...a]);
const repIn = (env, user, ...a) =>
  run(path.join(BIN, 'fieldsync-rep'), ['--db', path.join(RUN, user + '.db'), '--user', user, '--role', ROLE[user], '--token', TOKEN[user] || '', ...a], env);
const rep = (user, ...a) => repIn({}, user, ...a);

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function until(what, fn, timeoutMs = WAIT_MS) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ------------------------------------------------------------------------------------------------------------
// The company: territories, people, a product, and a server.

step('seeding: territories north and south, head office ho, reps alice and bob (north), one product');
admin('territory', 'add', '--id', 'north', '--name', 'North');
admin('territory', 'add', '--id', 'south', '--name', 'South');
for (const u of Object.keys(ROLE)) admin('user', 'add', '--id', u, '--name', u[0].toUpperCase() + u.slice(1), '--role', ROLE[u], '--password', PASSWORD);
admin('assign', '--user', 'alice', '--territory', 'north');
admin('assign', '--user', 'bob', '--territory', 'north');
const PRODUCT = admin('product', 'add', '--sku', 'ESP-1', '--name', 'Espresso beans 1 kg', '--unit', 'kg');
admin('price', 'set', '--product', 'ESP-1', '--list', 'standard', '--cents', '2450', '--currency', 'EUR');

const PORT = await freePort();
const ORIGIN = `https://127.0.0.1:${PORT}`;
const serverLog = fs.openSync(path.join(RUN, 'server.log'), 'w');
const server = spawn(path.join(BIN, 'fieldsync-server'), ['--dev', '--data-dir', DATA, '--listen', `127.0.0.1:${PORT}`, '--threads', '2'], {
  stdio: ['ignore', serverLog, serverLog],
});
let serverExit = null;
server.on('exit', (code, signal) => (serverExit = { code, signal }));
// Whatever fails before the end (an exception while seeding), the server does not outlive the test.
process.on('exit', () => {
  if (!serverExit) server.kill('SIGKILL');
});
const CA = path.join(DATA, 'dev-cert.pem');
await until('the server to listen', async () => {
  if (serverExit) throw new Error('fieldsync-server exited: ' + JSON.stringify(serverExit));
  if (!fs.existsSync(CA)) return false;
  return new Promise((resolve) => {
    const s = net.connect(PORT, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
});
const SYNC_URL = `wss://127.0.0.1:${PORT}/sync`;
const sync = (...users) => {
  for (const u of users) rep(u, 'sync', '--server', SYNC_URL, '--ca', CA, '--once');
};
for (const u of Object.keys(ROLE)) {
  const node = rep(u, 'status').split('\n').find((l) => l.startsWith('node\t')).split('\t')[1];
  admin('device', 'register', '--node', node, '--user', u);
  TOKEN[u] = rep(u, 'login', '--server', SYNC_URL, '--ca', CA, '--password', PASSWORD);
}

step('before the page opens: accounts filed by head office, an order submitted, a concurrent edit (a conflict)');
const ROSSI = rep('ho', 'account', 'add', '--name', 'Caffè Rossi', '--territory', 'north', '--city', 'Hamburg', '--segment', 'a');
const KIOSK = rep('ho', 'account', 'add', '--name', 'Hafen Kiosk', '--territory', 'north', '--city', 'Hamburg', '--segment', 'b');
sync('ho', 'alice', 'bob');
const ORDER = rep('alice', 'order', 'draft', '--account', ROSSI);
rep('alice', 'order', 'line', '--order', ORDER, '--product', PRODUCT, '--qty', '12');
rep('alice', 'order', 'submit', '--order', ORDER);
const ORDER2 = rep('alice', 'order', 'draft', '--account', KIOSK);
rep('alice', 'order', 'line', '--order', ORDER2, '--product', PRODUCT, '--qty', '2');
rep('alice', 'order', 'submit', '--order', ORDER2);
rep('alice', 'account', 'edit', '--id', ROSSI, '--phone', '+49 40 111111');
rep('bob', 'account', 'edit', '--id', ROSSI, '--phone', '+49 40 222222');
rep('bob', 'opp', 'add', '--account', KIOSK, '--name', 'Kiosk espresso contract', '--amount', '480000', '--stage', 'proposal');
rep('alice', 'event', 'book', '--title', 'Tasting at Rossi', '--start', '2030-01-07T10:00', '--end', '2030-01-07T11:00', '--account', ROSSI);
rep('alice', 'event', 'book', '--title', 'Kiosk follow-up', '--start', '2030-01-07T10:30', '--end', '2030-01-07T11:30', '--account', KIOSK);
sync('alice', 'bob', 'ho');

step("the terminal's conflict listing (fieldsync-rep conflicts) shows times as local dates, not epoch ms");
const listing = repIn({ TZ: TIME_ZONE }, 'ho', 'conflicts');
check(/start_at/.test(listing) && /2030-01-07 16:00 IST/.test(listing) && /2030-01-07 15:30 IST/.test(listing),
  "the double booking's start times in IST (10:00 and 10:30 UTC)");
check(!/\b1\d{12}\b/.test(listing), 'no epoch milliseconds in the listing');

// The API as a script sees it (bearer token), to check what the page did.
const api = await apiRequest.newContext({ baseURL: ORIGIN, ignoreHTTPSErrors: true });
const tokenRes = await api.post('/api/v1/session', { data: { user: 'ho', password: PASSWORD, mode: 'token' } });
if (!tokenRes.ok()) throw new Error('POST /api/v1/session (token) answered ' + tokenRes.status() + ' ' + (await tokenRes.text()));
const BEARER = { Authorization: 'Bearer ' + (await tokenRes.json()).token };
async function get(p) {
  const r = await api.get('/api/v1' + p, { headers: BEARER });
  return { status: r.status(), body: r.ok() ? await r.json() : await r.text() };
}

// ------------------------------------------------------------------------------------------------------------
// The browser.

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
const context = await browser.newContext({ ignoreHTTPSErrors: true, timezoneId: TIME_ZONE, locale: LOCALE, viewport: { width: 1366, height: 860 } });
context.setDefaultTimeout(WAIT_MS);
const page = await context.newPage();
const consoleErrors = [];
page.on('console', (m) => {
  if (m.type() === 'error') consoleErrors.push(m.text() + ' @ ' + JSON.stringify(m.location()));
});
page.on('pageerror', (e) => consoleErrors.push('uncaught: ' + e.message));
const requests = new Set();
page.on('request', (r) => requests.add(new URL(r.url()).origin));
let shot = 0;
const screenshot = async (name) => page.screenshot({ path: path.join(SHOTS, String(++shot).padStart(2, '0') + '-' + name + '.png'), fullPage: true });

// The page shows a time as Intl does in the browser's zone; computed here independently, with the zone named.
const expectedTime = (ms) => new Intl.DateTimeFormat(LOCALE, { dateStyle: 'medium', timeStyle: 'short', timeZone: TIME_ZONE }).format(new Date(ms));
async function checkTimes(where) {
  const text = await page.locator('main').innerText();
  check(!/\b1[5-9]\d{11}\b/.test(text), where + ': no epoch milliseconds on the page');
  const times = await page.locator('main time[datetime]:visible').evaluateAll((ts) => ts.map((t) => [t.getAttribute('datetime'), t.textContent]));
  for (const [iso, shown] of times) if (shown !== expectedTime(Date.parse(iso))) throw new Error(`${where}: ${iso} shown as '${shown}', expected '${expectedTime(Date.parse(iso))}' (${TIME_ZONE})`);
  if (times.length) ok(`${where}: ${times.length} time(s) shown as dates in ${TIME_ZONE}`);
}

try {
  step('the page and its headers');
  const res = await page.goto(ORIGIN + '/');
  const csp = res.headers()['content-security-policy'] || '';
  check(csp.includes("script-src 'self'") && csp.includes("style-src 'self'") && !csp.includes('unsafe'), 'strict Content-Security-Policy on /');
  check(res.headers()['x-content-type-options'] === 'nosniff', 'X-Content-Type-Options: nosniff');
  const js = await api.get('/app/vendor/chart.umd.min.js');
  check(js.status() === 200 && js.headers()['content-type'].startsWith('text/javascript') && js.headers()['content-security-policy'] === csp,
    'the chart library is served as JavaScript under the same policy');
  const etag = js.headers()['etag'];
  const again = await api.get('/app/vendor/chart.umd.min.js', { headers: { 'If-None-Match': etag } });
  check(etag && again.status() === 304 && js.headers()['cache-control'] === 'no-cache', 'revalidated by ETag: 304 Not Modified');
  check((await api.get('/app/nothing.js')).status() === 404, 'an unknown file is 404');
  await page.locator('#view-login').waitFor({ state: 'visible' });
  await screenshot('login');

  step('log in with the keyboard');
  await page.keyboard.press('Tab'); // the skip link
  await page.locator('#login-user').focus();
  await page.keyboard.type('ho');
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.locator('#view-feed').waitFor({ state: 'visible' });
  await page.locator('#feed-state.live').waitFor();
  check(true, 'logged in, the live feed is connected');

  step('a visit a rep syncs appears in the live feed without a reload');
  const visit = rep('alice', 'checkin', '--account', ROSSI, '--lat', '53.5511', '--lon', '9.9937');
  rep('alice', 'checkout', '--visit', visit, '--outcome', 'order_taken');
  check((await page.locator('#feed-list li[data-kind="visit"]').count()) === 0, 'no visit in the feed before the sync');
  const before = Date.now();
  sync('alice');
  // .fresh: added by the stream while the page was open, not by the backfill of recent changes.
  const item = page.locator('#feed-list li.fresh[data-kind="visit"]', { hasText: 'Caffè Rossi' }).first();
  await item.waitFor();
  check(true, `the visit at Caffè Rossi is in the feed ${Date.now() - before} ms after alice's sync began`);
  await checkTimes('live feed');
  await screenshot('live-feed');

  step('approve an order: it leaves the queue and reaches the rep');
  await page.locator('#nav a[data-view="orders"]').click();
  const orderRow = page.locator(`#orders-body tr[data-id="${ORDER}"]`);
  await orderRow.waitFor();
  await orderRow.locator('text=Caffè Rossi').waitFor();
  await page.locator(`#orders-body tr[data-id="${ORDER}"] td.num`, { hasText: '€294.00' }).waitFor();
  check(true, 'the submitted order is listed with its account and total (12 x 24.50 EUR)');
  check((await page.locator('#orders-body tr').count()) === 2, 'both submitted orders are in the queue');
  await checkTimes('approvals');
  await screenshot('approvals');
  await orderRow.getByRole('button', { name: 'Approve' }).click();
  await orderRow.waitFor({ state: 'detached' });
  check(true, 'the approved order left the queue');
  const approved = await get('/entities/order/' + ORDER);
  check(approved.status === 200 && approved.body.record.status === 'approved', 'the API shows the order approved');
  sync('alice');
  check(rep('alice', 'order', 'show', '--order', ORDER).includes('approved'), "alice's device shows the order approved after its sync");

  step('reject an order with a reason, with the keyboard alone');
  const rejectRow = page.locator(`#orders-body tr[data-id="${ORDER2}"]`);
  await rejectRow.getByRole('button', { name: 'Reject' }).focus();
  await page.keyboard.press('Enter');
  await page.locator(`#orders-body tr[data-id="${ORDER2}"] input[aria-label="Reason for rejecting"]:focus`).waitFor();
  await page.keyboard.type('Kiosk is closed ');
  // Another order arrives live while the reason is half typed: the queue refreshes, and the row being worked
  // in keeps its reason and the keyboard focus (a refresh once threw both away, mid-sentence).
  const ORDER3 = rep('alice', 'order', 'draft', '--account', ROSSI);
  rep('alice', 'order', 'line', '--order', ORDER3, '--product', PRODUCT, '--qty', '1');
  rep('alice', 'order', 'submit', '--order', ORDER3);
  sync('alice');
  await page.locator(`#orders-body tr[data-id="${ORDER3}"]`).waitFor();
  ok('an order submitted meanwhile joins the queue live');
  await page.keyboard.type('for the winter');
  await page.keyboard.press('Enter');
  await rejectRow.waitFor({ state: 'detached' });
  check(true, 'the rejected order left the queue');
  const rejected = await get('/entities/order/' + ORDER2);
  check(rejected.status === 200 && rejected.body.record.status === 'draft', 'the API shows the rejected order back in draft');
  check(String(rejected.body.record.notes || '').includes('Kiosk is closed for the winter'), 'the whole reason, typed across the refresh, is on the order');
  check((await page.locator('#orders-body tr').count()) === 1, 'only the order submitted meanwhile is still waiting');

  step('restore the losing value of a conflict');
  await page.locator('#nav a[data-view="conflicts"]').click();
  const conflictRow = page.locator('#conflicts-body tr', { hasText: '+49 40 111111' }).filter({ hasText: 'phone' }).first();
  await conflictRow.waitFor();
  await checkTimes('conflicts');
  await screenshot('conflicts');
  await conflictRow.getByRole('button', { name: 'Restore loser' }).click();
  await until('the restored phone number', async () => {
    const r = await get('/entities/account/' + ROSSI);
    return r.status === 200 && r.body.record.phone === '+49 40 111111';
  });
  check(true, "the account's phone is the restored value");
  await page.locator('#conflicts-body tr', { hasText: '+49 40 111111' }).waitFor({ state: 'detached' });
  check(true, 'the conflict left the inbox of unresolved conflicts');
  await page.locator('#conflicts-resolved').check();
  await page.locator('#conflicts-body tr.done', { hasText: 'restored by ho' }).waitFor();
  check(true, 'shown as restored by ho among the resolved');
  sync('bob');
  check(rep('bob', 'export').includes('+49 40 111111'), "bob's device has the restored value after its sync");

  step('reassign an account to another territory');
  await page.locator('#nav a[data-view="accounts"]').click();
  await page.locator('#accounts-body tr').first().waitFor();
  await page.locator('#accounts-q').fill('kiosk');
  check((await page.locator('#accounts-body tr').count()) === 1, 'the search narrows the list to Hafen Kiosk');
  await page.locator(`#accounts-body tr[data-id="${KIOSK}"] input[type="checkbox"]`).check();
  await page.locator('#reassign-territory').selectOption('south');
  await screenshot('accounts');
  await page.locator('#reassign-go').click();
  await page.locator(`#accounts-body tr[data-id="${KIOSK}"] td.territory`, { hasText: 'south' }).waitFor();
  const moved = await get('/entities/account/' + KIOSK);
  check(moved.status === 200 && moved.body.record.territory_id === 'south', 'the API shows Hafen Kiosk in south');

  step('report charts');
  const probe = await get('/reports/funnel');
  check(probe.status === 200, 'the server offers the reports (GET /api/v1/reports/funnel is 200)');
  {
    await page.locator('#nav a[data-view="reports"]').click();
    for (const id of ['chart-funnel', 'chart-forecast', 'chart-activity', 'chart-revenue'])
      await page.locator(`#${id}-box[data-state="drawn"]`).waitFor();
    // What each chart holds: [labels, first dataset's values] from Chart.js itself.
    const charts = await page.evaluate(() =>
      Object.fromEntries(['chart-funnel', 'chart-forecast', 'chart-activity', 'chart-revenue'].map((id) => {
        const c = window.Chart && window.Chart.getChart(document.getElementById(id));
        return [id, c ? [c.data.labels, c.data.datasets.map((d) => d.data)] : null];
      })));
    check(Object.values(charts).every((c) => c !== null), 'four charts drawn by Chart.js (funnel, forecast, visits per rep, revenue)');
    const sum = (xs) => xs.reduce((a, b) => a + Number(b || 0), 0);
    const [funnelStages, [funnelDeals, funnelAmount]] = charts['chart-funnel'];
    check(funnelDeals[funnelStages.indexOf('proposal')] === 1 && sum(funnelAmount) === 4800, "funnel: bob's deal, 4,800.00 in proposal");
    check(sum(charts['chart-forecast'][1][0]) === 2400, 'forecast: 4,800.00 weighted at 50% (proposal)');
    const [reps, [visits]] = charts['chart-activity'];
    check(visits[reps.indexOf('alice')] === 1, 'visits per rep: alice 1');
    // Revenue counts submitted, approved and fulfilled orders (DESIGN.md "Reports"): the approved 12 kg and the
    // 1 kg submitted during the rejection; the rejected order is a draft again and does not count.
    check(sum(charts['chart-revenue'][1][0]) === 294 + 24.5, 'revenue: the approved and the waiting order, 318.50');
    await screenshot('reports');
    // The CSV links carry the period and the BOM and download with the session cookie alone.
    const href = await page.locator('#export-accounts').getAttribute('href');
    check(href.startsWith('/api/v1/export/accounts.csv?') && href.includes('bom=1') && href.includes('from='), 'the accounts CSV link carries the period and the BOM');
    const csv = await page.request.get(ORIGIN + href);
    const text = await csv.text();
    check(csv.status() === 200 && csv.headers()['content-type'].startsWith('text/csv'), 'the CSV link downloads a CSV');
    check(text.charCodeAt(0) === 0xfeff && text.includes('Hafen Kiosk') && text.includes('Caffè Rossi'), 'with the BOM and the accounts, accents intact');
    const orders = await page.request.get(ORIGIN + (await page.locator('#export-orders').getAttribute('href')));
    check(orders.status() === 200 && (await orders.text()).includes('Caffè Rossi'), 'the orders CSV has the orders of the period');
  }

  step('devices and their sync health');
  await page.locator('#nav a[data-view="devices"]').click();
  await page.locator('#devices-body tr').first().waitFor();
  const userCells = await page.locator('#devices-body tr td:nth-child(2)').allInnerTexts();
  check(['ho', 'alice', 'bob'].every((u) => userCells.includes(u)), 'the three registered devices are listed with their users');
  // alice last synced before the restore and the reassignment: her device is behind the log by a number.
  const aliceBehind = await page.locator('#devices-body tr', { hasText: 'alice' }).locator('td:nth-child(8)').innerText();
  check(/^[1-9]\d*$/.test(aliceBehind), `alice's device is ${aliceBehind} changes behind the log head`);
  await checkTimes('devices');
  await screenshot('devices');

  step('a tablet');
  await page.setViewportSize({ width: 820, height: 1180 });
  for (const view of ['feed', 'orders', 'conflicts', 'accounts', 'devices']) {
    await page.locator(`#nav a[data-view="${view}"]`).click();
    await page.locator('#view-' + view).waitFor({ state: 'visible' });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `${view} fits 820 px without scrolling the page sideways`);
  }
  await page.locator('#nav a[data-view="feed"]').click();
  await screenshot('tablet-feed');

  step('log out');
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.locator('#view-login').waitFor({ state: 'visible' });
  check(true, 'logged out');

  check([...requests].every((o) => o === ORIGIN), 'every request went to the server itself (' + [...requests].join(', ') + ')');
  check(consoleErrors.length === 0, 'no console error: ' + (consoleErrors.join('\n') || 'none'));
} catch (e) {
  failed++;
  console.error('FAILED: ' + e.message);
  if (consoleErrors.length) console.error('console errors:\n  ' + consoleErrors.join('\n  '));
  await page.screenshot({ path: path.join(SHOTS, 'failure.png'), fullPage: true }).catch(() => {});
  console.error('server log (last lines):\n' + fs.readFileSync(path.join(RUN, 'server.log'), 'utf8').split('\n').slice(-25).join('\n'));
} finally {
  await browser.close();
  await api.dispose();
  server.kill('SIGTERM');
  await until('the server to exit', async () => serverExit !== null, 10000).catch(() => server.kill('SIGKILL'));
}
console.log(`screenshots: ${SHOTS}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && serverExit && serverExit.code === 0 ? 0 : 1);
