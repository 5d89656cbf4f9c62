// The JS API contract, call by call, through the demo page's `window.db`:
// bad input gives typed errors and the database goes on; transactions commit
// and roll back; queryRaw keeps duplicate columns; subscribe hears commits;
// close rejects later calls.
import { test, expect } from '@playwright/test';
import { forwardPageErrors, openDemo } from './helpers.js';

test.beforeEach(async ({ page }) => {
  forwardPageErrors(page);
  await openDemo(page);
});

/** Runs `body(db)` in the page; errors come back as `{ name, code, message }`. */
async function inPage(page, body, arg) {
  return page.evaluate(
    async ([src, arg]) => {
      const fn = new Function('db', 'arg', `return (${src})(db, arg);`);
      return fn(window.db, arg);
    },
    [body.toString(), arg],
  );
}

test('bad input is a typed error and the next request succeeds', async ({ page }) => {
  const results = await inPage(page, async (db) => {
    const attempt = async (label, call) => {
      try {
        const value = await call();
        return { label, ok: true, value: JSON.stringify(value) };
      } catch (e) {
        return { label, ok: false, name: e.name, code: e.code, message: e.message };
      }
    };
    await db.exec('CREATE TABLE IF NOT EXISTS bad (x TEXT UNIQUE NOT NULL)');
    await db.exec('DELETE FROM bad');
    const out = [];
    const next = () => db.query('SELECT 1 AS ok');
    out.push(await attempt('syntax', () => db.query('SELEC 1')));
    out.push(await attempt('next', next));
    await db.run('INSERT INTO bad VALUES (?)', ['dup']);
    out.push(await attempt('constraint', () => db.run('INSERT INTO bad VALUES (?)', ['dup'])));
    out.push(await attempt('next', next));
    out.push(await attempt('too few params', () => db.run('INSERT INTO bad VALUES (?)', [])));
    out.push(await attempt('too many params', () => db.run('INSERT INTO bad VALUES (?)', ['a', 'b'])));
    out.push(await attempt('next', next));
    out.push(await attempt('object param', () => db.run('INSERT INTO bad VALUES (?)', [{ a: 1 }])));
    out.push(await attempt('date param', () => db.run('INSERT INTO bad VALUES (?)', [new Date()])));
    out.push(await attempt('huge bigint', () => db.query('SELECT ?', [2n ** 70n])));
    out.push(await attempt('params not an array', () => db.query('SELECT ?', 5)));
    out.push(await attempt('sql not a string', () => db.query(42)));
    out.push(await attempt('BEGIN in exec', () => db.exec('BEGIN; INSERT INTO bad VALUES (1)')));
    out.push(await attempt('two statements in run', () => db.run("SELECT 1; SELECT 2")));
    out.push(await attempt('next', next));
    const big = 'x'.repeat(10 * 1024 * 1024);
    out.push(await attempt('10 MB string', () => db.run('INSERT INTO bad VALUES (?)', [big])));
    out.push(await attempt('10 MB back', async () => {
      const [{ n }] = await db.query('SELECT length(x) AS n FROM bad WHERE length(x) > 1000');
      return n;
    }));
    out.push(await attempt('next', next));
    out.push(await attempt('count', async () => (await db.query('SELECT count(*) AS n FROM bad'))[0].n));
    // Bad arguments reject the returned promise; no method throws at the call.
    const calls = {
      exec: () => db.exec(null),
      query: () => db.query(42),
      run: () => db.run('SELECT ?', 5),
      batch: () => db.batch('INSERT INTO bad VALUES (1)'),
      tables: () => db.tables({}),
      transaction: () => db.transaction(42),
    };
    for (const [name, call] of Object.entries(calls)) {
      let returned;
      try {
        returned = call();
      } catch (e) {
        out.push({ label: `${name}: a promise`, ok: false, threw: e.message });
        continue;
      }
      out.push({ label: `${name}: a promise`, ok: returned instanceof Promise });
      out.push(await attempt(`${name}: rejects`, () => returned));
    }
    out.push(await attempt('next', next));
    return out;
  });
  const byLabel = (label) => results.filter((r) => r.label === label);
  const error = (label, code) => {
    const [r] = byLabel(label);
    expect(r, label).toMatchObject({ ok: false, name: 'SqliteTabsError', code });
    expect(r.message.length, `${label} has a message`).toBeGreaterThan(5);
    return r;
  };
  error('syntax', 'SQLITE_ERROR');
  expect(error('constraint', 'SQLITE_CONSTRAINT_UNIQUE').message).toContain('UNIQUE');
  expect(error('too few params', 'BAD_REQUEST').message).toContain('1 parameter');
  error('too many params', 'BAD_REQUEST');
  expect(error('object param', 'BAD_REQUEST').message).toMatch(/parameter 1 .*Object/);
  expect(error('date param', 'BAD_REQUEST').message).toContain('Date');
  expect(error('huge bigint', 'BAD_REQUEST').message).toContain('bigint');
  error('params not an array', 'BAD_REQUEST');
  error('sql not a string', 'BAD_REQUEST');
  error('BEGIN in exec', 'BAD_REQUEST');
  error('two statements in run', 'BAD_REQUEST');
  for (const r of byLabel('next')) expect(r).toEqual({ label: 'next', ok: true, value: '[{"ok":1}]' });
  expect(byLabel('10 MB string')[0].ok).toBe(true);
  expect(byLabel('10 MB back')[0]).toMatchObject({ ok: true, value: String(10 * 1024 * 1024) });
  // 'dup' and the big string: nothing from the failed calls.
  expect(byLabel('count')[0]).toMatchObject({ ok: true, value: '2' });
  for (const name of ['exec', 'query', 'run', 'batch', 'tables', 'transaction']) {
    expect(byLabel(`${name}: a promise`)[0], name).toEqual({ label: `${name}: a promise`, ok: true });
    error(`${name}: rejects`, 'BAD_REQUEST');
  }
});

