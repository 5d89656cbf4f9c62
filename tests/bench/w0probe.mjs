// W0 for A/B runs of two builds (not a benchmark; the full suite is `cargo
// xtask bench`): 7 rounds of 5,000 SELECT 1 from the leader and from a follower,
// each paired with 5,000 round trips to a raw echo worker of the same page run
// just before it; prints the medians of the paired ratios and of us per call.
// The follower's floor is its own page's echo worker, not a brokered port as in
// the suite: its ratio only compares builds.
// Serve each build (`node bench/serve-dist.mjs <port> <dist copy>`), then
// alternate between them (this machine's speed drifts):
//   cd tests && SQLITE_TABS_BASE_URL=http://127.0.0.1:<port> node bench/w0probe.mjs
import { chromium } from '@playwright/test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchOptions } from '../chromium.js';
import { isolatedBlankPage } from './blank.mjs';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'w0probe-'));
const context = await chromium.launchPersistentContext(dir, { ...launchOptions, headless: true });
// Opens the database in `page` and starts a raw echo worker beside it.
const setup = async (page) => page.evaluate(async () => {
  const { open } = await import('/dist/index.js');
  window.db = await open('w0.db');
  await window.db.query('SELECT 1');
  const w = new Worker(URL.createObjectURL(new Blob(['onmessage = (e) => postMessage(e.data)'], { type: 'text/javascript' })));
  window.rt = (m) => new Promise((r) => { w.onmessage = r; w.postMessage(m); });
  return window.db.isLeader;
});
const leader = await isolatedBlankPage(context);
const follower = await isolatedBlankPage(context);
if (!(await setup(leader)) || (await setup(follower))) throw new Error('expected a leader, then a follower');
const echo = async () => { const t0 = performance.now(); for (let i = 0; i < 5000; i++) await window.rt(i); return performance.now() - t0; };
const sel = async () => { const t0 = performance.now(); for (let i = 0; i < 5000; i++) await window.db.query('SELECT 1'); return performance.now() - t0; };
const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const r = { leader: [], follower: [], lus: [], fus: [] };
for (let i = 0; i < 7; i++) {
  const e1 = await leader.evaluate(echo); const s1 = await leader.evaluate(sel);
  const e2 = await follower.evaluate(echo); const s2 = await follower.evaluate(sel);
  r.leader.push(s1 / e1); r.follower.push(s2 / e2); r.lus.push(s1 / 5); r.fus.push(s2 / 5);
}
console.log(process.env.SQLITE_TABS_BASE_URL, 'leader ratio', med(r.leader).toFixed(3), 'us', med(r.lus).toFixed(1), '| follower ratio', med(r.follower).toFixed(3), 'us', med(r.fus).toFixed(1));
await context.close();
fs.rmSync(dir, { recursive: true, force: true });
