// Group commit: writes that reach the leader together share one transaction,
// each in its own savepoint, so a failing one rolls back only itself.
import { test, expect } from '@playwright/test';
import { forwardPageErrors, openDemo } from './helpers.js';

test('one bad statement among 50 concurrent writes from 4 tabs fails alone', async ({ context }) => {
  const tabs = [];
  for (let i = 0; i < 4; i++) {
    const page = await context.newPage();
    forwardPageErrors(page, `tab ${i}`);
    await openDemo(page);
    tabs.push(page);
  }
  await tabs[0].evaluate(async () => {
    await window.db.exec('CREATE TABLE gc (x INTEGER UNIQUE NOT NULL, tab INTEGER)');
    await window.db.run('INSERT INTO gc VALUES (-1, -1)');
  });
  // Each tab fires its writes at once, without waiting for one another; one
  // write of tab 2 collides with the row inserted above.
  const results = await Promise.all(
    tabs.map((page, tab) =>
      page.evaluate(async (tab) => {
        const writes = [];
        for (let i = 0; i < (tab < 2 ? 13 : 12); i++) {
          const x = tab === 2 && i === 5 ? -1 : tab * 100 + i;
          writes.push(
            window.db.run('INSERT INTO gc VALUES (?, ?)', [x, tab]).then(
              () => ({ x, ok: true }),
              (e) => ({ x, ok: false, code: e.code }),
            ),
          );
        }
        return Promise.all(writes);
      }, tab),
    ),
  );
  const all = results.flat();
  expect(all).toHaveLength(50);
  const failed = all.filter((r) => !r.ok);
  expect(failed).toEqual([{ x: -1, ok: false, code: 'SQLITE_CONSTRAINT_UNIQUE' }]);
  const rows = await tabs[3].evaluate(() =>
    window.db.query('SELECT count(*) AS n, sum(x >= 0) AS written FROM gc'),
  );
  expect(rows).toEqual([{ n: 50, written: 49 }]);
  // Every tab can go on writing.
  for (const page of tabs) {
    await page.evaluate(() => window.db.run('INSERT INTO gc VALUES (?, 9)', [Math.random() + 1000]));
  }
});
