// sqlite-tabs/react: React bindings over the same Database as `sqlite-tabs`.
//
// Plain JavaScript without JSX, so the package needs no build step and works
// with any bundler. See react.d.ts for the documented API.
import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useState,
  useSyncExternalStore,
} from 'react';
import { open } from './index.js';

const DatabaseContext = createContext(null);

// One Database per (name, options) in this page, shared by every provider that
// asks for it and closed when the last one unmounts. React StrictMode and Fast
// Refresh unmount and mount again within one task: closing at once would end
// the database the new mount is about to use, so the close waits for a timer
// that the new mount cancels.
const opened = new Map();

/** Takes a reference on the database of `key`, opening it if nobody holds it. */
function acquire(key, name, options, onOpen) {
  let entry = opened.get(key);
  if (entry) {
    entry.refs += 1;
    clearTimeout(entry.closeTimer);
    entry.closeTimer = undefined;
    return entry;
  }
  entry = { refs: 1, closeTimer: undefined, promise: openAndPrepare(name, options, onOpen) };
  const mine = entry;
  // A failed open is forgotten so that a retry, or the next mount, opens again.
  mine.promise.catch(() => {
    if (opened.get(key) === mine) opened.delete(key);
  });
  opened.set(key, mine);
  return mine;
}

/** Drops a reference taken by acquire(); the last one closes the database soon after. */
function release(key, entry) {
  entry.refs -= 1;
  if (entry.refs > 0) return;
  entry.closeTimer = setTimeout(() => {
    if (opened.get(key) === entry) opened.delete(key);
    entry.promise.then((db) => db.close()).catch(() => {});
  }, 0);
}

async function openAndPrepare(name, options, onOpen) {
  const db = await open(name, options);
  if (onOpen) {
    try {
      await onOpen(db);
    } catch (error) {
      await db.close().catch(() => {});
      throw error;
    }
  }
  return db;
}

/**
 * Identifies a provider's database by value: callers pass inline option
 * objects, which must not reopen the database at every render. Functions
 * (worker factories) are left out, as JSON leaves them out.
 */
function databaseKey(name, options) {
  try {
    return JSON.stringify([name, options ?? null]);
  } catch {
    return JSON.stringify([name, String(options)]);
  }
}

function describe(error) {
  const code = error && error.code ? `${error.code}: ` : '';
  return `${code}${error && error.message ? error.message : String(error)}`;
}

function defaultRenderError(error) {
  return createElement('p', { role: 'alert' }, `Could not open the database: ${describe(error)}`);
}

/**
 * Opens the database `name` for its children; see react.d.ts. Children render
 * only once it is open (and `onOpen` has finished), so they never see a
 * database without its tables.
 */
export function DatabaseProvider({
  name,
  options,
  onOpen,
  fallback = null,
  renderError = defaultRenderError,
  children,
}) {
  const key = databaseKey(name, options);
  const [attempt, setAttempt] = useState(0);
  const [state, setState] = useState({ key: null, attempt: -1, db: null, error: null });
  const retry = useCallback(() => setAttempt((n) => n + 1), []);

  useEffect(() => {
    let active = true;
    const entry = acquire(key, name, options, onOpen);
    entry.promise.then(
      (db) => active && setState({ key, attempt, db, error: null }),
      (error) => active && setState({ key, attempt, db: null, error }),
    );
    return () => {
      active = false;
      release(key, entry);
    };
    // name and options are part of key; onOpen is used by the first opener only.
  }, [key, attempt]);

  if (state.key !== key || state.attempt !== attempt) return fallback;
  if (!state.db) return renderError(state.error, retry);
  return createElement(DatabaseContext.Provider, { value: state.db }, children);
}

/** The open Database of the nearest DatabaseProvider. */
export function useDatabase() {
  const db = useContext(DatabaseContext);
  if (!db) throw new Error('sqlite-tabs/react: useDatabase() needs a <DatabaseProvider> above it');
  return db;
}

// --- useQuery ---------------------------------------------------------------

