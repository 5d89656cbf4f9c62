//! Request execution over a `rusqlite::Connection`: plain Rust, the same
//! natively and in the worker.
//!
//! Every write runs in its own transaction that also appends a row to
//! [`LOG_TABLE`]: the row's key is the request id (so a write re-sent after a
//! failover is applied exactly once, its stored reply returned instead), its
//! rowid is the commit sequence number, and it lists the changed tables (so a
//! tab that missed notifications can catch up).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization, Wal};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Batch, Connection, OptionalExtension, Statement as SqlStatement, ToSql};
use sqlite_tabs_protocol::{
    decode, encode, ChangeEvent, Epoch, Error, ErrorCode, Reply, Request, RequestId, Rows,
    RunResult, Statements, TxId, Value, ValueRef as WireValue,
};

/// The engine's own table; user statements never see it in notifications.
pub const LOG_TABLE: &str = "_sqlite_tabs_log";

/// Engine state that outlives a connection: the leader epoch.
pub const META_TABLE: &str = "_sqlite_tabs_meta";

/// How many commits the log keeps: enough to answer any write re-sent during
/// a failover and any tab catching up after a short freeze.
const LOG_KEEP: u64 = 10_000;

/// App statements the engine keeps prepared (see [`Prepared`]); the cache
/// is emptied when it is full.
const STATEMENT_CACHE: usize = 128;

/// The engine's own statements (the log's), kept by rusqlite's cache.
const INTERNAL_STATEMENTS: usize = 8;

/// WAL pages after which the worker checkpoints: SQLite's own threshold for
/// the automatic checkpoint, which runs inside the commit that crosses it.
/// Ours runs after the answers are out ([`Engine::checkpoint_if_due`]).
const CHECKPOINT_PAGES: u32 = 1000;

/// SQLite's journal mode, chosen at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalMode {
    /// Rollback journal, deleted after each commit.
    Delete,
    /// Rollback journal, truncated after each commit.
    Truncate,
    /// Rollback journal, header zeroed after each commit.
    Persist,
    /// Write-ahead log (needs `locking_mode=EXCLUSIVE` without shared memory).
    Wal,
}

impl JournalMode {
    fn sql_name(self) -> &'static str {
        match self {
            JournalMode::Delete => "DELETE",
            JournalMode::Truncate => "TRUNCATE",
            JournalMode::Persist => "PERSIST",
            JournalMode::Wal => "WAL",
        }
    }
}

/// Connection settings applied by [`Engine::new`].
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Journal mode; see README for the measurement behind the default.
    pub journal_mode: JournalMode,
    /// Take SQLite's file lock once and keep it: the worker is the file's only
    /// user, so per-transaction lock calls are pure overhead.
    pub exclusive_locking: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            journal_mode: JournalMode::Wal,
            exclusive_locking: true,
        }
    }
}

/// Tables a statement reads and writes, as SQLite's authorizer reports them
/// while preparing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Tables (and views) read.
    pub reads: BTreeSet<String>,
    /// Tables written or whose schema changes.
    pub writes: BTreeSet<String>,
    /// A `BEGIN`/`COMMIT`/`ROLLBACK`/`SAVEPOINT`: the engine manages those.
    pub transaction_control: bool,
    /// A `PRAGMA`.
    pub pragma: bool,
    /// Changes the schema, which can change what other statements access.
    pub schema_change: bool,
    /// Leaves the database unchanged (`sqlite3_stmt_readonly`); known for
    /// statements analysed by [`Engine::access`].
    pub readonly: bool,
    /// Names of the result columns; known for statements analysed by
    /// [`Engine::access`]. They depend only on the SQL text and the schema,
    /// and every schema change empties the cache that holds them.
    pub columns: Arc<[String]>,
}

impl Access {
    fn record(&mut self, ctx: &AuthContext<'_>) {
        let name = |t: &str| {
            // sqlite_master & co. and our own log are bookkeeping, not data
            // anyone subscribes to.
            (!t.starts_with("sqlite_") && t != LOG_TABLE && t != META_TABLE).then(|| t.to_owned())
        };
        let mut write = |t: &str, schema: bool| {
            self.writes.extend(name(t));
            self.schema_change |= schema;
        };
        match ctx.action {
            AuthAction::Read { table_name, .. } => self.reads.extend(name(table_name)),
            AuthAction::Insert { table_name }
            | AuthAction::Delete { table_name }
            | AuthAction::Update { table_name, .. } => write(table_name, false),
            AuthAction::CreateTable { table_name }
            | AuthAction::CreateTempTable { table_name }
            | AuthAction::DropTable { table_name }
            | AuthAction::DropTempTable { table_name }
            | AuthAction::AlterTable { table_name, .. }
            | AuthAction::CreateVtable { table_name, .. }
            | AuthAction::DropVtable { table_name, .. }
            | AuthAction::CreateIndex { table_name, .. }
            | AuthAction::CreateTempIndex { table_name, .. }
            | AuthAction::DropIndex { table_name, .. }
            | AuthAction::DropTempIndex { table_name, .. }
            | AuthAction::CreateTrigger { table_name, .. }
            | AuthAction::CreateTempTrigger { table_name, .. }
            | AuthAction::DropTrigger { table_name, .. }
            | AuthAction::DropTempTrigger { table_name, .. } => write(table_name, true),
            AuthAction::CreateView { view_name }
            | AuthAction::CreateTempView { view_name }
            | AuthAction::DropView { view_name }
            | AuthAction::DropTempView { view_name } => write(view_name, true),
            AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
                self.transaction_control = true
            }
            AuthAction::Pragma { .. } => self.pragma = true,
            _ => {}
        }
    }
}

