// Peer engine: @journeyapps/wa-sqlite (PowerSync's wa-sqlite fork) with the
// AccessHandlePoolVFS example VFS on the synchronous build dist/wa-sqlite.mjs (the
// VFS has only synchronous methods, so it needs no Asyncify/JSPI build), in a
// dedicated module worker (new Worker(url, { type: 'module' })).
//
// What it measures (this worker's performance.now(); message protocol and workload
// constants in worker-common.js):
//   open  cold open -> first query (W7): the engine is loaded eagerly from the top of
//         this script (dynamic imports, wasm instantiation, VFS creation +
//         registration); the request then opens a fresh database, applies the
//         pragmas and runs `SELECT 1`. Reports the breakdown: script start (ms since
//         this worker's time origin), import, wasm init, VFS install, open + pragmas,
//         first query.
//   w1    1,000 single-row INSERTs, each its own autocommit transaction (one prepared
//         statement, bind/step/reset), total ms.
//   w2    100,000 INSERTs ('row ' + i, i) in one BEGIN ... COMMIT, ms.
//   w3    5,000 primary-key lookups (ids 1 + (i * 7919) % 10000) on a 10,000-row
//         table inserted beforehand (untimed), step + read both columns, ms.
//   durability-write / durability-read   used by runner.js checkJournal().
//   w0-open   opens the database that W0's `{ sql }` messages query (page-timed round
//         trips; `exec` with a row callback, rows as objects, as sqlite-tabs' query()).
//   release   closes what is open and releases the pool's access handles.
// Each workload opens a fresh database (unique name), applies the same pragma set as
// every engine and reads the effective values back; the files are deleted
// afterwards (untimed).
//
// API used: wa-sqlite's documented API (sqlite3.statements(..., { unscoped: true })
// for a reusable prepared statement, bind_collection, step, reset, column_text,
// column_int). Its step/reset/exec return Promises even on the synchronous build,
// so every call is awaited: that is how an application drives this library.
import {
  CREATE_T, INSERT_T, SELECT_T, SIDE_FILES, W1_ROWS, W2_ROWS, W3_LOOKUPS, W3_TABLE_ROWS,
  EFFECTIVE_PRAGMA_QUERIES, normalizeEffective, pragmaStatements, retryWhileLocked, serve,
  uniqueName, w3Key,
} from './worker-common.js';

// Static imports above are evaluated before this line (worker-common.js is tiny);
// performance.now() counts from this worker's creation.
const SCRIPT_START = performance.now();
const VFS_NAME = 'peers-wa-sqlite'; // also the OPFS directory of the pool
const PKG = './node_modules/@journeyapps/wa-sqlite';
const times = { scriptStart: SCRIPT_START };

const ready = (async () => {
  const [{ default: SQLiteESMFactory }, SQLite, { AccessHandlePoolVFS }] = await Promise.all([
    import(`${PKG}/dist/wa-sqlite.mjs`),
    import(`${PKG}/src/sqlite-api.js`),
    import(`${PKG}/src/examples/AccessHandlePoolVFS.js`),
  ]);
  times.imported = performance.now();
  const module = await SQLiteESMFactory();
  const sqlite3 = SQLite.Factory(module);
  times.wasmReady = performance.now();
  // Another worker may still hold the pool's handles (being terminated): retry.
  // A failed attempt may have opened some handles: release them before retrying.
  const { value: vfs, retries } = await retryWhileLocked(async () => {
    const v = new AccessHandlePoolVFS(VFS_NAME, module);
    try {
      await v.isReady();
    } catch (e) {
      await v.close().catch(() => {});
      throw e;
    }
    return v;
  });
  const rc = sqlite3.vfs_register(vfs, false);
  if (rc !== SQLite.SQLITE_OK) throw new Error(`vfs_register: ${rc}`);
  times.vfsReady = performance.now();
  return { SQLite, sqlite3, vfs, vfsRetries: retries, libVersion: sqlite3.libversion() };
})();
ready.catch(() => {}); // reported by the first request

const keptOpen = [];

/** The database of W0's round trips (`w0-open`), if open. */
let w0 = null;

async function openDb(eng, name, params) {
  const { sqlite3, SQLite } = eng;
  const db = await sqlite3.open_v2(name, SQLite.SQLITE_OPEN_CREATE | SQLite.SQLITE_OPEN_READWRITE, VFS_NAME);
  try {
    for (const sql of pragmaStatements(params)) await sqlite3.exec(db, sql);
  } catch (e) {
    await sqlite3.close(db);
    throw e;
  }
  return db;
}

/** First column of the first row. */
async function value(eng, db, sql) {
  let v;
  await eng.sqlite3.exec(db, sql, (row) => {
    if (v === undefined) v = row[0];
  });
  return v;
}

