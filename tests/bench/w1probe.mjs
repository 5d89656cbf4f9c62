// W1 through the API (not a benchmark): 1,000 single-row autocommit inserts,
// one after another, from the leader tab and from a follower tab, ROUNDS
// times alternating; medians per tab, and SELECT 1 round trips for scale.
// With a server of the package (serve-dist.mjs or xtask serve):
//   cd tests && SQLITE_TABS_BASE_URL=http://127.0.0.1:8201 [ROUNDS=5] node bench/w1probe.mjs
import { chromium } from '@playwright/test';
import fs from 'node:fs';
import { launchOptions } from '../chromium.js';
import { isolatedBlankPage } from './blank.mjs';

const ROUNDS = Number(process.env.ROUNDS || 5);
const dir = fs.mkdtempSync('/tmp/w1probe-');
const context = await chromium.launchPersistentContext(dir, { ...launchOptions, headless: true });
const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
try {
  const pages = [];
  for (let i = 0; i < 2; i++) {
    const page = await isolatedBlankPage(context);
    await page.evaluate(async () => {
      const { open } = await import('/dist/index.js');
      window.db = await open('w1probe.db');
    });
    pages.push(page);
  }
  const [leader, follower] = (await pages[0].evaluate(() => window.db.isLeader)) ? pages : [pages[1], pages[0]];
  const inserts = (page, r) =>
    page.evaluate(async (r) => {
      const db = window.db;
      const t = `w1_${r}_${db.isLeader ? 'l' : 'f'}`;
      await db.exec(`CREATE TABLE ${t}(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)`);
      const t0 = performance.now();
      for (let i = 0; i < 1000; i++) await db.run(`INSERT INTO ${t}(a, b) VALUES (?, ?)`, [`row ${i}`, i]);
      return performance.now() - t0;
    }, r);
  const selects = (page) =>
    page.evaluate(async () => {
      const t0 = performance.now();
      for (let i = 0; i < 1000; i++) await window.db.query('SELECT 1');
      return performance.now() - t0;
    });
  const out = { leader: [], follower: [], leaderSelect: [], followerSelect: [] };
  for (let r = 0; r < ROUNDS; r++) {
    out.leader.push(await inserts(leader, r));
    out.follower.push(await inserts(follower, r));
    out.leaderSelect.push(await selects(leader));
    out.followerSelect.push(await selects(follower));
  }
  for (const [k, v] of Object.entries(out)) console.log(k.padEnd(15), 'median', med(v).toFixed(1), 'ms  all', v.map((x) => x.toFixed(0)).join(' '));
} finally {
  await context.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
