// Values through the packed batch and row paths (crates/client/js/marshal.js):
// every type, text the packing must split exactly (non-ASCII, astral characters,
// lone surrogates, empty strings), repeated and alternating SQL, rowids beyond
// 2^53, the typed errors a bad statement or value gets, by index, and arguments
// read when a call is made.
import { test, expect } from '@playwright/test';

test.beforeEach(async ({ page }) => {
  page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
  // A blank page of the origin: the API is imported as a user's app would.
  await page.route('**/values-blank.html', (route) =>
    route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>values</title>' }),
  );
  await page.goto('/values-blank.html');
  await page.evaluate(async () => {
    const { open } = await import('/dist/index.js');
    window.db = await open(`values-${Math.random().toString(36).slice(2)}.db`);
  });
});

test('a batch binds every value type and rows come back exactly', async ({ page }) => {
  const r = await page.evaluate(async () => {
    const db = window.db;
    await db.exec('CREATE TABLE v (id INTEGER PRIMARY KEY, x ANY) STRICT');
    const texts = ['', 'a', 'héllo ✓', '😀 astral', '\uD800 lone high', 'lone low \uDC00', 'end high \uD83D', '\uDE00 start low', 'x'.repeat(5000), '\0nul'];
    const values = [null, undefined, 0, -1, 1.5, -0.25, 2 ** 53 - 1, 2 ** 60, 2n ** 62n, -(2n ** 63n), true, false, new Uint8Array([0, 1, 255]), new Uint8Array(0), new Uint8Array([7, 8]).buffer, ...texts];
    const stmts = values.map((x) => ({ sql: 'INSERT INTO v (x) VALUES (?)', params: [x] }));
    const results = await db.batch(stmts);
    const rows = await db.query('SELECT id, x, typeof(x) AS t FROM v ORDER BY id');
    const raw = await db.queryRaw('SELECT x, x AS x FROM v ORDER BY id');
    const show = (v) =>
      typeof v === 'bigint' ? `bigint:${v}` : v instanceof Uint8Array ? `blob:${[...v]}` : v;
    return {
      results: results.map((r) => [r.changes, r.lastInsertRowid]),
      rows: rows.map((row) => [row.id, show(row.x), row.t]),
      rawColumns: raw.columns,
      raw: raw.rows.map((row) => row.map(show)),
      texts,
    };
  });
  expect(r.results).toEqual(r.rows.map((row) => [1, row[0]]));
  const got = r.rows.map(([, x, t]) => [x, t]);
  expect(got.slice(0, 15)).toEqual([
    [null, 'null'],
    [null, 'null'],
    [0, 'integer'],
    [-1, 'integer'],
    [1.5, 'real'],
    [-0.25, 'real'],
    [2 ** 53 - 1, 'integer'],
    [2 ** 60, 'real'], // beyond 2^53 a number is not an exact integer: bound as REAL
    [`bigint:${2n ** 62n}`, 'integer'],
    [`bigint:${-(2n ** 63n)}`, 'integer'],
    [1, 'integer'],
    [0, 'integer'],
    ['blob:0,1,255', 'blob'],
    ['blob:', 'blob'],
    ['blob:7,8', 'blob'],
  ]);
  // Lone surrogates cannot be stored as UTF-8: they become U+FFFD, as in TextEncoder.
  const expected = r.texts.map((s) => new TextDecoder().decode(new TextEncoder().encode(s)));
  expect(got.slice(15)).toEqual(expected.map((s) => [s, 'text']));
  expect(r.rawColumns).toEqual(['x', 'x']);
  // queryRaw: the same values as query(), duplicate column kept.
  expect(r.raw).toEqual(r.rows.map(([, x]) => [x, x]));
});

test('a lone high surrogate followed by a lone low one stays two values', async ({ page }) => {
  // Packed text is joined; this pair would merge into one character if split wrong.
  const r = await page.evaluate(async () => {
    const db = window.db;
    await db.exec('CREATE TABLE s (x TEXT)');
    await db.batch([
      { sql: 'INSERT INTO s VALUES (?)', params: ['a\uD83D'] },
      { sql: 'INSERT INTO s VALUES (?)', params: ['\uDE00b'] },
    ]);
    return (await db.query('SELECT x FROM s ORDER BY rowid')).map((row) => [...row.x].map((c) => c.codePointAt(0)));
  });
  expect(r).toEqual([
    [0x61, 0xfffd],
    [0xfffd, 0x62],
  ]);
});

test('alternating and repeated SQL in one batch keeps each statement its own', async ({ page }) => {
  const r = await page.evaluate(async () => {
    const db = window.db;
    await db.exec('CREATE TABLE a (x INTEGER); CREATE TABLE b (y TEXT)');
    const stmts = [];
    for (let i = 0; i < 300; i++) {
      stmts.push(
        i % 3 === 2
          ? { sql: 'INSERT INTO b (y) VALUES (?)', params: [`b${i}`] }
          : { sql: 'INSERT INTO a (x) VALUES (?)', params: [i] },
      );
    }
    stmts.push({ sql: 'UPDATE a SET x = x + 1000 WHERE x < 10' });
    const results = await db.batch(stmts);
    const a = await db.query('SELECT count(*) AS n, sum(x) AS s FROM a');
    const b = await db.query('SELECT count(*) AS n, min(y) AS y FROM b');
    // Rowids count up per table: a run of results with one step per table.
    return { last: results.at(-1), a: a[0], b: b[0], first: results.slice(0, 4) };
  });
  expect(r.a.n).toBe(200);
  expect(r.b).toEqual({ n: 100, y: 'b101' });
  expect(r.last.changes).toBe(7); // x in 0, 1, 3, 4, 6, 7, 9
  expect(r.first).toEqual([
    { changes: 1, lastInsertRowid: 1 },
    { changes: 1, lastInsertRowid: 2 },
    { changes: 1, lastInsertRowid: 1 },
    { changes: 1, lastInsertRowid: 3 },
  ]);
});

