// sqlite-tabs demo: a to-do list shared live by every tab, in React, using the
// package exactly as an app would: `sqlite-tabs/react` from node_modules.
import { useState } from 'react';
import { DatabaseProvider, useDatabase, useLeader, useQuery } from 'sqlite-tabs/react';

const SCHEMA =
  'CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, text TEXT NOT NULL, created_at INTEGER NOT NULL)';
const LIST_SQL = 'SELECT id, text, created_at FROM items ORDER BY id';

/** Formats an error from the library as "CODE: message". */
function describe(err) {
  const code = err && err.code ? `${err.code}: ` : '';
  return `${code}${err && err.message ? err.message : String(err)}`;
}

/** Runs before the list renders, once per opened database. */
async function prepare(db) {
  await db.exec(SCHEMA);
  // For scripting from the console (and for the end-to-end tests).
  window.db = db;
}

/** The status line; `state` is "opening", "open" or "error". */
function Status({ state, children }) {
  return (
    <p className="status" data-testid="status" data-state={state}>
      {children}
    </p>
  );
}

export function App() {
  return (
    <main>
      <header>
        <h1>sqlite-tabs</h1>
        <p className="lead">
          One SQLite database on OPFS, shared by every tab of this origin. Open this page in
          several tabs: the list updates in all of them. One tab is the leader (SQLite runs in
          its worker); close it, or press “Give up leadership”, and another tab takes over.
        </p>
      </header>
      <DatabaseProvider
        name="demo.db"
        onOpen={prepare}
        fallback={<Status state="opening">opening…</Status>}
        renderError={(err) => <Status state="error">{`failed to open: ${describe(err)}`}</Status>}
      >
        <Todos />
      </DatabaseProvider>
      <footer>
        <code>window.db</code> is the open database: try{' '}
        <code>await db.query('SELECT * FROM items')</code> in the console.
      </footer>
    </main>
  );
}

/**
 * Runs one write at a time for a control: `pending` while it runs. Its error, or
 * null after a success, goes to `report`; the returned promise never rejects.
 */
function useAction(report) {
  const [pending, setPending] = useState(false);
  const run = async (write) => {
    setPending(true);
    try {
      await write();
      report(null);
      return true;
    } catch (err) {
      report(err);
      return false;
    } finally {
      setPending(false);
    }
  };
  return [run, pending];
}

function Todos() {
  const db = useDatabase();
  const list = useQuery(LIST_SQL);
  const [error, setError] = useState(null);
  const [text, setText] = useState('');
  const [add, adding] = useAction(setError);

  const submit = async (event) => {
    event.preventDefault();
    const value = text.trim();
    if (!value) return;
    const added = await add(() =>
      db.run('INSERT INTO items (text, created_at) VALUES (?, ?)', [value, Date.now()]),
    );
    if (added) setText('');
  };

  return (
    <>
      <Status state="open">{`open (${db.storage})`}</Status>
      <Role report={setError} />
      <form data-testid="add-form" autoComplete="off" onSubmit={submit}>
        <label htmlFor="new-item" className="visually-hidden">
          New item
        </label>
        <input
          id="new-item"
          data-testid="new-item"
          placeholder="New item"
          maxLength={500}
          autoFocus
          value={text}
          onChange={(event) => setText(event.target.value)}
        />
        <button type="submit" data-testid="add-item" disabled={adding}>
          Add
        </button>
      </form>
      {error && (
        <p className="error" data-testid="error" role="alert">
          {describe(error)}
        </p>
      )}
      {list.error && (
        <p className="error" data-testid="list-error" role="alert">
          {`could not read the list: ${describe(list.error)}`}
        </p>
      )}
      <ul className="items" data-testid="items" aria-live="polite">
        {list.data?.map((row) => (
          <Item key={row.id} row={row} report={setError} />
        ))}
      </ul>
      {list.data?.length === 0 && (
        <p className="empty" data-testid="empty">
          No items yet.
        </p>
      )}
    </>
  );
}

/** Whether this tab holds the database (the leader) or talks to another tab. */
function Role({ report }) {
  const db = useDatabase();
  const { isLeader, epoch } = useLeader();
  const [stepDown, stepping] = useAction(report);
  return (
    <>
      <p className="role" data-testid="leader" data-leader={String(isLeader)} data-epoch={epoch}>
        {isLeader
          ? `This tab is the leader (epoch ${epoch}): SQLite runs in its worker.`
          : `This tab is a follower (epoch ${epoch}): another tab runs SQLite.`}
      </p>
      <p className="role-actions">
        <button
          type="button"
          data-testid="step-down"
          disabled={!isLeader || stepping}
          title="Close the database in this tab's worker; another open tab takes over"
          onClick={() => stepDown(() => db.stepDown())}
        >
          Give up leadership
        </button>
      </p>
    </>
  );
}

/** One list row: text, time and a delete button. */
function Item({ row, report }) {
  const db = useDatabase();
  const [remove, removing] = useAction(report);
  const created = new Date(Number(row.created_at));
  return (
    <li data-testid="item" data-id={String(row.id)}>
      <span className="text">{row.text}</span>
      <time dateTime={created.toISOString()}>{created.toLocaleTimeString()}</time>
      <button
        type="button"
        data-testid="delete-item"
        aria-label={`Delete “${row.text}”`}
        disabled={removing}
        onClick={() => remove(() => db.run('DELETE FROM items WHERE id = ?', [row.id]))}
      >
        Delete
      </button>
    </li>
  );
}
