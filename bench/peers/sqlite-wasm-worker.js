// Peer engine: @sqlite.org/sqlite-wasm (the SQLite project's own build) with the
// "opfs-sahpool" VFS, in a dedicated module worker (new Worker(url, { type: 'module' })).
//
// What it measures (all with this worker's performance.now(), see worker-common.js
// for the message protocol and the workload constants):
//   open  cold open -> first query (W7): the engine is loaded eagerly from the top of
//         this script (dynamic import, wasm instantiation, VFS install); the request
//         then opens a fresh database, applies the pragmas and runs `SELECT 1`.
//         Reports the breakdown: script start (ms since this worker's time origin),
//         import, wasm init, VFS install, open + pragmas, first query.
//   w1    1,000 single-row INSERTs, each its own autocommit transaction (one prepared
//         statement, bind/step/reset), total ms.
//   w2    100,000 INSERTs ('row ' + i, i) in one BEGIN ... COMMIT, ms.
//   w3    5,000 primary-key lookups (ids 1 + (i * 7919) % 10000) on a 10,000-row
//         table inserted beforehand (untimed), step + read both columns, ms.
//   durability-write / durability-read   used by runner.js checkJournal(): write
//         rows, optionally leave the database open (the page then kills the worker),
//         and read them back from a new worker.
//   w0-open   opens the database that W0's `{ sql }` messages query (page-timed round
//         trips; `selectObjects`, rows as objects, as sqlite-tabs' query() returns).
//   release   closes what is open and releases the pool's access handles
//         (pauseVfs), so the next worker can take the pool at once.
// Each workload opens a fresh database (unique name), applies the same pragma set as
// every engine (worker-common.js pragmaStatements) and reads the effective values
// back; the database files are unlinked afterwards (untimed) so the pool never fills.
//
// API used: the oo1 API (DB/Stmt: bind, step, reset, getString, getInt), the level an
// application would use. The "opfs" and "opfs-wl" VFSes are disabled: they need
// SharedArrayBuffer (COOP/COEP), which the benchmark page has but a normal app
// does not, and their init would spawn an extra worker inside the cold-open time.
import {
  CREATE_T, INSERT_T, SELECT_T, SIDE_FILES, W1_ROWS, W2_ROWS, W3_LOOKUPS, W3_TABLE_ROWS,
  EFFECTIVE_PRAGMA_QUERIES, normalizeEffective, pragmaStatements, retryWhileLocked, serve,
  uniqueName, w3Key,
} from './worker-common.js';

// Static imports above are evaluated before this line (worker-common.js is tiny);
// performance.now() counts from this worker's creation.
const SCRIPT_START = performance.now();
const POOL_OPTIONS = { name: 'peers-sahpool', directory: '.peers-sqlite-wasm', initialCapacity: 6 };
const times = { scriptStart: SCRIPT_START };

// Loaded eagerly: cold open starts with the worker, not with the first message.
const ready = (async () => {
  globalThis.sqlite3ApiConfig = { disable: { vfs: { opfs: true, 'opfs-vfs': true, 'opfs-wl': true } } };
  const { default: sqlite3InitModule } = await import('./node_modules/@sqlite.org/sqlite-wasm/dist/index.mjs');
  times.imported = performance.now();
  const sqlite3 = await sqlite3InitModule();
  times.wasmReady = performance.now();
  // Another worker of this origin may still hold the pool's handles (it is being
  // terminated): retry. preserveOnInitFailure keeps a failed attempt from deleting
  // the pool's files (the default would remove the whole pool directory).
  const { value: pool, retries } = await retryWhileLocked((n) =>
    sqlite3.installOpfsSAHPoolVfs({ ...POOL_OPTIONS, preserveOnInitFailure: true, forceReinitIfPreviouslyFailed: n > 0 }),
  );
  times.vfsReady = performance.now();
  return { sqlite3, pool, vfsRetries: retries, libVersion: sqlite3.version.libVersion };
})();
ready.catch(() => {}); // reported by the first request

/** The database of W0's round trips (`w0-open`), if open. */
let w0 = null;

/** Databases left open on purpose (durability-write with close: false). */
const keptOpen = [];