test('rowids beyond 2^53 come back as bigint from batch and run', async ({ page }) => {
  const r = await page.evaluate(async () => {
    const db = window.db;
    await db.exec('CREATE TABLE big (id INTEGER PRIMARY KEY, x INTEGER)');
    const results = await db.batch([
      { sql: 'INSERT INTO big VALUES (?, 1)', params: [2n ** 60n] },
      { sql: 'INSERT INTO big VALUES (?, 2)', params: [5] },
    ]);
    const run = await db.run('INSERT INTO big VALUES (?, 3)', [2n ** 61n]);
    const show = (v) => `${typeof v}:${v}`;
    return [...results.map((x) => show(x.lastInsertRowid)), show(run.lastInsertRowid)];
  });
  expect(r).toEqual([`bigint:${2n ** 60n}`, 'number:5', `bigint:${2n ** 61n}`]);
});

test('a bad statement or value in a batch is a typed error naming it, and nothing is written', async ({ page }) => {
  const r = await page.evaluate(async () => {
    const db = window.db;
    await db.exec('CREATE TABLE e (x)');
    const ok = { sql: 'INSERT INTO e VALUES (?)', params: [1] };
    const attempt = async (stmts) => {
      try {
        await db.batch(stmts);
        return 'ok';
      } catch (e) {
        return `${e.name} ${e.code} ${e.message}`;
      }
    };
    return {
      notArray: await attempt('INSERT'),
      noSql: await attempt([ok, { params: [1] }]),
      nullStmt: await attempt([ok, ok, null]),
      paramsNotArray: await attempt([ok, { sql: ok.sql, params: 7 }]),
      date: await attempt([ok, ok, { sql: ok.sql, params: [new Date()] }]),
      object: await attempt([{ sql: ok.sql, params: [{ a: 1 }] }]),
      hugeBigint: await attempt([ok, { sql: 'SELECT ?, ?', params: [1, 2n ** 64n] }]),
      sqlError: await attempt([ok, { sql: 'INSERT INTO nope VALUES (1)' }]),
      empty: await attempt([]),
      count: (await db.query('SELECT count(*) AS n FROM e'))[0].n,
    };
  });
  expect(r.notArray).toMatch(/^SqliteTabsError BAD_REQUEST batch\(\) takes an array/);
  expect(r.noSql).toBe('SqliteTabsError BAD_REQUEST batch statement 2 has no sql string');
  expect(r.nullStmt).toBe('SqliteTabsError BAD_REQUEST batch statement 3 has no sql string');
  expect(r.paramsNotArray).toBe('SqliteTabsError BAD_REQUEST batch statement 2: params must be an array of values');
  expect(r.date).toMatch(/^SqliteTabsError BAD_REQUEST batch statement 3: parameter 1 has unsupported type Date/);
  expect(r.object).toMatch(/^SqliteTabsError BAD_REQUEST batch statement 1: parameter 1 has unsupported type Object/);
  expect(r.hugeBigint).toMatch(/^SqliteTabsError BAD_REQUEST batch statement 2: parameter 2 is a bigint outside/);
  expect(r.sqlError).toMatch(/^SqliteTabsError SQLITE_ERROR batch statement 2: no such table: nope/);
  expect(r.empty).toBe('ok');
  expect(r.count).toBe(0);
});

test('arguments are read when the call is made: changing them afterwards changes nothing', async ({ page }) => {
  const r = await page.evaluate(async () => {
    const db = window.db;
    await db.exec('CREATE TABLE later (id INTEGER PRIMARY KEY, x TEXT)');
    const params = ['first'];
    const statements = [{ sql: 'INSERT INTO later (x) VALUES (?)', params: ['batched'] }];
    const select = ['first'];
    // Not awaited before the arguments change, as a caller reusing a buffer would.
    const run = db.run('INSERT INTO later (x) VALUES (?)', params);
    const batch = db.batch(statements);
    const rows = db.query('SELECT x FROM later WHERE x = ?', select);
    params[0] = 'changed';
    statements[0].params[0] = 'changed';
    statements.push({ sql: 'INSERT INTO later (x) VALUES (?)', params: ['added'] });
    select[0] = 'changed';
    const results = await Promise.all([run, batch, rows]);
    const stored = await db.query('SELECT x FROM later ORDER BY id');
    return { batched: results[1].length, selected: results[2], stored: stored.map((s) => s.x) };
  });
  expect(r.stored).toEqual(['first', 'batched']);
  expect(r.batched).toBe(1);
  expect(r.selected).toEqual([{ x: 'first' }]);
});
