// Persistence, the demo UI and typed errors, through the demo page's `window.db`.
import { test, expect, chromium } from '@playwright/test';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { baseURL, launchOptions } from '../chromium.js';
import { forwardPageErrors, openDemo, uniqueMarker, waitForDb } from './helpers.js';

// One after another (workers: 1 in the config): every test opens demo.db of the same
// origin. Each test has its own browser context (fresh OPFS) and writes rows with its
// own marker, so none depends on another: a failure does not skip the tests after it.
test.describe.configure({ mode: 'default' });

test.beforeEach(async ({ page }) => {
  forwardPageErrors(page);
});

test('rows keep their exact values across a reload', async ({ page }) => {
  const marker = uniqueMarker('reload');
  await openDemo(page);

  const written = await page.evaluate(async (marker) => {
    const db = window.db;
    await db.exec(`CREATE TABLE IF NOT EXISTS e2e_values (
      id INTEGER PRIMARY KEY, marker TEXT NOT NULL, n INTEGER, r REAL, t TEXT, b BLOB)`);
    const insert = 'INSERT INTO e2e_values (marker, n, r, t, b) VALUES (?, ?, ?, ?, ?)';
    const first = await db.run(insert, [marker, 1, 1.5, 'one', new Uint8Array([0, 1, 2, 255])]);
    const batch = await db.batch([
      { sql: insert, params: [marker, 9007199254740993n, null, 'big', null] },
      { sql: insert, params: [marker, -42, -0.25, 'héllo ✓ "quoted"', new Uint8Array(0)] },
      { sql: insert, params: [marker, true, 0, '', new Uint8Array([42])] },
    ]);
    const summary = (r) => ({ changes: r.changes, rowid: typeof r.lastInsertRowid });
    return { first: summary(first), batch: batch.map(summary) };
  }, marker);
  expect(written.first).toEqual({ changes: 1, rowid: 'number' });
  expect(written.batch).toEqual(Array(3).fill({ changes: 1, rowid: 'number' }));

  await page.reload();
  await waitForDb(page);

  const rows = await page.evaluate(async (marker) => {
    const rows = await window.db.query(
      'SELECT n, r, t, b FROM e2e_values WHERE marker = ? ORDER BY id',
      [marker],
    );
    // bigint and Uint8Array do not cross page.evaluate intact: describe them here.
    const describe = (v) =>
      v === null
        ? { type: 'null' }
        : v instanceof Uint8Array
          ? { type: 'Uint8Array', value: Array.from(v) }
          : { type: typeof v, value: String(v) };
    return rows.map((row) =>
      Object.fromEntries(Object.entries(row).map(([key, v]) => [key, describe(v)])),
    );
  }, marker);

  const num = (value) => ({ type: 'number', value });
  const str = (value) => ({ type: 'string', value });
  const blob = (value) => ({ type: 'Uint8Array', value });
  expect(rows).toEqual([
    { n: num('1'), r: num('1.5'), t: str('one'), b: blob([0, 1, 2, 255]) },
    {
      n: { type: 'bigint', value: '9007199254740993' },
      r: { type: 'null' },
      t: str('big'),
      b: { type: 'null' },
    },
    { n: num('-42'), r: num('-0.25'), t: str('héllo ✓ "quoted"'), b: blob([]) },
    // Booleans are stored as 0/1.
    { n: num('1'), r: num('0'), t: str(''), b: blob([42]) },
  ]);
});

test('rows survive a browser restart', async () => {
  const tmpRoot = process.env.TMPDIR || os.tmpdir();
  await fs.mkdir(tmpRoot, { recursive: true });
  const userDataDir = await fs.mkdtemp(path.join(tmpRoot, 'sqlite-tabs-profile-'));
  const marker = uniqueMarker('restart');
  const launch = () =>
    chromium.launchPersistentContext(userDataDir, {
      ...launchOptions,
      headless: true,
      baseURL: baseURL(),
    });
  const demoPage = async (context, label) => {
    const page = context.pages()[0] ?? (await context.newPage());
    forwardPageErrors(page, label);
    await openDemo(page);
    return page;
  };

  try {
    const first = await launch();
    try {
      const page = await demoPage(first, 'first launch');
      await page.evaluate(async (marker) => {
        const db = window.db;
        await db.exec(
          'CREATE TABLE IF NOT EXISTS e2e_restart (id INTEGER PRIMARY KEY, marker TEXT NOT NULL, v TEXT)',
        );
        await db.run('INSERT INTO e2e_restart (marker, v) VALUES (?, ?)', [marker, 'alpha']);
        await db.batch([
          { sql: 'INSERT INTO e2e_restart (marker, v) VALUES (?, ?)', params: [marker, 'beta'] },
          { sql: 'INSERT INTO e2e_restart (marker, v) VALUES (?, ?)', params: [marker, 'gamma'] },
        ]);
      }, marker);
    } finally {
      await first.close();
    }

    const second = await launch();
    try {
      const page = await demoPage(second, 'second launch');
      const rows = await page.evaluate(
        (marker) =>
          window.db.query('SELECT v FROM e2e_restart WHERE marker = ? ORDER BY id', [marker]),
        marker,
      );
      expect(rows).toEqual([{ v: 'alpha' }, { v: 'beta' }, { v: 'gamma' }]);
    } finally {
      await second.close();
    }
  } finally {
    await fs.rm(userDataDir, { recursive: true, force: true });
  }
});

test('the demo adds and deletes an item', async ({ page }) => {
  await openDemo(page);
  await expect(page.getByTestId('status')).toHaveText(/^open/);

  const text = `buy milk ${uniqueMarker('ui')}`;
  const countInTable = () =>
    page.evaluate(
      (text) => window.db.query('SELECT count(*) AS n FROM items WHERE text = ?', [text]),
      text,
    );

  await page.getByTestId('new-item').fill(text);
  await page.getByTestId('add-item').click();
  const row = page.getByTestId('items').getByTestId('item').filter({ hasText: text });
  await expect(row).toHaveCount(1);
  await expect(page.getByTestId('new-item')).toHaveValue('');
  expect(await countInTable()).toEqual([{ n: 1 }]);

  await row.getByTestId('delete-item').click();
  await expect(row).toHaveCount(0);
  expect(await countInTable()).toEqual([{ n: 0 }]);
});

test('an SQL error rejects with a typed error and the database goes on', async ({ page }) => {
  await openDemo(page);
  const failure = await page.evaluate(async () => {
    try {
      await window.db.query('SELEC 1');
      return { rejected: false };
    } catch (err) {
      return {
        rejected: true,
        isError: err instanceof Error,
        name: err.name,
        code: err.code,
        message: err.message,
      };
    }
  });
  expect(failure).toMatchObject({
    rejected: true,
    isError: true,
    name: 'SqliteTabsError',
    code: 'SQLITE_ERROR',
  });
  expect(failure.message).toMatch(/syntax error/);

  const rows = await page.evaluate(() => window.db.query('SELECT 1 AS x'));
  expect(rows).toEqual([{ x: 1 }]);
});
