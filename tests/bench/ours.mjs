// sqlite-tabs through its whole path, from the leader tab and from a follower
// tab, next to the raw transport floors (not a test). Prints one JSON object
// per line: {"engine", "workload", "samples_ms", ...}.
//
//   cargo xtask serve --isolated &   (release build; COOP/COEP for fine timers)
//   cd tests && SQLITE_TABS_BASE_URL=http://127.0.0.1:8080 node bench/ours.mjs
//
// W0  10,000 round trips: raw postMessage to a worker; raw brokered MessagePort to
//     another tab's worker; `SELECT 1` through sqlite-tabs from the leader and a follower.
// W1  1,000 single-row inserts, one commit each (leader, follower).
// W2  100,000 inserts in one batch() (leader).
// W3  5,000 primary-key lookups (leader).
// W4  1 / 100 / 1,000 / 10,000 rows x 10 columns returned to a follower.
// W5  4 tabs each doing 500 single-row autocommit inserts at once, next to one tab
//     doing them one after another (each its own commit).
// W6  commit -> notification received in 8 tabs (max over tabs).
// W7  cold open -> first query: the first tab (first visit to the origin, and a returning
//     visit after all tabs closed), and a tab joining a running leader. Next to the
//     first visit, in the same rounds: each peer engine's first visit (a new profile,
//     its benchmark page loaded, then its engine alone in a worker: `new Worker()` ->
//     first query), when bench/peers is installed.
import { chromium } from '@playwright/test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { baseURL, launchOptions } from '../chromium.js';
import { isolatedBlankPage } from './blank.mjs';

const REPEATS = Number(process.env.REPEATS || 5);
// ONLY=w0-w4,w5,w6,w7 runs only those sections (probing one workload).
const only = process.env.ONLY?.split(',');
const section = (name) => !only || only.includes(name);
const out = (engine, workload, samples, extra = {}) =>
  console.log(JSON.stringify({ engine, workload, samples_ms: samples, ...extra }));

// A fresh on-disk profile per context: OPFS in Playwright's default
// incognito-style contexts is several times slower, and the peers are
// measured on disk too.
const contexts = [];
const newContext = async () => {
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), 'sqlite-tabs-bench-'));
  const context = await chromium.launchPersistentContext(dir, { ...launchOptions, headless: true });
  contexts.push(context);
  const close = context.close.bind(context);
  context.close = async () => {
    await close();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return context;
};
const browser = { newContext, close: async () => Promise.all(contexts.map((c) => c.close().catch(() => {}))) };
const blank = (context) => isolatedBlankPage(context);
const openDb = (page, name) =>
  page.evaluate(async (name) => {
    const t0 = performance.now();
    const { open } = await import('/dist/index.js');
    window.db = await open(name);
    await window.db.query('SELECT 1');
    return performance.now() - t0;
  }, name);