async function prepare(eng, db, sql) {
  for await (const stmt of eng.sqlite3.statements(db, sql, { unscoped: true })) return stmt;
  throw new Error(`no statement in ${sql}`);
}

async function effectivePragmas(eng, db) {
  const raw = {};
  for (const [k, sql] of Object.entries(EFFECTIVE_PRAGMA_QUERIES)) raw[k] = await value(eng, db, sql);
  return normalizeEffective(raw);
}

function exists(eng, name) {
  const out = new DataView(new ArrayBuffer(4));
  eng.vfs.jAccess(name, 0, out);
  return out.getInt32(0, true) !== 0;
}

function filesOf(eng, name) {
  return SIDE_FILES.map((s) => name + s).filter((n) => exists(eng, n));
}

function unlinkAll(eng, name) {
  for (const suffix of SIDE_FILES) eng.vfs.jDelete(name + suffix, 0);
}

async function fresh(tag, params) {
  const eng = await ready;
  const free = eng.vfs.getCapacity() - eng.vfs.getSize();
  if (free < 4) await eng.vfs.addCapacity(4 - free);
  const name = uniqueName(tag);
  const db = await openDb(eng, name, params);
  return { eng, name, db, effective: await effectivePragmas(eng, db) };
}

async function finish({ eng, name, db }) {
  await eng.sqlite3.close(db);
  unlinkAll(eng, name);
}

async function count(eng, db) {
  return Number(await value(eng, db, 'SELECT count(*) FROM t'));
}

