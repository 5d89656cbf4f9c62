//! Native tests of the engine and the scheduler, on a real SQLite file.

use rusqlite::Connection;
use sqlite_tabs_protocol::{
    decode, encode, ClientId, ErrorCode, Reply, Request, RequestEnvelope, RequestId, Rows,
    RunResult, Statement, Statements, TxId, Value,
};

use crate::engine::{Engine, EngineOptions, JournalMode, Outcome, LOG_TABLE};
use crate::scheduler::Scheduler;

struct Db {
    engine: Engine,
    client: ClientId,
    next: u64,
    dir: tempdir::Dir,
}

mod tempdir {
    use std::path::PathBuf;

    pub struct Dir(pub PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("sqlite-tabs-engine-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The engine on a file in `dir`, through the write-combining VFS over the
/// default one, as the worker runs it over OPFS.
fn open_at(dir: &tempdir::Dir, options: &EngineOptions) -> Engine {
    crate::coalesce::register(None, "coalesce-test").unwrap();
    let conn = Connection::open_with_flags_and_vfs(
        dir.0.join("test.db"),
        rusqlite::OpenFlags::default(),
        "coalesce-test",
    )
    .unwrap();
    Engine::new(conn, options).unwrap()
}

impl Db {
    fn new() -> Db {
        let dir = tempdir::Dir::new();
        Db {
            engine: open_at(&dir, &EngineOptions::default()),
            client: ClientId(7),
            next: 0,
            dir,
        }
    }

    /// Closes the file and opens it again, as a new leader would.
    fn reopen(&mut self) {
        let placeholder = Engine::new(
            Connection::open_in_memory().unwrap(),
            &EngineOptions::default(),
        )
        .unwrap();
        drop(std::mem::replace(&mut self.engine, placeholder));
        self.engine = open_at(&self.dir, &EngineOptions::default());
    }

    fn id(&mut self) -> RequestId {
        self.next += 1;
        RequestId {
            client: self.client,
            seq: self.next,
        }
    }

    fn run(&mut self, request: Request) -> Outcome {
        let id = self.id();
        self.engine.execute(id, request)
    }

    fn exec(&mut self, sql: &str) -> Outcome {
        self.run(Request::Exec {
            sql: sql.into(),
            tx: None,
        })
    }

    fn query(
        &mut self,
        sql: &str,
        params: Vec<Value>,
    ) -> Result<Rows, sqlite_tabs_protocol::Error> {
        match self
            .run(Request::Query {
                sql: sql.into(),
                params,
                tx: None,
            })
            .result?
        {
            Reply::Rows(rows) => Ok(rows),
            other => panic!("not rows: {other:?}"),
        }
    }

    fn write(&mut self, sql: &str, params: Vec<Value>) -> Outcome {
        self.run(Request::Run {
            sql: sql.into(),
            params,
            tx: None,
        })
    }

    fn begin(&mut self) -> TxId {
        match self.run(Request::Begin).result {
            Ok(Reply::Began(tx)) => tx,
            other => panic!("{other:?}"),
        }
    }

    fn count(&mut self, table: &str) -> i64 {
        match self.query(&format!("SELECT count(*) FROM {table}"), vec![]) {
            Ok(rows) => match rows.values[0] {
                Value::Integer(n) => n,
                ref v => panic!("{v:?}"),
            },
            Err(e) => panic!("{e}"),
        }
    }
}

fn code(outcome: &Outcome) -> String {
    outcome
        .result
        .as_ref()
        .unwrap_err()
        .code
        .name()
        .into_owned()
}

#[test]
fn exec_runs_several_statements_and_announces_tables() {
    let mut db = Db::new();
    let o = db.exec("CREATE TABLE a(x); CREATE TABLE b(y); INSERT INTO a VALUES (1), (2);");
    assert_eq!(o.result, Ok(Reply::Done));
    let change = o.change.unwrap();
    assert_eq!(change.seq, 1);
    assert_eq!(change.tables, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(db.count("a"), 2);
}

#[test]
fn every_value_type_roundtrips() {
    let mut db = Db::new();
    db.exec("CREATE TABLE v(x)").result.unwrap();
    let values = vec![
        Value::Null,
        Value::Integer(0),
        Value::Integer(i64::MAX),
        Value::Integer(i64::MIN),
        Value::Integer(1 << 53),
        Value::Real(1.5),
        Value::Real(-0.0),
        Value::Text(String::new()),
        Value::Text("unicode ✓ \u{1F600}".into()),
        Value::Blob(vec![]),
        Value::Blob((0..=255).collect()),
    ];
    for v in &values {
        db.write("INSERT INTO v VALUES (?)", vec![v.clone()])
            .result
            .unwrap();
    }
    let rows = db.query("SELECT x FROM v ORDER BY rowid", vec![]).unwrap();
    assert_eq!(rows.values, values);
}

#[test]
fn column_names_follow_schema_changes() {
    let mut db = Db::new();
    db.exec("CREATE TABLE t(a); INSERT INTO t VALUES (1)")
        .result
        .unwrap();
    let columns = |db: &mut Db| db.query("SELECT * FROM t", vec![]).unwrap().columns;
    assert_eq!(*columns(&mut db), ["a"]);
    db.exec("ALTER TABLE t ADD COLUMN b").result.unwrap();
    assert_eq!(*columns(&mut db), ["a", "b"]);
    db.exec("ALTER TABLE t RENAME COLUMN a TO z")
        .result
        .unwrap();
    assert_eq!(*columns(&mut db), ["z", "b"]);

    // Inside a transaction that is then rolled back: the names seen inside
    // must not outlive it.
    let tx = db.begin();
    db.run(Request::Exec {
        sql: "ALTER TABLE t ADD COLUMN c".into(),
        tx: Some(tx),
    })
    .result
    .unwrap();
    match db
        .run(Request::Query {
            sql: "SELECT * FROM t".into(),
            params: vec![],
            tx: Some(tx),
        })
        .result
    {
        Ok(Reply::Rows(rows)) => assert_eq!(*rows.columns, ["z", "b", "c"]),
        other => panic!("{other:?}"),
    }
    db.run(Request::Rollback { tx }).result.unwrap();
    let rows = db.query("SELECT * FROM t", vec![]).unwrap();
    assert_eq!(*rows.columns, ["z", "b"]);
    assert_eq!(rows.values, vec![Value::Integer(1), Value::Null]);
}

#[test]
fn query_keeps_column_order_and_duplicate_names() {
    let mut db = Db::new();
    let rows = db
        .query(
            "SELECT 1 AS a, 2 AS b, 3 AS a, ?2 AS p2, ?1 AS p1",
            vec![Value::Integer(10), Value::Text("two".into())],
        )
        .unwrap();
    assert_eq!(*rows.columns, ["a", "b", "a", "p2", "p1"]);
    assert_eq!(
        rows.values,
        vec![
            Value::Integer(1),
            Value::Integer(2),
            Value::Integer(3),
            Value::Text("two".into()),
            Value::Integer(10)
        ]
    );
}

#[test]
fn run_reports_changes_and_rowid() {
    let mut db = Db::new();
    db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x)")
        .result
        .unwrap();
    let o = db.write("INSERT INTO t(id, x) VALUES (41, 'a')", vec![]);
    assert_eq!(
        o.result,
        Ok(Reply::Run(RunResult {
            changes: 1,
            last_insert_rowid: 41
        }))
    );
    assert_eq!(o.change.unwrap().tables, vec!["t".to_string()]);
    db.write("INSERT INTO t(x) VALUES ('b')", vec![])
        .result
        .unwrap();
    let o = db.write("UPDATE t SET x = 'z'", vec![]);
    assert!(matches!(
        o.result,
        Ok(Reply::Run(RunResult { changes: 2, .. }))
    ));
    // A read through run() changes nothing and announces nothing.
    let o = db.write("SELECT * FROM t", vec![]);
    assert!(matches!(
        o.result,
        Ok(Reply::Run(RunResult { changes: 0, .. }))
    ));
    assert_eq!(o.change, None);
}

#[test]
fn batch_is_all_or_nothing() {
    let mut db = Db::new();
    db.exec("CREATE TABLE t(x UNIQUE)").result.unwrap();
    let stmt = |v: i64| Statement {
        sql: "INSERT INTO t VALUES (?)".into(),
        params: vec![Value::Integer(v)],
    };
    let o = db.run(Request::Batch {
        statements: vec![stmt(1), stmt(2), stmt(1)].into(),
    });
    assert_eq!(code(&o), "SQLITE_CONSTRAINT_UNIQUE");
    assert!(o.result.unwrap_err().message.contains("batch statement 3"));
    assert_eq!(db.count("t"), 0);
    let o = db.run(Request::Batch {
        statements: (0..1000).map(stmt).collect::<Vec<_>>().into(),
    });
    match o.result {
        Ok(Reply::Batch(results)) => {
            assert_eq!(results.len(), 1000);
            assert_eq!(results[999].last_insert_rowid, 1000);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(db.count("t"), 1000);
    assert!(db.engine.connection().is_autocommit());

    // Runs of different statements: results in order, failures numbered
    // across the whole batch.
    let update = |v: i64| Statement {
        sql: "UPDATE t SET x = x + 10000 WHERE x = ?".into(),
        params: vec![Value::Integer(v)],
    };
    let read = Statement {
        sql: "SELECT count(*) FROM t".into(),
        params: vec![],
    };
    let o = db.run(Request::Batch {
        statements: vec![
            stmt(2000),
            update(2000),
            update(1),
            read.clone(),
            stmt(2001),
        ]
        .into(),
    });
    match o.result {
        Ok(Reply::Batch(results)) => {
            let changes: Vec<i64> = results.iter().map(|r| r.changes as i64).collect();
            assert_eq!(changes, [1, 1, 1, 0, 1]);
            assert_eq!(results[4].last_insert_rowid, 1002);
        }
        other => panic!("{other:?}"),
    }
    let mut bad = stmt(3002);
    bad.params.push(Value::Integer(1));
    let o = db.run(Request::Batch {
        statements: vec![stmt(3000), stmt(3001), read, bad, stmt(3003)].into(),
    });
    assert_eq!(code(&o), "BAD_REQUEST");
    assert!(o.result.unwrap_err().message.contains("batch statement 4"));
    assert_eq!(db.count("t"), 1002);
}

#[test]
fn a_batch_cut_short_fails_whole_naming_the_missing_statement() {
    let mut db = Db::new();
    db.exec("CREATE TABLE t(x)").result.unwrap();
    let statements: Statements = (0..3)
        .map(|i| Statement {
            sql: "INSERT INTO t VALUES (?)".into(),
            params: vec![Value::Integer(i)],
        })
        .collect::<Vec<_>>()
        .into();
    // The encoded statements announce a fourth statement that is not there:
    // the worker reads statements while it runs them, so the first three
    // have run when the fourth turns out to be missing.
    let mut bytes = encode(&statements);
    assert_eq!((bytes[0] as usize, bytes[1]), (bytes.len() - 1, 3));
    bytes[1] = 4;
    let statements: Statements = decode(&bytes).unwrap();
    let o = db.run(Request::Batch { statements });
    assert_eq!(code(&o), "BAD_REQUEST");
    assert!(o.result.unwrap_err().message.contains("batch statement 4"));
    assert_eq!(db.count("t"), 0);
    assert!(db.engine.connection().is_autocommit());
}

#[test]
fn bad_input_is_a_typed_error_and_the_next_request_works() {
    let mut db = Db::new();
    db.exec("CREATE TABLE t(x NOT NULL UNIQUE)").result.unwrap();
    let cases: Vec<(Outcome, &str)> = vec![
        (db.exec("SELEC 1"), "SQLITE_ERROR"),
        (
            db.write("INSERT INTO t VALUES (?)", vec![Value::Null]),
            "SQLITE_CONSTRAINT_NOTNULL",
        ),
        (db.write("INSERT INTO t VALUES (?)", vec![]), "BAD_REQUEST"),
        (
            db.write(
                "INSERT INTO t VALUES (?)",
                vec![Value::Integer(1), Value::Integer(2)],
            ),
            "BAD_REQUEST",
        ),
        (
            db.write("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)", vec![]),
            "BAD_REQUEST",
        ),
        (db.write("SELECT * FROM missing", vec![]), "SQLITE_ERROR"),
        (db.exec("BEGIN; INSERT INTO t VALUES (5)"), "BAD_REQUEST"),
        (db.exec("INSERT INTO t VALUES (6); COMMIT"), "BAD_REQUEST"),
    ];
    for (outcome, expected) in cases {
        assert_eq!(code(&outcome), expected, "{outcome:?}");
        assert!(
            db.engine.connection().is_autocommit(),
            "left a transaction open"
        );
    }
    assert_eq!(
        db.count("t"),
        0,
        "a failed script must not leave its first statements"
    );
    db.write("INSERT INTO t VALUES (1)", vec![]).result.unwrap();
    let o = db.write("INSERT INTO t VALUES (1)", vec![]);
    assert_eq!(code(&o), "SQLITE_CONSTRAINT_UNIQUE");
    assert!(o
        .result
        .unwrap_err()
        .message
        .contains("UNIQUE constraint failed"));
    assert_eq!(db.count("t"), 1);
}

#[test]
fn huge_values_work() {
    let mut db = Db::new();
    db.exec("CREATE TABLE t(x)").result.unwrap();
    let big = "x".repeat(10 * 1024 * 1024);
    db.write("INSERT INTO t VALUES (?)", vec![Value::Text(big.clone())])
        .result
        .unwrap();
    let rows = db.query("SELECT x FROM t", vec![]).unwrap();
    assert_eq!(rows.values, vec![Value::Text(big)]);
}

#[test]
fn an_engine_dropped_with_prepared_statements_lets_the_file_go() {
    // The engine keeps the app's statements prepared; they must be
    // finalized before its connection closes, or the connection stays open
    // (and keeps its exclusive lock) and the next leader cannot open.
    let mut db = Db::new();
    db.exec("CREATE TABLE t (x)");
    for i in 0..3 {
        db.run(Request::Run {
            sql: "INSERT INTO t VALUES (?)".into(),
            params: vec![Value::Integer(i)],
            tx: None,
        });
        db.run(Request::Query {
            sql: "SELECT count(*) FROM t WHERE x >= ?".into(),
            params: vec![Value::Integer(0)],
            tx: None,
        });
    }
    db.reopen();
    assert_eq!(db.count("t"), 3);
    db.exec("INSERT INTO t VALUES (3)");
    assert_eq!(db.count("t"), 4);
}

#[test]
fn a_resent_write_is_applied_once_with_the_same_reply() {
    let mut db = Db::new();
    db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x)")
        .result
        .unwrap();
    let id = db.id();
    let insert = Request::Run {
        sql: "INSERT INTO t(x) VALUES ('once')".into(),
        params: vec![],
        tx: None,
    };
    let first = db.engine.execute(id, insert.clone());
    let again = db.engine.execute(id, insert);
    assert_eq!(first.result, again.result);
    assert!(first.change.is_some());
    assert_eq!(again.change, None, "a duplicate is not a new commit");
    assert_eq!(db.count("t"), 1);
    // The same applies after reopening the file (a new leader).
    let seq = db.engine.seq();
    db.reopen();
    let third = db.engine.execute(
        id,
        Request::Run {
            sql: "INSERT INTO t(x) VALUES ('once')".into(),
            params: vec![],
            tx: None,
        },
    );
    assert_eq!(third.result, first.result);
    assert_eq!(third.change, None);
    assert_eq!(db.engine.seq(), seq);
    assert_eq!(db.count("t"), 1);
}

#[test]
fn commit_sequence_survives_reopen_and_changes_can_be_replayed() {
    let mut db = Db::new();
    db.exec("CREATE TABLE a(x); CREATE TABLE b(x)")
        .result
        .unwrap();
    db.write("INSERT INTO a VALUES (1)", vec![]).result.unwrap();
    db.write("INSERT INTO b VALUES (1)", vec![]).result.unwrap();
    assert_eq!(db.engine.seq(), 3);
    let changes = db.engine.changes_since(1).unwrap().unwrap();
    assert_eq!(
        changes
            .iter()
            .map(|c| (c.seq, c.tables.clone()))
            .collect::<Vec<_>>(),
        vec![(2, vec!["a".to_string()]), (3, vec!["b".to_string()])]
    );
    assert_eq!(db.engine.changes_since(3).unwrap().unwrap(), vec![]);
    db.reopen();
    assert_eq!(db.engine.seq(), 3);
    assert_eq!(db.engine.changes_since(2).unwrap().unwrap().len(), 1);
}

#[test]
fn statement_access_comes_from_sqlite() {
    let mut db = Db::new();
    db.exec(
        "CREATE TABLE a(x); CREATE TABLE b(y); CREATE VIEW v AS SELECT x FROM a JOIN b ON x = y;",
    )
    .result
    .unwrap();
    let access = db.engine.access("SELECT * FROM v WHERE 1").unwrap();
    assert!(
        access.reads.contains("a") && access.reads.contains("b"),
        "{access:?}"
    );
    assert!(access.writes.is_empty());
    let access = db.engine.access("INSERT INTO b SELECT x FROM a").unwrap();
    assert_eq!(access.writes.iter().collect::<Vec<_>>(), ["b"]);
    assert!(access.reads.contains("a"));
}

#[test]
fn pragmas_before_writes_run_outside_the_transaction() {
    let mut db = Db::new();
    db.exec("PRAGMA foreign_keys = ON; CREATE TABLE p(id INTEGER PRIMARY KEY); CREATE TABLE c(p REFERENCES p(id));")
        .result
        .unwrap();
    let o = db.write("INSERT INTO c VALUES (99)", vec![]);
    assert_eq!(code(&o), "SQLITE_CONSTRAINT_FOREIGNKEY");
}

#[test]
fn interactive_transaction_commits_and_rolls_back() {
    let mut db = Db::new();
    db.exec("CREATE TABLE t(x)").result.unwrap();
    let tx = db.begin();
    let o = db.run(Request::Run {
        sql: "INSERT INTO t VALUES (1)".into(),
        params: vec![],
        tx: Some(tx),
    });
    assert!(o.result.is_ok() && o.change.is_none());
    // A failing statement inside keeps the transaction usable.
    let o = db.run(Request::Query {
        sql: "SELECT nope".into(),
        params: vec![],
        tx: Some(tx),
    });
    assert_eq!(code(&o), "SQLITE_ERROR");
    let o = db.run(Request::Commit { tx });
    assert_eq!(o.result, Ok(Reply::Done));
    assert_eq!(o.change.unwrap().tables, vec!["t".to_string()]);
    assert_eq!(db.count("t"), 1);

    let tx = db.begin();
    db.run(Request::Exec {
        sql: "INSERT INTO t VALUES (2); INSERT INTO t VALUES (3)".into(),
        tx: Some(tx),
    })
    .result
    .unwrap();
    assert_eq!(db.run(Request::Rollback { tx }).result, Ok(Reply::Done));
    assert_eq!(db.count("t"), 1);
    let o = db.run(Request::Commit { tx });
    assert_eq!(code(&o), "BAD_REQUEST");
}

fn envelope(client: u64, seq: u64, request: Request) -> RequestEnvelope {
    RequestEnvelope {
        id: RequestId {
            client: ClientId(client),
            seq,
        },
        request,
        others_pending: false,
    }
}

fn scheduler() -> (Scheduler, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    let mut engine = open_at(&dir, &EngineOptions::default());
    let id = RequestId {
        client: ClientId(99),
        seq: 1,
    };
    engine
        .execute(
            id,
            Request::Exec {
                sql: "CREATE TABLE t(x)".into(),
                tx: None,
            },
        )
        .result
        .unwrap();
    (Scheduler::new(engine, 1000.0), dir)
}

fn insert(tx: Option<TxId>, x: i64) -> Request {
    Request::Run {
        sql: "INSERT INTO t VALUES (?)".into(),
        params: vec![Value::Integer(x)],
        tx,
    }
}

fn began(out: &crate::scheduler::Output) -> TxId {
    match &out.replies[0].1 {
        Ok(Reply::Began(tx)) => *tx,
        other => panic!("{other:?}"),
    }
}

#[test]
fn requests_wait_for_the_open_transaction() {
    let (mut s, _dir) = scheduler();
    let tx = began(&s.submit(envelope(1, 1, Request::Begin), 0.0));
    let out = s.submit(envelope(2, 1, insert(None, 20)), 1.0);
    assert!(out.replies.is_empty(), "must wait");
    assert_eq!(s.waiting(), 1);
    let out = s.submit(envelope(1, 2, insert(Some(tx), 10)), 2.0);
    assert_eq!(out.replies.len(), 1);
    let out = s.submit(envelope(1, 3, Request::Commit { tx }), 3.0);
    // The commit, then the waiting insert.
    assert_eq!(out.replies.len(), 2);
    assert_eq!(out.replies[1].0.client, ClientId(2));
    assert_eq!(out.changes.len(), 2);
    assert_eq!(s.waiting(), 0);
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn an_idle_transaction_is_rolled_back_when_its_lease_expires() {
    let (mut s, _dir) = scheduler();
    let tx = began(&s.submit(envelope(1, 1, Request::Begin), 0.0));
    s.submit(envelope(1, 2, insert(Some(tx), 1)), 500.0);
    assert_eq!(s.next_deadline(), Some(1500.0), "activity renews the lease");
    s.submit(envelope(2, 1, insert(None, 2)), 600.0);
    assert!(s.on_timer(1000.0).replies.is_empty(), "not yet");
    let out = s.on_timer(1500.0);
    assert_eq!(out.replies.len(), 1, "the waiting request runs");
    let late = s.submit(envelope(1, 3, Request::Commit { tx }), 1600.0);
    assert_eq!(
        late.replies[0].1.as_ref().unwrap_err().code,
        ErrorCode::BadRequest
    );
    let rows = s
        .engine()
        .connection()
        .query_row("SELECT group_concat(x) FROM t", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap();
    assert_eq!(rows, "2");
}

#[test]
fn a_dead_client_loses_its_transaction_and_queue() {
    let (mut s, _dir) = scheduler();
    let tx = began(&s.submit(envelope(1, 1, Request::Begin), 0.0));
    s.submit(envelope(1, 2, insert(Some(tx), 1)), 1.0);
    s.submit(envelope(2, 1, insert(None, 2)), 2.0);
    s.submit(envelope(3, 1, Request::Begin), 3.0);
    s.submit(envelope(3, 2, insert(None, 3)), 4.0);
    let out = s.client_gone(ClientId(1), 5.0);
    // Client 2's insert runs; client 3's Begin takes the lease; client 3's
    // plain insert is not part of that transaction, so it waits.
    assert_eq!(out.replies.len(), 2);
    assert_eq!(s.waiting(), 1);
    let out = s.client_gone(ClientId(3), 6.0);
    assert!(out.replies.is_empty());
    assert_eq!(s.waiting(), 0);
    let n: i64 = s
        .engine()
        .connection()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn journal_modes_all_work() {
    for mode in [
        JournalMode::Delete,
        JournalMode::Truncate,
        JournalMode::Persist,
        JournalMode::Wal,
    ] {
        let dir = tempdir::Dir::new();
        let options = EngineOptions {
            journal_mode: mode,
            exclusive_locking: true,
        };
        let mut e = open_at(&dir, &options);
        let id = |seq| RequestId {
            client: ClientId(1),
            seq,
        };
        e.execute(
            id(1),
            Request::Exec {
                sql: "CREATE TABLE t(x); INSERT INTO t VALUES (1)".into(),
                tx: None,
            },
        )
        .result
        .unwrap();
        drop(e);
        let e = open_at(&dir, &options);
        let mode_now: String = e
            .connection()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode_now.to_uppercase(), format!("{mode:?}").to_uppercase());
        let n: i64 = e
            .connection()
            .query_row(
                &format!("SELECT count(*) FROM t JOIN {LOG_TABLE}"),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);
    }
}

#[test]
fn each_open_is_a_new_epoch_and_transaction_ids_do_not_repeat() {
    let mut db = Db::new();
    let first = db.engine.epoch();
    let tx1 = match db.run(Request::Begin).result {
        Ok(Reply::Began(tx)) => tx,
        other => panic!("{other:?}"),
    };
    db.run(Request::Rollback { tx: tx1 }).result.unwrap();
    db.reopen();
    assert_eq!(db.engine.epoch().0, first.0 + 1);
    let tx2 = match db.run(Request::Begin).result {
        Ok(Reply::Began(tx)) => tx,
        other => panic!("{other:?}"),
    };
    assert_ne!(tx1, tx2);
    // A transaction id of the previous leader is not active here.
    let o = db.run(Request::Commit { tx: tx1 });
    assert_eq!(code(&o), "BAD_REQUEST");
}

#[test]
fn changes_since_and_tables_are_requests() {
    let mut db = Db::new();
    db.exec("CREATE TABLE a(x); CREATE VIEW v AS SELECT x FROM a")
        .result
        .unwrap();
    db.write("INSERT INTO a VALUES (1)", vec![]).result.unwrap();
    match db.run(Request::ChangesSince { after: 1 }).result {
        Ok(Reply::Changes {
            events,
            complete,
            head,
        }) => {
            assert!(complete);
            assert_eq!(head, 2);
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].tables, vec!["a".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        db.run(Request::Tables {
            sql: "SELECT * FROM v".into()
        })
        .result,
        Ok(Reply::Tables(vec!["a".into(), "v".into()]))
    );
}

fn insert_unique(x: i64) -> Request {
    Request::Run {
        sql: "INSERT INTO g(x) VALUES (?)".into(),
        params: vec![Value::Integer(x)],
        tx: None,
    }
}

#[test]
fn group_commit_fails_only_the_bad_request() {
    let mut db = Db::new();
    db.exec("CREATE TABLE g(x UNIQUE)").result.unwrap();
    let seq = db.engine.seq();
    let mut group = Vec::new();
    for x in 0..10 {
        let id = db.id();
        // The fifth request collides with the first.
        group.push((id, insert_unique(if x == 4 { 0 } else { x })));
    }
    group.push((
        db.id(),
        Request::Batch {
            statements: vec![
                Statement {
                    sql: "INSERT INTO g(x) VALUES (100)".into(),
                    params: vec![],
                },
                Statement {
                    sql: "INSERT INTO g(x) VALUES (100)".into(),
                    params: vec![],
                },
            ]
            .into(),
        },
    ));
    // A re-sent duplicate of the first request within the same group.
    group.push((group[0].0, group[0].1.clone()));
    let outcomes = db.engine.execute_group(group);
    assert_eq!(outcomes.len(), 12);
    let failed: Vec<usize> = (0..12).filter(|&i| outcomes[i].result.is_err()).collect();
    assert_eq!(
        failed,
        vec![4, 10],
        "only the colliding insert and the bad batch fail"
    );
    assert_eq!(code(&outcomes[4]), "SQLITE_CONSTRAINT_UNIQUE");
    assert_eq!(
        outcomes[11].result, outcomes[0].result,
        "duplicate answered from the log"
    );
    assert_eq!(outcomes[11].change, None);
    let seqs: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| o.change.as_ref().map(|c| c.seq))
        .collect();
    assert_eq!(
        seqs,
        (seq + 1..=seq + 9).collect::<Vec<_>>(),
        "one commit number per success"
    );
    assert_eq!(db.engine.seq(), seq + 9);
    assert_eq!(db.count("g"), 9);
    assert!(db.engine.connection().is_autocommit());
}

#[test]
fn a_group_whose_transaction_dies_redoes_its_requests_alone() {
    let mut db = Db::new();
    // ON CONFLICT ROLLBACK ends the whole transaction, not just the statement.
    db.exec("CREATE TABLE g(x UNIQUE ON CONFLICT ROLLBACK)")
        .result
        .unwrap();
    let group: Vec<(RequestId, Request)> = [1, 2, 1, 3]
        .into_iter()
        .map(|x| (db.id(), insert_unique(x)))
        .collect();
    let outcomes = db.engine.execute_group(group);
    let ok: Vec<bool> = outcomes.iter().map(|o| o.result.is_ok()).collect();
    assert_eq!(ok, vec![true, true, false, true]);
    assert_eq!(db.count("g"), 3);
    assert!(db.engine.connection().is_autocommit());
}

#[test]
fn scheduler_groups_consecutive_writes_and_keeps_order_around_reads() {
    let (mut s, _dir) = scheduler();
    let envelopes = vec![
        envelope(1, 1, insert(None, 1)),
        envelope(2, 1, insert(None, 2)),
        envelope(
            3,
            1,
            Request::Query {
                sql: "SELECT count(*) FROM t".into(),
                params: vec![],
                tx: None,
            },
        ),
        envelope(1, 2, insert(None, 3)),
    ];
    let out = s.submit_all(envelopes, 0.0);
    assert_eq!(out.replies.len(), 4);
    // The read sees both writes before it, not the one after it.
    match &out.replies[2].1 {
        Ok(Reply::Rows(rows)) => assert_eq!(rows.values, vec![Value::Integer(2)]),
        other => panic!("{other:?}"),
    }
    assert_eq!(out.changes.len(), 3);
}

#[test]
fn a_rolled_back_schema_change_does_not_leave_stale_table_lists() {
    let tables = |db: &mut Db, sql: &str| db.run(Request::Tables { sql: sql.into() }).result;
    let expected = Ok(Reply::Tables(vec!["a".into(), "v".into()]));
    let mut db = Db::new();
    db.exec("CREATE TABLE a(x); CREATE TABLE b(y); CREATE VIEW v AS SELECT x FROM a")
        .result
        .unwrap();
    assert_eq!(tables(&mut db, "SELECT * FROM v"), expected);

    // Interactive transaction: the view is redefined and read, then rolled back.
    let tx = db.begin();
    db.run(Request::Exec {
        sql: "DROP VIEW v; CREATE VIEW v AS SELECT y FROM b".into(),
        tx: Some(tx),
    })
    .result
    .unwrap();
    db.run(Request::Query {
        sql: "SELECT * FROM v".into(),
        params: vec![],
        tx: Some(tx),
    })
    .result
    .unwrap();
    assert_eq!(db.run(Request::Rollback { tx }).result, Ok(Reply::Done));
    assert_eq!(tables(&mut db, "SELECT * FROM v"), expected);

    // A batch that redefines the view, reads it, then fails.
    let failing = || Request::Batch {
        statements: [
            "DROP VIEW v",
            "CREATE VIEW v AS SELECT y FROM b",
            "INSERT INTO b SELECT * FROM v",
            "INSERT INTO nope VALUES (1)",
        ]
        .map(|sql| Statement {
            sql: sql.into(),
            params: vec![],
        })
        .as_slice()
        .into(),
    };
    let o = db.run(failing());
    assert_eq!(code(&o), "SQLITE_ERROR");
    assert_eq!(
        tables(&mut db, "INSERT INTO b SELECT * FROM v"),
        Ok(Reply::Tables(vec!["a".into(), "v".into()]))
    );
    assert_eq!(tables(&mut db, "SELECT * FROM v"), expected);

    // The same batch in a group commit: only its savepoint rolls back.
    let insert = Request::Run {
        sql: "INSERT INTO a VALUES (1)".into(),
        params: vec![],
        tx: None,
    };
    let group = vec![(db.id(), failing()), (db.id(), insert)];
    let outcomes = db.engine.execute_group(group);
    assert_eq!(code(&outcomes[0]), "SQLITE_ERROR");
    assert!(outcomes[1].result.is_ok());
    assert_eq!(
        tables(&mut db, "INSERT INTO b SELECT * FROM v"),
        Ok(Reply::Tables(vec!["a".into(), "v".into()]))
    );
}

/// Rows of `t`, read through the scheduler's engine.
fn rows_of_t(s: &Scheduler) -> Vec<i64> {
    let conn = s.engine().connection();
    let mut stmt = conn.prepare("SELECT x FROM t ORDER BY rowid").unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn a_request_sent_again_to_the_same_leader_runs_once() {
    // A client re-sends its unanswered requests when it reconnects to the
    // same leader (the router restarted); the originals may have arrived.
    let (mut s, _dir) = scheduler();
    let tx = began(&s.submit(envelope(1, 1, Request::Begin), 0.0));
    let again = s.submit(envelope(1, 1, Request::Begin), 1.0);
    assert_eq!(again.replies.len(), 1, "answered at once, not queued");
    assert_eq!(began(&again), tx, "the same transaction, not a second one");
    let first = s.submit(envelope(1, 2, insert(Some(tx), 10)), 2.0);
    let second = s.submit(envelope(1, 2, insert(Some(tx), 10)), 3.0);
    assert_eq!(second.replies, first.replies, "the stored answer");
    // A read inside may simply run again.
    let read = |seq| {
        envelope(
            1,
            seq,
            Request::Query {
                sql: "SELECT count(*) AS n FROM t".into(),
                params: vec![],
                tx: Some(tx),
            },
        )
    };
    let first = s.submit(read(3), 4.0);
    assert_eq!(s.submit(read(3), 5.0).replies, first.replies);
    s.submit(envelope(2, 1, insert(None, 20)), 6.0);
    let out = s.submit(envelope(1, 4, Request::Commit { tx }), 7.0);
    assert_eq!(out.replies.len(), 2, "the commit, then the waiting insert");
    assert_eq!(rows_of_t(&s), [10, 20]);
    // Arriving after the transaction ended, neither opens nor writes anything.
    let late = s.submit(envelope(1, 1, Request::Begin), 8.0);
    assert_eq!(
        late.replies[0].1.as_ref().unwrap_err().code,
        ErrorCode::BadRequest
    );
    let late = s.submit(envelope(1, 2, insert(Some(tx), 10)), 9.0);
    assert_eq!(
        late.replies[0].1.as_ref().unwrap_err().code,
        ErrorCode::BadRequest
    );
    assert_eq!(s.next_deadline(), None, "no transaction is open");
    let out = s.submit(envelope(2, 2, insert(None, 30)), 10.0);
    assert_eq!(
        out.replies.len(),
        1,
        "nothing waits for an orphan transaction"
    );
    assert_eq!(rows_of_t(&s), [10, 20, 30]);
}

#[test]
fn the_wal_is_checkpointed_when_the_worker_asks_not_inside_the_commit() {
    let mut db = Db::new();
    let file = db.dir.0.join("test.db");
    let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
    db.exec("CREATE TABLE big (b BLOB)").result.unwrap();
    // About 1,300 pages in one commit: past SQLite's automatic threshold.
    let rows: Vec<Statement> = (0..1300)
        .map(|i| Statement {
            sql: "INSERT INTO big VALUES (?)".into(),
            params: vec![Value::Blob(vec![i as u8; 3500])],
        })
        .collect();
    db.run(Request::Batch {
        statements: rows.into(),
    })
    .result
    .unwrap();
    assert!(db.engine.checkpoint_due());
    let before = size(&file);
    assert!(
        before < 100 * 4096,
        "the commit left the pages in the WAL ({before} bytes)"
    );

    // Not while a transaction is open.
    let tx = db.begin();
    db.engine.checkpoint_if_due();
    assert!(db.engine.checkpoint_due());
    db.run(Request::Rollback { tx }).result.unwrap();

    db.engine.checkpoint_if_due();
    assert!(!db.engine.checkpoint_due());
    let after = size(&file);
    assert!(
        after > 1300 * 3500,
        "the pages are in the database file ({after} bytes)"
    );
    assert_eq!(db.count("big"), 1300);
}

/// Part `index` of a batch of inserts into `t` (values `xs`).
fn part(index: u32, last: bool, xs: &[i64]) -> Request {
    Request::BatchPart {
        index,
        last,
        statements: xs
            .iter()
            .map(|&x| Statement {
                sql: "INSERT INTO t VALUES (?)".into(),
                params: vec![Value::Integer(x)],
            })
            .collect::<Vec<_>>()
            .into(),
    }
}

#[test]
fn a_batch_in_parts_commits_once_at_its_last_part_and_others_wait() {
    let (mut s, _dir) = scheduler();
    assert!(s
        .submit(envelope(1, 7, part(0, false, &[1, 2])), 0.0)
        .replies
        .is_empty());
    // Another client's write and read wait for the batch: neither may see
    // or interleave with half of it.
    assert!(s
        .submit(envelope(2, 1, insert(None, 100)), 1.0)
        .replies
        .is_empty());
    assert!(s
        .submit(
            envelope(
                2,
                2,
                Request::Query {
                    sql: "SELECT count(*) FROM t".into(),
                    params: vec![],
                    tx: None,
                },
            ),
            1.0,
        )
        .replies
        .is_empty());
    assert_eq!(s.waiting(), 2);
    assert!(s
        .submit(envelope(1, 7, part(1, false, &[3])), 2.0)
        .replies
        .is_empty());
    let out = s.submit(envelope(1, 7, part(2, true, &[4, 5])), 3.0);
    // The batch's answer, then the waiting write and read.
    assert_eq!(out.replies.len(), 3);
    assert_eq!(out.replies[0].0.seq, 7);
    match &out.replies[0].1 {
        Ok(Reply::Batch(results)) => {
            let rowids: Vec<i64> = results.iter().map(|r| r.last_insert_rowid).collect();
            assert_eq!(rowids, [1, 2, 3, 4, 5]);
        }
        other => panic!("{other:?}"),
    }
    assert!(out.replies[0].2.is_some(), "one commit for the batch");
    match &out.replies[2].1 {
        Ok(Reply::Rows(rows)) => assert_eq!(rows.values, [Value::Integer(6)]),
        other => panic!("{other:?}"),
    }
    assert_eq!(out.changes.len(), 2);
    assert_eq!(rows_of_t(&s), [1, 2, 3, 4, 5, 100]);
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn a_failing_part_rolls_back_the_whole_batch_naming_its_statement() {
    let (mut s, _dir) = scheduler();
    s.submit(envelope(1, 1, part(0, false, &[1, 2])), 0.0);
    s.submit(envelope(2, 1, insert(None, 100)), 0.5);
    let bad = Request::BatchPart {
        index: 1,
        last: false,
        statements: vec![Statement {
            sql: "INSERT INTO nope VALUES (?)".into(),
            params: vec![Value::Integer(3)],
        }]
        .into(),
    };
    let out = s.submit(envelope(1, 1, bad), 1.0);
    // The batch fails at its third statement, then the waiting write runs.
    assert_eq!(out.replies.len(), 2);
    let e = out.replies[0].1.as_ref().unwrap_err();
    assert!(e.message.contains("batch statement 3"), "{e:?}");
    // Its later parts change nothing; the last one is answered with an error.
    assert!(s
        .submit(envelope(1, 1, part(2, false, &[4])), 2.0)
        .replies
        .is_empty());
    let out = s.submit(envelope(1, 1, part(3, true, &[5])), 3.0);
    assert_eq!(
        out.replies[0].1.as_ref().unwrap_err().code,
        ErrorCode::BadRequest
    );
    assert_eq!(rows_of_t(&s), [100]);
}

#[test]
fn batch_parts_sent_again_run_once() {
    // The router restarted mid-batch: the client sends every part again on
    // its new port; some of the first copies had arrived.
    let (mut s, _dir) = scheduler();
    s.submit(envelope(1, 1, part(0, false, &[1])), 0.0);
    s.submit(envelope(1, 1, part(1, false, &[2])), 0.0);
    s.submit(envelope(1, 1, part(0, false, &[1])), 1.0);
    s.submit(envelope(1, 1, part(1, false, &[2])), 1.0);
    let out = s.submit(envelope(1, 1, part(2, true, &[3])), 1.0);
    let first = out.replies[0].1.clone();
    assert!(
        matches!(&first, Ok(Reply::Batch(r)) if r.len() == 3),
        "{first:?}"
    );
    // And after it committed: nothing runs again, the last part gets the
    // same answer.
    assert!(s
        .submit(envelope(1, 1, part(0, false, &[1])), 2.0)
        .replies
        .is_empty());
    assert_eq!(s.next_deadline(), None, "no new transaction opened");
    assert!(s
        .submit(envelope(1, 1, part(1, false, &[2])), 2.0)
        .replies
        .is_empty());
    let again = s.submit(envelope(1, 1, part(2, true, &[3])), 2.0);
    assert_eq!(again.replies[0].1, first);
    assert_eq!(again.changes.len(), 0);
    assert_eq!(rows_of_t(&s), [1, 2, 3]);
}

#[test]
fn a_batch_missing_a_part_or_its_tab_leaves_nothing() {
    let (mut s, _dir) = scheduler();
    // A part skipped.
    s.submit(envelope(1, 1, part(0, false, &[1])), 0.0);
    let out = s.submit(envelope(1, 1, part(2, true, &[3])), 1.0);
    let e = out.replies[0].1.as_ref().unwrap_err();
    assert!(e.message.contains("part 2 arrived before part 1"), "{e:?}");
    // Its tab goes quiet: the lease expires, the waiting write runs.
    s.submit(envelope(2, 1, part(0, false, &[10])), 2.0);
    s.submit(envelope(3, 1, insert(None, 30)), 2.5);
    assert_eq!(s.next_deadline(), Some(1002.0));
    let out = s.on_timer(1002.0);
    assert_eq!(out.replies.len(), 1);
    assert_eq!(out.replies[0].0.client, ClientId(3));
    let late = s.submit(envelope(2, 1, part(1, true, &[11])), 1100.0);
    assert_eq!(
        late.replies[0].1.as_ref().unwrap_err().code,
        ErrorCode::BadRequest
    );
    // Its tab goes away.
    s.submit(envelope(4, 1, part(0, false, &[40])), 1200.0);
    s.client_gone(ClientId(4), 1201.0);
    assert_eq!(s.next_deadline(), None);
    // Its tab cancels it, once while it runs and once while it waits.
    s.submit(envelope(5, 1, part(0, false, &[50])), 1300.0);
    s.submit(envelope(6, 1, part(0, false, &[60])), 1300.0);
    s.submit(envelope(7, 1, insert(None, 70)), 1300.0);
    let out = s.submit(envelope(6, 1, Request::CancelBatch), 1301.0);
    assert!(out.replies.is_empty());
    let out = s.submit(envelope(5, 1, Request::CancelBatch), 1302.0);
    assert_eq!(out.replies.len(), 1, "the waiting insert runs");
    assert_eq!(s.waiting(), 0);
    assert_eq!(s.next_deadline(), None);
    assert_eq!(rows_of_t(&s), [30, 70]);
    assert!(s.engine().connection().is_autocommit());
}

#[test]
fn queued_parts_of_a_batch_follow_its_first_part() {
    // A batch whose parts all arrive while another transaction is open: once
    // that ends, its first part opens the batch's transaction and the rest
    // follow it out of the queue, ahead of requests queued between them.
    let (mut s, _dir) = scheduler();
    let tx = began(&s.submit(envelope(1, 1, Request::Begin), 0.0));
    s.submit(envelope(2, 1, part(0, false, &[1])), 1.0);
    s.submit(envelope(3, 1, insert(None, 30)), 1.0);
    s.submit(envelope(2, 1, part(1, true, &[2])), 1.0);
    let out = s.submit(envelope(1, 2, Request::Commit { tx }), 2.0);
    let order: Vec<u64> = out.replies.iter().map(|r| r.0.client.0).collect();
    assert_eq!(order, [1, 2, 3]);
    assert_eq!(rows_of_t(&s), [1, 2, 30]);
}

#[test]
fn the_write_combining_vfs_writes_a_commit_in_few_calls() {
    let mut db = Db::new();
    db.exec("CREATE TABLE w(a TEXT, b INTEGER)").result.unwrap();
    let rows: Vec<Statement> = (0..20_000)
        .map(|i| Statement {
            sql: "INSERT INTO w VALUES (?, ?)".into(),
            params: vec![Value::Text(format!("row {i}")), Value::Integer(i)],
        })
        .collect();
    let before = crate::coalesce::writes_passed();
    db.run(Request::Batch {
        statements: rows.into(),
    })
    .result
    .unwrap();
    let writes = crate::coalesce::writes_passed() - before;
    let frames: i64 = db
        .engine
        .connection()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    // SQLite wrote at least a frame per page of the table (two calls each
    // without the layer); contiguous frames went out 64 KiB at a time.
    assert!(frames > 50, "{frames}");
    assert!(writes > 0, "the commit did not go through the layer");
    assert!(
        writes * 8 < frames as u64,
        "{writes} writes for {frames} pages"
    );
    assert_eq!(db.count("w"), 20_000);
}

#[test]
fn bytes_held_by_the_write_combining_vfs_reach_the_file_on_flush_all() {
    // Without a sync at commit (synchronous=OFF) the last bytes of a commit
    // stay in the layer until flush_all, which the worker calls before it
    // answers.
    let dir = tempdir::Dir::new();
    crate::coalesce::register(None, "coalesce-test").unwrap();
    let path = dir.0.join("flush.db");
    let conn =
        Connection::open_with_flags_and_vfs(&path, rusqlite::OpenFlags::default(), "coalesce-test")
            .unwrap();
    conn.execute_batch(
        "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;
         CREATE TABLE f(x); INSERT INTO f VALUES (zeroblob(20000));",
    )
    .unwrap();
    let wal = dir.0.join("flush.db-wal");
    let size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let held = size();
    crate::coalesce::flush_all().unwrap();
    let written = size();
    assert!(held < written, "nothing was held back: {held} bytes");
    // The WAL header, then whole frames (24-byte header and a page each).
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!((written - 32) % (24 + page_size as u64), 0, "{written}");
    let n: i64 = conn
        .query_row("SELECT length(x) FROM f", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 20_000);
}

#[test]
fn a_lone_sequential_writer_runs_at_once_and_interleaved_writers_wait_for_the_group() {
    let mut wait = crate::scheduler::GroupWait::default();
    let write = |client, seq, others_pending| RequestEnvelope {
        others_pending,
        ..envelope(
            client,
            seq,
            Request::Run {
                sql: "INSERT INTO t VALUES (1)".into(),
                params: vec![],
                tx: None,
            },
        )
    };
    // Reads never wait, and do not count as writing.
    assert!(wait.run_at_once(&envelope(1, 1, Request::Begin), false));
    // A client's first write waits once; its next ones, sent one after
    // another, run at once.
    assert!(!wait.run_at_once(&write(1, 2, false), true));
    assert!(wait.run_at_once(&write(1, 3, false), true));
    assert!(wait.run_at_once(&write(1, 4, false), true));
    // With more of its requests in flight, it waits for them.
    assert!(!wait.run_at_once(&write(1, 5, true), true));
    // Another tab's write in between: both wait, and keep waiting while
    // their writes interleave.
    assert!(!wait.run_at_once(&write(2, 1, false), true));
    assert!(!wait.run_at_once(&write(1, 6, false), true));
    assert!(!wait.run_at_once(&write(2, 2, false), true));
    // Once one tab writes alone again, it runs at once from its second write.
    assert!(!wait.run_at_once(&write(1, 7, false), true));
    assert!(wait.run_at_once(&write(1, 8, false), true));
}