test('transaction commits, rolls back on throw, and its handle dies with it', async ({ page }) => {
  const r = await inPage(page, async (db) => {
    await db.exec('CREATE TABLE IF NOT EXISTS acct (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)');
    await db.exec('DELETE FROM acct');
    await db.batch([
      { sql: 'INSERT INTO acct VALUES (1, 100)' },
      { sql: 'INSERT INTO acct VALUES (2, 0)' },
    ]);
    const moved = await db.transaction(async (tx) => {
      const [{ balance }] = await tx.query('SELECT balance FROM acct WHERE id = 1');
      await tx.run('UPDATE acct SET balance = balance - ? WHERE id = 1', [balance / 2]);
      await tx.run('UPDATE acct SET balance = balance + ? WHERE id = 2', [balance / 2]);
      return balance / 2;
    });
    let kept;
    let thrown;
    try {
      await db.transaction(async (tx) => {
        kept = tx;
        await tx.run('UPDATE acct SET balance = 0');
        throw new Error('changed my mind');
      });
    } catch (e) {
      thrown = e.message;
    }
    let late;
    try {
      await kept.query('SELECT 1');
    } catch (e) {
      late = e.code;
    }
    // A failing statement inside does not end the transaction by itself.
    const inner = await db.transaction(async (tx) => {
      const err = await tx.query('SELECT nope FROM acct').catch((e) => e.code);
      await tx.run('UPDATE acct SET balance = balance + 1 WHERE id = 2');
      return err;
    });
    const rows = await db.query('SELECT id, balance FROM acct ORDER BY id');
    return { moved, thrown, late, inner, rows };
  });
  expect(r.moved).toBe(50);
  expect(r.thrown).toBe('changed my mind');
  expect(r.late).toBe('BAD_REQUEST');
  expect(r.inner).toBe('SQLITE_ERROR');
  expect(r.rows).toEqual([
    { id: 1, balance: 50 },
    { id: 2, balance: 51 },
  ]);
});

test('other requests wait for an open transaction', async ({ page }) => {
  const order = await inPage(page, async (db) => {
    await db.exec('CREATE TABLE IF NOT EXISTS seqlog (step TEXT)');
    await db.exec('DELETE FROM seqlog');
    const order = [];
    let outside;
    await db.transaction(async (tx) => {
      await tx.run("INSERT INTO seqlog VALUES ('tx 1')");
      outside = db.run("INSERT INTO seqlog VALUES ('outside')").then(() => order.push('outside done'));
      await new Promise((r) => setTimeout(r, 50));
      await tx.run("INSERT INTO seqlog VALUES ('tx 2')");
      order.push('tx body done');
    });
    await outside;
    const rows = await db.query('SELECT step FROM seqlog ORDER BY rowid');
    return { order, rows: rows.map((r) => r.step) };
  });
  expect(order.order).toEqual(['tx body done', 'outside done']);
  expect(order.rows).toEqual(['tx 1', 'tx 2', 'outside']);
});

