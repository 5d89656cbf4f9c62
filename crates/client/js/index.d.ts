/** A value SQLite stores. Booleans are stored as 0/1; integers beyond 2^53 come back as bigint. */
export type Value = null | number | bigint | string | boolean | Uint8Array;

/** A row keyed by column name (a later duplicate column name wins). */
export type Row = Record<string, Value>;

/** What a write statement did. */
export interface RunResult {
  /** Rows inserted, updated or deleted. */
  changes: number;
  /** Rowid of the last insert (bigint beyond 2^53). */
  lastInsertRowid: number | bigint;
}

/** Options of {@link open}. */
export interface OpenOptions {
  /**
   * URL of `db-worker.js`. By default the worker is started with
   * `new Worker(new URL('./db-worker.js', import.meta.url), { type: 'module', name })`,
   * the form bundlers recognise, so it works next to this module and bundled.
   */
  workerUrl?: string | URL;
  /** URL of `shared-worker.js` (the router); the default works like `workerUrl`'s. */
  sharedWorkerUrl?: string | URL;
  /**
   * Starts the dedicated database worker (`db-worker.js`) as a module worker named
   * `name`; takes precedence over `workerUrl`. For bundlers that need the worker
   * written in your own code.
   */
  createWorker?: (name: string) => Worker;
  /**
   * Starts the router (`shared-worker.js`) as a module SharedWorker named `name`;
   * takes precedence over `sharedWorkerUrl`. It must give the same script URL in
   * every tab, or tabs would not share one router.
   */
  createSharedWorker?: (name: string) => SharedWorker;
  /** Milliseconds before a request rejects with `TIMEOUT` (default 30000). */
  timeoutMs?: number;
  /** Milliseconds before `open` rejects with `TIMEOUT` (default 20000). */
  openTimeoutMs?: number;
  /**
   * When OPFS cannot be used (e.g. some private browsing modes), open an
   * in-memory database instead of rejecting with `OPFS_UNAVAILABLE`.
   * `db.storage` then says `"memory"`. Default false.
   */
  memoryFallback?: boolean;
}

/** Error codes: SQLite's extended result code names, or one of ours. */
export type ErrorCode =
  | `SQLITE_${string}`
  | 'TIMEOUT'
  | 'CLOSED'
  | 'LEADER_LOST'
  | 'BAD_REQUEST'
  | 'OPFS_UNAVAILABLE'
  | 'WORKER_FAILED'
  | 'INTERNAL';

/** Every rejection is an Error with `name === "SqliteTabsError"`. */
export interface SqliteTabsError extends Error {
  name: 'SqliteTabsError';
  code: ErrorCode;
}

/** Statements of an interactive transaction. */
export interface Transaction {
  exec(sql: string): Promise<void>;
  query(sql: string, params?: Value[]): Promise<Row[]>;
  queryRaw(sql: string, params?: Value[]): Promise<{ columns: string[]; rows: Value[][] }>;
  run(sql: string, params?: Value[]): Promise<RunResult>;
}

/** A commit announcement. */
export interface ChangeEvent {
  /** Tables the commit wrote. */
  tables: string[];
  /** Commit sequence number, increasing by one per commit. */
  seq: number;
  /** Set when this tab missed more commits than the log keeps: re-read everything. */
  resync?: true;
}

/**
 * An open database. Each call sends its request at once, in the order the
 * calls are made, with its arguments as they are at the call: changing an
 * array afterwards does not change what runs.
 */
export declare class Database {
  private constructor();
  /** Runs one or more statements (no parameters). */
  exec(sql: string): Promise<void>;
  /** Runs one statement and returns its rows as objects. */
  query(sql: string, params?: Value[]): Promise<Row[]>;
  /** Runs one statement and returns column names and rows as arrays (duplicate names kept). */
  queryRaw(sql: string, params?: Value[]): Promise<{ columns: string[]; rows: Value[][] }>;
  /** Runs one statement and reports what it changed. */
  run(sql: string, params?: Value[]): Promise<RunResult>;
  /**
   * Runs the statements atomically: all of them or none. Consecutive
   * statements with the same SQL text are prepared once and only bound and
   * run for each: keep equal statements together. More than 8,192
   * statements are sent in parts as they are packed (still one
   * transaction), so the database starts on them sooner.
   */
  batch(statements: { sql: string; params?: Value[] }[]): Promise<RunResult[]>;
  /**
   * Runs `fn` in a transaction: commits when its promise resolves, rolls back
   * when it rejects. Other requests wait until it ends; a transaction idle for
   * 30 s is rolled back.
   */
  transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
  /** Calls `cb` after each commit (in any tab) that writes one of `tables` (all commits if null). Returns an unsubscribe function. */
  subscribe(tables: string[] | null, cb: (ev: ChangeEvent) => void): () => void;
  /**
   * Live query: calls `cb(rows)` now and again whenever a table the statement reads changes
   * (in any tab) and the rows differ. Returns a function that stops it.
   */
  watch(sql: string, params: Value[], cb: (rows: Row[]) => void): () => void;
  /** The tables a statement reads, as SQLite reports them. */
  tables(sql: string): Promise<string[]>;
  /** Whether this tab owns the database (its worker has the file open). */
  readonly isLeader: boolean;
  /** The leader term this tab is connected to; grows by one at every change of leader. */
  readonly epoch: number;
  /** Sequence number of the last commit this tab has heard of. */
  readonly lastSeq: number;
  /**
   * Calls `cb(isLeader, epoch)` whenever the leader changes: this tab gained or lost
   * leadership, or another tab took over. Returns an unsubscribe function.
   */
  onLeaderChange(cb: (isLeader: boolean, epoch: number) => void): () => void;
  /** Gives up leadership if this tab leads: another tab takes over, this one queues again. */
  stepDown(): Promise<void>;
  /** Where the data lives: `"opfs"`, or `"memory"` with the opt-in fallback. */
  readonly storage: 'opfs' | 'memory';
  /** Closes the database; pending requests reject with `CLOSED`. */
  close(): Promise<void>;
}

/** Opens (creating if needed) the database `name`, persisted in OPFS. */
export function open(name: string, options?: OpenOptions): Promise<Database>;