/// Collects the authorizer's reports while armed.
#[derive(Default)]
struct Recorder {
    armed: bool,
    access: Access,
}

type SharedRecorder = Arc<Mutex<Recorder>>;

fn with_recorder<T>(recorder: &SharedRecorder, f: impl FnOnce(&mut Recorder) -> T) -> T {
    // A poisoned lock only means a panic elsewhere; the data is still usable.
    f(&mut recorder.lock().unwrap_or_else(PoisonError::into_inner))
}

fn arm(recorder: &SharedRecorder) {
    with_recorder(recorder, |r| {
        r.armed = true;
        r.access = Access::default();
    })
}

fn disarm(recorder: &SharedRecorder) -> Access {
    with_recorder(recorder, |r| {
        r.armed = false;
        std::mem::take(&mut r.access)
    })
}

/// What one request produced.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// The answer to the caller.
    pub result: Result<Reply, Error>,
    /// The commit it caused, to announce to every tab.
    pub change: Option<ChangeEvent>,
}

impl Outcome {
    fn reply(result: Result<Reply, Error>) -> Self {
        Outcome {
            result,
            change: None,
        }
    }
}

struct OpenTx {
    id: TxId,
    writes: BTreeSet<String>,
}

/// Executes requests on one connection.
pub struct Engine {
    /// The app's statements, prepared, by SQL text. Declared before `conn`:
    /// fields drop in order, and these statements borrow it.
    prepared: foldhash::HashMap<String, Prepared>,
    /// Boxed so that it stays put when the engine moves (see [`Prepared`]).
    conn: Box<Connection>,
    recorder: SharedRecorder,
    /// The open transaction changed the schema. The statement cache was
    /// cleared then, and what it learnt since describes a schema a rollback
    /// undoes.
    schema_changed: bool,
    /// Pages in the WAL after the last commit (SQLite's WAL hook).
    wal_pages: Arc<AtomicU32>,
    seq: u64,
    epoch: Epoch,
    tx: Option<OpenTx>,
    next_tx: u64,
}

/// An app statement, prepared once and kept with what it accesses.
///
/// rusqlite's own statement cache cost ~1,000 instructions per use
/// (callgrind, natively): it hashes the SQL twice, takes the statement out
/// of its LRU list and puts it back under a newly allocated key. This one
/// is found with the lookup that finds the statement's access anyway.
struct Prepared {
    access: Arc<Access>,
    /// Borrows `*Engine::conn` for longer than the borrow checker can see:
    /// the connection is boxed (it does not move with the engine), is never
    /// replaced, and outlives this map (declared after it in [`Engine`]).
    stmt: SqlStatement<'static>,
}

/// Maps a rusqlite error to the protocol's typed error.
pub fn sql_error(e: rusqlite::Error) -> Error {
    use rusqlite::Error as E;
    match e {
        E::SqliteFailure(err, message) => Error::new(
            ErrorCode::Sqlite(err.extended_code),
            message.unwrap_or_else(|| err.to_string()),
        ),
        E::SqlInputError { error, msg, .. } => {
            Error::new(ErrorCode::Sqlite(error.extended_code), msg)
        }
        E::MultipleStatement => Error::bad_request(
            "more than one statement given; use exec() for scripts or batch() for several statements with parameters",
        ),
        E::InvalidParameterCount(given, expected) => Error::bad_request(format!(
            "statement takes {expected} parameter(s) but {given} were given"
        )),
        E::InvalidParameterName(name) => {
            Error::bad_request(format!("no parameter named {name:?} in the statement"))
        }
        E::ToSqlConversionFailure(e) => Error::bad_request(format!("unsupported parameter: {e}")),
        E::Utf8Error(..) | E::NulError(..) => Error::bad_request(e.to_string()),
        other => Error::internal(other.to_string()),
    }
}

type SqlResult<T> = Result<T, Error>;

struct Bind<'a>(WireValue<'a>);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            WireValue::Null => ValueRef::Null,
            WireValue::Integer(i) => ValueRef::Integer(i),
            WireValue::Real(f) => ValueRef::Real(f),
            WireValue::Text(s) => ValueRef::Text(s.as_bytes()),
            WireValue::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn to_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        // SQLite may hold invalid UTF-8 in TEXT (e.g. from CAST of a blob);
        // replacing beats failing the whole query.
        ValueRef::Text(t) => Value::Text(match std::str::from_utf8(t) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(t).into_owned(),
        }),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// Binds `params`; says whether any of them is a text or blob, which SQLite
/// keeps a copy of until the statement's bindings are cleared.
fn bind<'v>(
    stmt: &mut SqlStatement<'_>,
    params: impl ExactSizeIterator<Item = WireValue<'v>>,
) -> SqlResult<bool> {
    let expected = stmt.parameter_count();
    if expected != params.len() {
        return Err(Error::bad_request(format!(
            "statement takes {expected} parameter(s) but {} were given",
            params.len()
        )));
    }
    let mut holds_copies = false;
    for (i, p) in params.enumerate() {
        holds_copies |= matches!(p, WireValue::Text(_) | WireValue::Blob(_));
        stmt.raw_bind_parameter(i + 1, Bind(p)).map_err(sql_error)?;
    }
    Ok(holds_copies)
}