test('queryRaw keeps column order and duplicate names', async ({ page }) => {
  const r = await inPage(page, async (db) => ({
    raw: await db.queryRaw('SELECT 1 AS a, 2 AS b, 3 AS a, ? AS p', ['x']),
    objects: await db.query('SELECT 1 AS a, 2 AS b, 3 AS a'),
    empty: await db.queryRaw('SELECT 1 AS a WHERE 0'),
  }));
  expect(r.raw).toEqual({ columns: ['a', 'b', 'a', 'p'], rows: [[1, 2, 3, 'x']] });
  expect(r.objects).toEqual([{ a: 3, b: 2 }]);
  expect(r.empty).toEqual({ columns: ['a'], rows: [] });
});

test('subscribe hears commits to its tables, with increasing sequence numbers', async ({ page }) => {
  const r = await inPage(page, async (db) => {
    await db.exec('CREATE TABLE IF NOT EXISTS s1 (x); CREATE TABLE IF NOT EXISTS s2 (x)');
    const heard = [];
    const all = [];
    const stop = db.subscribe(['s1'], (ev) => heard.push(ev));
    const stopAll = db.subscribe(null, (ev) => all.push(ev));
    await db.run('INSERT INTO s1 VALUES (1)');
    await db.run('INSERT INTO s2 VALUES (1)');
    await db.batch([{ sql: 'INSERT INTO s1 VALUES (2)' }, { sql: 'INSERT INTO s2 VALUES (2)' }]);
    await db.query('SELECT * FROM s1');
    stop();
    await db.run('INSERT INTO s1 VALUES (3)');
    stopAll();
    return { heard, all };
  });
  expect(r.heard.map((e) => e.tables)).toEqual([['s1'], ['s1', 's2']]);
  expect(r.all.map((e) => e.tables)).toEqual([['s1'], ['s2'], ['s1', 's2'], ['s1']]);
  const seqs = r.all.map((e) => e.seq);
  expect(seqs).toEqual(seqs.map((_, i) => seqs[0] + i));
});

test('a live query on a view follows the view after a rolled-back redefinition', async ({ page }) => {
  const r = await inPage(page, async (db) => {
    await db.exec(
      'DROP VIEW IF EXISTS rv; DROP TABLE IF EXISTS ra; DROP TABLE IF EXISTS rb;' +
        'CREATE TABLE ra (x); CREATE TABLE rb (y); CREATE VIEW rv AS SELECT x FROM ra',
    );
    const sql = 'SELECT x FROM rv ORDER BY x';
    // Redefined and read inside a transaction that then rolls back: the view
    // reads ra again, whatever was learnt about it meanwhile.
    const undone = await db
      .transaction(async (tx) => {
        await tx.exec('DROP VIEW rv; CREATE VIEW rv AS SELECT y AS x FROM rb');
        await tx.query(sql);
        throw new Error('undo');
      })
      .catch((e) => e.message);
    const tables = await db.tables(sql);
    const seen = [];
    let first;
    let updated;
    const started = new Promise((resolve) => (first = resolve));
    const changed = new Promise((resolve) => (updated = resolve));
    const stop = db.watch(sql, [], (rows) => {
      seen.push(rows.map((row) => row.x));
      (seen.length === 1 ? first : updated)(true);
    });
    await started;
    await db.run('INSERT INTO ra VALUES (1)');
    const live = await Promise.race([changed, new Promise((resolve) => setTimeout(() => resolve(false), 5000))]);
    stop();
    return { undone, tables, live, seen };
  });
  expect(r.undone).toBe('undo');
  expect(r.tables).toEqual(['ra', 'rv']);
  expect(r.live).toBe(true);
  expect(r.seen).toEqual([[], [1]]);
});

test('close rejects pending and later calls with CLOSED', async ({ page }) => {
  const r = await inPage(page, async (db) => {
    await db.close();
    await db.close(); // twice is fine
    return db.query('SELECT 1').then(
      () => 'resolved',
      (e) => ({ name: e.name, code: e.code }),
    );
  });
  expect(r).toEqual({ name: 'SqliteTabsError', code: 'CLOSED' });
});
