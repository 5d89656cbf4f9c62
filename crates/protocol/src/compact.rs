//! Wire form of the results of a `batch()` (its statements are in
//! `statements.rs`): runs of equal `changes` with evenly spaced rowids (one
//! run for a plain bulk insert). It shrinks the message, the log row that
//! keeps the reply for an exactly-once re-send, and the allocations on either
//! side.

use serde::de::{Deserializer, Error as _};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::{RunResult, MAX_MESSAGE_BYTES};

/// No batch has more statements than its request had bytes, so a reply
/// claiming more results is malformed (and must not allocate them).
const MAX_BATCH_RESULTS: u64 = MAX_MESSAGE_BYTES as u64;

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
    use crate::{decode, encode, Reply, RunResult};

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
