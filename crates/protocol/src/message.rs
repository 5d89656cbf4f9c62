use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Error, Statements, Value};

/// Identifies one client (one `open()` call in one tab) for the lifetime of
/// that client; random, so ids of different tabs and page loads do not clash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientId(pub u64);

/// Identifies one request: unique across all clients of a database, so the
/// engine can use it to apply a re-sent write exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId {
    /// The client that sent it.
    pub client: ClientId,
    /// Counter within that client, starting at 1.
    pub seq: u64,
}

/// An interactive transaction, as handed out by [`Reply::Began`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxId(pub u64);

/// One statement with its bound parameters, as in `batch()`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Exactly one SQL statement; shared by the statements of a batch that
    /// repeat it.
    pub sql: Arc<str>,
    /// Values for its `?` / `?NNN` / `:name` parameters, in index order.
    pub params: Vec<Value>,
}

/// What a client asks the database to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Run one or more statements without parameters; no result.
    Exec {
        /// The SQL script.
        sql: String,
        /// Inside this interactive transaction, or on its own.
        tx: Option<TxId>,
    },
    /// Run one statement and return its rows.
    Query {
        /// Exactly one statement.
        sql: String,
        /// Bound parameters.
        params: Vec<Value>,
        /// Inside this interactive transaction, or on its own.
        tx: Option<TxId>,
    },
    /// Run one statement and return how many rows it changed.
    Run {
        /// Exactly one statement.
        sql: String,
        /// Bound parameters.
        params: Vec<Value>,
        /// Inside this interactive transaction, or on its own.
        tx: Option<TxId>,
    },
    /// Run several statements atomically: all of them or none.
    Batch {
        /// The statements, in order.
        statements: Statements,
    },
    /// Start an interactive transaction; other requests wait until it ends.
    Begin,
    /// Commit an interactive transaction.
    Commit {
        /// The transaction.
        tx: TxId,
    },
    /// Roll back an interactive transaction.
    Rollback {
        /// The transaction.
        tx: TxId,
    },
    /// The commits after sequence number `after`, for a tab that missed
    /// notifications.
    ChangesSince {
        /// The last sequence number the tab has seen.
        after: u64,
    },
    /// The tables a statement reads, as SQLite's authorizer reports them
    /// (for live queries).
    Tables {
        /// Exactly one statement.
        sql: String,
    },
    /// One of the messages of a batch sent in parts, all under the batch's
    /// request id: the client sends a large batch as it packs it, so that
    /// the worker starts on the first statements while the page still packs
    /// the rest. The parts run in order in one transaction, during which
    /// every other request waits (as for an interactive transaction); the
    /// `last` part commits it and is answered with the results of the whole
    /// batch, numbered across all parts. A part sent again (same index) is
    /// ignored; a part that skips one fails the batch, leaving nothing.
    BatchPart {
        /// 0 for the first part, then 1, 2, ...
        index: u32,
        /// Whether this part ends the batch.
        last: bool,
        /// The part's statements, in order.
        statements: Statements,
    },
    /// The batch with this request id, sent in parts, will not be finished
    /// (the client found a bad statement in a part it had not sent yet):
    /// roll back what its parts did. Not answered.
    CancelBatch,
}

impl Request {
    /// The interactive transaction this request belongs to, if any.
    pub fn tx(&self) -> Option<TxId> {
        match self {
            Request::Exec { tx, .. } | Request::Query { tx, .. } | Request::Run { tx, .. } => *tx,
            Request::Commit { tx } | Request::Rollback { tx } => Some(*tx),
            Request::Batch { .. }
            | Request::BatchPart { .. }
            | Request::CancelBatch
            | Request::Begin
            | Request::ChangesSince { .. }
            | Request::Tables { .. } => None,
        }
    }
}

/// A request with its id, as sent to the database worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// Matches the answer to the request; also the write's idempotency key.
    pub id: RequestId,
    /// What to do.
    pub request: Request,
    /// The sender had other requests awaiting answers when it sent this
    /// one, so more of its writes may be on the way: a write then waits for
    /// them to share its commit. Only a hint for group commit; it never
    /// changes what a request does.
    pub others_pending: bool,
}

