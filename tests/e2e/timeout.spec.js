// timeoutMs: a request no one answers in time rejects with TIMEOUT, each at its own
// deadline (one timer serves all pending requests), and the database goes on.
import { test, expect } from '@playwright/test';

async function openPage(context, name, options) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
  await page.route('**/timeout-blank.html', (route) =>
    route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>timeout</title>' }),
  );
  await page.goto('/timeout-blank.html');
  await page.evaluate(
    async ([name, options]) => {
      const { open } = await import('/dist/index.js');
      window.db = await open(name, options);
    },
    [name, options],
  );
  return page;
}

test('requests queued behind another tab\'s transaction time out in order, then the next one succeeds', async ({ context }) => {
  const name = `timeout-${Date.now()}.db`;
  const holder = await openPage(context, name, {});
  const waiter = await openPage(context, name, { timeoutMs: 400 });
  await holder.evaluate(async () => {
    await window.db.exec('CREATE TABLE t (x)');
    let began;
    window.began = new Promise((r) => (began = r));
    window.release = null;
    window.held = window.db.transaction(async (tx) => {
      await tx.run('INSERT INTO t VALUES (1)');
      await new Promise((r) => {
        window.release = r;
        began();
      });
    });
    await window.began;
  });
  const outcome = await waiter.evaluate(async () => {
    const settled = [];
    const track = (label, p) =>
      p.then(
        () => settled.push(`${label} ok`),
        (e) => settled.push(`${label} ${e.name} ${e.code}`),
      );
    const first = track('first', window.db.query('SELECT count(*) AS n FROM t'));
    await new Promise((r) => setTimeout(r, 200));
    const second = track('second', window.db.run('INSERT INTO t VALUES (2)'));
    await Promise.all([first, second]);
    return settled;
  });
  expect(outcome).toEqual(['first SqliteTabsError TIMEOUT', 'second SqliteTabsError TIMEOUT']);
  await holder.evaluate(async () => {
    window.release();
    await window.held;
  });
  // The timed-out write may still be applied ("a write may still be applied"): it was
  // queued behind the transaction. Either way the database answers again.
  const rows = await waiter.evaluate(async () => (await window.db.query('SELECT x FROM t ORDER BY x')).map((r) => r.x));
  expect(rows[0]).toBe(1);
  expect(rows.length === 1 || (rows.length === 2 && rows[1] === 2)).toBe(true);
});
