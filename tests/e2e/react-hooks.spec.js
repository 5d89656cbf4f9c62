// sqlite-tabs/react in a real browser: the hooks fixture (tests/react/hooks.jsx, built
// by global-setup.js with Vite against the built package, React's development build)
// mounts providers and components on the test's request and logs every render, so
// the tests can check what a user of the hooks relies on: loading, then data; errors
// as state; live updates from other tabs; stable identities; no refetch loops; the
// end of live queries and databases on unmount; StrictMode; leadership.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test, expect } from '@playwright/test';
import { forwardPageErrors, uniqueMarker, workerTargets } from './helpers.js';

const HOOKS = '/fixtures/react/hooks.html';
const ITEMS = 'SELECT id, v FROM items WHERE marker = ? ORDER BY id';

/** A tab with the fixture loaded; its uncaught errors are collected in `errors`. */
async function openFixture(context, label) {
  const page = await context.newPage();
  forwardPageErrors(page, label);
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(String(err)));
  await page.goto(HOOKS);
  await page.waitForFunction(() => window.harness);
  return page;
}

/** Mounts `spec` (see hooks.jsx) in `page`. */
const render = (page, spec) => page.evaluate((spec) => window.harness.render(spec), spec);

/** Waits for the provider's database to be open (exposed as window.db). */
const waitForDb = (page) => page.waitForFunction(() => window.db && window.harness.lastDb);

/** The last logged render of probe `id`. */
const last = (page, id) => page.evaluate((id) => window.harness.last(id), id);

/** Every logged render of probe `id`. */
const renders = (page, id) =>
  page.evaluate((id) => window.harness.log.filter((e) => e.t === 'probe' && e.id === id), id);

const calls = (page) => page.evaluate(() => ({ ...window.harness.calls }));

/** Waits until probe `id` has finished loading and returns its last render. */
async function settled(page, id) {
  await expect(page.getByTestId(`probe-${id}`)).toHaveAttribute('data-loading', 'false');
  return last(page, id);
}

/** Runs `sql` with `params` on the page's window.db. */
const run = (page, sql, params) =>
  page.evaluate(([sql, params]) => window.db.run(sql, params).then(() => undefined), [sql, params]);

/** Waits until `page` has heard of a commit after the ones it had heard of before `write()`. */
async function afterCommitHeard(page, write) {
  const before = await page.evaluate(() => window.db.lastSeq);
  await write();
  await page.waitForFunction((before) => window.db.lastSeq > before, before);
  // Let a live query that wanted to re-run do so (one round trip to the leader), and
  // React render what that changed.
  await page.evaluate(async () => {
    await window.db.query('SELECT 1');
    await new Promise((resolve) => setTimeout(resolve, 100));
  });
}

/** Fails if the page logged an uncaught error or an unhandled rejection. */
async function expectNothingUnhandled(page) {
  expect(await page.evaluate(() => window.harness.unhandled)).toEqual([]);
  expect(page.errors).toEqual([]);
}

const dbName = () => `${uniqueMarker('hooks')}.db`;