/// Rows of a query, column-major names and row-major values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    /// Column names in result order, duplicates kept. Shared: the engine
    /// keeps a statement's names with its cached analysis.
    pub columns: Arc<[String]>,
    /// All values, row after row; each row has `columns.len()` values.
    pub values: Vec<Value>,
}

impl Rows {
    /// Number of rows.
    pub fn row_count(&self) -> usize {
        // A statement that returns rows always has at least one column.
        self.values
            .len()
            .checked_div(self.columns.len())
            .unwrap_or(0)
    }

    /// Iterates over the rows as slices.
    pub fn rows(&self) -> impl Iterator<Item = &[Value]> {
        self.values.chunks(self.columns.len().max(1))
    }
}

/// What a write statement did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    /// Rows inserted, updated or deleted by the statement.
    pub changes: u64,
    /// Rowid of the last successful insert on the connection.
    pub last_insert_rowid: i64,
}

/// The successful answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// `Exec`, `Commit` and `Rollback` succeeded.
    Done,
    /// `Query` rows.
    Rows(Rows),
    /// `Run` result.
    Run(RunResult),
    /// One result per statement of a `Batch`.
    Batch(#[serde(with = "crate::compact::run_results")] Vec<RunResult>),
    /// `Begin` started this transaction.
    Began(TxId),
    /// `ChangesSince`: the commits, oldest first; `complete` is false when
    /// the log no longer reaches back that far (the tab must refresh all).
    Changes {
        /// The commits found.
        events: Vec<ChangeEvent>,
        /// Whether nothing is missing between `after` and the first event.
        complete: bool,
        /// The sequence number of the last commit.
        head: u64,
    },
    /// `Tables`: the tables the statement reads.
    Tables(Vec<String>),
}

impl Reply {
    /// The variant's name, for messages about a reply that was not the
    /// expected one (cheaper to ship than a `Debug` of all it holds).
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Done => "Done",
            Reply::Rows(_) => "Rows",
            Reply::Run(_) => "Run",
            Reply::Batch(_) => "Batch",
            Reply::Began(_) => "Began",
            Reply::Changes { .. } => "Changes",
            Reply::Tables(_) => "Tables",
        }
    }
}

/// Where the database lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Storage {
    /// Persisted in the Origin Private File System.
    Opfs,
    /// In memory only: lost when the worker ends (opt-in fallback).
    Memory,
}

/// Asks a database worker to open a database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenParams {
    /// Database name, also its file name in the pool.
    pub name: String,
    /// Open an in-memory database when OPFS cannot be used, instead of failing.
    pub memory_fallback: bool,
}

/// The worker opened the database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenInfo {
    /// Where the data lives.
    pub storage: Storage,
    /// The last commit sequence number at open time.
    pub seq: u64,
    /// The leader term this open starts (one more than the previous open).
    pub epoch: Epoch,
}

/// Tables changed by one commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Commit sequence number; grows by one per commit.
    pub seq: u64,
    /// Names of the tables the commit wrote (sorted, no duplicates).
    pub tables: Vec<String>,
}

/// Messages to a database worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Open the database; the first message after [`FromWorker::Ready`].
    Open(OpenParams),
    /// Execute a request.
    Request(RequestEnvelope),
    /// Close the database and release its files; answered by
    /// [`FromWorker::Closed`]. The worker can open again afterwards.
    Close,
    /// The `MessagePort` attached to this message carries requests of
    /// `client` (brokered by the router).
    Attach {
        /// The client at the other end.
        client: ClientId,
    },
    /// `client` is gone: roll back its transaction, drop its waiting requests.
    Gone {
        /// The departed client.
        client: ClientId,
    },
    /// Get ready to lead: sent by a follower's tab once it has joined. The
    /// worker's wasm loads on its first message (`db-worker.js`), so a tab
    /// that joins a running leader does not load SQLite while it starts;
    /// this message loads it afterwards and compiles SQLite's common paths
    /// on a throwaway in-memory database, so that a takeover opens faster.
    Warm,
    /// The `MessagePort` attached to this message is the router's link to
    /// this worker while it leads (its tab sends the other end with
    /// [`ToRouter::LeaderReady`]). The router sends [`FromRouter::Attach`]
    /// (with the client's port) and [`FromRouter::Gone`] on it, so that tabs
    /// joining or leaving do not wait for the leader tab's main thread.
    RouterLink,
}

