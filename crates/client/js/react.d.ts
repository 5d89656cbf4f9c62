// sqlite-tabs/react: React bindings. React (18 or later) is a peer dependency.
import type { ReactNode } from 'react';
import type { Database, OpenOptions, Row, SqliteTabsError, Value } from './index.js';

export type { Database, OpenOptions, Row, SqliteTabsError, Value } from './index.js';

/** Props of {@link DatabaseProvider}. */
export interface DatabaseProviderProps {
  /** The database to open (see `open()`). Changing it closes this one and opens that one. */
  name: string;
  /** Options of `open()`, compared by value: an inline object does not reopen the database. */
  options?: OpenOptions;
  /**
   * Runs once after the database opens, before any child renders: create your
   * tables here (`db => db.exec('CREATE TABLE IF NOT EXISTS …')`). When it rejects, the
   * database is closed and the error goes to `renderError`. Providers that share a
   * database share its first `onOpen`.
   */
  onOpen?: (db: Database) => void | Promise<unknown>;
  /** Rendered instead of the children while the database opens. Default: nothing. */
  fallback?: ReactNode;
  /**
   * Rendered instead of the children when opening failed (`error` is the rejection of
   * `open()` or of `onOpen`); `retry()` tries again. Default: a `<p role="alert">`
   * with the error's code and message.
   */
  renderError?: (error: SqliteTabsError | Error, retry: () => void) => ReactNode;
  children?: ReactNode;
}

/**
 * Opens the database `name` when it mounts and closes it when it unmounts; its
 * children render once it is open and `onOpen` has finished. Every provider of the
 * same name and options in a page shares one `Database` (so React StrictMode's
 * double mount opens it once); the last one to unmount closes it.
 */
export function DatabaseProvider(props: DatabaseProviderProps): ReactNode;

/**
 * The open `Database` of the nearest {@link DatabaseProvider}, for writes
 * (`run`, `batch`, `transaction`) and everything else. Throws when there is no
 * provider above the component.
 */
export function useDatabase(): Database;

/** What {@link useQuery} returns: loading, then rows or an error. */
export type QueryResult<T = Row> =
  | { data: undefined; error: null; isLoading: true }
  | { data: T[]; error: null; isLoading: false }
  | { data: undefined; error: SqliteTabsError; isLoading: false };

/**
 * Runs `sql` with `params` and keeps the rows current: whenever a commit in any tab
 * changes a table the statement reads and the rows differ, the component renders with
 * the new rows (through `Database.watch`).
 *
 * - `params` are compared by value (bigint and `Uint8Array` included): an inline array
 *   does not run the query again at every render. New `sql` or `params` start over with
 *   `isLoading: true`; answers to the previous ones are dropped.
 * - `data` keeps its identity while the rows are unchanged, so it can be a dependency
 *   of `useMemo`/`useEffect`.
 * - A bad statement or bad parameters give `error` (a `SqliteTabsError`); nothing is
 *   thrown and no promise rejection goes unhandled.
 * - Unmounting stops the live query.
 *
 * Errors are those of the first run for these `sql` and `params`: if a later re-run
 * fails (another tab dropped the table, say), the last rows stay and `watch` logs the
 * failure to the console.
 */
export function useQuery<T = Row>(sql: string, params?: readonly Value[]): QueryResult<T>;

/** What {@link useLeader} returns. */
export interface LeaderState {
  /** Whether this tab owns the database (its worker has the file open). */
  readonly isLeader: boolean;
  /** The leader term this tab is connected to; grows by one at every change of leader. */
  readonly epoch: number;
}

/**
 * This tab's role, re-rendering whenever the leader changes (this tab gained or
 * lost leadership, or another tab took over). Give leadership up with
 * `useDatabase().stepDown()`.
 */
export function useLeader(): LeaderState;