const LOADING = Object.freeze({ data: undefined, error: null, isLoading: true });

/** A key equal for equal values: callers pass a new params array at every render. */
function valueKey(v) {
  switch (typeof v) {
    case 'number':
      return Object.is(v, -0) ? 'n-0' : `n${v}`;
    case 'bigint':
      return `b${v}`;
    case 'string':
      return `s${JSON.stringify(v)}`;
    case 'boolean':
      return v ? 't' : 'f';
    case 'undefined':
      return 'u';
    default:
      if (v === null) return 'N';
      if (v instanceof Uint8Array) {
        let hex = 'x';
        for (const byte of v) hex += byte.toString(16).padStart(2, '0');
        return hex;
      }
      // Not a value the database takes: the query rejects with BAD_REQUEST,
      // and a constant key keeps it from being retried at every render.
      return `?${Object.prototype.toString.call(v)}`;
  }
}

function queryKey(sql, params) {
  const list = params == null ? '-' : Array.isArray(params) ? params.map(valueKey).join(',') : '?';
  return `${typeof sql === 'string' ? sql : String(sql)}\u0000${list}`;
}

function sameValue(a, b) {
  if (a === b) return true;
  if (!(a instanceof Uint8Array && b instanceof Uint8Array) || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameRows(a, b) {
  if (a === b) return true;
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    const keys = Object.keys(x);
    if (keys.length !== Object.keys(y).length) return false;
    for (const k of keys) if (!(k in y) || !sameValue(x[k], y[k])) return false;
  }
  return true;
}

/**
 * Runs `sql` and keeps the result current: `{ data, error, isLoading }`; see
 * react.d.ts.
 */
export function useQuery(sql, params) {
  const db = useDatabase();
  const key = queryKey(sql, params);
  const [state, setState] = useState({ db: null, key: null, result: LOADING });

  useEffect(() => {
    // Set to false when params change or the component unmounts: answers of
    // the old query, still in flight, must not overwrite the new one.
    let active = true;
    let unwatch;
    const fail = (error) => {
      if (active) setState({ db, key, result: Object.freeze({ data: undefined, error, isLoading: false }) });
    };
    const show = (rows) => {
      if (!active) return;
      setState((prev) =>
        prev.db === db && prev.key === key && sameRows(prev.result.data, rows)
          ? prev
          : { db, key, result: Object.freeze({ data: rows, error: null, isLoading: false }) },
      );
    };
    // watch() logs the errors of its statement instead of reporting them, so
    // the first result comes from query(), which rejects with them; watch()
    // then keeps it current, calling back only when the rows differ.
    let first;
    try {
      first = db.query(sql, params);
    } catch (error) {
      first = Promise.reject(error);
    }
    first.then((rows) => {
      if (!active) return;
      show(rows);
      try {
        unwatch = db.watch(sql, params ?? [], show);
      } catch (error) {
        fail(error);
      }
    }, fail);
    return () => {
      active = false;
      if (unwatch) unwatch();
    };
    // params are part of key, compared by value.
  }, [db, key]);

  return state.db === db && state.key === key ? state.result : LOADING;
}

// --- useLeader --------------------------------------------------------------

// useSyncExternalStore needs the same object back while nothing changed.
const leaderSnapshots = new WeakMap();

function leaderSnapshot(db) {
  const isLeader = db.isLeader;
  const epoch = db.epoch;
  const last = leaderSnapshots.get(db);
  if (last && last.isLeader === isLeader && last.epoch === epoch) return last;
  const next = Object.freeze({ isLeader, epoch });
  leaderSnapshots.set(db, next);
  return next;
}

/** This tab's role: `{ isLeader, epoch }`, re-rendering at every change of leader. */
export function useLeader() {
  const db = useDatabase();
  const subscribe = useCallback((onChange) => db.onLeaderChange(() => onChange()), [db]);
  const snapshot = () => leaderSnapshot(db);
  return useSyncExternalStore(subscribe, snapshot, snapshot);
}
