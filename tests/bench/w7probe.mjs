// Timeline of W7 cold opens (not a benchmark): what a first tab, a tab joining
// it and a returning visit wait for, from the page's side (worker and router
// messages, Web Locks, resource timing), plus medians of open -> first answer.
// With a running `cargo xtask serve --isolated --no-build --port 8191`:
//   cd tests && SQLITE_TABS_BASE_URL=http://127.0.0.1:8191 REPS=7 [QUIET=1] node bench/w7probe.mjs
// JOIN_NO_WORKER=1 gives the joining tab a worker that never loads SQLite;
// JOIN_DELAY=ms waits before the joining tab opens; WLOG=1 prints the
// returning tab's console (for timestamps logged by the workers).
import { chromium } from '@playwright/test';
import fs from 'node:fs';
import { launchOptions } from '../chromium.js';
import { isolatedBlankPage } from './blank.mjs';

const instrument = () => {
  const log = (window.__log = []);
  const t = () => performance.now();
  const note = (what) => log.push([+t().toFixed(1), what]);
  window.__note = note;
  const W = window.Worker;
  window.Worker = function (url, opts) {
    note('new Worker');
    const w = new W(url, opts);
    let n = 0;
    w.addEventListener('message', (e) => note(`worker->page #${n++} ${e.data?.byteLength ?? e.data?.length ?? typeof e.data}`));
    const pm = w.postMessage.bind(w);
    let m = 0;
    w.postMessage = (d, tr) => (note(`page->worker #${m++}`), pm(d, tr));
    return w;
  };
  window.Worker.prototype = W.prototype;
  const S = window.SharedWorker;
  window.SharedWorker = function (url, opts) {
    note('new SharedWorker');
    const s = new S(url, opts);
    let n = 0;
    s.port.addEventListener('message', (e) => note(`router->page #${n++}`));
    return s;
  };
  window.SharedWorker.prototype = S.prototype;
  const req = navigator.locks.request.bind(navigator.locks);
  navigator.locks.request = (name, ...rest) => {
    note(`lock request ${name}`);
    const cb = rest[rest.length - 1];
    rest[rest.length - 1] = (l) => (note(`lock granted ${name} ${!!l}`), cb(l));
    return req(name, ...rest);
  };
};
const run = (page, noWorker = false) =>
  page.evaluate(async (noWorker) => {
    const t0 = performance.now();
    console.log('page t0', (performance.timeOrigin + t0).toFixed(1));
    window.__note('import start');
    const mod = await import('/dist/index.js');
    window.__note('import done');
    const db = await mod.open('probe.db', noWorker ? { createWorker: () => new Worker('/bench/raw/echo-worker.js') } : {});
    window.__note('open resolved');
    await db.query('SELECT 1');
    window.__note('first query answered');
    const res = performance.getEntriesByType('resource').map((r) => [r.name.split('/').pop(), +r.startTime.toFixed(1), +r.responseEnd.toFixed(1), r.transferSize]);
    return { t0, log: window.__log, res };
  }, noWorker);
const totals = { first: [], joining: [], returning: [] };
const REPS = Number(process.env.REPS || 3);
for (let rep = 0; rep < REPS; rep++) {
  const dir = fs.mkdtempSync('/tmp/probe/p-');
  const context = await chromium.launchPersistentContext(dir, { ...launchOptions, headless: true });
  await context.addInitScript(instrument);
  const a = await isolatedBlankPage(context);
  const ra = await run(a);
  if (process.env.JOIN_DELAY) await new Promise((r) => setTimeout(r, Number(process.env.JOIN_DELAY)));
  const b = await isolatedBlankPage(context);
  const rb = await run(b, !!process.env.JOIN_NO_WORKER);
  await a.close(); await b.close();
  await new Promise((r) => setTimeout(r, 1000));
  const c = await isolatedBlankPage(context);
  c.on('worker', (w) => w.evaluate(() => 0).catch(() => {}));
  c.on('console', (m) => process.env.WLOG && console.log('console', m.text()));
  const rc = await run(c);
  for (const [name, r] of [['first', ra], ['joining', rb], ['returning', rc]]) {
    totals[name].push(r.log[r.log.length - 1][0] - r.t0);
    if (process.env.QUIET) continue;
    console.log(`--- ${name} (rep ${rep})`);
    for (const [time, what] of r.log) console.log(`${(time - r.t0).toFixed(1).padStart(7)}  ${what}`);
    for (const [n, s, e, sz] of r.res) console.log(`        res ${n} ${(s - r.t0).toFixed(1)} -> ${(e - r.t0).toFixed(1)} (${sz} B)`);
  }
  await context.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
for (const [k, v] of Object.entries(totals)) console.log(k, 'median', med(v).toFixed(1), 'all', v.map((x) => x.toFixed(0)).join(' '));
