// CPU profile of one workload, for finding where time goes (not a benchmark).
// Runs the workload three times to warm up, then once under V8's sampling
// profiler and prints the top functions by self time. With a running
// `cargo xtask serve --isolated --no-build --port 8191`:
//   cd tests && SQLITE_TABS_BASE_URL=http://127.0.0.1:8191 node bench/profile.mjs w2|w4|w5|select1|echo
// TARGET=db-worker profiles the database worker instead of the page (through
// CDP's Target.sendMessageToTarget); FOLLOWER=1 runs it from a follower tab.
import { chromium } from '@playwright/test';
import fs from 'node:fs';
import { launchOptions } from '../chromium.js';
import { isolatedBlankPage } from './blank.mjs';
const dir = fs.mkdtempSync('/tmp/prof-');
const context = await chromium.launchPersistentContext(dir, { ...launchOptions, headless: true });
const page = await isolatedBlankPage(context);
await page.evaluate(async () => {
  const { open } = await import('/dist/index.js');
  window.db = await open('prof.db');
  await window.db.query('SELECT 1');
});
let leaderPage = page;
let page2 = page;
if (process.env.FOLLOWER) {
  page2 = await isolatedBlankPage(context);
  await page2.evaluate(async () => {
    const { open } = await import('/dist/index.js');
    window.db = await open('prof.db');
    await window.db.query('SELECT 1');
    if (window.db.isLeader) throw new Error('not a follower');
  });
}
const which = process.argv[2] || 'w2';
if (process.env.BINARY) await page2.evaluate(() => (window.__binary = true));
const body = {
  w2: async (r) => {
    const db = window.db;
    await db.exec(`CREATE TABLE w2_${r}(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)`);
    const stmts = Array.from({ length: 100000 }, (_, i) => ({ sql: `INSERT INTO w2_${r}(a, b) VALUES (?, ?)`, params: [`row ${i}`, i] }));
    const t0 = performance.now();
    await db.batch(stmts);
    return performance.now() - t0;
  },
  // The raw floor of select1 (W0): a plain JS echo worker, numbers or
  // 32-byte ArrayBuffers (BINARY=1), 10,000 round trips.
  echo: async () => {
    window.echoWorker ??= new Worker('/bench/raw/echo-worker.js');
    const target = window.echoWorker;
    const binary = window.__binary;
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
  },
  select1: async () => {
    const db = window.db;
    const t0 = performance.now();
    for (let i = 0; i < 10000; i++) await db.query('SELECT 1');
    return performance.now() - t0;
  },
  w5: async (r) => {
    const db = window.db;
    await db.exec(`CREATE TABLE w5_${r}(id INTEGER PRIMARY KEY, a TEXT)`);
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 2000 }, (_, i) => db.run(`INSERT INTO w5_${r}(a) VALUES (?)`, [`row ${i}`])));
    return performance.now() - t0;
  },
  w4: async (r) => {
    const db = window.db;
    if (r === 0) {
      const cols = Array.from({ length: 10 }, (_, c) => `c${c} ${c % 2 ? 'INTEGER' : 'TEXT'}`).join(', ');
      await db.exec(`CREATE TABLE w4(${cols})`);
      await db.batch(Array.from({ length: 10000 }, (_, i) => ({ sql: `INSERT INTO w4 VALUES (${Array(10).fill('?').join(', ')})`, params: Array.from({ length: 10 }, (_, c) => (c % 2 ? i * c : `value ${i}-${c}`)) })));
    }
    const t0 = performance.now();
    for (let k = 0; k < 5; k++) await db.query('SELECT * FROM w4');
    return (performance.now() - t0) / 5;
  },
}[which];
for (let r = 0; r < 3; r++) console.log(which, 'warm', await page2.evaluate(body, r));
// The page profiled is the one running the workload (the follower's with FOLLOWER=1).
const cdp = await context.newCDPSession(page2);
const target = process.env.TARGET || 'page';
let profile;
if (target === 'page') {
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 100 });
  await cdp.send('Profiler.start');
  console.log(which, 'profiled', await page2.evaluate(body, 3));
  ({ profile } = await cdp.send('Profiler.stop'));
} else {
  const { targetInfos } = await cdp.send('Target.getTargets');
  console.log(targetInfos.map((t) => `${t.type} ${t.url}`).join('\n'));
  const w = targetInfos.find((t) => t.type === 'worker' && t.url.includes(target));
  const { sessionId } = await cdp.send('Target.attachToTarget', { targetId: w.targetId, flatten: false });
  let nextId = 1;
  const pending = new Map();
  cdp.on('Target.receivedMessageFromTarget', (e) => {
    const m = JSON.parse(e.message);
    if (m.id && pending.has(m.id)) pending.get(m.id)(m.result);
  });
  const send = (method, params = {}) =>
    new Promise((res) => {
      const id = nextId++;
      pending.set(id, res);
      cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) });
    });
  await send('Profiler.enable');
  await send('Profiler.setSamplingInterval', { interval: 100 });
  await send('Profiler.start');
  console.log(which, 'profiled', await page2.evaluate(body, 3));
  ({ profile } = await send('Profiler.stop'));
}
const self = new Map();
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const counts = new Map();
for (const s of profile.samples) counts.set(s, (counts.get(s) || 0) + 1);
let total = 0;
for (const [id, c] of counts) {
  const n = byId.get(id);
  const key = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber}`;
  self.set(key, (self.get(key) || 0) + c);
  total += c;
}
const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 30);
for (const [k, c] of top) console.log(((100 * c) / total).toFixed(1).padStart(5), '%', k);
// CALLERS=name prints the call stacks (innermost first) of the samples in
// functions whose name contains it.
if (process.env.CALLERS) {
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children || []) parent.set(c, n.id);
  const stacks = new Map();
  for (const [id, c] of counts) {
    if (!byId.get(id).callFrame.functionName.includes(process.env.CALLERS)) continue;
    const names = [];
    for (let at = id; at !== undefined && names.length < 8; at = parent.get(at)) {
      names.push(byId.get(at).callFrame.functionName.replace(/::h[0-9a-f]{16}$/, '').slice(-60));
    }
    const key = names.join(' <- ');
    stacks.set(key, (stacks.get(key) || 0) + c);
  }
  for (const [k, c] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(c, k);
}
await context.close();
fs.rmSync(dir, { recursive: true, force: true });