try {
  // ---- one leader, one follower: W0, W1, W2, W3, W4 ------------------------------
  if (section('w0-w4')) {
    const context = await browser.newContext();
    const leader = await blank(context);
    await openDb(leader, 'bench.db');
    const follower = await blank(context);
    await openDb(follower, 'bench.db');
    const roles = await Promise.all([leader, follower].map((p) => p.evaluate(() => window.db.isLeader)));
    if (!roles[0] || roles[1]) throw new Error(`unexpected roles ${roles}`);
    // W0: the raw floors live in this same context (an echo worker started by
    // the leader's page; a MessagePort brokered by a SharedWorker to the
    // follower's page) and alternate with SELECT 1 run by run, so that each
    // ratio compares runs made moments apart: on this 2-core machine the
    // speed drifts by more than the differences measured.
    await leader.evaluate(async () => {
      window.echo = new Worker('/bench/raw/echo-worker.js');
      const shared = new SharedWorker('/bench/raw/broker.js');
      await new Promise((r) => (shared.port.onmessage = (e) => e.data === 'owner' && r()));
      shared.port.onmessage = (e) => {
        if (e.data === 'attach') window.echo.postMessage('attach', [e.ports[0]]);
      };
    });
    await follower.evaluate(async () => {
      const shared = new SharedWorker('/bench/raw/broker.js');
      window.echoPort = await new Promise(
        (r) => (shared.port.onmessage = (e) => e.data === 'connected' && r(e.ports[0])),
      );
    });
    // `binary`: each message a fresh 32-byte ArrayBuffer, about the size of a
    // SELECT 1 request and its answer in our protocol, in place of a number
    // (context: what a binary protocol costs on the raw transport itself).
    const echo = () =>
      async function (binary) {
        const target = window.echoPort ?? window.echo;
        const t0 = performance.now();
        for (let i = 0; i < 10000; i++) {
          await new Promise((res) => {
            target.onmessage = res;
            if (binary) {
              const bytes = new Uint8Array(32);
              bytes[0] = i;
              target.postMessage(bytes.buffer);
            } else {
              target.postMessage(i);
            }
          });
        }
        return performance.now() - t0;
      };
    const select1 = () =>
      async function () {
        const db = window.db;
        const t0 = performance.now();
        for (let i = 0; i < 10000; i++) await db.query('SELECT 1');
        return performance.now() - t0;
      };
    const w0 = { worker: [], port: [], leader: [], follower: [], workerBinary: [], portBinary: [] };
    for (let r = 0; r < REPEATS; r++) {
      w0.worker.push(await leader.evaluate(echo(), false));
      w0.leader.push(await leader.evaluate(select1()));
      w0.workerBinary.push(await leader.evaluate(echo(), true));
      w0.port.push(await follower.evaluate(echo(), false));
      w0.follower.push(await follower.evaluate(select1()));
      w0.portBinary.push(await follower.evaluate(echo(), true));
    }
    const pairs = (ours, floor) => ours.map((t, i) => t / floor[i]);
    out('raw', 'w0-worker-echo', w0.worker);
    out('raw', 'w0-brokered-port-echo', w0.port);
    out('raw', 'w0-worker-echo-32-byte-buffers', w0.workerBinary, {
      ratio_samples: pairs(w0.workerBinary, w0.worker),
    });
    out('raw', 'w0-brokered-port-echo-32-byte-buffers', w0.portBinary, {
      ratio_samples: pairs(w0.portBinary, w0.port),
    });
    out('sqlite-tabs-leader', 'w0-select1', w0.leader, { ratio_samples: pairs(w0.leader, w0.worker) });
    out('sqlite-tabs-follower', 'w0-select1', w0.follower, { ratio_samples: pairs(w0.follower, w0.port) });
    for (const [name, page] of [['leader', leader], ['follower', follower]]) {
      const s = [];
      for (let r = 0; r < Math.min(REPEATS, 3); r++) {
        s.push(
          await page.evaluate(async (r) => {
            const db = window.db;
            const t = `w1_${r}_${db.isLeader ? 'l' : 'f'}`;
            await db.exec(`CREATE TABLE ${t}(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)`);
            const t0 = performance.now();
            for (let i = 0; i < 1000; i++) await db.run(`INSERT INTO ${t}(a, b) VALUES (?, ?)`, [`row ${i}`, i]);
            return performance.now() - t0;
          }, r),
        );
      }
      out(`sqlite-tabs-${name}`, 'w1', s);
    }
    {
      const s = [];
      for (let r = 0; r < REPEATS; r++) {
        s.push(
          await leader.evaluate(async (r) => {
            const db = window.db;
            await db.exec(`CREATE TABLE w2_${r}(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)`);
            const stmts = Array.from({ length: 100000 }, (_, i) => ({
              sql: `INSERT INTO w2_${r}(a, b) VALUES (?, ?)`,
              params: [`row ${i}`, i],
            }));
            const t0 = performance.now();
            await db.batch(stmts);
            return performance.now() - t0;
          }, r),
        );
      }
      out('sqlite-tabs-leader', 'w2', s);
    }
    {
      await leader.evaluate(async () => {
        const db = window.db;
        await db.exec('CREATE TABLE w3(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)');
        await db.batch(Array.from({ length: 10000 }, (_, i) => ({ sql: 'INSERT INTO w3(a, b) VALUES (?, ?)', params: [`row ${i}`, i] })));
        const cols = Array.from({ length: 10 }, (_, c) => `c${c} ${c % 2 ? 'INTEGER' : 'TEXT'}`).join(', ');
        await db.exec(`CREATE TABLE w4(${cols})`);
        await db.batch(
          Array.from({ length: 10000 }, (_, i) => ({
            sql: `INSERT INTO w4 VALUES (${Array(10).fill('?').join(', ')})`,
            params: Array.from({ length: 10 }, (_, c) => (c % 2 ? i * c : `value ${i}-${c}`)),
          })),
        );
      });
      for (const [name, page] of [['leader', leader], ['follower', follower]]) {
        const s = [];
        for (let r = 0; r < REPEATS; r++) {
          s.push(
            await page.evaluate(async () => {
              const db = window.db;
              const t0 = performance.now();
              for (let i = 0; i < 5000; i++) await db.query('SELECT a, b FROM w3 WHERE id = ?', [1 + ((i * 7919) % 10000)]);
              return performance.now() - t0;
            }),
          );
        }
        out(`sqlite-tabs-${name}`, 'w3', s);
      }
      for (const n of [1, 100, 1000, 10000]) {
        const s = [];
        for (let r = 0; r < REPEATS; r++) {
          s.push(
            await follower.evaluate(async (n) => {
              const t0 = performance.now();
              const rows = await window.db.query('SELECT * FROM w4 LIMIT ?', [n]);
              if (rows.length !== n) throw new Error(`got ${rows.length} rows`);
              return performance.now() - t0;
            }, n),
          );
        }
        out('sqlite-tabs-follower', `w4-${n}x10`, s);
      }
    }
    await context.close();
  }

  // ---- W5: 4 tabs writing at once vs one tab one after another -------------------
  if (section('w5')) {
    const context = await browser.newContext();
    const tabs = [];
    for (let i = 0; i < 4; i++) {
      const p = await blank(context);
      await openDb(p, 'bench.db');
      tabs.push(p);
    }
    await tabs[0].evaluate(() => window.db.exec('CREATE TABLE w5(id INTEGER PRIMARY KEY, tab INTEGER, n INTEGER)'));
    const single = [];
    const multi = [];
    for (let r = 0; r < Math.min(REPEATS, 3); r++) {
      single.push(
        await tabs[1].evaluate(async () => {
          const t0 = performance.now();
          for (let i = 0; i < 500; i++) await window.db.run('INSERT INTO w5(tab, n) VALUES (-1, ?)', [i]);
          return performance.now() - t0;
        }),
      );
      const spans = await Promise.all(
        tabs.map((p, tab) =>
          p.evaluate(async (tab) => {
            const start = performance.timeOrigin + performance.now();
            await Promise.all(
              Array.from({ length: 500 }, (_, i) => window.db.run('INSERT INTO w5(tab, n) VALUES (?, ?)', [tab, i])),
            );
            return [start, performance.timeOrigin + performance.now()];
          }, tab),
        ),
      );
      multi.push(Math.max(...spans.map((s) => s[1])) - Math.min(...spans.map((s) => s[0])));
    }
    out('sqlite-tabs', 'w5-one-tab-500-sequential', single);
    out('sqlite-tabs', 'w5-4-tabs-500-each-concurrent', multi, {
      rate_ratio: (4 * 500) / median(multi) / (500 / median(single)),
    });
    await context.close();
  }

  // ---- W6: commit -> notification in 8 tabs --------------------------------------
  if (section('w6')) {
    const context = await browser.newContext();
    const tabs = [];
    for (let i = 0; i < 8; i++) {
      const p = await blank(context);
      await openDb(p, 'bench.db');
      await p.evaluate(() => {
        window.heard = new Map();
        window.db.subscribe(['w6'], (ev) => window.heard.set(ev.seq, performance.timeOrigin + performance.now()));
      });
      tabs.push(p);
    }
    await tabs[0].evaluate(() => window.db.exec('CREATE TABLE w6(x)'));
    const writer = tabs[3];
    const samples = [];
    for (let i = 0; i < 30; i++) {
      const { seq, start } = await writer.evaluate(async () => {
        const start = performance.timeOrigin + performance.now();
        await window.db.run('INSERT INTO w6 VALUES (1)');
        return { seq: window.db.lastSeq, start };
      });
      await new Promise((r) => setTimeout(r, 30));
      const times = await Promise.all(tabs.map((p) => p.evaluate((seq) => window.heard.get(seq), seq)));
      if (times.some((t) => t === undefined)) throw new Error(`a tab missed commit ${seq}`);
      samples.push(Math.max(...times) - start);
    }
    out('sqlite-tabs', 'w6-notify-8-tabs', samples);
    await context.close();
  }

  // ---- W7: cold open, first tab and joining tab ----------------------------------
  if (section('w7')) {
    // First visit: a new profile (no HTTP or code cache, no database yet).
    // Returning visit: the same profile after every tab of the app closed,
    // as the peers' cold open is measured (their worker in a page that
    // loaded it before).
    // Joining: right after the first tab's first answer, when the browser
    // is still busy with that tab's start (on 2 cores), and, in contexts of
    // their own (so that the visits above keep their conditions), 1.5 s
    // later, against a leader that has settled.
    const first = [];
    const joining = [];
    const joiningSettled = [];
    const returning = [];
    for (let r = 0; r < REPEATS * 2; r++) {
      const context = await browser.newContext();
      const a = await blank(context);
      await openDb(a, 'bench.db');
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const d = await blank(context);
      joiningSettled.push(await openDb(d, 'bench.db'));
      await context.close();
    }
    // The peers' engines on a first visit, for scale: what opening SQLite on
    // OPFS costs in a profile that has never seen the origin, without any of
    // sqlite-tabs' tab coordination. Same pragmas as ours.
    // Only where the server has them (serve-dist.mjs, for A/B runs, does not).
    const served = await fetch(`${baseURL()}/bench/peers/runner.js`).then(
      (r) => r.ok && (r.headers.get('content-type') ?? '').includes('javascript'),
      () => false,
    );
    const peers =
      served && fs.existsSync(new URL('../../bench/peers/node_modules', import.meta.url))
        ? ['sqlite-wasm', 'wa-sqlite']
        : [];
    const peersFirst = Object.fromEntries(peers.map((p) => [p, []]));
    const peersPragmas = {};
    const peerFirstVisit = async (engine) => {
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(`${baseURL()}/bench/peers/peers.html`);
        await page.waitForFunction(() => window.peersReady === true);
        const params = { page_size: 4096, journal_mode: 'wal', locking_mode: 'exclusive', synchronous: 'full' };
        const res = await page.evaluate(([e, p]) => window.runPeer(e, 'open', p, 1), [engine, params]);
        peersPragmas[engine] = res.effectivePragmas;
        return res.samples[0];
      } finally {
        await context.close();
      }
    };
    for (let r = 0; r < REPEATS * 2; r++) {
      for (const p of peers) peersFirst[p].push(await peerFirstVisit(p));
      const context = await browser.newContext();
      const a = await blank(context);
      first.push(await openDb(a, 'bench.db'));
      const b = await blank(context);
      joining.push(await openDb(b, 'bench.db'));
      await a.close();
      await b.close();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const c = await blank(context);
      returning.push(await openDb(c, 'bench.db'));
      await context.close();
    }
    out('sqlite-tabs', 'w7-first-tab', first);
    out('sqlite-tabs', 'w7-first-tab-returning', returning);
    out('sqlite-tabs', 'w7-joining-tab', joining);
    out('sqlite-tabs', 'w7-joining-tab-settled', joiningSettled);
    for (const p of peers) {
      out(`${p} wal/exclusive`, 'w7-first-visit', peersFirst[p], { pragmas: peersPragmas[p] });
    }
  }
} finally {
  await browser.close();
}

function median(xs) {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}