test('useQuery: loading, then rows; inline params do not query again; data keeps its identity', async ({
  context,
}) => {
  const page = await openFixture(context, 'tab');
  const name = dbName();
  const marker = uniqueMarker('m');
  const probe = { id: 'a', sql: ITEMS, params: [marker] };
  const typed = {
    id: 'typed',
    sql: 'SELECT ? AS big, ? AS blob',
    params: [{ $bigint: '9007199254740993' }, { $bytes: [0, 1, 255] }],
  };
  await render(page, { name, probes: [probe, typed] });

  // The provider showed its fallback while opening; each probe rendered loading first.
  const first = await settled(page, 'a');
  const log = await page.evaluate(() => window.harness.log);
  expect(log[0]).toEqual({ t: 'fallback' });
  expect((await renders(page, 'a'))[0]).toMatchObject({ isLoading: true, rows: null, error: null });
  expect(first).toMatchObject({ isLoading: false, rows: [], error: null });
  expect(await settled(page, 'typed')).toMatchObject({
    rows: [{ big: { $bigint: '9007199254740993' }, blob: { $bytes: [0, 1, 255] } }],
  });
  // The first rows come from query(), then watch() reports the same rows: one data object.
  await page.evaluate(() => window.db.query('SELECT 1'));
  const typedIds = new Set((await renders(page, 'typed')).map((r) => r.dataId).filter(Boolean));
  expect(typedIds.size).toBe(1);

  // A write in this tab shows up in the rows.
  await run(page, 'INSERT INTO items (marker, v) VALUES (?, ?)', [marker, 'one']);
  await expect.poll(async () => (await last(page, 'a')).rows).toEqual([{ id: 1, v: 'one' }]);
  const loaded = await last(page, 'a');
  const before = await calls(page);
  expect(before).toMatchObject({ opens: 1, query: 3, watch: 2, liveWatches: 2 });

  // 20 renders with new (equal) params arrays, bigint and Uint8Array included: no query.
  for (let i = 0; i < 20; i++) await page.evaluate(() => window.harness.rerender());
  await page.evaluate(() => window.db.query('SELECT 1'));
  expect(await calls(page)).toMatchObject({ query: before.query + 1, watch: 2, opens: 1 });
  const after = await last(page, 'a');
  expect(after.dataId).toBe(loaded.dataId);
  expect((await last(page, 'typed')).dataId).toBe((await settled(page, 'typed')).dataId);

  // A commit to the table that leaves these rows as they were: same data object.
  const rendersBefore = (await renders(page, 'a')).length;
  await afterCommitHeard(page, () =>
    run(page, 'INSERT INTO items (marker, v) VALUES (?, ?)', ['someone else', 'x']),
  );
  const sinceThen = (await renders(page, 'a')).slice(rendersBefore);
  expect(sinceThen.every((r) => r.dataId === loaded.dataId)).toBe(true);
  await expectNothingUnhandled(page);
});

test('useQuery reports bad SQL and bad parameters as error, never as an unhandled rejection', async ({
  context,
}) => {
  const page = await openFixture(context, 'tab');
  const probes = [
    { id: 'syntax', sql: 'SELEC 1' },
    { id: 'table', sql: 'SELECT * FROM no_such_table' },
    { id: 'count', sql: 'SELECT ?, ?', params: [1] },
    { id: 'type', sql: 'SELECT ?', params: [{ not: 'a value' }] },
    { id: 'good', sql: 'SELECT 42 AS answer' },
  ];
  await render(page, { name: dbName(), probes });
  const results = {};
  for (const { id } of probes) results[id] = await settled(page, id);

  expect(results.syntax).toMatchObject({
    isLoading: false,
    rows: null,
    error: { name: 'SqliteTabsError', code: 'SQLITE_ERROR' },
  });
  expect(results.syntax.error.message).toMatch(/syntax error/);
  expect(results.table.error).toMatchObject({ code: 'SQLITE_ERROR' });
  expect(results.table.error.message).toMatch(/no such table/);
  expect(results.count.error).toMatchObject({ code: 'BAD_REQUEST' });
  expect(results.type.error).toMatchObject({ code: 'BAD_REQUEST' });
  expect(results.good).toMatchObject({ rows: [{ answer: 42 }], error: null });
  await expect(page.getByTestId('probe-syntax')).toHaveText('error SQLITE_ERROR');

  // Failed queries are not retried at every render.
  const before = await calls(page);
  for (let i = 0; i < 10; i++) await page.evaluate(() => window.harness.rerender());
  await page.evaluate(() => window.db.query('SELECT 1'));
  expect((await calls(page)).query).toBe(before.query + 1);
  // Only the good one is watched.
  expect(before.liveWatches).toBe(1);
  await expectNothingUnhandled(page);
});

test('useQuery updates live when another tab writes, and only then', async ({ context }) => {
  const name = dbName();
  const marker = uniqueMarker('live');
  const reader = await openFixture(context, 'reader');
  await render(reader, { name, probes: [{ id: 'a', sql: ITEMS, params: [marker] }] });
  const empty = await settled(reader, 'a');
  expect(empty.rows).toEqual([]);

  const writer = await openFixture(context, 'writer');
  await render(writer, { name });
  await waitForDb(writer);
  await run(writer, 'INSERT INTO items (marker, v) VALUES (?, ?)', [marker, 'from the writer']);
  await expect.poll(async () => (await last(reader, 'a')).rows).toEqual([
    { id: 1, v: 'from the writer' },
  ]);
  await expect(reader.getByTestId('probe-a')).toHaveText('1 rows');

  // The other tab's write to rows this query does not read: no new data.
  const shown = await last(reader, 'a');
  const count = (await renders(reader, 'a')).length;
  await afterCommitHeard(reader, () =>
    run(writer, 'INSERT INTO items (marker, v) VALUES (?, ?)', ['not mine', 'x']),
  );
  expect((await renders(reader, 'a')).slice(count).every((r) => r.dataId === shown.dataId)).toBe(
    true,
  );
  await expectNothingUnhandled(reader);
  await expectNothingUnhandled(writer);
});

