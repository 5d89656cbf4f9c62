//! The engine inside a real dedicated worker, on the real OPFS pool, in
//! headless Chromium.
#![cfg(target_arch = "wasm32")]

use js_sys::Reflect;
use sqlite_tabs_db_worker::engine::{EngineOptions, Outcome};
use sqlite_tabs_db_worker::worker::{open_database, OpenDatabase};
use sqlite_tabs_protocol::{
    decode, encode, ClientId, ErrorCode, FromWorker, OpenParams, Reply, Request, RequestId, Rows,
    RunResult, Statement, Storage, Value,
};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

fn unique(name: &str) -> String {
    format!("{name}-{}.db", js_sys::Date::now() as u64)
}

fn params(name: &str) -> OpenParams {
    OpenParams {
        name: name.to_owned(),
        memory_fallback: false,
    }
}

struct Session {
    db: OpenDatabase,
    seq: u64,
}

impl Session {
    async fn open(name: &str) -> Session {
        let db = open_database(&params(name), &EngineOptions::default())
            .await
            .unwrap_or_else(|e| panic!("open {name}: {e}"));
        Session { db, seq: 0 }
    }

    /// Sends the request through the codec as the worker would.
    fn run(&mut self, request: Request) -> Outcome {
        self.seq += 1;
        let id = RequestId {
            client: ClientId(42),
            seq: self.seq,
        };
        let request = decode(&encode(&request)).unwrap();
        let outcome = self.db.engine.execute(id, request);
        let wire = encode(&FromWorker::Reply {
            id,
            result: outcome.result.clone(),
            change: outcome.change.clone(),
        });
        assert_eq!(
            decode::<FromWorker>(&wire).unwrap(),
            FromWorker::Reply {
                id,
                result: outcome.result.clone(),
                change: outcome.change.clone(),
            }
        );
        outcome
    }

    fn exec(&mut self, sql: &str) -> Outcome {
        self.run(Request::Exec {
            sql: sql.into(),
            tx: None,
        })
    }

    fn query(&mut self, sql: &str, params: Vec<Value>) -> Rows {
        match self
            .run(Request::Query {
                sql: sql.into(),
                params,
                tx: None,
            })
            .result
        {
            Ok(Reply::Rows(rows)) => rows,
            other => panic!("{sql}: {other:?}"),
        }
    }

    fn run_sql(&mut self, sql: &str, params: Vec<Value>) -> Outcome {
        self.run(Request::Run {
            sql: sql.into(),
            params,
            tx: None,
        })
    }
}

fn err_code(o: &Outcome) -> String {
    o.result.as_ref().unwrap_err().code.name().into_owned()
}

#[wasm_bindgen_test]
async fn every_request_kind_works_on_opfs() {
    let name = unique("kinds");
    let mut s = Session::open(&name).await;
    assert_eq!(s.db.storage, Storage::Opfs);
    let o =
        s.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT); INSERT INTO t(x) VALUES ('a');");
    assert_eq!(o.result, Ok(Reply::Done));
    assert_eq!(o.change.unwrap().tables, vec!["t".to_string()]);

    let o = s.run_sql("INSERT INTO t(x) VALUES (?)", vec!["b".into()]);
    assert_eq!(
        o.result,
        Ok(Reply::Run(RunResult {
            changes: 1,
            last_insert_rowid: 2
        }))
    );

    let o = s.run(Request::Batch {
        statements: (0..100)
            .map(|i| Statement {
                sql: "INSERT INTO t(x) VALUES (?)".into(),
                params: vec![Value::Text(format!("batch {i}"))],
            })
            .collect::<Vec<_>>()
            .into(),
    });
    assert!(matches!(o.result, Ok(Reply::Batch(ref r)) if r.len() == 100));

    let rows = s.query(
        "SELECT x, x AS y, id FROM t WHERE id <= ? ORDER BY id",
        vec![2.into()],
    );
    assert_eq!(*rows.columns, ["x", "y", "id"]);
    assert_eq!(
        rows.values,
        vec![
            "a".into(),
            "a".into(),
            Value::Integer(1),
            "b".into(),
            "b".into(),
            Value::Integer(2)
        ]
    );

    let tx = match s.run(Request::Begin).result {
        Ok(Reply::Began(tx)) => tx,
        other => panic!("{other:?}"),
    };
    s.run(Request::Run {
        sql: "DELETE FROM t".into(),
        params: vec![],
        tx: Some(tx),
    })
    .result
    .unwrap();
    s.run(Request::Rollback { tx }).result.unwrap();
    let rows = s.query("SELECT count(*) FROM t", vec![]);
    assert_eq!(rows.values, vec![Value::Integer(102)]);

    let tx = match s.run(Request::Begin).result {
        Ok(Reply::Began(tx)) => tx,
        other => panic!("{other:?}"),
    };
    s.run(Request::Exec {
        sql: "DELETE FROM t WHERE id > 2".into(),
        tx: Some(tx),
    })
    .result
    .unwrap();
    let o = s.run(Request::Commit { tx });
    assert_eq!(o.result, Ok(Reply::Done));
    assert_eq!(
        s.query("SELECT count(*) FROM t", vec![]).values,
        vec![Value::Integer(2)]
    );
    s.db.close().unwrap();
}

