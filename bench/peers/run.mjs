// Runs the peer engines (bench/peers/peers.html) in headless Debian Chromium through
// Playwright and prints one JSON line per engine x workload x pragma config, then a
// table of median and p95 (ms). Reference and self-check for the side-by-side suite.
//
//   cd bench/peers && npm ci --no-audit --no-fund       # once
//   node bench/peers/run.mjs --serve                    # serves the repo itself (serve.mjs)
//   SQLITE_TABS_BENCH_URL=http://127.0.0.1:8093 node bench/peers/run.mjs   # existing server
//
// Options (all optional):
//   --serve                    start serve.mjs on a free port instead of using SQLITE_TABS_BENCH_URL
//                              (default http://127.0.0.1:8093)
//   --engines a,b              sqlite-wasm,wa-sqlite
//   --workloads a,b            open,w0,w1,w2,w3
//   --configs j/l,...          journal_mode/locking_mode pairs;
//                              default delete/normal,delete/exclusive,wal/exclusive
//   --synchronous full         --page-size 4096
//   --repeats open=10,w0=5,w1=3,w2=5,w3=5
//   --journal                  also run checkJournal() for every journal_mode x locking_mode
//                              (write, then read back from a new worker after a close
//                              and after a kill) and print which modes work
//   --warmup 2                 discarded `open` runs per engine before measuring
//   --profile disk|memory      disk (default): a persistent context in a temporary
//                              profile directory, so OPFS is real files on disk like in
//                              a normal browser; memory: a fresh off-the-record context
//                              (Chromium keeps its OPFS in memory: no real flushes)
//
// Playwright is the one installed for the e2e tests (tests/node_modules), imported by
// relative path; the browser is /usr/bin/chromium with the flags of tests/chromium.js.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from '../../tests/node_modules/@playwright/test/index.mjs';
import { launchOptions } from '../../tests/chromium.js';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? true : v;
}

const engines = String(arg('engines', 'sqlite-wasm,wa-sqlite')).split(',');
const workloads = String(arg('workloads', 'open,w0,w1,w2,w3')).split(',');
const configs = String(arg('configs', 'delete/normal,delete/exclusive,wal/exclusive'))
  .split(',')
  .map((c) => {
    const [journal_mode, locking_mode] = c.split('/');
    return { journal_mode, locking_mode: locking_mode || 'normal' };
  });
const synchronous = String(arg('synchronous', 'full'));
const pageSize = Number(arg('page-size', 4096));
const repeats = { open: 10, w0: 5, w1: 3, w2: 5, w3: 5 };
for (const kv of String(arg('repeats', '')).split(',').filter(Boolean)) {
  const [k, v] = kv.split('=');
  repeats[k] = Number(v);
}
const profile = String(arg('profile', 'disk'));
const journalCheck = arg('journal', false) === true;
const warmups = Number(arg('warmup', 2));

const sorted = (xs) => [...xs].sort((a, b) => a - b);
const median = (xs) => {
  const s = sorted(xs);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
/** Nearest-rank p95 (with 3-10 samples: the largest or second largest). */
const p95 = (xs) => sorted(xs)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)];
const r1 = (x) => Math.round(x * 10) / 10;

let server = null;
let base = (process.env.SQLITE_TABS_BENCH_URL || 'http://127.0.0.1:8093').replace(/\/+$/, '');
if (arg('serve', false) === true) {
  const { startServer } = await import('./serve.mjs');
  server = await startServer({ port: 0 });
  base = server.url;
}

let browser = null;
let context;
let userDataDir = null;
if (profile === 'memory') {
  browser = await chromium.launch({ ...launchOptions, headless: true });
  context = await browser.newContext();
} else {
  userDataDir = await mkdtemp(join(tmpdir(), 'sqlite-tabs-peers-'));
  context = await chromium.launchPersistentContext(userDataDir, { ...launchOptions, headless: true });
}

