// A page for testing sqlite-tabs/react from Playwright (react-hooks.spec.js).
//
// The test drives it through `window.harness.render(spec)`, where spec says which
// provider and components to mount, and reads back what happened:
// - `harness.log`: one entry per render of a probe ({ t: 'probe', id, isLoading,
//   error, rows, dataId }), of the provider's fallback and error, and of useLeader;
//   dataId names the identity of `data`: equal ids, same array object.
// - `harness.calls`: how often the database was opened and queried, and the live
//   queries (`watch`) that are running.
// - `harness.unhandled`: unhandled rejections and uncaught errors of the page.
// Parameters cross page.evaluate as JSON: {$bigint: '…'} and {$bytes: [...]} stand
// for bigint and Uint8Array.
import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { DatabaseProvider, useDatabase, useLeader, useQuery } from 'sqlite-tabs/react';

const log = [];
const unhandled = [];
const calls = { opens: 0, query: 0, watch: 0, liveWatches: 0, callbacksAfterStop: 0 };
window.addEventListener('unhandledrejection', (e) =>
  unhandled.push(`unhandled rejection: ${e.reason && e.reason.message ? e.reason.message : e.reason}`),
);
window.addEventListener('error', (e) => unhandled.push(`uncaught: ${e.message}`));

const decode = (params) =>
  params?.map((v) =>
    v && typeof v === 'object' && '$bigint' in v
      ? BigInt(v.$bigint)
      : v && typeof v === 'object' && '$bytes' in v
        ? new Uint8Array(v.$bytes)
        : v,
  );
const encode = (v) =>
  typeof v === 'bigint' ? { $bigint: String(v) } : v instanceof Uint8Array ? { $bytes: [...v] } : v;

const ids = new WeakMap();
let nextId = 1;
function idOf(data) {
  if (!data) return null;
  if (!ids.has(data)) ids.set(data, nextId++);
  return ids.get(data);
}

/** Counts what the hooks ask of the database; runs in onOpen, once per opened database. */
function instrument(db) {
  const query = db.query.bind(db);
  db.query = (...args) => {
    calls.query++;
    return query(...args);
  };
  const watch = db.watch.bind(db);
  db.watch = (sql, params, callback) => {
    calls.watch++;
    calls.liveWatches++;
    let live = true;
    const stop = watch(sql, params, (rows) => {
      if (!live) calls.callbacksAfterStop++;
      callback(rows);
    });
    return () => {
      if (live) calls.liveWatches--;
      live = false;
      stop();
    };
  };
}

function Probe({ id, sql, params }) {
  // A new params array at every render, as an inline literal would be.
  const { data, error, isLoading } = useQuery(sql, decode(params));
  log.push({
    t: 'probe',
    id,
    isLoading,
    error: error ? { name: error.name, code: error.code, message: error.message } : null,
    rows: data ? data.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, encode(v)]))) : null,
    dataId: idOf(data),
  });
  const text = error ? `error ${error.code}` : isLoading ? 'loading' : `${data.length} rows`;
  return (
    <p data-testid={`probe-${id}`} data-loading={String(isLoading)}>
      {text}
    </p>
  );
}

function Leader() {
  const { isLeader, epoch } = useLeader();
  log.push({ t: 'leader', isLeader, epoch });
  return <p data-testid="leader" data-leader={String(isLeader)} data-epoch={epoch} />;
}

/** Makes the provider's database `window.db` while it is mounted. */
function Expose() {
  const db = useDatabase();
  useEffect(() => {
    window.db = db;
    return () => {
      if (window.db === db) window.db = null;
    };
  }, [db]);
  return null;
}

function Fallback() {
  log.push({ t: 'fallback' });
  return <p data-testid="fallback">opening…</p>;
}

function App({ spec }) {
  const [, setTick] = useState(0);
  useEffect(() => {
    harness.rerender = () => setTick((n) => n + 1);
  }, []);
  const onOpen = async (db) => {
    calls.opens++;
    if (spec.failOnOpen) throw new Error('onOpen failed on purpose');
    await db.exec(
      'CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, marker TEXT NOT NULL, v)',
    );
    instrument(db);
    harness.lastDb = db;
  };
  const tree = (
    <DatabaseProvider
      name={spec.name}
      // Inline at every render: compared by value, so it does not reopen.
      options={{ timeoutMs: 20_000 }}
      onOpen={onOpen}
      fallback={<Fallback />}
      renderError={(error, retry) => {
        harness.retry = retry;
        log.push({ t: 'open-error', code: error.code ?? null, message: error.message });
        return <p data-testid="open-error">{`${error.code ?? 'Error'}: ${error.message}`}</p>;
      }}
    >
      <Expose />
      {spec.leader && <Leader />}
      {(spec.probes ?? []).map((p) => (
        <Probe key={p.id} {...p} />
      ))}
    </DatabaseProvider>
  );
  return tree;
}

const root = createRoot(document.getElementById('root'));
const harness = {
  log,
  calls,
  unhandled,
  lastDb: null,
  retry: null,
  rerender: null,
  /** Mounts (or updates) the tree for `spec`; null unmounts everything. */
  render(spec) {
    // StrictMode at the root, as apps put it: React double-mounts only the components
    // it places below a StrictMode that is placed with them or before them.
    const app = spec ? <App spec={spec} /> : null;
    root.render(spec?.strict ? <StrictMode>{app}</StrictMode> : app);
  },
  /** The last logged render of probe `id`. */
  last(id) {
    return log.findLast((e) => e.t === 'probe' && e.id === id) ?? null;
  },
};
window.harness = harness;