/// Messages from a database worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The worker's code is loaded and it listens for messages.
    Ready,
    /// Answer to [`ToWorker::Open`].
    Opened(Result<OpenInfo, Error>),
    /// Answer to one request.
    Reply {
        /// The request's id.
        id: RequestId,
        /// Its outcome.
        result: Result<Reply, Error>,
        /// The commit the request made, so the writer hears of it before
        /// its promise resolves (other tabs hear it by broadcast).
        change: Option<ChangeEvent>,
    },
    /// A commit happened.
    Changed(ChangeEvent),
    /// The database is closed and its files released.
    Closed,
    /// A message could not be understood and carried no readable request id.
    Rejected(Error),
    /// On the fallback channel (no SharedWorker): this worker now serves
    /// requests for `epoch`; re-send what is pending.
    Leader {
        /// The leader term.
        epoch: Epoch,
    },
    /// Answers to several requests of one client, in order: what a group
    /// commit produces. One message instead of one each, since every
    /// `postMessage` costs more than the bytes it carries.
    Replies(Vec<Answer>),
    /// Several commits, oldest first (a group commit's), in one broadcast.
    ChangedAll(Vec<ChangeEvent>),
}

/// One answer of [`FromWorker::Replies`], as in [`FromWorker::Reply`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The request's id.
    pub id: RequestId,
    /// Its outcome.
    pub result: Result<Reply, Error>,
    /// The commit the request made.
    pub change: Option<ChangeEvent>,
}

/// Which leader term a message belongs to. Grows by one each time a tab
/// becomes leader; stored in the database, so only the tab that really owns
/// the file can claim the next one.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

/// Messages from a tab to the SharedWorker router.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToRouter {
    /// A tab joined; it holds the Web Lock `tab_lock` for as long as it lives.
    Hello {
        /// The tab's client.
        client: ClientId,
        /// Name of the lock the tab holds while alive.
        tab_lock: String,
    },
    /// This tab holds the leader lock and its worker opened the database in
    /// this epoch. The message may carry a `MessagePort`: the other end of
    /// the worker's [`ToWorker::RouterLink`], where the router then sends
    /// [`FromRouter::Attach`] and [`FromRouter::Gone`] instead of to the tab.
    LeaderReady {
        /// The leader's client.
        client: ClientId,
        /// The epoch its worker claimed in the database.
        epoch: Epoch,
    },
    /// The tab leaves (closed the database or the page hides for good).
    Bye {
        /// The tab's client.
        client: ClientId,
    },
}

/// Messages from the router to a tab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromRouter {
    /// The attached `MessagePort` leads to the leader's worker of `epoch`:
    /// send requests there (re-sending those still pending).
    Connect {
        /// The leader term the port belongs to.
        epoch: Epoch,
        /// The leader's client.
        leader: ClientId,
    },
    /// To the leader's worker on its [`ToWorker::RouterLink`] (or, without
    /// one, to the leader's tab, which hands the port to its worker): the
    /// attached port carries the requests of `client`.
    Attach {
        /// The leader term.
        epoch: Epoch,
        /// The client at the other end of the port.
        client: ClientId,
    },
    /// To the leader's worker on its router link (or to the leader's tab):
    /// `client` is gone; roll back its transaction.
    Gone {
        /// The departed client.
        client: ClientId,
    },
    /// The leader went away; requests wait for the next one.
    LeaderLost {
        /// The epoch that ended.
        epoch: Epoch,
    },
    /// Answer to `Hello`: the router holds its Web Lock
    /// (`sqlite-tabs:<name>:router`), so the tab may now watch that lock to
    /// learn when the router dies (its renderer crashed) and reconnect.
    Welcome,
}
