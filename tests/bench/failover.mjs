// Failover and notification latency of the multi-tab coordinator (not a test).
//
//   cargo xtask build && cargo xtask serve --no-build --port 8091 &
//   cd tests && SQLITE_TABS_BASE_URL=http://127.0.0.1:8091 node bench/failover.mjs
//   (RUNS=20 failover runs per scenario, SAMPLES=50 notifications; ONLY=close,crash,crash-host,notify)
//
// Each failover run uses a fresh browser context (fresh OPFS, fresh SharedWorker) with 3
// tabs: blank pages that import /dist/index.js and open `bench.db` (no demo UI running).
//
// (i) "close": the leader tab is closed (page.close()).
// (ii) "crash": the leader tab's renderer is crashed through CDP (Page.crash). Chromium
//     runs the SharedWorker router inside the renderer of the tab that created it (the
//     first tab), so this is measured twice:
//     - "crash (leader is not the router's tab)": the first tab steps down first, so the
//       leader that crashes is another tab and the router survives;
//     - "crash (leader is the router's tab)": the first tab leads and crashes, taking the
//       router with it. Runs that do not recover within RECOVER_MS are counted as failed.
//
// Method for (i) and (ii), entirely inside one surviving follower (the observer), so one
// clock (its performance.now()) is used for both ends:
//   1. the observer runs `SELECT 1` back to back (each query starts when the previous
//      one resolved) and notes, for each answer, db.epoch (the leader term it is
//      connected to) at the moment the answer arrives;
//   2. the driver asks the observer for performance.now() (t0), and as soon as that
//      evaluate returns triggers the close/crash. t0 therefore precedes the kill by one
//      Playwright round trip (~1 ms): the numbers slightly overstate the failover;
//   3. failover time = (time the first answer arrived with an epoch above the old one)
//      - t0. A query in flight at the kill is re-sent to the new leader by the client
//      and counts when that answer arrives.
// Also reported: t0 -> the new leader's own onLeaderChange(true) (Web Lock hand-over +
// opening the OPFS pool), in wall-clock time (performance.timeOrigin + now(), the same
// machine clock in every page), so the rest is the router brokering ports + the re-sent
// query.
//
// (iii) "notify": 4 tabs; each subscribes to table `n` and records, per commit seq, the
//     wall-clock time (performance.timeOrigin + performance.now()) its callback ran. A
//     follower tab writes SAMPLES single-row autocommit inserts one after the other (20 ms
//     apart); per sample, latency = max over the 4 tabs (writer included) of the receive
//     time - the writer's wall-clock time taken just before run(). Also reported: the
//     writer's own run() round trip, and the slowest other follower alone.
//
// performance.now() is coarsened to 100 µs without COOP/COEP (not served here): fine for
// millisecond results.
import { chromium } from '@playwright/test';
import { launchOptions, baseURL } from '../chromium.js';

const RUNS = Number(process.env.RUNS || 20);
const SAMPLES = Number(process.env.SAMPLES || 50);
const RECOVER_MS = Number(process.env.RECOVER_MS || 10_000);
const ONLY = (process.env.ONLY || 'close,crash,crash-host,notify').split(',');

const sorted = (xs) => [...xs].sort((a, b) => a - b);
const median = (xs) => sorted(xs)[Math.floor(xs.length / 2)];
const p95 = (xs) => sorted(xs)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const url = `${baseURL()}/bench-blank.html`;

async function newContext(browser) {
  const context = await browser.newContext();
  await context.route('**/bench-blank.html', (route) =>
    route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>bench</title>' }),
  );
  return context;
}

