//! A `batch()` request encoded from borrowed statements.
//!
//! The client packs a batch into a few flat buffers (one text for all its
//! strings, one array of numbers); building the owned [`Request::Batch`] from
//! them meant a parameter vector and a string per statement, only to encode
//! and drop them. [`encode_batch_request`] writes the same bytes straight from
//! slices of those buffers. It mirrors the owned message's layout: the tests
//! check that both encode identically, so a change to [`ToWorker`],
//! [`Request`] or [`Value`] that breaks the mirror fails them.
//!
//! [`Request::Batch`]: crate::Request::Batch
//! [`Request`]: crate::Request
//! [`ToWorker`]: crate::ToWorker

use serde::ser::{SerializeSeq, SerializeStructVariant, Serializer};
use serde::Serialize;

use crate::{encode, RequestId, Value};

/// Index of `ToWorker::Request` among `ToWorker`'s variants.
const TO_WORKER_REQUEST: u32 = 1;
/// Index of `Request::Batch` among `Request`'s variants.
const REQUEST_BATCH: u32 = 3;

/// A [`Value`] borrowed from the caller's buffers; encodes as the [`Value`]
/// it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum ValueRef<'a> {
    /// SQL `NULL`.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit IEEE float.
    Real(f64),
    /// UTF-8 text.
    Text(&'a str),
    /// Raw bytes.
    Blob(#[serde(with = "serde_bytes")] &'a [u8]),
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }
}

/// One statement of a batch, borrowed: its SQL and its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatementRef<'a> {
    /// Exactly one SQL statement.
    pub sql: &'a str,
    /// Values for its parameters, in index order.
    pub params: &'a [ValueRef<'a>],
}

/// Encodes `ToWorker::Request(RequestEnvelope { id, request: Request::Batch {
/// statements } })`, byte for byte as [`encode`] does from the owned message.
pub fn encode_batch_request(id: RequestId, statements: &[StatementRef<'_>]) -> Vec<u8> {
    encode(&Message { id, statements })
}

struct Message<'a> {
    id: RequestId,
    statements: &'a [StatementRef<'a>],
}

impl Serialize for Message<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_variant(
            "ToWorker",
            TO_WORKER_REQUEST,
            "Request",
            &Envelope {
                id: self.id,
                request: Batch(self.statements),
            },
        )
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    id: RequestId,
    request: Batch<'a>,
}

struct Batch<'a>(&'a [StatementRef<'a>]);

impl Serialize for Batch<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = s.serialize_struct_variant("Request", REQUEST_BATCH, "Batch", 1)?;
        v.serialize_field("statements", &Statements(self.0))?;
        v.end()
    }
}

struct Statements<'a>(&'a [StatementRef<'a>]);

/// As `compact::statements`: a statement's SQL only where it changes.
#[derive(Serialize)]
struct Out<'a> {
    sql: Option<&'a str>,
    params: &'a [ValueRef<'a>],
}

impl Serialize for Statements<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        let mut prev: Option<&str> = None;
        for st in self.0 {
            let same = prev.is_some_and(|p| std::ptr::eq(p, st.sql) || p == st.sql);
            seq.serialize_element(&Out {
                sql: (!same).then_some(st.sql),
                params: st.params,
            })?;
            prev = Some(st.sql);
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, ClientId, Request, RequestEnvelope, Statement, ToWorker};

    fn owned(id: RequestId, statements: &[StatementRef<'_>]) -> Vec<u8> {
        let statements = statements
            .iter()
            .map(|s| Statement {
                sql: s.sql.into(),
                params: s
                    .params
                    .iter()
                    .map(|v| match *v {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(i) => Value::Integer(i),
                        ValueRef::Real(f) => Value::Real(f),
                        ValueRef::Text(t) => Value::Text(t.to_owned()),
                        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                    })
                    .collect(),
            })
            .collect();
        encode(&ToWorker::Request(RequestEnvelope {
            id,
            request: Request::Batch { statements },
        }))
    }

    #[test]
    fn encodes_as_the_owned_batch_request() {
        let id = RequestId {
            client: ClientId(0xdead_beef_1234),
            seq: 300,
        };
        let values = [
            ValueRef::Null,
            ValueRef::Integer(-1),
            ValueRef::Integer(i64::MAX),
            ValueRef::Real(1.5),
            ValueRef::Text(""),
            ValueRef::Text("héllo 😀"),
            ValueRef::Blob(&[0, 1, 255]),
            ValueRef::Blob(&[]),
        ];
        let a = String::from("INSERT INTO t VALUES (?)");
        // Equal SQL in another allocation counts as a repeat too.
        let a2 = a.clone();
        let cases: Vec<Vec<StatementRef<'_>>> = vec![
            vec![],
            vec![StatementRef {
                sql: "SELECT 1",
                params: &[],
            }],
            values
                .iter()
                .enumerate()
                .map(|(i, _)| StatementRef {
                    sql: if i % 3 == 2 { &a2 } else { &a },
                    params: &values[i..i + 1],
                })
                .collect(),
            vec![
                StatementRef {
                    sql: "UPDATE t SET a = ?, b = ?",
                    params: &values,
                },
                StatementRef {
                    sql: &a,
                    params: &values[5..6],
                },
                StatementRef {
                    sql: "UPDATE t SET a = ?, b = ?",
                    params: &values[..2],
                },
            ],
        ];
        for statements in cases {
            let bytes = encode_batch_request(id, &statements);
            assert_eq!(bytes, owned(id, &statements));
            assert!(matches!(
                decode::<ToWorker>(&bytes),
                Ok(ToWorker::Request(RequestEnvelope {
                    request: Request::Batch { .. },
                    ..
                }))
            ));
        }
    }

    #[test]
    fn a_value_borrows_as_itself() {
        for v in [
            Value::Null,
            Value::Integer(7),
            Value::Real(-0.5),
            Value::Text("x".into()),
            Value::Blob(vec![9]),
        ] {
            assert_eq!(encode(&ValueRef::from(&v)), encode(&v));
        }
    }
}