#[wasm_bindgen_test]
async fn every_value_type_roundtrips_on_opfs() {
    let mut s = Session::open(&unique("values")).await;
    s.exec("CREATE TABLE v(x)").result.unwrap();
    let values = vec![
        Value::Null,
        Value::Integer(42),
        Value::Integer(i64::MAX),
        Value::Integer(-(1 << 60)),
        Value::Real(3.25),
        Value::Real(f64::MIN_POSITIVE),
        Value::Text("日本語 ✓".into()),
        Value::Blob(vec![0, 255, 1, 254]),
        Value::Blob(vec![]),
    ];
    for v in &values {
        s.run_sql("INSERT INTO v VALUES (?)", vec![v.clone()])
            .result
            .unwrap();
    }
    assert_eq!(
        s.query("SELECT x FROM v ORDER BY rowid", vec![]).values,
        values
    );
    s.db.close().unwrap();
}

#[wasm_bindgen_test]
async fn bad_input_leaves_the_database_usable() {
    let mut s = Session::open(&unique("errors")).await;
    s.exec("CREATE TABLE t(x UNIQUE NOT NULL)").result.unwrap();
    assert_eq!(err_code(&s.exec("SELEC 1")), "SQLITE_ERROR");
    s.run_sql("INSERT INTO t VALUES (1)", vec![])
        .result
        .unwrap();
    assert_eq!(
        err_code(&s.run_sql("INSERT INTO t VALUES (1)", vec![])),
        "SQLITE_CONSTRAINT_UNIQUE"
    );
    assert_eq!(
        err_code(&s.run_sql("INSERT INTO t VALUES (?)", vec![1.into(), 2.into()])),
        "BAD_REQUEST"
    );
    let big = "z".repeat(10 * 1024 * 1024);
    s.run_sql("INSERT INTO t VALUES (?)", vec![Value::Text(big.clone())])
        .result
        .unwrap();
    assert_eq!(
        s.query(
            "SELECT length(x) FROM t WHERE x = ?",
            vec![Value::Text(big)]
        )
        .values,
        vec![Value::Integer(10 * 1024 * 1024)]
    );
    assert!(s.db.engine.connection().is_autocommit());
    assert_eq!(
        s.query("SELECT count(*) FROM t", vec![]).values,
        vec![Value::Integer(2)]
    );
    s.db.close().unwrap();
}

#[wasm_bindgen_test]
async fn data_survives_close_and_reopen() {
    let name = unique("reopen");
    let mut s = Session::open(&name).await;
    s.exec("CREATE TABLE kept(x); INSERT INTO kept VALUES ('still here')")
        .result
        .unwrap();
    let seq = s.db.engine.seq();
    s.db.close().unwrap();

    let mut s = Session::open(&name).await;
    assert_eq!(s.db.engine.seq(), seq, "commit sequence persists");
    assert_eq!(
        s.query("SELECT x FROM kept", vec![]).values,
        vec![Value::from("still here")]
    );
    let ok: String =
        s.db.engine
            .connection()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
    assert_eq!(ok, "ok");
    s.db.close().unwrap();
}

/// Hides OPFS sync access handles from this worker while alive.
struct WithoutOpfs(JsValue);

impl WithoutOpfs {
    fn new() -> Self {
        let global = js_sys::global();
        let saved = Reflect::get(&global, &"FileSystemSyncAccessHandle".into()).unwrap();
        assert!(Reflect::delete_property(&global, &"FileSystemSyncAccessHandle".into()).unwrap());
        WithoutOpfs(saved)
    }
}

impl Drop for WithoutOpfs {
    fn drop(&mut self) {
        Reflect::set(
            &js_sys::global(),
            &"FileSystemSyncAccessHandle".into(),
            &self.0,
        )
        .unwrap();
    }
}

#[wasm_bindgen_test]
async fn without_opfs_open_fails_clearly_or_falls_back_to_memory() {
    let name = unique("no-opfs");
    let _hidden = WithoutOpfs::new();
    let err = match open_database(&params(&name), &EngineOptions::default()).await {
        Ok(_) => panic!("opened without OPFS"),
        Err(e) => e,
    };
    assert_eq!(err.code, ErrorCode::OpfsUnavailable);
    assert!(err.message.contains("memoryFallback"), "{}", err.message);

    let fallback = OpenParams {
        name,
        memory_fallback: true,
    };
    let db = open_database(&fallback, &EngineOptions::default())
        .await
        .unwrap();
    assert_eq!(db.storage, Storage::Memory);
    let mut s = Session { db, seq: 0 };
    s.exec("CREATE TABLE m(x); INSERT INTO m VALUES (1)")
        .result
        .unwrap();
    assert_eq!(
        s.query("SELECT x FROM m", vec![]).values,
        vec![Value::Integer(1)]
    );
}

#[wasm_bindgen_test]
async fn invalid_names_are_rejected() {
    for name in ["", "../x", ".hidden", "a/b", "spaces are bad"] {
        match open_database(&params(name), &EngineOptions::default()).await {
            Ok(_) => panic!("accepted {name:?}"),
            Err(e) => assert_eq!(e.code, ErrorCode::BadRequest, "{name:?}"),
        }
    }
}
