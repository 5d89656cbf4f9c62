//! Benchmark (not a test): the engine called directly in its dedicated worker
//! on the real OPFS pool, journal and locking modes side by side (1,000
//! autocommit inserts, 100,000 inserts in one batch, 5,000 key lookups), and
//! next to the last two the same work straight through rusqlite (the floor).
//! Prints a table and one JSON line per mode and workload for
//! `cargo xtask bench`. Ignored in test runs; run it in release with
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test --release --target wasm32-unknown-unknown -p sqlite-tabs-db-worker --test pragma_bench -- --include-ignored --nocapture`
#![cfg(target_arch = "wasm32")]

use sqlite_tabs_db_worker::engine::{EngineOptions, JournalMode};
use sqlite_tabs_db_worker::worker::open_database;
use sqlite_tabs_protocol::{
    ClientId, OpenParams, Request, RequestId, Statement, Statements, Value,
};
use std::sync::Arc;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

fn now() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| {
            let f = js_sys::Reflect::get(&p, &"now".into()).ok()?;
            js_sys::Function::from(f).call0(&p).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}

/// Timed rounds of the W3 lookups, engine and rusqlite alternating.
const LOOKUP_ROUNDS: usize = 5;
/// Rounds of W2 (100,000 inserts in one batch), as the peers run it.
const WRITE_ROUNDS: usize = 5;
/// Rounds of W1 (1,000 autocommit inserts), the first ones of WRITE_ROUNDS.
const AUTOCOMMIT_ROUNDS: usize = 3;

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Moves the WAL's pages into the database and empties it (nothing to do
/// in the rollback journal modes).
fn checkpoint(conn: &rusqlite::Connection) {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

fn json_list(samples: &[f64]) -> String {
    let items: Vec<String> = samples.iter().map(|ms| format!("{ms:.3}")).collect();
    format!("[{}]", items.join(","))
}

#[wasm_bindgen_test]
#[ignore = "benchmark: run with --include-ignored --nocapture in release"]
async fn journal_and_locking_modes() {
    console_log!(
        "mode                 | 1000 autocommit inserts | 100k-row batch | 5000 pk lookups"
    );
    for (journal_mode, exclusive_locking) in [
        (JournalMode::Delete, false),
        (JournalMode::Delete, true),
        (JournalMode::Truncate, true),
        (JournalMode::Persist, true),
        (JournalMode::Wal, true),
    ] {
        let name = format!(
            "bench-{journal_mode:?}-{exclusive_locking}-{}",
            js_sys::Date::now() as u64
        );
        let options = EngineOptions {
            journal_mode,
            exclusive_locking,
        };
        let params = OpenParams {
            name,
            memory_fallback: false,
        };
        let mut db = open_database(&params, &options).await.unwrap();
        let mut n = 0;
        let mut id = || {
            n += 1;
            RequestId {
                client: ClientId(1),
                seq: n,
            }
        };
        let e = &mut db.engine;
        // Each round writes into tables of its own, empty as native rusqlite's
        // and the peers' are (they open a new database per round).
        let mut autocommit_ms = Vec::new();
        let mut batch_ms = Vec::new();
        let mut direct_batch_ms = Vec::new();
        for round in 0..WRITE_ROUNDS {
            let create = |table: &str| Request::Exec {
                sql: format!("CREATE TABLE {table}(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)"),
                tx: None,
            };
            e.execute(id(), create(&format!("t{round}")))
                .result
                .unwrap();
            e.execute(id(), create(&format!("b{round}")))
                .result
                .unwrap();
            if round < AUTOCOMMIT_ROUNDS {
                let sql = format!("INSERT INTO t{round}(a, b) VALUES (?, ?)");
                let t0 = now();
                for i in 0..1000 {
                    e.execute(
                        id(),
                        Request::Run {
                            sql: sql.clone(),
                            params: vec![Value::Text(format!("row {i}")), Value::Integer(i)],
                            tx: None,
                        },
                    )
                    .result
                    .unwrap();
                }
                autocommit_ms.push(now() - t0);
            }
            // Encoded, as the worker receives a batch() (it reads the
            // statements from the message while it runs them).
            let sql: Arc<str> = format!("INSERT INTO b{round}(a, b) VALUES (?, ?)").into();
            let statements: Statements = (0..100_000)
                .map(|i| Statement {
                    sql: sql.clone(),
                    params: vec![Value::Text(format!("batch row {i}")), Value::Integer(i)],
                })
                .collect::<Vec<_>>()
                .into();
            // Each W2 run starts with an empty WAL, as on the fresh databases
            // of native rusqlite and the peers: otherwise whichever commit
            // crosses the auto-checkpoint threshold pays for the pages of
            // the runs before it.
            checkpoint(e.connection());
            let t0 = now();
            e.execute(id(), Request::Batch { statements })
                .result
                .unwrap();
            batch_ms.push(now() - t0);
            // The floor: the same inserts straight through rusqlite in this
            // worker (one prepared statement, one transaction, no log row).
            // Its texts are made before the clock starts, as the engine's
            // batch above gets them.
            let conn = e.connection();
            conn.execute_batch(&format!(
                "CREATE TABLE d{round}(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)"
            ))
            .unwrap();
            let texts: Vec<String> = (0..100_000).map(|i| format!("batch row {i}")).collect();
            checkpoint(conn);
            let t0 = now();
            conn.execute_batch("BEGIN").unwrap();
            {
                let mut stmt = conn
                    .prepare(&format!("INSERT INTO d{round}(a, b) VALUES (?1, ?2)"))
                    .unwrap();
                for (i, text) in texts.iter().enumerate() {
                    stmt.execute((text, i as i64)).unwrap();
                }
            }
            conn.execute_batch("COMMIT").unwrap();
            direct_batch_ms.push(now() - t0);
        }
        let autocommit = median(&autocommit_ms);
        let batch = median(&batch_ms);
        // The same table as native rusqlite's and the peers' W3: 10,000 rows.
        e.execute(
            id(),
            Request::Exec {
                sql: "CREATE TABLE l(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)".into(),
                tx: None,
            },
        )
        .result
        .unwrap();
        let rows: Vec<Statement> = (0..10_000)
            .map(|i| Statement {
                sql: "INSERT INTO l(a, b) VALUES (?, ?)".into(),
                params: vec![Value::Text(format!("row {i}")), Value::Integer(i)],
            })
            .collect();
        e.execute(
            id(),
            Request::Batch {
                statements: rows.into(),
            },
        )
        .result
        .unwrap();
        // Engine and rusqlite alternate, after one unrecorded round of each:
        // the first run of a code path pays V8's compilation of it, which
        // would otherwise fall on whichever ran first.
        let mut lookups_ms = Vec::new();
        let mut direct_ms = Vec::new();
        for round in 0..=LOOKUP_ROUNDS {
            let t0 = now();
            for i in 0..5000 {
                e.execute(
                    id(),
                    Request::Query {
                        sql: "SELECT a, b FROM l WHERE id = ?".into(),
                        params: vec![Value::Integer(1 + (i * 7919) % 10_000)],
                        tx: None,
                    },
                )
                .result
                .unwrap();
            }
            let engine_ms = now() - t0;
            // The floor: the same lookups straight through rusqlite in this
            // worker (one prepared statement, no requests, no replies).
            let conn = e.connection();
            let mut stmt = conn.prepare("SELECT a, b FROM l WHERE id = ?1").unwrap();
            let t0 = now();
            for i in 0..5000i64 {
                let row: (String, i64) = stmt
                    .query_row([1 + (i * 7919) % 10_000], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap();
                std::hint::black_box(row);
            }
            if round > 0 {
                direct_ms.push(now() - t0);
                lookups_ms.push(engine_ms);
            }
        }
        let lookups = median(&lookups_ms);
        console_log!(
            "{:<8} exclusive={:<5} | {:>8.1} ms ({:.2} ms/commit) | {:>8.1} ms | {:>8.1} ms",
            format!("{journal_mode:?}"),
            exclusive_locking,
            autocommit,
            autocommit / 1000.0,
            batch,
            lookups
        );
        let engine = format!(
            "sqlite-tabs-engine-in-worker {}/{}",
            format!("{journal_mode:?}").to_lowercase(),
            if exclusive_locking {
                "exclusive"
            } else {
                "normal"
            }
        );
        let pragma = |name: &str| -> String {
            let conn = e.connection();
            conn.query_row(&format!("PRAGMA {name}"), [], |r| {
                r.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t.to_lowercase(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default()
        };
        let synchronous = match pragma("synchronous").as_str() {
            "0" => "OFF",
            "1" => "NORMAL",
            "2" => "FULL",
            "3" => "EXTRA",
            _ => "?",
        };
        let pragmas = format!(
            r#"{{"page_size":{},"journal_mode":"{}","locking_mode":"{}","synchronous":"{synchronous}"}}"#,
            pragma("page_size"),
            pragma("journal_mode"),
            pragma("locking_mode"),
        );
        let rusqlite = engine.replace("sqlite-tabs-engine-in-worker", "rusqlite-in-worker");
        for (engine, workload, samples) in [
            (&engine, "w1", &autocommit_ms),
            (&engine, "w2", &batch_ms),
            (&engine, "w3", &lookups_ms),
            (&rusqlite, "w2", &direct_batch_ms),
            (&rusqlite, "w3", &direct_ms),
        ] {
            console_log!(
                r#"{{"engine":"{engine}","workload":"{workload}","samples_ms":{},"pragmas":{pragmas}}}"#,
                json_list(samples)
            );
        }
        db.close().unwrap();
    }
}