function openDb(eng, name, params) {
  const db = new eng.pool.OpfsSAHPoolDb(name);
  try {
    for (const sql of pragmaStatements(params)) db.exec(sql);
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}

function effectivePragmas(db) {
  const raw = {};
  for (const [k, sql] of Object.entries(EFFECTIVE_PRAGMA_QUERIES)) raw[k] = db.selectValue(sql);
  return normalizeEffective(raw);
}

function unlinkAll(eng, name) {
  for (const suffix of SIDE_FILES) {
    try {
      eng.pool.unlink(name + suffix);
    } catch {
      /* not there */
    }
  }
}

/** Opens a fresh database with the pragmas; returns what the workload needs. */
async function fresh(tag, params) {
  const eng = await ready;
  await eng.pool.reserveMinimumCapacity(eng.pool.getFileCount() + 4);
  const name = uniqueName(tag);
  const db = openDb(eng, name, params);
  return { eng, name, db, effective: effectivePragmas(db) };
}

function finish({ eng, name, db }) {
  db.close();
  unlinkAll(eng, name);
}

function count(db) {
  return Number(db.selectValue('SELECT count(*) FROM t'));
}

serve({
  async open(params, ctx) {
    const eng = await ready;
    const t0 = performance.now();
    const name = uniqueName('open');
    const db = openDb(eng, name, params);
    const tOpened = performance.now();
    const one = db.selectValue('SELECT 1');
    const tFirst = performance.now();
    ctx.progress('first-query');
    if (Number(one) !== 1) throw new Error(`SELECT 1 returned ${one}`);
    const effective = effectivePragmas(db);
    finish({ eng, name, db });
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
    const { db } = f;
    db.exec(CREATE_T);
    const stmt = db.prepare(INSERT_T);
    const t0 = performance.now();
    for (let i = 0; i < W1_ROWS; i++) {
      stmt.bind([`row ${i}`, i]);
      stmt.step();
      stmt.reset();
    }
    const ms = performance.now() - t0;
    stmt.finalize();
    const rows = count(db);
    finish(f);
    if (rows !== W1_ROWS) throw new Error(`w1: ${rows} rows`);
    return { ms, rows, effectivePragmas: f.effective, libVersion: f.eng.libVersion };
  },

  async w2(params) {
    const f = await fresh('w2', params);
    const { db } = f;
    db.exec(CREATE_T);
    const stmt = db.prepare(INSERT_T);
    const t0 = performance.now();
    db.exec('BEGIN');
    for (let i = 0; i < W2_ROWS; i++) {
      stmt.bind([`row ${i}`, i]);
      stmt.step();
      stmt.reset();
    }
    db.exec('COMMIT');
    const ms = performance.now() - t0;
    stmt.finalize();
    const rows = count(db);
    finish(f);
    if (rows !== W2_ROWS) throw new Error(`w2: ${rows} rows`);
    return { ms, rows, effectivePragmas: f.effective, libVersion: f.eng.libVersion };
  },

  async w3(params) {
    const f = await fresh('w3', params);
    const { db } = f;
    db.exec(CREATE_T);
    const ins = db.prepare(INSERT_T);
    db.exec('BEGIN');
    for (let i = 0; i < W3_TABLE_ROWS; i++) {
      ins.bind([`row ${i}`, i]);
      ins.step();
      ins.reset();
    }
    db.exec('COMMIT');
    ins.finalize();
    const sel = db.prepare(SELECT_T);
    let found = 0;
    let sum = 0;
    let chars = 0;
    const t0 = performance.now();
    for (let i = 0; i < W3_LOOKUPS; i++) {
      sel.bind(1, w3Key(i));
      if (sel.step()) {
        chars += sel.getString(0).length;
        sum += sel.getInt(1);
        found++;
      }
      sel.reset();
    }
    const ms = performance.now() - t0;
    sel.finalize();
    finish(f);
    let expected = 0;
    for (let i = 0; i < W3_LOOKUPS; i++) expected += w3Key(i) - 1;
    if (found !== W3_LOOKUPS || sum !== expected || chars === 0) throw new Error(`w3: found ${found}, sum ${sum}`);
    return { ms, lookups: found, effectivePragmas: f.effective, libVersion: f.eng.libVersion };
  },

  async 'durability-write'(params) {
    const eng = await ready;
    const name = params.name;
    if (typeof name !== 'string' || !name.startsWith('/')) throw new Error('durability-write needs an absolute name');
    await eng.pool.reserveMinimumCapacity(eng.pool.getFileCount() + 4);
    const db = openDb(eng, name, params);
    const effective = effectivePragmas(db);
    db.exec(CREATE_T);
    const stmt = db.prepare(INSERT_T);
    for (let i = 0; i < 20; i++) stmt.bind([`row ${i}`, i]).stepReset(); // autocommit
    db.exec('BEGIN');
    for (let i = 20; i < 1020; i++) stmt.bind([`row ${i}`, i]).stepReset();
    db.exec('COMMIT');
    stmt.finalize();
    const filesOpen = eng.pool.getFileNames();
    let filesAfterClose = null;
    if (params.close) {
      db.close();
      filesAfterClose = eng.pool.getFileNames();
    } else {
      if (params.uncommitted) {
        // A big transaction left open: with a 16-page cache it spills into the
        // database file (rollback journals) or the WAL before the worker is killed,
        // so the reader has to roll it back / ignore it.
        db.exec('PRAGMA cache_size=16');
        db.exec('BEGIN');
        const big = db.prepare(INSERT_T);
        for (let i = 0; i < 5000; i++) big.bind([`uncommitted ${i} ${'x'.repeat(200)}`, -1]).stepReset();
        big.finalize();
      }
      keptOpen.push(db); // the page terminates this worker: a crash as far as SQLite knows
    }
    const filesAtEnd = eng.pool.getFileNames();
    return { rows: 1020, effectivePragmas: effective, filesOpen, filesAfterClose, filesAtEnd };
  },

  async 'durability-read'(params) {
    const eng = await ready;
    const name = params.name;
    const filesBefore = eng.pool.getFileNames();
    const db = openDb(eng, name, params);
    try {
      const effective = effectivePragmas(db);
      const rows = count(db);
      const sum = Number(db.selectValue('SELECT sum(b) FROM t'));
      const integrity = String(db.selectValue('PRAGMA integrity_check'));
      return { rows, sum, integrity, effectivePragmas: effective, filesBefore, vfsRetries: eng.vfsRetries };
    } finally {
      db.close();
      unlinkAll(eng, name);
    }
  },

  // W0: the page times `{ sql }` round trips (worker-common.js) on this database.
  async 'w0-open'(params) {
    if (w0) finish(w0);
    w0 = await fresh('w0', params);
    return { effectivePragmas: w0.effective, libVersion: w0.eng.libVersion };
  },
  query(sql) {
    if (!w0) throw new Error('no database: send w0-open first');
    return w0.db.selectObjects(sql);
  },

  async release() {
    const eng = await ready;
    if (w0) finish(w0);
    w0 = null;
    for (const db of keptOpen.splice(0)) db.close();
    eng.pool.pauseVfs();
    return { released: true };
  },
});