test('unmounting stops the live query; unmounting the provider closes the database', async ({
  context,
}) => {
  const name = dbName();
  const marker = uniqueMarker('unmount');
  const page = await openFixture(context, 'reader');
  await render(page, { name, probes: [{ id: 'a', sql: ITEMS, params: [marker] }] });
  await settled(page, 'a');
  expect((await calls(page)).liveWatches).toBe(1);

  await render(page, { name, probes: [] });
  await expect(page.getByTestId('probe-a')).toHaveCount(0);
  expect((await calls(page)).liveWatches).toBe(0);
  const rendersAtUnmount = (await renders(page, 'a')).length;

  // Another tab writes rows the query read: nothing runs or renders here any more.
  const writer = await openFixture(context, 'writer');
  await render(writer, { name });
  await waitForDb(writer);
  await afterCommitHeard(page, () =>
    run(writer, 'INSERT INTO items (marker, v) VALUES (?, ?)', [marker, 'after unmount']),
  );
  expect((await calls(page)).callbacksAfterStop).toBe(0);
  expect((await renders(page, 'a')).length).toBe(rendersAtUnmount);

  // Without its provider the database closes (the fixture kept a reference to it).
  await render(page, null);
  await expect
    .poll(() =>
      page.evaluate(() =>
        window.harness.lastDb.query('SELECT 1').then(
          () => 'still open',
          (e) => e.code,
        ),
      ),
    )
    .toBe('CLOSED');
  await expectNothingUnhandled(page);
});

test('new params drop the answer to the old ones, which was still on its way', async ({
  context,
}) => {
  const name = dbName();
  const [m1, m2] = [uniqueMarker('old'), uniqueMarker('new')];
  const page = await openFixture(context, 'tab');
  await render(page, { name });
  await waitForDb(page);
  await page.evaluate(
    async ([m1, m2]) => {
      await window.db.run('INSERT INTO items (marker, v) VALUES (?, ?)', [m1, 'old rows']);
      await window.db.run('INSERT INTO items (marker, v) VALUES (?, ?)', [m2, 'new rows']);
      // Requests wait behind an open transaction: both queries below stay unanswered
      // until it ends, and then the old one is answered first.
      window.txOpen = new Promise((inside) => {
        window.txDone = window.db.transaction(async (tx) => {
          await tx.run("INSERT INTO items (marker, v) VALUES ('tx', 0)");
          inside();
          await new Promise((release) => (window.releaseTx = release));
        });
      });
      await window.txOpen;
    },
    [m1, m2],
  );

  await render(page, { name, probes: [{ id: 'p', sql: ITEMS, params: [m1] }] });
  await expect(page.getByTestId('probe-p')).toHaveAttribute('data-loading', 'true');
  await render(page, { name, probes: [{ id: 'p', sql: ITEMS, params: [m2] }] });
  await page.evaluate(() => {
    window.releaseTx();
    return window.txDone;
  });

  const final = await settled(page, 'p');
  expect(final.rows).toEqual([{ id: 2, v: 'new rows' }]);
  const shown = (await renders(page, 'p')).filter((r) => r.rows);
  expect(shown.every((r) => r.rows[0].v === 'new rows')).toBe(true);
  // Both queries were sent; only the current one is watched.
  expect(await calls(page)).toMatchObject({ query: 2, watch: 1, liveWatches: 1 });
  await expectNothingUnhandled(page);
});

test('DatabaseProvider under StrictMode opens one database, and the next mount opens it again', async ({
  context,
}) => {
  const name = dbName();
  const page = await openFixture(context, 'tab');
  const spec = { name, strict: true, probes: [{ id: 'a', sql: 'SELECT 1 AS one' }] };
  await render(page, spec);
  expect((await settled(page, 'a')).rows).toEqual([{ one: 1 }]);
  // StrictMode mounted, unmounted and mounted again (the probe's effect ran twice, so
  // two queries and one live query): still one open, one worker.
  expect(await calls(page)).toMatchObject({ opens: 1, query: 2, watch: 1, liveWatches: 1 });
  const ourWorkers = async () =>
    (await workerTargets(context)).filter((t) => t === `worker: sqlite-tabs ${name}`).length;
  expect(await ourWorkers()).toBe(1);
  expect(await page.evaluate(() => window.harness.lastDb.query('SELECT 2 AS two'))).toEqual([
    { two: 2 },
  ]);

  await render(page, null);
  await expect.poll(ourWorkers).toBe(0);
  await render(page, spec);
  expect((await settled(page, 'a')).rows).toEqual([{ one: 1 }]);
  expect(await calls(page)).toMatchObject({ opens: 2, liveWatches: 1 });
  expect(await ourWorkers()).toBe(1);
  await expectNothingUnhandled(page);
});