const rows = [];
let failed = false;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') console.error(`[page ${m.type()}] ${m.text()}`);
  });
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  await page.goto(`${base}/bench/peers/peers.html`);
  await page.waitForFunction(() => window.peersReady === true, null, { timeout: 30000 });
  const isolated = await page.evaluate(() => self.crossOriginIsolated);
  const browserVersion = context.browser()?.version() ?? browser?.version();
  console.error(`# ${base} profile=${profile} crossOriginIsolated=${isolated} chromium=${browserVersion}`);

  // Warm-up, discarded: the first workers of a fresh browser profile are slower
  // and noisier (profile start-up work, first compile of each engine's JS).
  for (let i = 0; i < warmups; i++) {
    for (const engine of engines) {
      await page.evaluate(([e, p]) => window.runPeer(e, 'open', p, 1), [engine, { page_size: pageSize, synchronous, ...configs[0] }]);
    }
  }

  for (const cfg of configs) {
    const params = { page_size: pageSize, synchronous, ...cfg };
    for (const workload of workloads) {
      for (const engine of engines) {
        const n = repeats[workload] ?? 3;
        let res;
        try {
          res = await page.evaluate(([e, w, p, r]) => window.runPeer(e, w, p, r), [engine, workload, params, n]);
        } catch (e) {
          failed = true;
          const line = { engine, workload, params, error: e.message.split('\n')[0] };
          console.log(JSON.stringify(line));
          rows.push(line);
          continue;
        }
        const line = {
          engine,
          workload,
          params,
          n: res.samples.length,
          median: r1(median(res.samples)),
          p95: r1(p95(res.samples)),
          samples: res.samples.map(r1),
          effectivePragmas: res.effectivePragmas,
          libVersion: res.details[0]?.libVersion,
          crossOriginIsolated: res.crossOriginIsolated,
          profile,
        };
        if (workload === 'w0') {
          // Each run over the raw echo run just before it (runner.js runW0).
          line.ratio_samples = res.details[0].ratios.map((r) => Math.round(r * 1000) / 1000);
          line.echo_samples = res.details[0].echoes.map(r1);
        }
        if (workload === 'open') {
          const keys = Object.keys(res.details[0]).filter((k) => typeof res.details[0][k] === 'number');
          line.breakdownMedian = Object.fromEntries(keys.map((k) => [k, r1(median(res.details.map((d) => d[k])))]));
        }
        console.log(JSON.stringify(line));
        rows.push(line);
      }
    }
  }

  console.log('');
  console.log(`engine       workload  journal/locking/sync     effective (journal/locking/sync/page)  median ms     p95 ms   n`);
  for (const l of rows) {
    const cfg = `${l.params.journal_mode}/${l.params.locking_mode}/${l.params.synchronous}`;
    const eff = l.effectivePragmas
      ? `${l.effectivePragmas.journal_mode}/${l.effectivePragmas.locking_mode}/${l.effectivePragmas.synchronous}/${l.effectivePragmas.page_size}`
      : `ERROR ${l.error}`;
    console.log(
      `${l.engine.padEnd(12)} ${l.workload.padEnd(9)} ${cfg.padEnd(24)} ${eff.padEnd(38)} ${String(l.median ?? '-').padStart(10)} ${String(l.p95 ?? '-').padStart(10)} ${String(l.n ?? '-').padStart(3)}`,
    );
  }

  if (journalCheck) {
    console.log('');
    console.log('journal check: commit 1,020 rows, read them back from a new worker after close / after a kill mid-transaction');
    console.log('engine       requested           effective           close  crash  note');
    for (const engine of engines) {
      for (const locking_mode of ['normal', 'exclusive']) {
        for (const journal_mode of ['delete', 'truncate', 'persist', 'memory', 'wal', 'off']) {
          const params = { page_size: pageSize, synchronous, journal_mode, locking_mode };
          const r = await page.evaluate(([e, p]) => window.checkJournal(e, p), [engine, params]);
          console.log(JSON.stringify({ check: 'journal', profile, ...r }));
          const eff = r.effectivePragmas ? `${r.effectivePragmas.journal_mode}/${r.effectivePragmas.locking_mode}` : '?';
          const note = [r.close, r.crash]
            .filter((x) => !x.ok)
            .map((x) => `${x.phase ?? 'check'}: ${x.error ?? `rows ${x.read?.rows} integrity ${x.read?.integrity}`}`)
            .join('; ');
          console.log(
            `${engine.padEnd(12)} ${`${journal_mode}/${locking_mode}`.padEnd(19)} ${eff.padEnd(19)} ${(r.close.ok ? 'ok' : 'FAIL').padEnd(6)} ${(r.crash.ok ? 'ok' : 'FAIL').padEnd(6)} ${note}`,
          );
        }
      }
    }
  }
} finally {
  await context.close();
  if (browser) await browser.close();
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  if (server) await server.close();
}
process.exitCode = failed ? 1 : 0;
