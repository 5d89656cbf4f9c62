// What an idle follower's eagerly spawned worker costs, and what spawning it
// lazily would add to a failover (not a test).
//
//   cargo xtask serve --isolated &      # COOP/COEP: enables measureUserAgentSpecificMemory
//   cd tests && SQLITE_TABS_BASE_URL=http://127.0.0.1:8080 node bench/worker-cost.mjs
//
// (i) spawn -> Ready of the database worker (module load + wasm compile and
//     instantiate): the time a lazily spawned worker would add to failover;
// (ii) memory of a page with vs without an idle database worker, by
//     performance.measureUserAgentSpecificMemory() (page + its workers).
import { chromium } from '@playwright/test';
import { launchOptions } from '../chromium.js';
import { isolatedBlankPage } from './blank.mjs';

const RUNS = Number(process.env.RUNS || 20);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p95 = (xs) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)];

const browser = await chromium.launch({
  ...launchOptions,
  args: [...launchOptions.args, '--enable-blink-features=ForceEagerMeasureMemory'],
  headless: true,
});
const spawn = [];
const memory = { without: [], with: [] };
try {
  for (let i = 0; i < RUNS; i++) {
    const context = await browser.newContext();
    const page = await isolatedBlankPage(context, 'worker cost');
    const r = await page.evaluate(async () => {
      const measure = async () =>
        self.crossOriginIsolated && performance.measureUserAgentSpecificMemory
          ? (await performance.measureUserAgentSpecificMemory()).bytes
          : null;
      const without = await measure();
      const t0 = performance.now();
      const worker = new Worker('/dist/db-worker.js', { type: 'module' });
      await new Promise((resolve, reject) => {
        worker.onmessage = resolve;
        worker.onerror = reject;
      });
      const spawnMs = performance.now() - t0;
      const withWorker = await measure();
      worker.terminate();
      return { spawnMs, without, withWorker };
    });
    spawn.push(r.spawnMs);
    if (r.without != null) {
      memory.without.push(r.without);
      memory.with.push(r.withWorker);
    }
    await context.close();
  }
} finally {
  await browser.close();
}
const ms = (xs) => `median ${median(xs).toFixed(1)} ms, p95 ${p95(xs).toFixed(1)} ms (n=${xs.length})`;
console.log(`database worker spawn -> Ready:  ${ms(spawn)}`);
if (memory.with.length) {
  const mib = (b) => (b / 1048576).toFixed(1);
  const extra = memory.with.map((w, i) => w - memory.without[i]);
  console.log(
    `page memory without worker: ${mib(median(memory.without))} MiB, with idle worker: ${mib(median(memory.with))} MiB, ` +
      `difference median ${mib(median(extra))} MiB (n=${extra.length})`,
  );
} else {
  console.log('memory: measureUserAgentSpecificMemory unavailable (page not cross-origin isolated)');
}
