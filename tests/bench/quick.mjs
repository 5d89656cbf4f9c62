// Quick measurements of one tab on the release build (not a test; the full
// side-by-side suite is `cargo xtask bench`, issue #5).
//
//   cargo xtask serve &            # release build on 127.0.0.1:8080
//   cd tests && SQLITE_TABS_BASE_URL=http://127.0.0.1:8080 node bench/quick.mjs
//
// Reports medians: cold open -> first query (fresh browser context, so no
// OPFS data and no HTTP cache), and a 10,000-row insert in one batch(), the
// first of the page and the third (JIT warm).
import { chromium } from '@playwright/test';
import { launchOptions, baseURL } from '../chromium.js';

const RUNS = Number(process.env.RUNS || 10);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p95 = (xs) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)];

const browser = await chromium.launch({ ...launchOptions, headless: true });
const url = `${baseURL()}/bench-blank.html`;
const cold = [];
const batch = [];
const warmBatch = [];
try {
  for (let i = 0; i < RUNS; i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    // A page without the demo's own open(): only what we measure runs.
    await page.route('**/bench-blank.html', (route) =>
      route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>bench</title>' }),
    );
    await page.goto(url);
    const r = await page.evaluate(async () => {
      const t0 = performance.now();
      const { open } = await import('/dist/index.js');
      const db = await open(`bench-${Date.now()}.db`);
      await db.query('SELECT 1');
      const coldMs = performance.now() - t0;
      await db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c REAL)');
      const stmts = Array.from({ length: 10000 }, (_, i) => ({
        sql: 'INSERT INTO t(a, b, c) VALUES (?, ?, ?)',
        params: [`row ${i}`, i, i / 3],
      }));
      const t1 = performance.now();
      await db.batch(stmts);
      const batchMs = performance.now() - t1;
      // Two more batches: the third shows the cost once the JIT has warmed up.
      await db.batch(stmts.map((s) => ({ ...s })));
      const more = stmts.map((s) => ({ ...s }));
      const t2 = performance.now();
      await db.batch(more);
      const warmBatchMs = performance.now() - t2;
      const [{ n }] = await db.query('SELECT count(*) AS n FROM t');
      if (n !== 30000) throw new Error(`expected 30000 rows, got ${n}`);
      await db.close();
      return { coldMs, batchMs, warmBatchMs };
    });
    cold.push(r.coldMs);
    batch.push(r.batchMs);
    warmBatch.push(r.warmBatchMs);
    await context.close();
  }
} finally {
  await browser.close();
}
const fmt = (xs) => `median ${median(xs).toFixed(1)} ms, p95 ${p95(xs).toFixed(1)} ms (n=${xs.length})`;
console.log(`cold open -> first query:      ${fmt(cold)}`);
console.log(`10,000-row insert in batch():  ${fmt(batch)}  (first batch of the page)`);
console.log(`  same, third batch of the page: ${fmt(warmBatch)}`);