test('DatabaseProvider renders a failed open with renderError; retry opens again', async ({
  context,
}) => {
  const page = await openFixture(context, 'tab');
  await render(page, { name: '.not a valid name' });
  await expect(page.getByTestId('open-error')).toHaveText(/^BAD_REQUEST: /);

  const name = dbName();
  await render(page, { name, failOnOpen: true, probes: [{ id: 'a', sql: 'SELECT 1 AS one' }] });
  await expect(page.getByTestId('open-error')).toHaveText('Error: onOpen failed on purpose');
  await expect(page.getByTestId('probe-a')).toHaveCount(0);

  await render(page, { name, failOnOpen: false, probes: [{ id: 'a', sql: 'SELECT 1 AS one' }] });
  await page.evaluate(() => window.harness.retry());
  expect((await settled(page, 'a')).rows).toEqual([{ one: 1 }]);
  await expect(page.getByTestId('open-error')).toHaveCount(0);
  await expectNothingUnhandled(page);
});

test('useLeader follows a change of leader in both tabs', async ({ context }) => {
  const name = dbName();
  const tabs = [await openFixture(context, 'tab 0'), await openFixture(context, 'tab 1')];
  for (const tab of tabs) {
    await render(tab, { name, leader: true });
    await waitForDb(tab);
  }
  const roles = () =>
    Promise.all(tabs.map((t) => t.getByTestId('leader').getAttribute('data-leader')));
  await expect.poll(roles).toEqual(expect.arrayContaining(['true', 'false']));
  const leader = (await roles()).indexOf('true');
  const epoch = Number(await tabs[leader].getByTestId('leader').getAttribute('data-epoch'));

  await tabs[leader].evaluate(() => window.db.stepDown());
  await expect(tabs[1 - leader].getByTestId('leader')).toHaveAttribute('data-leader', 'true');
  await expect(tabs[leader].getByTestId('leader')).toHaveAttribute('data-leader', 'false');
  for (const tab of tabs) {
    await expect
      .poll(async () => Number(await tab.getByTestId('leader').getAttribute('data-epoch')))
      .toBeGreaterThan(epoch);
    await expectNothingUnhandled(tab);
  }
});

test("README's React example type-checks and works in two tabs", async ({ context }) => {
  // global-setup.js wrote it to tests/react/readme-example.gen.tsx and built it.
  const tests = fileURLToPath(new URL('..', import.meta.url));
  const tsc = ['node_modules/typescript/bin/tsc', '-p', 'react/tsconfig.json'];
  expect(() => execFileSync('node', tsc, { cwd: tests, encoding: 'utf8' })).not.toThrow();

  const open = async (label) => {
    const page = await context.newPage();
    forwardPageErrors(page, label);
    page.errors = [];
    page.on('pageerror', (err) => page.errors.push(String(err)));
    await page.goto('/fixtures/react/readme.html');
    await expect(page.getByRole('button', { name: 'Add' })).toBeVisible();
    return page;
  };
  const a = await open('tab A');
  await expect(a.getByText(/^SQLite runs in this tab \(epoch \d+\)$/)).toBeVisible();
  await a.getByRole('button', { name: 'Add' }).click();
  await expect(a.getByRole('listitem')).toHaveText(['item 1']);

  const b = await open('tab B');
  await expect(b.getByText(/^SQLite runs in another tab/)).toBeVisible();
  await expect(b.getByRole('listitem')).toHaveText(['item 1']);
  await b.getByRole('button', { name: 'Add' }).click();
  await expect(a.getByRole('listitem')).toHaveText(['item 1', 'item 2']);
  await expect(b.getByRole('listitem')).toHaveText(['item 1', 'item 2']);
  expect([...a.errors, ...b.errors]).toEqual([]);
});
