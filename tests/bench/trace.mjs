// W2 timeline from a Chrome trace (not a benchmark): 100,000 inserts in one
// batch() from the leader, RUNS times, traced; for each run, in ms after the
// call: when the first part reached the worker, the worker's time on the parts,
// the last part with the commit (and, after the answer, a checkpoint when one
// is due), when the page took the answer and for how long, and the garbage
// collections over 1 ms in that window (page or background threads). With a
// server of the package (serve-dist.mjs or xtask serve):
//   cd tests && SQLITE_TABS_BASE_URL=http://127.0.0.1:8201 RUNS=9 node bench/trace.mjs
import { chromium } from '@playwright/test';
import fs from 'node:fs';
import { launchOptions } from '../chromium.js';
import { isolatedBlankPage } from './blank.mjs';

const RUNS = Number(process.env.RUNS || 9);
const dir = fs.mkdtempSync('/tmp/trace-');
const context = await chromium.launchPersistentContext(dir, { ...launchOptions, headless: true });
try {
  const page = await isolatedBlankPage(context);
  await page.evaluate(async () => {
    const { open } = await import('/dist/index.js');
    window.db = await open('trace.db');
  });
  const cdp = await context.newCDPSession(page);
  const events = [];
  cdp.on('Tracing.dataCollected', (e) => events.push(...e.value));
  const complete = new Promise((resolve) => cdp.on('Tracing.tracingComplete', resolve));
  await cdp.send('Tracing.start', {
    traceConfig: { includedCategories: ['disabled-by-default-v8.gc', 'v8', 'devtools.timeline', 'blink.user_timing'] },
    transferMode: 'ReportEvents',
  });
  const totals = [];
  for (let r = 0; r < RUNS; r++) {
    totals.push(
      await page.evaluate(async (r) => {
        const db = window.db;
        await db.exec(`CREATE TABLE w2_${r}(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)`);
        const stmts = Array.from({ length: 100000 }, (_, i) => ({ sql: `INSERT INTO w2_${r}(a, b) VALUES (?, ?)`, params: [`row ${i}`, i] }));
        performance.mark(`start${r}`);
        const t0 = performance.now();
        await db.batch(stmts);
        const t = performance.now() - t0;
        performance.mark(`end${r}`);
        return t;
      }, r),
    );
  }
  await cdp.send('Tracing.end');
  await complete;

  const threads = new Map();
  for (const e of events) {
    if (e.ph === 'M' && e.name === 'thread_name') threads.set(`${e.pid}:${e.tid}`, e.args.name);
  }
  const thread = (e) => threads.get(`${e.pid}:${e.tid}`) || '?';
  const marks = new Map(events.filter((e) => e.cat?.includes('user_timing')).map((e) => [e.name, e.ts]));
  const spans = events.filter((e) => e.ph === 'X');
  const gcNames = new Set(['V8.GC_SCAVENGER', 'V8.GC_MARK_COMPACTOR', 'V8.GC_MC_BACKGROUND_MARKING', 'V8.GCIncrementalMarking']);
  const ms = (us) => (us / 1000).toFixed(1);
  for (let r = 0; r < RUNS; r++) {
    const start = marks.get(`start${r}`);
    const end = marks.get(`end${r}`);
    const inRun = (e) => e.ts >= start && e.ts <= end;
    const worker = spans.filter((e) => inRun(e) && e.name === 'HandlePostMessage' && thread(e) === 'DedicatedWorker thread');
    const answer = spans.filter((e) => inRun(e) && e.name === 'HandlePostMessage' && thread(e) === 'CrRendererMain').at(-1);
    const gc = spans.filter((e) => inRun(e) && gcNames.has(e.name) && e.dur > 1000);
    const last = worker.at(-1);
    const parts = worker.slice(0, -1).reduce((s, e) => s + e.dur, 0);
    console.log(
      `run ${r}: ${totals[r].toFixed(1)} ms; worker: first part at ${worker.length ? ms(worker[0].ts - start) : '-'}, ` +
        `${worker.length} parts, ${ms(parts)} on all but the last, last at ${last ? ms(last.ts - start) : '-'} ` +
        `for ${last ? ms(last.dur) : '-'}; page took the answer at ${answer ? ms(answer.ts - start) : '-'} for ` +
        `${answer ? ms(answer.dur) : '-'}` +
        (gc.length
          ? `; gc: ${gc.map((e) => `${e.name.replace(/^V8\./, '')} ${thread(e) === 'CrRendererMain' ? 'page' : thread(e)} at ${ms(e.ts - start)} for ${ms(e.dur)}`).join(', ')}`
          : ''),
    );
  }
} finally {
  await context.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