serve({
  async open(params, ctx) {
    const eng = await ready;
    const t0 = performance.now();
    const name = uniqueName('open');
    const db = await openDb(eng, name, params);
    const tOpened = performance.now();
    const one = await value(eng, db, 'SELECT 1');
    const tFirst = performance.now();
    ctx.progress('first-query');
    if (Number(one) !== 1) throw new Error(`SELECT 1 returned ${one}`);
    const effective = await effectivePragmas(eng, db);
    await finish({ eng, name, db });
    return {
      ms: tFirst,
      timeOrigin: performance.timeOrigin,
      breakdown: {
        scriptStartMs: times.scriptStart,
        importMs: times.imported - times.scriptStart,
        wasmInitMs: times.wasmReady - times.imported,
        vfsInstallMs: times.vfsReady - times.wasmReady,
        openAndPragmasMs: tOpened - Math.max(t0, times.vfsReady),
        firstQueryMs: tFirst - tOpened,
        workerTotalMs: tFirst,
      },
      vfsRetries: eng.vfsRetries,
      libVersion: eng.libVersion,
      effectivePragmas: effective,
    };
  },

  async w1(params) {
    const f = await fresh('w1', params);
    const { eng, db } = f;
    const { sqlite3 } = eng;
    await sqlite3.exec(db, CREATE_T);
    const stmt = await prepare(eng, db, INSERT_T);
    const t0 = performance.now();
    for (let i = 0; i < W1_ROWS; i++) {
      sqlite3.bind_collection(stmt, [`row ${i}`, i]);
      await sqlite3.step(stmt);
      await sqlite3.reset(stmt);
    }
    const ms = performance.now() - t0;
    await sqlite3.finalize(stmt);
    const rows = await count(eng, db);
    await finish(f);
    if (rows !== W1_ROWS) throw new Error(`w1: ${rows} rows`);
    return { ms, rows, effectivePragmas: f.effective, libVersion: eng.libVersion };
  },

  async w2(params) {
    const f = await fresh('w2', params);
    const { eng, db } = f;
    const { sqlite3 } = eng;
    await sqlite3.exec(db, CREATE_T);
    const stmt = await prepare(eng, db, INSERT_T);
    const t0 = performance.now();
    await sqlite3.exec(db, 'BEGIN');
    for (let i = 0; i < W2_ROWS; i++) {
      sqlite3.bind_collection(stmt, [`row ${i}`, i]);
      await sqlite3.step(stmt);
      await sqlite3.reset(stmt);
    }
    await sqlite3.exec(db, 'COMMIT');
    const ms = performance.now() - t0;
    await sqlite3.finalize(stmt);
    const rows = await count(eng, db);
    await finish(f);
    if (rows !== W2_ROWS) throw new Error(`w2: ${rows} rows`);
    return { ms, rows, effectivePragmas: f.effective, libVersion: eng.libVersion };
  },

  async w3(params) {
    const f = await fresh('w3', params);
    const { eng, db } = f;
    const { sqlite3, SQLite } = eng;
    await sqlite3.exec(db, CREATE_T);
    const ins = await prepare(eng, db, INSERT_T);
    await sqlite3.exec(db, 'BEGIN');
    for (let i = 0; i < W3_TABLE_ROWS; i++) {
      sqlite3.bind_collection(ins, [`row ${i}`, i]);
      await sqlite3.step(ins);
      await sqlite3.reset(ins);
    }
    await sqlite3.exec(db, 'COMMIT');
    await sqlite3.finalize(ins);
    const sel = await prepare(eng, db, SELECT_T);
    let found = 0;
    let sum = 0;
    let chars = 0;
    const t0 = performance.now();
    for (let i = 0; i < W3_LOOKUPS; i++) {
      sqlite3.bind_int(sel, 1, w3Key(i));
      if ((await sqlite3.step(sel)) === SQLite.SQLITE_ROW) {
        chars += sqlite3.column_text(sel, 0).length;
        sum += sqlite3.column_int(sel, 1);
        found++;
      }
      await sqlite3.reset(sel);
    }
    const ms = performance.now() - t0;
    await sqlite3.finalize(sel);
    await finish(f);
    let expected = 0;
    for (let i = 0; i < W3_LOOKUPS; i++) expected += w3Key(i) - 1;
    if (found !== W3_LOOKUPS || sum !== expected || chars === 0) throw new Error(`w3: found ${found}, sum ${sum}`);
    return { ms, lookups: found, effectivePragmas: f.effective, libVersion: eng.libVersion };
  },

  async 'durability-write'(params) {
    const eng = await ready;
    const { sqlite3 } = eng;
    const name = params.name;
    if (typeof name !== 'string' || !name.startsWith('/')) throw new Error('durability-write needs an absolute name');
    const free = eng.vfs.getCapacity() - eng.vfs.getSize();
    if (free < 4) await eng.vfs.addCapacity(4 - free);
    const db = await openDb(eng, name, params);
    const effective = await effectivePragmas(eng, db);
    await sqlite3.exec(db, CREATE_T);
    const stmt = await prepare(eng, db, INSERT_T);
    const insert = async (i) => {
      sqlite3.bind_collection(stmt, [`row ${i}`, i]);
      await sqlite3.step(stmt);
      await sqlite3.reset(stmt);
    };
    for (let i = 0; i < 20; i++) await insert(i); // autocommit
    await sqlite3.exec(db, 'BEGIN');
    for (let i = 20; i < 1020; i++) await insert(i);
    await sqlite3.exec(db, 'COMMIT');
    await sqlite3.finalize(stmt);
    const filesOpen = filesOf(eng, name);
    let filesAfterClose = null;
    if (params.close) {
      await sqlite3.close(db);
      filesAfterClose = filesOf(eng, name);
    } else {
      if (params.uncommitted) {
        // A big transaction left open: with a 16-page cache it spills into the
        // database file (rollback journals) or the WAL before the worker is killed,
        // so the reader has to roll it back / ignore it.
        await sqlite3.exec(db, 'PRAGMA cache_size=16');
        await sqlite3.exec(db, 'BEGIN');
        const big = await prepare(eng, db, INSERT_T);
        for (let i = 0; i < 5000; i++) {
          sqlite3.bind_collection(big, [`uncommitted ${i} ${'x'.repeat(200)}`, -1]);
          await sqlite3.step(big);
          await sqlite3.reset(big);
        }
        await sqlite3.finalize(big);
      }
      keptOpen.push(db); // the page terminates this worker: a crash as far as SQLite knows
    }
    const filesAtEnd = filesOf(eng, name);
    return { rows: 1020, effectivePragmas: effective, filesOpen, filesAfterClose, filesAtEnd };
  },

  async 'durability-read'(params) {
    const eng = await ready;
    const name = params.name;
    const filesBefore = filesOf(eng, name);
    const db = await openDb(eng, name, params);
    try {
      const effective = await effectivePragmas(eng, db);
      const rows = await count(eng, db);
      const sum = Number(await value(eng, db, 'SELECT sum(b) FROM t'));
      const integrity = String(await value(eng, db, 'PRAGMA integrity_check'));
      return { rows, sum, integrity, effectivePragmas: effective, filesBefore, vfsRetries: eng.vfsRetries };
    } finally {
      await eng.sqlite3.close(db);
      unlinkAll(eng, name);
    }
  },

  // W0: the page times `{ sql }` round trips (worker-common.js) on this database.
  async 'w0-open'(params) {
    if (w0) await finish(w0);
    w0 = await fresh('w0', params);
    return { effectivePragmas: w0.effective, libVersion: w0.eng.libVersion };
  },
  async query(sql) {
    if (!w0) throw new Error('no database: send w0-open first');
    const rows = [];
    await w0.eng.sqlite3.exec(w0.db, sql, (row, columns) => {
      const o = {};
      for (let i = 0; i < columns.length; i++) o[columns[i]] = row[i];
      rows.push(o);
    });
    return rows;
  },

  async release() {
    const eng = await ready;
    if (w0) await finish(w0);
    w0 = null;
    for (const db of keptOpen.splice(0)) await eng.sqlite3.close(db);
    await eng.vfs.close();
    return { released: true };
  },
});
