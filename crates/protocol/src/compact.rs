//! Wire forms of the two large sequences of a `batch()`: its statements and
//! its results. A batch is typically thousands of runs of one statement, so
//! the SQL text is sent once per run of equal texts rather than once per
//! statement, and results are sent as runs of equal `changes` with evenly
//! spaced rowids (one run for a plain bulk insert). Both shrink the message,
//! the log row that keeps the reply for an exactly-once re-send, and the
//! allocations on either side.

use std::sync::Arc;

use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::{RunResult, Statement, Value, MAX_MESSAGE_BYTES};

/// No batch has more statements than its request had bytes, so a reply
/// claiming more results is malformed (and must not allocate them).
const MAX_BATCH_RESULTS: u64 = MAX_MESSAGE_BYTES as u64;

/// `#[serde(with)]` module for `Vec<Statement>`.
pub mod statements {
    use super::*;

    /// One statement on the wire: its SQL only when it differs from the
    /// previous statement's.
    #[derive(Serialize)]
    struct Out<'a> {
        sql: Option<&'a str>,
        params: &'a [Value],
    }

    #[derive(Deserialize)]
    struct In {
        sql: Option<String>,
        params: Vec<Value>,
    }

    /// Writes each statement's SQL only where it changes.
    pub fn serialize<S: Serializer>(stmts: &[Statement], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(stmts.len()))?;
        let mut prev: Option<&Arc<str>> = None;
        for st in stmts {
            let same = prev.is_some_and(|p| Arc::ptr_eq(p, &st.sql) || **p == *st.sql);
            seq.serialize_element(&Out {
                sql: (!same).then_some(&*st.sql),
                params: &st.params,
            })?;
            prev = Some(&st.sql);
        }
        seq.end()
    }

    /// Reads statements, sharing one allocation per run of equal SQL.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Statement>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<Statement>;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("a sequence of statements")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // A hostile length must not reserve gigabytes up front.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                let mut prev: Option<Arc<str>> = None;
                while let Some(In { sql, params }) = seq.next_element()? {
                    let sql = match (sql, &prev) {
                        (Some(text), _) => Arc::<str>::from(text),
                        (None, Some(p)) => p.clone(),
                        (None, None) => {
                            return Err(A::Error::custom("first statement without SQL"))
                        }
                    };
                    prev = Some(sql.clone());
                    out.push(Statement { sql, params });
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

/// `#[serde(with)]` module for `Vec<RunResult>`.
pub mod run_results {
    use super::*;

    /// `len` results with equal `changes` whose rowids go `first`, `first +
    /// step`, …; `first` is relative to the last rowid of the previous run so
    /// that it stays a small varint.
    #[derive(Serialize, Deserialize)]
    struct Run {
        len: u64,
        changes: u64,
        first: i64,
        step: i64,
    }

    /// Writes the results as runs.
    pub fn serialize<S: Serializer>(results: &[RunResult], s: S) -> Result<S::Ok, S::Error> {
        let mut runs: Vec<Run> = Vec::new();
        let mut last = 0i64;
        let mut i = 0;
        while i < results.len() {
            let head = results[i];
            let mut len = 1;
            let mut step = 0i64;
            if let Some(next) = results.get(i + 1) {
                if next.changes == head.changes {
                    step = next.last_insert_rowid.wrapping_sub(head.last_insert_rowid);
                    while let Some(r) = results.get(i + len) {
                        let expected = results[i + len - 1].last_insert_rowid.wrapping_add(step);
                        if r.changes != head.changes || r.last_insert_rowid != expected {
                            break;
                        }
                        len += 1;
                    }
                }
            }
            runs.push(Run {
                len: len as u64,
                changes: head.changes,
                first: head.last_insert_rowid.wrapping_sub(last),
                step,
            });
            last = results[i + len - 1].last_insert_rowid;
            i += len;
        }
        let mut seq = s.serialize_seq(Some(runs.len()))?;
        for run in &runs {
            seq.serialize_element(run)?;
        }
        seq.end()
    }

    /// Reads runs back into one result per statement.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RunResult>, D::Error> {
        let runs = Vec::<Run>::deserialize(d)?;
        let total = runs
            .iter()
            .try_fold(0u64, |n, r| n.checked_add(r.len))
            .filter(|&n| n <= MAX_BATCH_RESULTS)
            .ok_or_else(|| D::Error::custom("too many batch results"))?;
        let mut out = Vec::with_capacity(total as usize);
        let mut last = 0i64;
        for run in runs {
            let mut rowid = last.wrapping_add(run.first);
            for k in 0..run.len {
                if k > 0 {
                    rowid = rowid.wrapping_add(run.step);
                }
                out.push(RunResult {
                    changes: run.changes,
                    last_insert_rowid: rowid,
                });
            }
            if run.len > 0 {
                last = rowid;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::{decode, encode, Reply, Request, RunResult, Statement, Value};

    fn r(changes: u64, last_insert_rowid: i64) -> RunResult {
        RunResult {
            changes,
            last_insert_rowid,
        }
    }

    #[test]
    fn run_results_round_trip_in_every_shape() {
        let cases: Vec<Vec<RunResult>> = vec![
            vec![],
            vec![r(1, 7)],
            (1..=1000).map(|i| r(1, i)).collect(),
            vec![
                r(1, 5),
                r(1, 5),
                r(0, 5),
                r(3, 9),
                r(1, 10),
                r(1, 12),
                r(1, 14),
            ],
            vec![r(1, i64::MAX), r(1, i64::MIN), r(0, -3), r(u64::MAX, 0)],
            (0..50).map(|i| r(i % 3, (i * i) as i64)).collect(),
        ];
        for results in cases {
            let reply = Reply::Batch(results.clone());
            assert_eq!(decode::<Reply>(&encode(&reply)).unwrap(), reply);
        }
    }

    #[test]
    fn a_bulk_insert_is_a_few_bytes() {
        let reply = Reply::Batch((1..=100_000).map(|i| r(1, i)).collect());
        assert!(encode(&reply).len() < 16, "{}", encode(&reply).len());
    }

    #[test]
    fn repeated_sql_is_sent_once_and_shared() {
        let stmts: Vec<Statement> = (0..1000)
            .map(|i| Statement {
                sql: if i % 500 == 0 { "INSERT A" } else { "INSERT B" }.into(),
                params: vec![Value::Integer(i)],
            })
            .collect();
        let request = Request::Batch {
            statements: stmts.clone(),
        };
        let bytes = encode(&request);
        assert!(bytes.len() < 1000 * 6, "{}", bytes.len());
        let Request::Batch { statements } = decode::<Request>(&bytes).unwrap() else {
            panic!("not a batch");
        };
        assert_eq!(statements, stmts);
        assert!(std::sync::Arc::ptr_eq(
            &statements[1].sql,
            &statements[2].sql
        ));
    }

    #[test]
    fn a_batch_starting_without_sql_is_malformed() {
        // Variant Batch, one statement, sql None, no params.
        let batch_variant = postcard::to_allocvec(&Request::Batch { statements: vec![] }).unwrap();
        let mut bytes = batch_variant[..batch_variant.len() - 1].to_vec();
        bytes.extend([1, 0, 0]);
        assert!(decode::<Request>(&bytes).is_err());
    }

    #[test]
    fn a_hostile_result_count_is_refused() {
        let mut bytes = postcard::to_allocvec(&Reply::Batch(vec![])).unwrap();
        bytes.pop(); // the empty sequence's length
        bytes.push(2);
        for _ in 0..2 {
            bytes.extend(postcard::to_allocvec(&(u64::MAX / 2, 1u64, 0i64, 0i64)).unwrap());
        }
        assert!(decode::<Reply>(&bytes).is_err());
    }
}
