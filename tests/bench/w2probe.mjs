// W2 split (not a benchmark): 100,000 inserts in one batch() from the leader,
// timed to the synchronous return of batch() (packing, encoding, posting) and
// to its answer. With a server of the package (serve-dist.mjs or xtask serve):
//   cd tests && SQLITE_TABS_BASE_URL=http://127.0.0.1:8201 RUNS=9 node bench/w2probe.mjs
import { chromium } from '@playwright/test';
import fs from 'node:fs';
import { launchOptions } from '../chromium.js';
import { isolatedBlankPage } from './blank.mjs';

const RUNS = Number(process.env.RUNS || 9);
const dir = fs.mkdtempSync('/tmp/w2probe-');
const context = await chromium.launchPersistentContext(dir, { ...launchOptions, headless: true });
try {
  const page = await isolatedBlankPage(context);
  await page.addInitScript(() => {
    const W = window.Worker;
    window.__big = [];
    window.Worker = function (url, opts) {
      const w = new W(url, opts);
      w.addEventListener('message', (e) => {
        window.__big.push([performance.now(), e.data?.byteLength ?? -1]);
      });
      return w;
    };
    window.Worker.prototype = W.prototype;
  });
  await page.reload();
  const runs = await page.evaluate(async (RUNS) => {
    const { open } = await import('/dist/index.js');
    const db = await open('w2probe.db');
    const out = [];
    for (let r = 0; r < RUNS + 2; r++) {
      await db.exec(`CREATE TABLE w2_${r}(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)`);
      const stmts = Array.from({ length: 100000 }, (_, i) => ({ sql: `INSERT INTO w2_${r}(a, b) VALUES (?, ?)`, params: [`row ${i}`, i] }));
      const t0 = performance.now();
      const p = db.batch(stmts);
      const t1 = performance.now();
      const res = await p;
      const t2 = performance.now();
      if (res.length !== 100000) throw new Error('short answer');
      const big = window.__big.filter(([t]) => t > t1).sort((a, b) => b[1] - a[1])[0]; if (r === 2) console.log(JSON.stringify(window.__big.slice(-5))); const arrived = big ? big[0] : NaN;
      if (r >= 2) out.push([t1 - t0, t2 - t0, arrived - t0]);
    }
    return out;
  }, RUNS);
  const med = (a) => a.slice().sort((x, y) => x - y)[a.length >> 1];
  console.log(`send ${med(runs.map((r) => r[0])).toFixed(1)} ms, reply arrived ${med(runs.map((r) => r[2])).toFixed(1)} ms, answered ${med(runs.map((r) => r[1])).toFixed(1)} ms (medians of ${runs.length}; all: ${runs.map((r) => r[1].toFixed(0)).join(' ')})`);
} finally {
  await context.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