/// Runs a prepared statement with `params`: its rows, or what it changed.
/// Every parameter is bound at each run (the count must match), so earlier
/// values are only cleared when they hold copies: a cached statement would
/// otherwise keep its last text or blob until its next use.
fn run_prepared(
    stmt: &mut SqlStatement<'_>,
    conn: &Connection,
    access: &Access,
    params: &[Value],
    rows: bool,
) -> SqlResult<Reply> {
    let (reply, holds_copies) = match bind(stmt, params.iter().map(WireValue::from)) {
        Ok(holds_copies) => {
            let reply = if rows {
                read_rows(stmt, access.columns.clone()).map(Reply::Rows)
            } else {
                step_to_end(stmt).map(|()| Reply::Run(run_result(conn, access)))
            };
            (reply, holds_copies)
        }
        // Some values may be bound already.
        Err(e) => (Err(e), true),
    };
    if holds_copies {
        stmt.clear_bindings();
    }
    reply
}

fn read_rows(stmt: &mut SqlStatement<'_>, columns: Arc<[String]>) -> SqlResult<Rows> {
    let n = columns.len();
    let mut values = Vec::with_capacity(n);
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next().map_err(sql_error)? {
        for i in 0..n {
            values.push(to_value(row.get_ref(i).map_err(sql_error)?));
        }
    }
    Ok(Rows { columns, values })
}

fn step_to_end(stmt: &mut SqlStatement<'_>) -> SqlResult<()> {
    let mut rows = stmt.raw_query();
    while rows.next().map_err(sql_error)?.is_some() {}
    Ok(())
}

/// What the statement just run changed.
fn run_result(conn: &Connection, access: &Access) -> RunResult {
    RunResult {
        // A read leaves changes() at the last write's count; it changed nothing.
        changes: if access.readonly { 0 } else { conn.changes() },
        last_insert_rowid: conn.last_insert_rowid(),
    }
}

fn transaction_control_error() -> Error {
    Error::bad_request(
        "BEGIN, COMMIT, ROLLBACK and SAVEPOINT are managed by sqlite-tabs; use batch() or transaction()",
    )
}