/** A tab with `window.db` open on bench.db. */
async function openTab(context) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[pageerror] ${e}`));
  await page.goto(url);
  await page.evaluate(async () => {
    const { open } = await import('/dist/index.js');
    window.db = await open('bench.db');
    window.__leaderAt = null;
    window.db.onLeaderChange((isLeader) => {
      if (isLeader && window.__leaderAt === null) {
        window.__leaderAt = performance.timeOrigin + performance.now();
      }
    });
  });
  return page;
}

const flags = (pages) => Promise.all(pages.map((p) => p.evaluate(() => window.db.isLeader)));

async function waitLeader(pages, pred = () => true, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const f = await flags(pages);
    const i = f.indexOf(true);
    if (f.filter(Boolean).length === 1 && pred(i)) return i;
    await sleep(20);
  }
  throw new Error('no single leader');
}

/** One failover run; returns { ms, lockOpenMs } or { failed: reason }. */
async function failoverRun(browser, kind) {
  const context = await newContext(browser);
  try {
    const pages = [];
    for (let i = 0; i < 3; i++) pages.push(await openTab(context));
    let leader = await waitLeader(pages);
    if (kind === 'crash' && leader === 0) {
      // The first tab hosts the router: hand leadership to another tab.
      await pages[0].evaluate(() => window.db.stepDown());
      leader = await waitLeader(pages, (i) => i > 0);
    }
    if (kind === 'crash-host' && leader !== 0) return { failed: 'first tab is not the leader' };
    // Let every tab connect to the current epoch before measuring.
    await sleep(100);
    const victim = pages[leader];
    const survivors = pages.filter((_, i) => i !== leader);
    const observer = survivors[survivors.length - 1];
    const oldEpoch = await observer.evaluate(() => window.db.epoch);
    await observer.evaluate((oldEpoch) => {
      const probe = (window.__probe = { first: null, error: null, queries: 0 });
      (async () => {
        while (!probe.first && !probe.error) {
          try {
            await window.db.query('SELECT 1');
            probe.queries++;
            if (window.db.epoch > oldEpoch) {
              probe.first = { at: performance.now(), epoch: window.db.epoch };
            }
          } catch (e) {
            probe.error = `${e.code}: ${e.message}`;
          }
        }
      })();
    }, oldEpoch);
    await sleep(50); // the loop is running
    const t0 = await observer.evaluate(() => performance.now());
    const t0Wall = await observer.evaluate((t0) => performance.timeOrigin + t0, t0);
    if (kind === 'close') {
      await victim.close();
    } else {
      const cdp = await context.newCDPSession(victim);
      const crashed = victim.waitForEvent('crash', { timeout: 10_000 });
      cdp.send('Page.crash').catch(() => {}); // never answered: not awaited
      await crashed;
    }
    const done = await observer
      .waitForFunction(() => window.__probe.first || window.__probe.error, null, {
        timeout: RECOVER_MS,
        polling: 10,
      })
      .then(
        () => true,
        () => false,
      );
    const probe = await observer.evaluate(() => window.__probe);
    if (!done) return { failed: `no answer from a new leader within ${RECOVER_MS} ms` };
    if (probe.error) return { failed: probe.error };
    const leaderAts = await Promise.all(survivors.map((p) => p.evaluate(() => window.__leaderAt)));
    const leaderAt = leaderAts.find((t) => t !== null && t > t0Wall);
    return {
      ms: probe.first.at - t0,
      lockOpenMs: leaderAt === undefined ? null : leaderAt - t0Wall,
    };
  } finally {
    await context.close();
  }
}

/** Notification latency: 4 tabs, a follower writes SAMPLES commits. */
async function notifyRun(browser) {
  const context = await newContext(browser);
  try {
    const pages = [];
    for (let i = 0; i < 4; i++) pages.push(await openTab(context));
    const leader = await waitLeader(pages);
    const writerIndex = leader === pages.length - 1 ? 0 : pages.length - 1;
    const writer = pages[writerIndex];
    await writer.evaluate(() => window.db.exec('CREATE TABLE n (id INTEGER PRIMARY KEY, v INTEGER)'));
    await sleep(200);
    for (const p of pages) {
      await p.evaluate(() => {
        window.__recv = {};
        window.db.subscribe(['n'], (ev) => {
          window.__recv[ev.seq] = performance.timeOrigin + performance.now();
        });
      });
    }
    const sent = await writer.evaluate(async (SAMPLES) => {
      const out = [];
      for (let i = 0; i < SAMPLES; i++) {
        const before = Object.keys(window.__recv).map(Number);
        const tw = performance.timeOrigin + performance.now();
        await window.db.run('INSERT INTO n (v) VALUES (?)', [i]);
        const rtt = performance.timeOrigin + performance.now() - tw;
        const seq = Object.keys(window.__recv)
          .map(Number)
          .find((s) => !before.includes(s));
        out.push({ tw, rtt, seq });
        await new Promise((r) => setTimeout(r, 20));
      }
      return out;
    }, SAMPLES);
    await sleep(300);
    const recvs = await Promise.all(pages.map((p) => p.evaluate(() => window.__recv)));
    const latencies = [];
    const followerOnly = [];
    let missing = 0;
    for (const { tw, seq } of sent) {
      const times = recvs.map((r) => r[seq]);
      if (seq === undefined || times.some((t) => t === undefined)) {
        missing++;
        continue;
      }
      latencies.push(Math.max(...times) - tw);
      const others = times.filter((_, i) => i !== writerIndex && i !== leader);
      followerOnly.push(Math.max(...others) - tw);
    }
    return { latencies, followerOnly, rtts: sent.map((s) => s.rtt), missing, leader, writerIndex };
  } finally {
    await context.close();
  }
}

const browser = await chromium.launch({ ...launchOptions, headless: true });
const rows = [];
const fmt = (xs) =>
  xs.length ? `${median(xs).toFixed(1).padStart(7)} ms ${p95(xs).toFixed(1).padStart(8)} ms` : '      -            -';
try {
  const scenarios = [
    ['close', 'leader tab closed -> first query answered by the new leader'],
    ['crash', 'leader renderer crash (router in another tab) -> first query answered'],
    ['crash-host', 'leader renderer crash (leader hosts the router) -> first query answered'],
  ];
  for (const [kind, label] of scenarios) {
    if (!ONLY.includes(kind)) continue;
    const ms = [];
    const lock = [];
    const failures = {};
    for (let i = 0; i < RUNS; i++) {
      const r = await failoverRun(browser, kind);
      if (r.failed) {
        failures[r.failed] = (failures[r.failed] ?? 0) + 1;
      } else {
        ms.push(r.ms);
        if (r.lockOpenMs !== null) lock.push(r.lockOpenMs);
      }
      process.stderr.write(r.failed ? 'x' : '.');
    }
    process.stderr.write('\n');
    rows.push([label, fmt(ms), `${ms.length}/${RUNS}`]);
    rows.push(['  of which: t0 -> new leader has the database open', fmt(lock), `${lock.length}/${RUNS}`]);
    for (const [reason, n] of Object.entries(failures)) rows.push([`  failed runs: ${reason}`, '', `${n}/${RUNS}`]);
  }
  if (ONLY.includes('notify')) {
    const r = await notifyRun(browser);
    rows.push([`commit -> subscribe callback in all 4 tabs (max over tabs)`, fmt(r.latencies), `${r.latencies.length}/${SAMPLES}`]);
    rows.push([`  slowest other follower alone`, fmt(r.followerOnly), `${r.followerOnly.length}/${SAMPLES}`]);
    rows.push([`  writer's run() round trip (follower -> leader -> back)`, fmt(r.rtts), `${r.rtts.length}/${SAMPLES}`]);
    if (r.missing) rows.push([`  samples some tab never received`, '', `${r.missing}/${SAMPLES}`]);
  }
} finally {
  await browser.close();
}
const width = Math.max(...rows.map((r) => r[0].length));
console.log(`${'measurement'.padEnd(width)}     median        p95   n`);
for (const [label, stats, n] of rows) console.log(`${label.padEnd(width)}  ${stats.padEnd(20)}  ${n}`);
