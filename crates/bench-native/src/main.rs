//! Native rusqlite on this machine's disk, same SQL and pragmas as the
//! browser workloads: the physical limit the browser engines are compared to.
//!
//! `cargo run --release -p sqlite-tabs-bench-native -- [--repeats N] [--journal-mode M]
//! [--locking-mode M] [--dir D]` prints one JSON object per line:
//! `{"engine":"native","workload":"w1","samples_ms":[...],"pragmas":{...}}`.

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = native::run(std::env::args().skip(1).collect()) {
        eprintln!("bench-native: {e}");
        std::process::exit(1);
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::PathBuf;
    use std::time::Instant;

    use rusqlite::{params, Connection};

    type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

    struct Options {
        repeats: usize,
        journal_mode: String,
        locking_mode: String,
        dir: PathBuf,
    }

    fn parse(args: Vec<String>) -> Result<Options> {
        let mut o = Options {
            repeats: 5,
            journal_mode: "WAL".into(),
            locking_mode: "EXCLUSIVE".into(),
            dir: std::env::temp_dir(),
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--repeats" => o.repeats = value()?.parse()?,
                "--journal-mode" => o.journal_mode = value()?,
                "--locking-mode" => o.locking_mode = value()?,
                "--dir" => o.dir = value()?.into(),
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        Ok(o)
    }

    fn open(o: &Options, name: &str) -> Result<(Connection, PathBuf)> {
        let path = o
            .dir
            .join(format!("bench-native-{}-{name}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "page_size", 4096)?;
        conn.pragma_update(None, "locking_mode", &o.locking_mode)?;
        let _: String =
            conn.pragma_update_and_check(None, "journal_mode", &o.journal_mode, |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER)")?;
        Ok((conn, path))
    }

    fn cleanup(path: &std::path::Path) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    fn w1(conn: &Connection) -> Result<f64> {
        let mut stmt = conn.prepare("INSERT INTO t(a, b) VALUES (?1, ?2)")?;
        let t = Instant::now();
        for i in 0..1000i64 {
            stmt.execute(params![format!("row {i}"), i])?;
        }
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }

    fn w2(conn: &Connection) -> Result<f64> {
        let t = Instant::now();
        conn.execute_batch("BEGIN")?;
        {
            let mut stmt = conn.prepare("INSERT INTO t(a, b) VALUES (?1, ?2)")?;
            for i in 0..100_000i64 {
                stmt.execute(params![format!("row {i}"), i])?;
            }
        }
        conn.execute_batch("COMMIT")?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }

    fn w3(conn: &Connection) -> Result<f64> {
        conn.execute_batch("BEGIN")?;
        {
            let mut stmt = conn.prepare("INSERT INTO t(a, b) VALUES (?1, ?2)")?;
            for i in 0..10_000i64 {
                stmt.execute(params![format!("row {i}"), i])?;
            }
        }
        conn.execute_batch("COMMIT")?;
        let mut stmt = conn.prepare("SELECT a, b FROM t WHERE id = ?1")?;
        let t = Instant::now();
        for i in 0..5000i64 {
            let (a, b): (String, i64) =
                stmt.query_row([1 + (i * 7919) % 10_000], |r| Ok((r.get(0)?, r.get(1)?)))?;
            std::hint::black_box((a, b));
        }
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }

    pub fn run(args: Vec<String>) -> Result<()> {
        let o = parse(args)?;
        type Workload = fn(&Connection) -> Result<f64>;
        let workloads: [(&str, Workload); 3] = [("w1", w1), ("w2", w2), ("w3", w3)];
        for (name, workload) in workloads {
            let mut samples = Vec::new();
            let mut effective = String::new();
            for r in 0..o.repeats {
                let (conn, path) = open(&o, &format!("{name}-{r}"))?;
                samples.push(workload(&conn)?);
                let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                let locking: String = conn.query_row("PRAGMA locking_mode", [], |r| r.get(0))?;
                effective = format!(
                    r#"{{"page_size":4096,"journal_mode":"{mode}","locking_mode":"{locking}","synchronous":"FULL"}}"#
                );
                drop(conn);
                cleanup(&path);
            }
            let samples: Vec<String> = samples.iter().map(|s| format!("{s:.3}")).collect();
            println!(
                r#"{{"engine":"native","workload":"{name}","samples_ms":[{}],"pragmas":{effective}}}"#,
                samples.join(",")
            );
        }
        Ok(())
    }
}
