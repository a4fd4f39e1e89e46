// Drives the interactive docs page (/docs/, Swagger UI) the way a portal developer does, in a real
// headless Chromium, and checks from the gateway's side (its /metrics counters and its task list)
// that "Try it out" reached the route the page showed — not just that the page looked happy.
//
// usage: node docs.mjs BASE_URL ADMIN_KEY [--doc PATH] [--shots DIR]
//   --doc PATH  serve this document to the page instead of the gateway's own /openapi.json
//   --shots DIR where a screenshot goes when a check fails
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, key, ...rest] = process.argv.slice(2);
if (!base || !key) {
  console.error('usage: node docs.mjs BASE_URL ADMIN_KEY [--doc PATH] [--shots DIR]');
  process.exit(2);
}
const opt = (name) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : undefined;
};
const docPath = opt('--doc');
const shots = opt('--shots') ?? '.';

// The flags Chromium needs as root in this closed network (without the background-networking ones
// its own connections are refused and it stalls).
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const STEP_MS = 15_000; // any single UI wait; the page is local, so this is generous

const failures = [];
let lastOperation; // the block being driven, for a close-up screenshot on failure
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
};

// --- the gateway's side -----------------------------------------------------------------------

/** emgw_http_requests_total summed over status: Map "METHOD route" -> count. */
async function requestCounters() {
  const text = await (await fetch(`${base}/metrics`)).text();
  const counts = new Map();
  for (const line of text.split('\n')) {
    const m = line.match(/^emgw_http_requests_total\{([^}]*)\}\s+([0-9.e+]+)$/);
    if (!m) continue;
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    const k = `${labels.method} ${labels.route}`;
    counts.set(k, (counts.get(k) ?? 0) + Number(m[2]));
  }
  return counts;
}

/** What changed between two counter snapshots, only for the given method. */
function changed(before, after, method) {
  const out = {};
  for (const [k, v] of after) {
    // Our own scrapes of /metrics are not the page's doing.
    if (k === 'GET /metrics') continue;
    if (k.startsWith(`${method} `) && v !== (before.get(k) ?? 0)) out[k.slice(method.length + 1)] = v - (before.get(k) ?? 0);
  }
  return out;
}

async function taskIds(operation) {
  const res = await fetch(`${base}/v1/tasks?operation=${operation}&limit=100`, {
    headers: { authorization: `Bearer ${key}` },
  });
  if (res.status !== 200) throw new Error(`GET /v1/tasks answered ${res.status}: ${await res.text()}`);
  return new Set((await res.json()).items.map((t) => t.id));
}

// --- the page ---------------------------------------------------------------------------------

/** The operation block whose method and path the page shows (operationIds are not relied on). */
function operation(page, method, path) {
  return page
    .locator('.opblock')
    .filter({ has: page.locator('.opblock-summary-method', { hasText: new RegExp(`^${method}$`) }) })
    .filter({ has: page.locator(`.opblock-summary-path[data-path="${path}"]`) });
}

async function authorize(page) {
  await page.locator('.auth-wrapper button.authorize').click();
  const dialog = page.locator('.modal-ux');
  await dialog.waitFor();
  await dialog.locator('input').first().fill(key);
  await dialog.locator('button.modal-btn.auth.authorize').click();
  // Once authorized the dialog offers "Logout": proof the key was taken.
  await dialog.locator('button.modal-btn.auth', { hasText: 'Logout' }).waitFor();
  await dialog.locator('button.modal-btn.auth.btn-done').click();
  await dialog.waitFor({ state: 'detached' });
}

/** Opens the operation, "Try it out" as prefilled, "Execute"; returns the status the page shows. */
async function tryItOut(page, method, path) {
  const op = operation(page, method, path);
  lastOperation = op;
  const n = await op.count();
  if (n !== 1) throw new Error(`${n} operation blocks show ${method} ${path} (want exactly 1)`);
  console.log(`     ${method} ${path} is block #${await op.getAttribute('id')}`);
  await op.locator('.opblock-summary').first().click();
  await op.locator('button.try-out__btn').click();
  await op.locator('button.execute').click();
  const status = op.locator('.live-responses-table .response .response-col_status').first();
  await status.waitFor();
  // The URL Swagger UI says it called: printed, so a wrong route shows up in the log too.
  const url = await op.locator('.request-url pre').first().textContent().catch(() => '?');
  console.log(`     page says it called ${url.trim()}`);
  return (await status.textContent()).trim();
}

/** One "Try it out" with before/after counters; returns the POST/GET counters that moved. */
async function measured(page, method, path) {
  const before = await requestCounters();
  const shown = await tryItOut(page, method, path);
  const after = await requestCounters();
  return { shown, moved: changed(before, after, method) };
}

async function main() {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_MS);
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`     page error: ${e.message}`));
  try {
    if (docPath) {
      const doc = readFileSync(docPath);
      await page.route('**/openapi.json', (route) => route.fulfill({ body: doc, contentType: 'application/json' }));
      console.log(`     the page is given ${docPath} instead of the gateway's /openapi.json`);
    }
    await page.goto(`${base}/docs/`);
    await page.locator('.opblock').first().waitFor();
    await authorize(page);
    check(true, 'Authorize: the admin key was accepted by the dialog');

    // POST /v1/cloud-gateways with the example body exactly as the page prefills it.
    const tasksBefore = await taskIds('create_cloud_gateway');
    const post = await measured(page, 'POST', '/v1/cloud-gateways');
    console.log(`     POST counters that moved: ${JSON.stringify(post.moved)}`);
    check(post.shown === '202', `POST /v1/cloud-gateways: the page shows ${post.shown} (want 202)`);
    check(
      JSON.stringify(post.moved) === JSON.stringify({ '/v1/cloud-gateways': 1 }),
      'POST /v1/cloud-gateways: the gateway counted exactly one POST, on that route and no other' +
        (post.moved['/v1/api-keys'] ? ` (POST /v1/api-keys went up by ${post.moved['/v1/api-keys']})` : ''),
    );
    const newTasks = [...(await taskIds('create_cloud_gateway'))].filter((id) => !tasksBefore.has(id));
    check(newTasks.length === 1, `POST /v1/cloud-gateways: ${newTasks.length} new create_cloud_gateway task(s) (want 1)`);

    // GET /v1/tasks: a list route that shares its old operationId with four others.
    const get = await measured(page, 'GET', '/v1/tasks');
    console.log(`     GET counters that moved: ${JSON.stringify(get.moved)}`);
    check(get.shown === '200', `GET /v1/tasks: the page shows ${get.shown} (want 200)`);
    check(
      JSON.stringify(get.moved) === JSON.stringify({ '/v1/tasks': 1 }),
      'GET /v1/tasks: the gateway counted exactly one GET, on that route and no other' +
        (get.moved['/v1/api-keys'] ? ` (GET /v1/api-keys went up by ${get.moved['/v1/api-keys']})` : ''),
    );
  } catch (e) {
    check(false, `the page could not be driven: ${e.message.split('\n')[0]}`);
  } finally {
    if (failures.length) {
      const shot = join(shots, 'docs-failure.png');
      await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
      console.log(`     screenshot: ${shot}`);
      if (lastOperation) {
        const closeUp = join(shots, 'docs-failure-operation.png');
        await lastOperation.first().screenshot({ path: closeUp }).catch(() => {});
        console.log(`     screenshot of the operation: ${closeUp}`);
      }
    }
    await browser.close();
  }
  console.log(`browser: ${failures.length ? `${failures.length} check(s) failed` : 'all checks passed'}`);
  process.exit(failures.length ? 1 : 0);
}

main();
