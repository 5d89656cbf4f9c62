// W7 joining tab from a Chrome trace (not a benchmark): tab A opens the
// database and leads; after DELAY ms tab B imports the package, opens and runs
// SELECT 1, traced. Prints, per thread, the tasks over MIN ms between B's
// import and its first answer (ms after the import), with their largest
// children, and B's own marks. With a server of the package:
//   cd tests && SQLITE_TABS_BASE_URL=http://127.0.0.1:8191 [REPS=3] [DELAY=1500] node bench/w7trace.mjs
import { chromium } from '@playwright/test';
import fs from 'node:fs';
import { launchOptions } from '../chromium.js';
import { isolatedBlankPage } from './blank.mjs';

const REPS = Number(process.env.REPS || 3);
const DELAY = Number(process.env.DELAY ?? 1500);
const MIN = Number(process.env.MIN ?? 0.3);
const DETAIL = Number(process.env.DETAIL ?? 0);
const open = (page, tag) =>
  page.evaluate(async (tag) => {
    performance.mark(`${tag}:start`);
    const mod = await import('/dist/index.js');
    performance.mark(`${tag}:imported`);
    const db = await mod.open('trace.db');
    performance.mark(`${tag}:opened`);
    await db.query('SELECT 1');
    performance.mark(`${tag}:answered`);
  }, tag);

for (let rep = 0; rep < REPS; rep++) {
  const dir = fs.mkdtempSync('/tmp/w7trace-');
  const context = await chromium.launchPersistentContext(dir, { ...launchOptions, headless: true });
  try {
    const a = await isolatedBlankPage(context);
    await open(a, 'A');
    await new Promise((r) => setTimeout(r, DELAY));
    const b = await isolatedBlankPage(context);
    const cdp = await context.newCDPSession(b);
    const events = [];
    cdp.on('Tracing.dataCollected', (e) => events.push(...e.value));
    const complete = new Promise((resolve) => cdp.on('Tracing.tracingComplete', resolve));
    await cdp.send('Tracing.start', {
      traceConfig: {
        includedCategories: ['toplevel', 'v8', 'v8.wasm', 'devtools.timeline', 'blink.user_timing', 'disabled-by-default-v8.compile', 'disabled-by-default-devtools.timeline'],
      },
      transferMode: 'ReportEvents',
    });
    await open(b, 'B');
    await new Promise((r) => setTimeout(r, 50));
    await cdp.send('Tracing.end');
    await complete;

    const threads = new Map();
    for (const e of events) if (e.ph === 'M' && e.name === 'thread_name') threads.set(`${e.pid}:${e.tid}`, `${e.args.name}@${e.pid}`);
    const marks = new Map(events.filter((e) => e.cat?.includes('user_timing') && e.name.startsWith('B:')).map((e) => [e.name, e.ts]));
    const t0 = marks.get('B:start');
    const t1 = marks.get('B:answered');
    const rel = (us) => ((us - t0) / 1000).toFixed(1);
    console.log(`=== rep ${rep}: ${[...marks].map(([k, v]) => `${k} ${rel(v)}`).join('  ')}`);
    const spans = events.filter((e) => e.ph === 'X' && e.dur != null && e.ts + e.dur > t0 && e.ts < t1);
    const byThread = new Map();
    for (const e of spans) {
      const k = threads.get(`${e.pid}:${e.tid}`) || `?${e.pid}:${e.tid}`;
      if (!byThread.has(k)) byThread.set(k, []);
      byThread.get(k).push(e);
    }
    for (const [k, list] of byThread) {
      list.sort((x, y) => x.ts - y.ts || y.dur - x.dur);
      // Top-level: not inside an earlier span of the same thread.
      const top = [];
      let end = -Infinity;
      for (const e of list) {
        if (e.ts >= end) {
          top.push({ e, kids: [] });
          end = e.ts + e.dur;
        } else top[top.length - 1].kids.push(e);
      }
      const busy = top.reduce((s, { e }) => s + Math.min(e.ts + e.dur, t1) - Math.max(e.ts, t0), 0) / 1000;
      if (busy < 1) continue;
      console.log(`-- ${k}: busy ${busy.toFixed(1)} ms`);
      for (const { e, kids } of top) {
        if (e.dur / 1000 < MIN) continue;
        const agg = new Map();
        for (const c of kids) agg.set(c.name, (agg.get(c.name) || 0) + c.dur);
        const detail = [...agg].sort((x, y) => y[1] - x[1]).slice(0, 4).map(([n, d]) => `${n} ${(d / 1000).toFixed(1)}`).join(', ');
        const what = e.args?.data?.url ? ` ${e.args.data.url.split('/').pop()}` : e.args?.data?.type ? ` ${e.args.data.type}` : '';
        console.log(`  ${rel(e.ts).padStart(6)} +${(e.dur / 1000).toFixed(1).padStart(5)}  ${e.name}${what}  [${detail}]`);
        if (DETAIL && k.startsWith('CrRendererMain') && e.dur / 1000 >= DETAIL) {
          // The children as a tree: depth by containment.
          const stack = [e];
          for (const c of kids) {
            while (stack.length > 1 && c.ts >= stack[stack.length - 1].ts + stack[stack.length - 1].dur) stack.pop();
            stack.push(c);
            if (c.dur / 1000 < MIN) continue;
            const u = c.args?.data?.url ?? c.args?.data?.functionName ?? c.args?.data?.type ?? '';
            console.log(`  ${' '.repeat(8 + 2 * stack.length)}${rel(c.ts)} +${(c.dur / 1000).toFixed(2)} ${c.name} ${String(u).split('/').pop()}`);
          }
        }
      }
    }
  } finally {
    await context.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
