// Where a follower's SELECT 1 round trip (W0) spends its time, hop by hop (not a
// benchmark): page -> leader's worker, in the worker, worker -> page, and in the
// page until the next request, for sqlite-tabs and for the raw brokered-port echo
// of 32-byte buffers. Timestamps: performance.timeOrigin + now() on both sides,
// taken where each side reads a MessagePort message (MessageEvent.data) and posts
// one, so at 5 us resolution (cross-origin isolated); medians of 1,900 round trips.
// With a running `cargo xtask serve --isolated --no-build --port 8191`:
//   cd tests && SQLITE_TABS_BASE_URL=http://127.0.0.1:8191 node bench/w0hops.mjs
import { chromium } from '@playwright/test';
import fs from 'node:fs';
import { launchOptions } from '../chromium.js';
import { isolatedBlankPage } from './blank.mjs';
const dir = fs.mkdtempSync('/tmp/prof-');
const context = await chromium.launchPersistentContext(dir, { ...launchOptions, headless: true });
const leader = await isolatedBlankPage(context);
await leader.evaluate(async () => {
  const { open } = await import('/dist/index.js'); window.db = await open('f.db'); await db.query('SELECT 1');
  window.echo = new Worker('/bench/raw/echo-worker.js');
  const shared = new SharedWorker('/bench/raw/broker.js');
  await new Promise((r) => (shared.port.onmessage = (e) => e.data === 'owner' && r()));
  shared.port.onmessage = (e) => { if (e.data === 'attach') window.echo.postMessage('attach', [e.ports[0]]); };
});
const follower = await isolatedBlankPage(context);
await follower.evaluate(async () => {
  const { open } = await import('/dist/index.js'); window.db = await open('f.db'); await db.query('SELECT 1');
  const shared = new SharedWorker('/bench/raw/broker.js');
  window.echoPort = await new Promise((r) => (shared.port.onmessage = (e) => e.data === 'connected' && r(e.ports[0])));
});
const instrument = () => {
  const now = () => performance.timeOrigin + performance.now();
  self.__t = { recv: [], send: [] };
  const orig = MessagePort.prototype.postMessage;
  MessagePort.prototype.postMessage = function (...a) { self.__t.send.push(now()); return orig.apply(this, a); };
  const d = Object.getOwnPropertyDescriptor(MessageEvent.prototype, 'data');
  Object.defineProperty(MessageEvent.prototype, 'data', { get() { if (this.currentTarget instanceof MessagePort && !this.__seen) { this.__seen = 1; self.__t.recv.push(now()); } return d.get.call(this); }, configurable: true });
};
for (const w of leader.workers()) await w.evaluate(instrument);
await follower.evaluate(instrument);
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return +s[s.length >> 1].toFixed(1); };
for (let round = 0; round < 2; round++) {
  for (const kind of ['ours', 'echoBuf']) {
    for (const w of leader.workers()) await w.evaluate(() => { self.__t.recv = []; self.__t.send = []; });
    const page = await follower.evaluate(async (kind) => {
      self.__t.recv = []; self.__t.send = [];
      const N = 2000;
      const p = window.echoPort;
      for (let i = 0; i < N; i++) {
        if (kind === 'ours') await db.query('SELECT 1');
        else await new Promise((res) => { p.onmessage = (e) => { e.data; res(); }; const b = new Uint8Array(32); b[0] = i; p.postMessage(b.buffer); });
      }
      return self.__t;
    }, kind);
    let wt = null;
    for (const w of leader.workers()) { const t = await w.evaluate(() => self.__t); if (t.recv.length >= 1000) wt = t; }
    const n = Math.min(page.send.length, page.recv.length, wt.recv.length, wt.send.length);
    const a = [], b = [], c = [], dd = [];
    for (let i = 100; i < n - 1; i++) {
      a.push((wt.recv[i] - page.send[i]) * 1000);
      b.push((wt.send[i] - wt.recv[i]) * 1000);
      c.push((page.recv[i] - wt.send[i]) * 1000);
      dd.push((page.send[i + 1] - page.recv[i]) * 1000);
    }
    console.log(kind, 'n', n, 'page->worker', med(a), 'worker', med(b), 'worker->page', med(c), 'page', med(dd), 'us');
  }
}
await context.close();
