// Compile-time checks of sqlite-tabs/react's types (tsc only, never run): what an
// app may write compiles, and the mistakes marked @ts-expect-error do not.
import type { ReactNode } from 'react';
import {
  DatabaseProvider,
  useDatabase,
  useLeader,
  useQuery,
  type Database,
  type LeaderState,
  type QueryResult,
  type Row,
} from 'sqlite-tabs/react';
import { open, type SqliteTabsError } from 'sqlite-tabs';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | void {}

interface Todo {
  id: number;
  title: string;
}

export function Checks(): ReactNode {
  const db: Database = useDatabase();
  void db.run('INSERT INTO todo(title) VALUES (?)', ['x']);

  const todos = useQuery<Todo>('SELECT id, title FROM todo WHERE id > ?', [0]);
  assertType<Equal<typeof todos, QueryResult<Todo>>>();
  // @ts-expect-error data may be undefined until loaded
  void todos.data.length;
  if (todos.isLoading) {
    assertType<Equal<typeof todos.data, undefined>>();
  } else if (todos.error) {
    assertType<Equal<typeof todos.error, SqliteTabsError>>();
    void todos.error.code;
  } else {
    assertType<Equal<typeof todos.data, Todo[]>>();
  }

  const rows = useQuery('SELECT ? AS a, ? AS b, ? AS c', [1n, new Uint8Array([1]), null]);
  if (rows.data) assertType<Equal<typeof rows.data, Row[]>>();
  // @ts-expect-error a Date is not a SQL value
  useQuery('SELECT ?', [new Date()]);
  const readonlyParams = [1, 'a'] as const;
  useQuery('SELECT ?, ?', readonlyParams);

  const leader: LeaderState = useLeader();
  assertType<Equal<typeof leader.isLeader, boolean>>();
  assertType<Equal<typeof leader.epoch, number>>();
  return null;
}

export function Providers(): ReactNode {
  return (
    <>
      <DatabaseProvider name="a.db">
        <Checks />
      </DatabaseProvider>
      <DatabaseProvider
        name="b.db"
        options={{ timeoutMs: 5000, memoryFallback: true }}
        onOpen={(db) => db.exec('CREATE TABLE IF NOT EXISTS t (x)')}
        fallback={<p>Opening…</p>}
        renderError={(error, retry) => (
          <button onClick={retry}>{`${'code' in error ? error.code : ''} ${error.message}`}</button>
        )}
      >
        <Checks />
      </DatabaseProvider>
      {/* @ts-expect-error name is required */}
      <DatabaseProvider>
        <Checks />
      </DatabaseProvider>
    </>
  );
}

// The core entry keeps its own types, and both entries name the same Database.
export async function core(): Promise<Database> {
  return open('c.db', { createWorker: (name) => new Worker('/w.js', { type: 'module', name }) });
}
