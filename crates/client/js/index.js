// sqlite-tabs: one SQLite database on OPFS, shared by every tab of an origin.
//
// This file is the public entry point. It loads the client's wasm once and
// wraps each open database in a small class whose methods map one-to-one to
// the wasm client; all logic lives in Rust (crates/client). Every tab that
// opens a database spawns its own worker, joins the SharedWorker router and
// the Web Locks election; the leader's worker owns the file.
import init, { openDatabase } from './sqlite_tabs_client.js';

let loading;

function loadWasm() {
  loading ??= init({ module_or_path: new URL('./sqlite_tabs_client_bg.wasm', import.meta.url) });
  return loading;
}

// Bundlers such as Vite bundle a worker script, with its imports and wasm, only
// when it is written exactly like this: `new Worker(new URL('…',
// import.meta.url), { type: 'module' })`. A URL handed to the wasm client as a
// string escapes them: `vite build` left db-worker.js out of the app entirely.
// Without a bundler the browser resolves the same URLs next to this file. The
// router's URL and name must be the same in every tab, or tabs would not share it.
const createWorker = (name) =>
  new Worker(new URL('./db-worker.js', import.meta.url), { type: 'module', name });
const createSharedWorker = (name) =>
  new SharedWorker(new URL('./shared-worker.js', import.meta.url), { type: 'module', name });

/**
 * Opens (creating if needed) the database `name`, persisted in the Origin
 * Private File System. See index.d.ts for the options.
 */
export async function open(name, options = {}) {
  await loadWasm();
  const resolved = { ...options };
  // An explicit URL wins over the default factory; the wasm client prefers a factory.
  if (resolved.workerUrl != null) resolved.workerUrl = String(resolved.workerUrl);
  else resolved.createWorker ??= createWorker;
  if (resolved.sharedWorkerUrl != null) resolved.sharedWorkerUrl = String(resolved.sharedWorkerUrl);
  else resolved.createSharedWorker ??= createSharedWorker;
  const inner = await openDatabase(name, resolved);
  return new Database(inner);
}

/** An open database. Every method returns a promise. */
export class Database {
  #db;

  /** @internal Use open(). */
  constructor(inner) {
    this.#db = inner;
  }

  exec(sql) {
    return this.#db.exec(sql);
  }

  query(sql, params) {
    return this.#db.query(sql, params);
  }

  queryRaw(sql, params) {
    return this.#db.queryRaw(sql, params);
  }

  run(sql, params) {
    return this.#db.run(sql, params);
  }

  batch(statements) {
    return this.#db.batch(statements);
  }

  transaction(fn) {
    return this.#db.transaction(fn);
  }

  subscribe(tables, callback) {
    const id = this.#db.subscribe(tables, callback);
    return () => this.#db.unsubscribe(id);
  }

  watch(sql, params, callback) {
    const id = this.#db.watch(sql, params, callback);
    return () => this.#db.unsubscribe(id);
  }

  tables(sql) {
    return this.#db.tables(sql);
  }

  get isLeader() {
    return this.#db.isLeader;
  }

  get epoch() {
    return this.#db.epoch;
  }

  get lastSeq() {
    return this.#db.lastSeq;
  }

  onLeaderChange(callback) {
    const id = this.#db.addLeaderListener(callback);
    return () => this.#db.removeLeaderListener(id);
  }

  stepDown() {
    return this.#db.stepDown();
  }

  get storage() {
    return this.#db.storage;
  }

  close() {
    return this.#db.close();
  }
}