impl Engine {
    /// Takes over a freshly opened connection: applies the pragmas, creates
    /// the log table and reads the last commit sequence number.
    pub fn new(conn: Connection, options: &EngineOptions) -> SqlResult<Engine> {
        // Literal PRAGMAs rather than rusqlite's pragma_update, whose value
        // formatting links Rust's float printing into the wasm (~17 KB).
        if options.exclusive_locking {
            conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE")
                .map_err(sql_error)?;
        }
        // journal_mode answers with the mode it got (in-memory databases
        // stay "memory"); either way the database works.
        let journal: String = conn
            .query_row(
                &format!("PRAGMA journal_mode = {}", options.journal_mode.sql_name()),
                [],
                |r| r.get(0),
            )
            .map_err(sql_error)?;
        conn.execute_batch("PRAGMA synchronous = FULL")
            .map_err(sql_error)?;
        conn.set_prepared_statement_cache_capacity(INTERNAL_STATEMENTS);
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {LOG_TABLE} (
                seq INTEGER PRIMARY KEY,
                client INTEGER NOT NULL,
                request INTEGER NOT NULL,
                tables BLOB NOT NULL,
                reply BLOB NOT NULL,
                UNIQUE (client, request)
            )"
        ))
        .map_err(sql_error)?;
        // Each open starts a new leader term. Only the worker that owns the
        // file can bump it, which makes it a fencing token for the router.
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
        ))
        .map_err(sql_error)?;
        let epoch: i64 = conn
            .query_row(
                &format!(
                    "INSERT INTO {META_TABLE} (key, value) VALUES ('epoch', 1)
                       ON CONFLICT (key) DO UPDATE SET value = value + 1
                       RETURNING value"
                ),
                [],
                |r| r.get(0),
            )
            .map_err(sql_error)?;
        let seq: i64 = conn
            .query_row(
                &format!("SELECT COALESCE(MAX(seq), 0) FROM {LOG_TABLE}"),
                [],
                |r| r.get(0),
            )
            .map_err(sql_error)?;

        let recorder = SharedRecorder::default();
        let hook = recorder.clone();
        let mut conn = conn;
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            with_recorder(&hook, |r| {
                if r.armed {
                    r.access.record(&ctx);
                }
            });
            Authorization::Allow
        }))
        .map_err(sql_error)?;
        let wal_pages = Arc::new(AtomicU32::new(0));
        if journal.eq_ignore_ascii_case("wal") {
            // Replaces SQLite's automatic checkpoint: a commit only notes the
            // WAL's size, and the worker checkpoints once it has answered.
            let pages = wal_pages.clone();
            conn.wal_hook(Some(move |_: &mut Wal, n: std::ffi::c_int| {
                pages.store(n.max(0) as u32, Ordering::Relaxed);
                Ok(())
            }))
            .map_err(sql_error)?;
        }

        Ok(Engine {
            prepared: foldhash::HashMap::default(),
            conn: Box::new(conn),
            recorder,
            schema_changed: false,
            wal_pages,
            seq: seq as u64,
            epoch: Epoch(epoch as u64),
            tx: None,
            // Transaction ids carry the epoch so that one begun under an
            // earlier leader can never name a transaction of this one.
            next_tx: ((epoch as u64) << 32) | 1,
        })
    }

    /// The sequence number of the last commit.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The leader term this engine's open started.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The interactive transaction in progress, if any.
    pub fn open_tx(&self) -> Option<TxId> {
        self.tx.as_ref().map(|t| t.id)
    }

    /// Whether the WAL has grown past the checkpoint threshold.
    pub fn checkpoint_due(&self) -> bool {
        self.wal_pages.load(Ordering::Relaxed) >= CHECKPOINT_PAGES
    }

    /// Copies the WAL into the database and starts it over, if it has grown
    /// past the threshold and no transaction is open. The worker calls it
    /// once its answers are sent, so the checkpoint delays no answer (SQLite
    /// would run it inside the commit that crossed the threshold).
    pub fn checkpoint_if_due(&mut self) {
        if !self.checkpoint_due() || self.tx.is_some() || !self.conn.is_autocommit() {
            return;
        }
        // PASSIVE completes: this connection is the file's only user and
        // holds no read transaction between requests. A failure leaves the
        // WAL as it is, to try again after the next commit.
        let done = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0));
        if matches!(done, Ok(0)) {
            self.wal_pages.store(0, Ordering::Relaxed);
        }
    }

    /// The underlying connection, for inspection in tests and tools.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Which tables a single statement reads and writes (cached by SQL text,
    /// with the statement prepared).
    pub fn access(&mut self, sql: &str) -> SqlResult<Arc<Access>> {
        self.forget_undone_schema();
        if let Some(p) = self.prepared.get(sql) {
            return Ok(p.access.clone());
        }
        // Prepared here, not found in a cache: the authorizer reports what
        // the statement accesses only while SQLite prepares it.
        arm(&self.recorder);
        let prepared = self.conn.prepare(sql);
        let mut access = disarm(&self.recorder);
        let stmt = prepared.map_err(sql_error)?;
        access.readonly = stmt.readonly();
        access.columns = stmt.column_names().map(str::to_owned).collect();
        let access = Arc::new(access);
        // SAFETY: `stmt` borrows `*self.conn`; see `Prepared::stmt` for why
        // that borrow outlives every statement in `self.prepared`.
        let stmt = unsafe { std::mem::transmute::<SqlStatement<'_>, SqlStatement<'static>>(stmt) };
        if self.prepared.len() >= STATEMENT_CACHE {
            self.prepared.clear();
        }
        self.prepared.insert(
            sql.to_owned(),
            Prepared {
                access: access.clone(),
                stmt,
            },
        );
        Ok(access)
    }

    /// Empties the statement cache if a transaction that changed the schema
    /// ended without a commit (commits reset the flag): what the cache learnt
    /// since described a schema that is gone.
    fn forget_undone_schema(&mut self) {
        if self.schema_changed && self.conn.is_autocommit() {
            self.prepared.clear();
            self.schema_changed = false;
        }
    }

    /// Runs `run` on the prepared statement of `sql` (analysed first if it
    /// is not cached) with the connection. `run` clears the bindings it
    /// leaves holding copies (see [`run_prepared`]).
    fn with_statement<R>(
        &mut self,
        sql: &str,
        run: impl FnOnce(&mut SqlStatement<'static>, &Connection) -> SqlResult<R>,
    ) -> SqlResult<R> {
        // One lookup when cached (the usual case): `run` returns nothing that
        // borrows the map, so this early return satisfies the borrow checker.
        if let Some(p) = self.prepared.get_mut(sql) {
            return run(&mut p.stmt, &self.conn);
        }
        self.access(sql)?;
        match self.prepared.get_mut(sql) {
            Some(p) => run(&mut p.stmt, &self.conn),
            None => Err(Error::internal(
                "a statement left the cache as it was prepared",
            )),
        }
    }

    /// A statement of the open transaction changed the schema, which can
    /// change what any statement accesses.
    fn note_schema_change(&mut self) {
        self.prepared.clear();
        self.schema_changed = true;
    }

    /// Commits made since `after`, oldest first, as far as the log reaches;
    /// `None` if the log no longer goes back that far.
    pub fn changes_since(&self, after: u64) -> SqlResult<Option<Vec<ChangeEvent>>> {
        if after >= self.seq {
            return Ok(Some(Vec::new()));
        }
        let oldest: Option<i64> = self
            .conn
            .query_row(&format!("SELECT MIN(seq) FROM {LOG_TABLE}"), [], |r| {
                r.get(0)
            })
            .map_err(sql_error)?;
        if oldest.is_none_or(|o| o as u64 > after + 1) {
            return Ok(None);
        }
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT seq, tables FROM {LOG_TABLE} WHERE seq > ?1 ORDER BY seq"
            ))
            .map_err(sql_error)?;
        let events = stmt
            .query_map([after as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(sql_error)?
            .map(|r| {
                let (seq, tables) = r.map_err(sql_error)?;
                Ok(ChangeEvent {
                    seq: seq as u64,
                    tables: decode(&tables).map_err(|e| Error::internal(e.to_string()))?,
                })
            })
            .collect::<SqlResult<Vec<_>>>()?;
        Ok(Some(events))
    }

    /// Executes one request.
    ///
    /// The caller (the scheduler) makes sure requests outside the open
    /// interactive transaction wait for it to end.
    pub fn execute(&mut self, id: RequestId, request: Request) -> Outcome {
        let outcome = match request {
            Request::Exec { sql, tx: None } => self.exec_script(id, &sql),
            Request::Query {
                sql,
                params,
                tx: None,
            } => self.single(id, &sql, &params, true),
            Request::Run {
                sql,
                params,
                tx: None,
            } => self.single(id, &sql, &params, false),
            Request::Batch { statements } => self.batch(id, &statements),
            Request::BatchPart { .. } | Request::CancelBatch => Outcome::reply(Err(
                Error::internal("batch parts run through the scheduler"),
            )),
            Request::Begin => Outcome::reply(self.begin().map(Reply::Began)),
            Request::Commit { tx } => self.commit(id, tx),
            Request::Rollback { tx } => Outcome::reply(self.rollback(tx)),
            Request::ChangesSince { after } => {
                let head = self.seq;
                Outcome::reply(self.changes_since(after).map(|events| match events {
                    Some(events) => Reply::Changes {
                        events,
                        complete: true,
                        head,
                    },
                    None => Reply::Changes {
                        events: Vec::new(),
                        complete: false,
                        head,
                    },
                }))
            }
            Request::Tables { sql } => Outcome::reply(
                self.access(&sql)
                    .map(|a| Reply::Tables(a.reads.iter().cloned().collect())),
            ),
            Request::Exec { sql, tx: Some(tx) } => Outcome::reply(self.in_tx(tx, |e, w| {
                e.run_script(&sql, w, &mut |_| Ok(())).map(|()| Reply::Done)
            })),
            Request::Query {
                sql,
                params,
                tx: Some(tx),
            } => Outcome::reply(self.in_tx(tx, |e, w| e.run_one(&sql, &params, true, w))),
            Request::Run {
                sql,
                params,
                tx: Some(tx),
            } => Outcome::reply(self.in_tx(tx, |e, w| e.run_one(&sql, &params, false, w))),
        };
        if self.tx.is_none() && !self.conn.is_autocommit() {
            // Never leave a transaction open behind a failed request.
            self.rollback_quietly();
        }
        outcome
    }

    fn rollback_quietly(&self) {
        if !self.conn.is_autocommit() {
            // Fails only when SQLite already rolled back; nothing to undo then.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// The stored answer to write request `id` if it was applied already
    /// (a request sent again: to a new leader, or a batch in parts after it
    /// committed).
    pub fn applied(&self, id: RequestId) -> SqlResult<Option<Reply>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT reply FROM {LOG_TABLE} WHERE client = ?1 AND request = ?2"
            ))
            .map_err(sql_error)?;
        let blob: Option<Vec<u8>> = stmt
            .query_row([id.client.0 as i64, id.seq as i64], |r| r.get(0))
            .optional()
            .map_err(sql_error)?;
        blob.map(|b| decode::<Reply>(&b).map_err(|e| Error::internal(e.to_string())))
            .transpose()
    }

    /// Appends the log row and commits the open transaction.
    fn commit_logged(
        &mut self,
        id: RequestId,
        tables: &BTreeSet<String>,
        reply: &Reply,
    ) -> SqlResult<ChangeEvent> {
        let seq = self.seq + 1;
        let change = self.append_log(seq, id, tables, reply)?;
        self.conn.execute_batch("COMMIT").map_err(sql_error)?;
        self.seq = seq;
        self.schema_changed = false;
        Ok(change)
    }

    /// Writes the log row of commit `seq` (and drops the row that falls out
    /// of the kept window), inside the open transaction.
    fn append_log(
        &mut self,
        seq: u64,
        id: RequestId,
        tables: &BTreeSet<String>,
        reply: &Reply,
    ) -> SqlResult<ChangeEvent> {
        let tables: Vec<String> = tables.iter().cloned().collect();
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO {LOG_TABLE} (seq, client, request, tables, reply) VALUES (?1, ?2, ?3, ?4, ?5)"
            ))
            .and_then(|mut s| {
                s.execute((
                    seq as i64,
                    id.client.0 as i64,
                    id.seq as i64,
                    encode(&tables),
                    encode(reply),
                ))
            })
            .map_err(sql_error)?;
        if seq > LOG_KEEP {
            self.conn
                .prepare_cached(&format!("DELETE FROM {LOG_TABLE} WHERE seq <= ?1"))
                .and_then(|mut s| s.execute([(seq - LOG_KEEP) as i64]))
                .map_err(sql_error)?;
        }
        Ok(ChangeEvent { seq, tables })
    }

    /// Whether a request may share a transaction with other writes (group
    /// commit): single-statement writes and batches outside interactive
    /// transactions. Scripts run alone (their PRAGMAs must run outside a
    /// transaction), and so do reads (nothing to commit).
    pub fn groupable(&mut self, request: &Request) -> bool {
        match request {
            Request::Batch { .. } => true,
            Request::Run { sql, tx: None, .. } | Request::Query { sql, tx: None, .. } => {
                self.access(sql).is_ok_and(|a| !a.readonly)
            }
            _ => false,
        }
    }

    /// Whether running `request` could change the database: anything but a
    /// read-only statement (a statement that does not prepare counts as a
    /// write: nothing is known about it).
    pub fn may_write(&mut self, request: &Request) -> bool {
        match request {
            Request::Query { sql, .. } | Request::Run { sql, .. } => {
                self.access(sql).map_or(true, |a| !a.readonly)
            }
            Request::ChangesSince { .. } | Request::Tables { .. } => false,
            _ => true,
        }
    }

    /// Group commit: runs several write requests in one transaction, each in
    /// a savepoint of its own so that a failing one rolls back only itself,
    /// and commits once. Each successful request still gets its own commit
    /// sequence number and log row. Requests must be [`Engine::groupable`].
    pub fn execute_group(&mut self, group: Vec<(RequestId, Request)>) -> Vec<Outcome> {
        if group.len() == 1 {
            return group
                .into_iter()
                .map(|(id, request)| self.execute(id, request))
                .collect();
        }
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            let e = sql_error(e);
            return group
                .iter()
                .map(|_| Outcome::reply(Err(e.clone())))
                .collect();
        }
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(group.len());
        let mut seq = self.seq;
        for (i, (id, request)) in group.iter().enumerate() {
            let id = *id;
            match self.applied(id) {
                Ok(Some(reply)) => {
                    outcomes.push(Outcome::reply(Ok(reply)));
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    outcomes.push(Outcome::reply(Err(e)));
                    continue;
                }
            }
            if let Err(e) = self.conn.execute_batch("SAVEPOINT sqlite_tabs_group") {
                outcomes.push(Outcome::reply(Err(sql_error(e))));
                continue;
            }
            let mut tables = BTreeSet::new();
            let result = match request {
                Request::Run { sql, params, .. } => self.run_one(sql, params, false, &mut tables),
                Request::Query { sql, params, .. } => self.run_one(sql, params, true, &mut tables),
                Request::Batch { statements } => self
                    .batch_body(statements, 0, &mut tables)
                    .map(Reply::Batch),
                _ => Err(Error::internal("not a groupable request")),
            }
            .and_then(|reply| {
                let change = self.append_log(seq + 1, id, &tables, &reply)?;
                Ok((reply, change))
            });
            match result {
                Ok((reply, change)) => {
                    seq += 1;
                    let _ = self.conn.execute_batch("RELEASE sqlite_tabs_group");
                    outcomes.push(Outcome {
                        result: Ok(reply),
                        change: Some(change),
                    });
                }
                Err(e) if self.conn.is_autocommit() => {
                    // The error ended the whole transaction (e.g. ON CONFLICT
                    // ROLLBACK, SQLITE_FULL): what the group did so far is
                    // gone. Redo the earlier requests and the rest one by one;
                    // ids of applied writes keep that exactly-once.
                    outcomes.push(Outcome::reply(Err(e)));
                    return self.redo_alone(outcomes, &group, i);
                }
                Err(e) => {
                    let _ = self
                        .conn
                        .execute_batch("ROLLBACK TO sqlite_tabs_group; RELEASE sqlite_tabs_group");
                    if self.schema_changed {
                        // Keeps the flag: an earlier request of the group may
                        // have changed the schema too, and the commit may fail.
                        self.prepared.clear();
                    }
                    outcomes.push(Outcome::reply(Err(e)));
                }
            }
        }
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => {
                self.seq = seq;
                self.schema_changed = false;
                outcomes
            }
            Err(e) => {
                self.rollback_quietly();
                let e = sql_error(e);
                outcomes
                    .into_iter()
                    .map(|o| match o.result {
                        Ok(_) => Outcome::reply(Err(Error {
                            message: format!("{} (commit failed; nothing was written)", e.message),
                            ..e.clone()
                        })),
                        Err(err) => Outcome::reply(Err(err)),
                    })
                    .collect()
            }
        }
    }

    /// After the group's transaction died at request `failed`: keeps the
    /// failures, re-runs what had succeeded and the requests not yet run,
    /// each on its own.
    fn redo_alone(
        &mut self,
        mut outcomes: Vec<Outcome>,
        group: &[(RequestId, Request)],
        failed: usize,
    ) -> Vec<Outcome> {
        for (i, (id, request)) in group.iter().enumerate() {
            let redo = if i < failed {
                outcomes[i].result.is_ok()
            } else {
                i > failed
            };
            if redo {
                let outcome = self.execute(*id, request.clone());
                if i < failed {
                    outcomes[i] = outcome;
                } else {
                    outcomes.push(outcome);
                }
            }
        }
        outcomes
    }

    /// Runs `body` in a write transaction that commits with a log row, unless
    /// the request was already applied.
    fn write(
        &mut self,
        id: RequestId,
        body: impl FnOnce(&mut Self, &mut BTreeSet<String>) -> SqlResult<Reply>,
    ) -> Outcome {
        match self.applied(id) {
            Ok(Some(reply)) => return Outcome::reply(Ok(reply)),
            Ok(None) => {}
            Err(e) => return Outcome::reply(Err(e)),
        }
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            return Outcome::reply(Err(sql_error(e)));
        }
        let mut tables = BTreeSet::new();
        let result = body(self, &mut tables).and_then(|reply| {
            match self.commit_logged(id, &tables, &reply) {
                Ok(change) => Ok((reply, change)),
                Err(e) => Err(e),
            }
        });
        match result {
            Ok((reply, change)) => Outcome {
                result: Ok(reply),
                change: Some(change),
            },
            Err(e) => {
                self.rollback_quietly();
                Outcome::reply(Err(e))
            }
        }
    }

    /// Runs one statement with parameters, collecting the tables it writes.
    fn run_one(
        &mut self,
        sql: &str,
        params: &[Value],
        rows: bool,
        writes: &mut BTreeSet<String>,
    ) -> SqlResult<Reply> {
        let access = self.access(sql)?;
        self.run_analysed(&access, sql, params, rows, writes)
    }

    /// [`Engine::run_one`] for a statement whose access is already known.
    fn run_analysed(
        &mut self,
        access: &Access,
        sql: &str,
        params: &[Value],
        rows: bool,
        writes: &mut BTreeSet<String>,
    ) -> SqlResult<Reply> {
        if access.transaction_control {
            return Err(transaction_control_error());
        }
        let reply = self.with_statement(sql, |stmt, conn| {
            run_prepared(stmt, conn, access, params, rows)
        })?;
        writes.extend(access.writes.iter().cloned());
        if access.schema_change {
            self.note_schema_change();
        }
        Ok(reply)
    }

    /// `query` or `run` outside an interactive transaction.
    fn single(&mut self, id: RequestId, sql: &str, params: &[Value], rows: bool) -> Outcome {
        self.forget_undone_schema();
        // A cached read, the most common request: one lookup finds both the
        // statement and what it accesses.
        if let Some(p) = self.prepared.get_mut(sql) {
            let a = &p.access;
            if a.readonly && !a.transaction_control && !a.schema_change {
                return Outcome::reply(run_prepared(&mut p.stmt, &self.conn, a, params, rows));
            }
        }
        // Whether it writes comes from the statement's cache entry, which
        // also holds it prepared for the run.
        let access = match self.access(sql) {
            Ok(access) => access,
            Err(e) => return Outcome::reply(Err(e)),
        };
        if access.readonly {
            let mut ignored = BTreeSet::new();
            Outcome::reply(self.run_analysed(&access, sql, params, rows, &mut ignored))
        } else {
            self.write(id, |e, writes| {
                e.run_analysed(&access, sql, params, rows, writes)
            })
        }
    }

    fn batch(&mut self, id: RequestId, statements: &Statements) -> Outcome {
        self.write(id, |e, writes| {
            e.batch_body(statements, 0, writes).map(Reply::Batch)
        })
    }

    /// Runs the statements of a batch as they are read from the message. A
    /// batch repeats one statement more often than not: each run of the same
    /// SQL is analysed, looked up and its tables noted once, not once per
    /// row. A failure names the statement's place in the batch, counting
    /// `before` statements before these (earlier parts).
    fn batch_body(
        &mut self,
        statements: &Statements,
        before: usize,
        writes: &mut BTreeSet<String>,
    ) -> SqlResult<Vec<RunResult>> {
        let numbered = |n: usize, mut err: Error| {
            err.message = format!("batch statement {}: {}", before + n, err.message);
            err
        };
        let mut results = Vec::with_capacity(statements.len());
        let mut cursor = statements.cursor();
        let mut params = Vec::new();
        let mut next = cursor.next(&mut params);
        while let Some(sql) = next.take() {
            let n = results.len() + 1;
            let sql = sql.map_err(|e| numbered(n, e.into()))?;
            let access = self.access(sql).map_err(|e| numbered(n, e))?;
            if access.transaction_control {
                return Err(numbered(n, transaction_control_error()));
            }
            // Cached by access() just above: any error comes from a run, and
            // is numbered there.
            self.with_statement(sql, |stmt, conn| {
                let run = loop {
                    if let Err(e) =
                        bind(stmt, params.iter().copied()).and_then(|_| step_to_end(stmt))
                    {
                        break Err(numbered(results.len() + 1, e));
                    }
                    results.push(run_result(conn, &access));
                    next = cursor.next(&mut params);
                    match &next {
                        Some(Ok(s)) if std::ptr::eq(*s, sql) || *s == sql => {}
                        _ => break Ok(()),
                    }
                };
                // Once per run of the same statement, not per statement.
                stmt.clear_bindings();
                run
            })?;
            writes.extend(access.writes.iter().cloned());
            if access.schema_change {
                self.note_schema_change();
            }
        }
        Ok(results)
    }

    /// Runs every statement of a script. `before_write` is called once, just
    /// before the first statement that writes, so the caller can open its
    /// transaction as late as possible (PRAGMAs such as `foreign_keys` are
    /// no-ops inside a transaction).
    fn run_script(
        &mut self,
        sql: &str,
        writes: &mut BTreeSet<String>,
        before_write: &mut dyn FnMut(&Connection) -> SqlResult<()>,
    ) -> SqlResult<()> {
        let mut batch = Batch::new(&self.conn, sql);
        let mut schema_change = false;
        let mut wrote = false;
        let result = loop {
            arm(&self.recorder);
            let next = batch.next();
            let access = disarm(&self.recorder);
            let mut stmt = match next {
                Ok(Some(stmt)) => stmt,
                Ok(None) => break Ok(()),
                Err(e) => break Err(sql_error(e)),
            };
            if access.transaction_control {
                break Err(transaction_control_error());
            }
            if !wrote && !stmt.readonly() && !access.pragma {
                wrote = true;
                if let Err(e) = before_write(&self.conn) {
                    break Err(e);
                }
            }
            schema_change |= access.schema_change;
            writes.extend(access.writes);
            if let Err(e) = step_to_end(&mut stmt) {
                break Err(e);
            }
        };
        if schema_change {
            self.note_schema_change();
        }
        result
    }

    fn exec_script(&mut self, id: RequestId, sql: &str) -> Outcome {
        match self.applied(id) {
            Ok(Some(reply)) => return Outcome::reply(Ok(reply)),
            Ok(None) => {}
            Err(e) => return Outcome::reply(Err(e)),
        }
        let mut writes = BTreeSet::new();
        let mut began = false;
        let result = self.run_script(sql, &mut writes, &mut |conn| {
            began = true;
            conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_error)
        });
        match result {
            Ok(()) if began => match self.commit_logged(id, &writes, &Reply::Done) {
                Ok(change) => Outcome {
                    result: Ok(Reply::Done),
                    change: Some(change),
                },
                Err(e) => {
                    self.rollback_quietly();
                    Outcome::reply(Err(e))
                }
            },
            Ok(()) => Outcome::reply(Ok(Reply::Done)),
            Err(e) => {
                self.rollback_quietly();
                Outcome::reply(Err(e))
            }
        }
    }

    /// Opens an interactive transaction, or the one a batch in parts runs
    /// in (see [`Request::BatchPart`]).
    pub fn begin(&mut self) -> SqlResult<TxId> {
        if let Some(open) = &self.tx {
            return Err(Error::internal(format!(
                "transaction {} is still open",
                open.id.0
            )));
        }
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(sql_error)?;
        let id = TxId(self.next_tx);
        self.next_tx += 1;
        self.tx = Some(OpenTx {
            id,
            writes: BTreeSet::new(),
        });
        Ok(id)
    }

    fn check_tx(&self, tx: TxId) -> SqlResult<()> {
        match &self.tx {
            Some(open) if open.id == tx => Ok(()),
            _ => Err(Error::bad_request(format!(
                "transaction {} is not active: it was committed, rolled back or expired",
                tx.0
            ))),
        }
    }

    fn in_tx<T>(
        &mut self,
        tx: TxId,
        body: impl FnOnce(&mut Self, &mut BTreeSet<String>) -> SqlResult<T>,
    ) -> SqlResult<T> {
        self.check_tx(tx)?;
        let mut writes = BTreeSet::new();
        let result = body(self, &mut writes);
        if self.conn.is_autocommit() {
            // SQLite itself rolled back (e.g. SQLITE_FULL, ON CONFLICT ROLLBACK).
            self.tx = None;
            let mut e = result.err().unwrap_or_else(|| {
                Error::internal("the transaction ended unexpectedly; it was rolled back")
            });
            e.message = format!("{} (the transaction was rolled back)", e.message);
            return Err(e);
        }
        if let Some(open) = &mut self.tx {
            open.writes.extend(writes);
        }
        result
    }

    fn commit(&mut self, id: RequestId, tx: TxId) -> Outcome {
        self.commit_with(id, tx, Reply::Done)
    }

    /// Commits the interactive transaction `tx`, logging `reply` as the
    /// answer to request `id`.
    fn commit_with(&mut self, id: RequestId, tx: TxId, reply: Reply) -> Outcome {
        if let Err(e) = self.check_tx(tx) {
            // A commit re-sent after a failover: it may have landed before.
            return match self.applied(id) {
                Ok(Some(reply)) => Outcome::reply(Ok(reply)),
                _ => Outcome::reply(Err(e)),
            };
        }
        let writes = self.tx.take().map(|t| t.writes).unwrap_or_default();
        match self.commit_logged(id, &writes, &reply) {
            Ok(change) => Outcome {
                result: Ok(reply),
                change: Some(change),
            },
            Err(e) => {
                self.rollback_quietly();
                Outcome::reply(Err(Error {
                    message: format!("{} (the transaction was rolled back)", e.message),
                    ..e
                }))
            }
        }
    }

    /// Runs one part of a batch in its transaction `tx`; `before` statements
    /// ran in the parts before it. On failure the transaction is left open
    /// for the caller to abort (SQLite may have ended it already).
    pub fn run_part(
        &mut self,
        tx: TxId,
        statements: &Statements,
        before: usize,
    ) -> SqlResult<Vec<RunResult>> {
        self.in_tx(tx, |e, writes| e.batch_body(statements, before, writes))
    }

    /// Commits the transaction of batch `id` sent in parts, logging its
    /// results as its answer.
    pub fn commit_parts(&mut self, id: RequestId, tx: TxId, results: Vec<RunResult>) -> Outcome {
        self.commit_with(id, tx, Reply::Batch(results))
    }

    fn rollback(&mut self, tx: TxId) -> SqlResult<Reply> {
        self.check_tx(tx)?;
        self.tx = None;
        self.rollback_quietly();
        Ok(Reply::Done)
    }

    /// Rolls back the interactive transaction, if it is `tx` (lease expired or
    /// its holder went away). Returns whether it was open.
    pub fn abort_tx(&mut self, tx: TxId) -> bool {
        if self.open_tx() == Some(tx) {
            self.tx = None;
            self.rollback_quietly();
            true
        } else {
            false
        }
    }
}
