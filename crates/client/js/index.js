// sqlite-tabs: one SQLite database on OPFS, shared by every tab of an origin.
//
// This file is the public entry point. It loads the client's wasm once and
// wraps each open database in a small class whose methods map one-to-one to
// the wasm client; all logic lives in Rust (crates/client). Every tab that
// opens a database spawns its own worker, joins the SharedWorker router and
// the Web Locks election; the leader's worker owns the file.
// The wasm glue is imported on first open(), not statically: a static import
// would make the browser fetch index.js, then the glue, then its snippet, then
// the wasm one after another before open() could start anything. open() starts
// the tab's workers first, and they load while this tab's wasm does.
let loading;

function loadWasm() {
  loading ??= (async () => {
    // Fetched alongside the glue's import rather than after it.
    const wasm = fetch(new URL('./sqlite_tabs_client_bg.wasm', import.meta.url));
    wasm.catch(() => {}); // a failed fetch is reported by init() below
    // The glue imports marshal.js; importing it here too fetches both at once.
    const [glue] = await Promise.all([import('./sqlite_tabs_client.js'), import('./marshal.js')]);
    await glue.default({ module_or_path: wasm });
    return glue;
  })();
  // A failed load is not cached: the next open() tries again.
  loading.catch(() => (loading = undefined));
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

// The names the wasm client gives the workers of database `name`
// (crates/client/src/database.rs: start_worker, start_router). A mismatch
// costs only the head start: the factory then starts a new worker.
const workerName = (name) => `sqlite-tabs ${name}`;
const routerName = (name) => `sqlite-tabs:${name}`;
// The Web Lock the leader holds (crates/protocol/src/names.rs: leader_lock).
const leaderLock = (name) => `sqlite-tabs:${name}:leader`;
// The Web Lock a tab holds while it lives (crates/protocol/src/names.rs: tab_lock).
const tabLock = (name, client) => `sqlite-tabs:${name}:tab:${client}`;

/**
 * Requests this tab's Web Lock now, so the browser grants it while the wasm
 * client loads: the client must hold it before it joins the router (the
 * router watches it to learn when the tab dies). The client id is 53 random
 * bits, as database.rs makes its own (random_client_id).
 */
function requestTabLock(name) {
  const client = Math.floor(Math.random() * 2 ** 21) * 2 ** 32 + Math.floor(Math.random() * 2 ** 32);
  const lockName = tabLock(name, client);
  const abort = new AbortController();
  let release;
  const held = new Promise((resolve) => (release = resolve));
  let grant;
  let refuse;
  const granted = new Promise((resolve, reject) => ((grant = resolve), (refuse = reject)));
  granted.catch(() => {}); // awaited by the client only once it takes the lock
  navigator.locks
    .request(lockName, { signal: abort.signal }, () => {
      grant();
      return held;
    })
    .catch(refuse); // aborted before it was granted, or refused
  return {
    client,
    name: lockName,
    granted,
    release: () => {
      release();
      abort.abort();
    },
  };
}

/**
 * Starts the default workers of database `name` before the wasm client loads,
 * so their scripts and wasm load in parallel with it: the dedicated worker
 * unless `options` brings its own, the router unless `options` brings its own
 * or the browser has no SharedWorker. Events of the dedicated worker that
 * arrive before the client listens are kept for `takeEarlyWorkerEvents`; a
 * SharedWorker's port queues its messages itself.
 */
function headStart(name, options) {
  const early = [];
  const keep = (event) => early.push(event);
  let worker = null;
  let shared = null;
  let handedOver = false;
  if (options.workerUrl == null && options.createWorker == null) {
    worker = createWorker(workerName(name));
    worker.addEventListener('message', keep);
    worker.addEventListener('error', keep);
    // The worker loads SQLite on its first message (db-worker.js). When no
    // tab leads, this one is about to: load it now, alongside this tab's
    // wasm. A tab joining a leader leaves it for later (ToWorker::Warm).
    // Without Web Locks (insecure contexts) the wasm client fails open()
    // with a typed error; this must not throw a TypeError first.
    const query = navigator.locks?.query?.bind(navigator.locks);
    Promise.resolve(query ? query() : { held: [] })
      .then(({ held }) => {
        if (!held.some((lock) => lock.name === leaderLock(name))) worker.postMessage(null);
      })
      .catch(() => worker.postMessage(null));
  }
  // Without Web Locks (insecure contexts) the wasm client fails open() with
  // a typed error.
  let tab = typeof navigator.locks?.request === 'function' ? requestTabLock(name) : null;
  const ownRouter = options.sharedWorkerUrl == null && options.createSharedWorker == null;
  if (ownRouter && typeof SharedWorker === 'function') {
    shared = createSharedWorker(routerName(name));
  }
  const stopKeeping = () => {
    worker?.removeEventListener('message', keep);
    worker?.removeEventListener('error', keep);
  };
  return {
    createWorker: (n) => {
      if (worker && n === workerName(name) && !handedOver) {
        handedOver = true;
        return worker;
      }
      return createWorker(n);
    },
    createSharedWorker: (n) => {
      const s = n === routerName(name) ? shared : null;
      shared = null;
      return s ?? createSharedWorker(n);
    },
    // Called by the wasm client once it listens to the worker it was handed;
    // null when that is not the worker started here (the client then tells
    // its worker to load SQLite itself).
    takeEarlyWorkerEvents: () => {
      stopKeeping();
      return handedOver ? early.splice(0) : null;
    },
    // Called by the wasm client once: the tab lock requested above, which
    // the client then releases when it closes.
    takeTabLock: () => {
      const taken = tab;
      tab = null;
      return taken;
    },
    // Stops the dedicated worker if the client never took it (open() failed
    // first), and releases an untaken tab lock. An untaken router is left
    // running: it is the one router every tab of this database shares.
    discard: () => {
      stopKeeping();
      tab?.release();
      tab = null;
      if (!handedOver) worker?.terminate();
      shared?.port.close();
    },
  };
}

/**
 * Opens (creating if needed) the database `name`, persisted in the Origin
 * Private File System. See index.d.ts for the options.
 */
export async function open(name, options = {}) {
  const resolved = { ...options };
  const head = typeof name === 'string' ? headStart(name, resolved) : null;
  try {
    const { openDatabase } = await loadWasm();
    // An explicit URL wins over the default factory; the wasm client prefers a factory.
    if (resolved.workerUrl != null) resolved.workerUrl = String(resolved.workerUrl);
    else resolved.createWorker ??= head?.createWorker ?? createWorker;
    if (resolved.sharedWorkerUrl != null) resolved.sharedWorkerUrl = String(resolved.sharedWorkerUrl);
    else resolved.createSharedWorker ??= head?.createSharedWorker ?? createSharedWorker;
    if (head) {
      resolved.takeEarlyWorkerEvents = head.takeEarlyWorkerEvents;
      resolved.takeTabLock = head.takeTabLock;
    }
    const inner = await openDatabase(name, resolved);
    return new Database(inner);
  } finally {
    head?.discard();
  }
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
