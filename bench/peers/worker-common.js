// Shared by the peer workers (sqlite-wasm-worker.js, wa-sqlite-worker.js): the
// message loop, the pragma set, database names and the workload constants. The
// hot loops themselves stay in each worker, written in that engine's own API,
// so no adapter layer sits between the benchmark and the engine.
//
// Protocol (page -> worker): { id, workload, params }, or { sql } for W0 (a statement
// run on the database `w0-open` opened, answered with { rows } or { error } at once).
// Worker -> page: { id, ok: true, result } or { id, ok: false, error: { name, message, stack } },
// one per request, in order (requests run one at a time). The `open` workload also
// posts { id, progress: 'first-query', t } the moment `SELECT 1` has returned, so the
// page can stop its clock before the pragmas are read back.

/** Allowed values (params are interpolated into PRAGMA statements, so whitelisted). */
export const PRAGMA_VALUES = {
  journal_mode: ['delete', 'truncate', 'persist', 'memory', 'wal', 'off'],
  synchronous: ['off', 'normal', 'full', 'extra'],
  locking_mode: ['normal', 'exclusive'],
};

/** Defaults when a param is missing. */
export const DEFAULT_PRAGMAS = {
  page_size: 4096,
  journal_mode: 'delete',
  synchronous: 'full',
  locking_mode: 'normal',
};

/**
 * The statements applied right after opening, in this order, for every engine:
 * locking_mode first (a VFS without shared memory can only open or switch to WAL
 * when locking is already EXCLUSIVE), page_size before anything creates a page,
 * then journal_mode and synchronous.
 */
export function pragmaStatements(params = {}) {
  const p = { ...DEFAULT_PRAGMAS, ...params };
  const pageSize = Number(p.page_size);
  if (!Number.isInteger(pageSize) || pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1))) {
    throw new Error(`bad page_size ${p.page_size}`);
  }
  const out = [];
  for (const [key, allowed] of Object.entries(PRAGMA_VALUES)) {
    const v = String(p[key]).toLowerCase();
    if (!allowed.includes(v)) throw new Error(`bad ${key} ${p[key]} (one of ${allowed.join(', ')})`);
  }
  out.push(`PRAGMA locking_mode=${String(p.locking_mode).toLowerCase()}`);
  out.push(`PRAGMA page_size=${pageSize}`);
  out.push(`PRAGMA journal_mode=${String(p.journal_mode).toLowerCase()}`);
  out.push(`PRAGMA synchronous=${String(p.synchronous).toLowerCase()}`);
  return out;
}

/** Queried after applying, to report what is really in effect. */
export const EFFECTIVE_PRAGMA_QUERIES = {
  page_size: 'PRAGMA page_size',
  journal_mode: 'PRAGMA journal_mode',
  synchronous: 'PRAGMA synchronous',
  locking_mode: 'PRAGMA locking_mode',
};

const SYNCHRONOUS_NAMES = ['off', 'normal', 'full', 'extra'];

/** Normalizes the raw values read back (synchronous comes back as 0..3). */
export function normalizeEffective(raw) {
  const out = {};
  for (const [k, v] of Object.entries(raw)) {
    if (k === 'synchronous') out[k] = SYNCHRONOUS_NAMES[Number(v)] ?? String(v);
    else if (k === 'page_size') out[k] = Number(v);
    else out[k] = String(v).toLowerCase();
  }
  return out;
}

/** A fresh, absolute database name (pool VFSes want absolute paths). */
export function uniqueName(tag) {
  return `/peer-${tag}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}.db`;
}

/** The files SQLite may create next to a database. */
export const SIDE_FILES = ['', '-journal', '-wal', '-shm'];

/** Workload sizes (the W1-W3). */
export const W1_ROWS = 1000;
export const W2_ROWS = 100000;
export const W3_TABLE_ROWS = 10000;
export const W3_LOOKUPS = 5000;
export const CREATE_T = 'CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)';
export const INSERT_T = 'INSERT INTO t(a, b) VALUES (?, ?)';
export const SELECT_T = 'SELECT a, b FROM t WHERE id = ?';
/** The W3 key sequence: 1 + (i * 7919) % 10000 (7919 is prime, so every key once per 10,000). */
export const w3Key = (i) => 1 + ((i * 7919) % W3_TABLE_ROWS);

/** Runs `fn` until it stops throwing a "handles still held" error, with backoff. */
export async function retryWhileLocked(fn, { totalMs = 10000 } = {}) {
  const start = performance.now();
  let delay = 5;
  let retries = 0;
  for (;;) {
    try {
      return { value: await fn(retries), retries };
    } catch (e) {
      const locked = /NoModificationAllowed|InvalidState|Access Handles cannot be created|createSyncAccessHandle|locked/i.test(
        `${e?.name} ${e?.message} ${e?.cause?.name ?? ''} ${e?.cause?.message ?? ''}`,
      );
      if (!locked || performance.now() - start > totalMs) throw e;
      retries++;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 250);
    }
  }
}

/** Error -> plain object for postMessage. */
export function errorToPlain(e) {
  return { name: e?.name ?? 'Error', message: String(e?.message ?? e), stack: e?.stack };
}

/**
 * Installs the message loop. `handlers[workload](params, ctx)` returns the result
 * (or a promise of it); ctx = { id, progress(what, extra) }. Requests are handled
 * strictly one after the other.
 */
export function serve(handlers) {
  let chain = Promise.resolve();
  self.onmessage = (ev) => {
    const { id, workload, params, sql } = ev.data ?? {};
    if (sql !== undefined) {
      // W0: `{ sql }` -> `{ rows }` (or `{ error }`) at once, outside the chain:
      // the minimal worker wrapper an app would write around the engine.
      const reply = (rows) => self.postMessage({ rows });
      const fail = (e) => self.postMessage({ error: errorToPlain(e) });
      try {
        const rows = handlers.query(sql);
        if (rows instanceof Promise) rows.then(reply, fail);
        else reply(rows);
      } catch (e) {
        fail(e);
      }
      return;
    }
    chain = chain.then(async () => {
      const ctx = {
        id,
        progress: (what, extra = {}) => self.postMessage({ id, progress: what, t: performance.now(), ...extra }),
      };
      try {
        const handler = handlers[workload];
        if (!handler) throw new Error(`unknown workload ${workload}`);
        const result = await handler(params ?? {}, ctx);
        self.postMessage({ id, ok: true, result });
      } catch (e) {
        self.postMessage({ id, ok: false, error: errorToPlain(e) });
      }
    });
  };
}
