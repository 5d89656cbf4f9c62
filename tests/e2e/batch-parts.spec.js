// A batch larger than one message (8,192 statements) is sent in parts as it is
// packed, so the leader's worker starts while the page still packs the rest.
// It must still be one transaction: other tabs see all of it or none, a failure
// in any part leaves nothing, a bad value found after some parts went out
// leaves nothing and blocks nobody, and it survives its leader going away.
import { test, expect } from '@playwright/test';

/** Two tabs of one browser on a blank page of the origin, each with the database open. */
async function twoTabs(context, name) {
  const tabs = [];
  for (const label of ['first', 'second']) {
    const page = await context.newPage();
    page.on('pageerror', (e) => console.log(`[${label} page error] ${e.message}`));
    await page.route('**/parts-blank.html', (route) =>
      route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>parts</title>' }),
    );
    await page.goto('/parts-blank.html');
    await page.evaluate(async (name) => {
      const { open } = await import('/dist/index.js');
      // A write stuck behind a batch that never ends would time out here
      // instead of after the default 30 s.
      window.db = await open(name, { timeoutMs: 8000 });
      await window.db.query('SELECT 1');
    }, name);
    tabs.push(page);
  }
  const leaders = await Promise.all(tabs.map((p) => p.evaluate(() => window.db.isLeader)));
  expect(leaders.filter(Boolean)).toHaveLength(1);
  return leaders[0] ? tabs : [tabs[1], tabs[0]];
}

const unique = () => `parts-${Math.random().toString(36).slice(2)}.db`;

test('a batch in parts commits whole from either tab, and the other tab reads all of it or none', async ({ context }) => {
  const [leader, follower] = await twoTabs(context, unique());
  await leader.evaluate(() => window.db.exec('CREATE TABLE p (id INTEGER PRIMARY KEY, a TEXT, b INTEGER)'));
  for (const [writer, reader, n] of [
    [follower, leader, 30_000],
    [leader, follower, 25_001],
  ]) {
    // The reader polls while the batch is in flight.
    const polling = reader.evaluate(async () => {
      window.stopPolling = false;
      const seen = new Set();
      while (!window.stopPolling) seen.add((await window.db.query('SELECT count(*) AS n FROM p'))[0].n);
      return [...seen];
    });
    const before = await reader.evaluate(() => window.db.query('SELECT count(*) AS n FROM p').then((r) => r[0].n));
    const r = await writer.evaluate(async (n) => {
      const stmts = Array.from({ length: n }, (_, i) => ({ sql: 'INSERT INTO p (a, b) VALUES (?, ?)', params: [`row ${i}`, i] }));
      const results = await window.db.batch(stmts);
      const steps = results.slice(1).every((x, i) => x.changes === 1 && x.lastInsertRowid === results[i].lastInsertRowid + 1);
      return { len: results.length, first: results[0].lastInsertRowid, steps };
    }, n);
    await reader.evaluate(() => (window.stopPolling = true));
    const seen = await polling;
    expect(r).toEqual({ len: n, first: before + 1, steps: true });
    for (const count of seen) expect([before, before + n]).toContain(count);
    const sum = await reader.evaluate(() => window.db.query('SELECT count(*) AS n, sum(b) AS s FROM p'));
    expect(sum[0].n).toBe(before + n);
  }
});

test('a failure in a late part of a batch leaves nothing and the database goes on', async ({ context }) => {
  const [leader, follower] = await twoTabs(context, unique());
  await leader.evaluate(() => window.db.exec('CREATE TABLE q (x INTEGER)'));
  const r = await follower.evaluate(async () => {
    const attempt = async (stmts) => {
      try {
        await window.db.batch(stmts);
        return 'ok';
      } catch (e) {
        return `${e.code} ${e.message}`;
      }
    };
    const rows = (n) => Array.from({ length: n }, (_, i) => ({ sql: 'INSERT INTO q VALUES (?)', params: [i] }));
    // SQLite fails the statement in the last part (parts: 1,024, then 8,192 each).
    const sql = rows(20_000);
    sql[18_999] = { sql: 'INSERT INTO nope VALUES (1)' };
    // The packing finds a bad value after two parts were sent.
    const value = rows(20_000);
    value[17_000] = { sql: 'INSERT INTO q VALUES (?)', params: [new Date()] };
    return { sql: await attempt(sql), value: await attempt(value) };
  });
  expect(r.sql).toBe('SQLITE_ERROR batch statement 19000: no such table: nope');
  expect(r.value).toMatch(/^BAD_REQUEST batch statement 17001: parameter 1 has unsupported type Date/);
  // Nothing of either batch is left, and no transaction holds the database:
  // writes from both tabs go through at once (they would time out otherwise).
  const after = [];
  for (const p of [leader, follower]) {
    after.push(
      await p.evaluate(async () => {
        await window.db.run('INSERT INTO q VALUES (?)', [-1]);
        return (await window.db.query('SELECT count(*) AS n FROM q'))[0].n;
      }),
    );
  }
  expect(after).toEqual([1, 2]);
});

test('a batch in parts in flight when the leading tab closes commits once on the next leader', async ({ context }) => {
  const [leader, follower] = await twoTabs(context, unique());
  await leader.evaluate(() => window.db.exec('CREATE TABLE f (id INTEGER PRIMARY KEY, b INTEGER)'));
  await follower.evaluate(() => {
    const stmts = Array.from({ length: 60_000 }, (_, i) => ({ sql: 'INSERT INTO f (b) VALUES (?)', params: [i] }));
    window.batchDone = window.db.batch(stmts).then(
      (r) => ({ len: r.length }),
      (e) => ({ error: `${e.code} ${e.message}` }),
    );
  });
  await leader.close();
  const r = await follower.evaluate(async () => {
    const done = await window.batchDone;
    const rows = await window.db.query('SELECT count(*) AS n, count(DISTINCT b) AS d FROM f');
    return { done, rows: rows[0], leader: window.db.isLeader };
  });
  expect(r).toEqual({ done: { len: 60_000 }, rows: { n: 60_000, d: 60_000 }, leader: true });
});
