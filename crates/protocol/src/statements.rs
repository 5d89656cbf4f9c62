//! The statements of a `batch()`, kept in their encoded form.
//!
//! A batch is typically thousands of runs of one statement. Decoded into
//! owned [`Statement`]s it cost a parameter vector and a string per statement
//! on both sides (built, encoded, decoded and dropped again: ~15 ms of a
//! 100,000-row batch). [`Statements`] is the encoded sequence itself: the
//! client writes it from slices of its packed buffers ([`StatementRef`]), the
//! worker reads one statement at a time with a [`Cursor`] while it runs them,
//! borrowing texts and blobs from the message. The SQL text is written once
//! per run of equal texts, not once per statement.

use std::fmt;
use std::sync::Arc;

use serde::de::{Deserializer, Error as _};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::{DecodeError, Statement, Value};

/// A [`Value`] borrowed from a buffer; encodes as the [`Value`] it stands
/// for.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
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
    Blob(#[serde(with = "serde_bytes", borrow)] &'a [u8]),
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

impl ValueRef<'_> {
    /// The owned value.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(s) => Value::Text(s.to_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
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

/// The statements of a batch, encoded. Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct Statements {
    /// `len`, then each statement: its SQL (only where it differs from the
    /// previous statement's), its parameter count and its parameters. An
    /// `Arc<Vec>`, not an `Arc<[u8]>`: wrapping the decoded buffer copies
    /// nothing.
    bytes: Arc<Vec<u8>>,
    len: usize,
}

impl Statements {
    /// Encodes borrowed statements.
    pub fn encode(statements: &[StatementRef<'_>]) -> Self {
        Statements {
            // Cannot fail: a sequence of known length of plain values.
            bytes: Arc::new(postcard::to_allocvec(&Seq(statements)).unwrap_or_default()),
            len: statements.len(),
        }
    }

    /// Number of statements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no statement.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads the statements in order.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor {
            rest: header(&self.bytes).map_or(&[], |(_, rest)| rest),
            left: self.len,
            prev: None,
        }
    }

    /// The statements as owned values.
    pub fn to_vec(&self) -> Result<Vec<Statement>, DecodeError> {
        let mut out = Vec::with_capacity(self.len);
        let mut cursor = self.cursor();
        let mut params = Vec::new();
        let mut shared: Option<Arc<str>> = None;
        while let Some(sql) = cursor.next(&mut params) {
            let sql = sql?;
            let sql = match shared {
                Some(s) if *s == *sql => s,
                _ => Arc::from(sql),
            };
            shared = Some(sql.clone());
            out.push(Statement {
                sql,
                params: params.iter().map(|v| v.to_value()).collect(),
            });
        }
        Ok(out)
    }
}

impl From<&[Statement]> for Statements {
    fn from(statements: &[Statement]) -> Self {
        let params: Vec<Vec<ValueRef<'_>>> = statements
            .iter()
            .map(|s| s.params.iter().map(ValueRef::from).collect())
            .collect();
        let refs: Vec<StatementRef<'_>> = statements
            .iter()
            .zip(&params)
            .map(|(s, p)| StatementRef {
                sql: &s.sql,
                params: p,
            })
            .collect();
        Statements::encode(&refs)
    }
}

impl From<Vec<Statement>> for Statements {
    fn from(statements: Vec<Statement>) -> Self {
        Statements::from(statements.as_slice())
    }
}

impl fmt::Debug for Statements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Statements({} in {} bytes)", self.len, self.bytes.len())
    }
}

impl Serialize for Statements {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.bytes)
    }
}

impl<'de> Deserialize<'de> for Statements {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?.into_vec();
        let (len, rest) = header(&bytes).ok_or_else(|| D::Error::custom("no statement count"))?;
        // Every statement takes at least two bytes: a count that no buffer
        // could hold is malformed (and must not size an allocation).
        if len > rest.len() / 2 {
            return Err(D::Error::custom("more statements than bytes"));
        }
        Ok(Statements {
            bytes: Arc::new(bytes),
            len,
        })
    }
}

/// The statement count and the bytes after it.
fn header(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (len, rest) = postcard::take_from_bytes::<u64>(bytes).ok()?;
    Some((usize::try_from(len).ok()?, rest))
}

/// Reads the statements of [`Statements`] one at a time.
pub struct Cursor<'a> {
    rest: &'a [u8],
    left: usize,
    prev: Option<&'a str>,
}

impl<'a> Cursor<'a> {
    /// The next statement's SQL, with its parameters in `params` (which is
    /// cleared first); `None` after the last one.
    pub fn next(&mut self, params: &mut Vec<ValueRef<'a>>) -> Option<Result<&'a str, DecodeError>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        params.clear();
        let result = self.read(params);
        if result.is_err() {
            // Nothing after a malformed statement can be trusted.
            self.left = 0;
        }
        Some(result)
    }

    fn read(&mut self, params: &mut Vec<ValueRef<'a>>) -> Result<&'a str, DecodeError> {
        let malformed = |e: postcard::Error| DecodeError::Malformed(e.to_string());
        let (sql, mut rest) =
            postcard::take_from_bytes::<Option<&'a str>>(self.rest).map_err(malformed)?;
        let sql = sql.or(self.prev).ok_or_else(|| {
            DecodeError::Malformed("the first statement of a batch has no SQL".into())
        })?;
        let count;
        (count, rest) = postcard::take_from_bytes::<u64>(rest).map_err(malformed)?;
        for _ in 0..count {
            let value;
            (value, rest) = postcard::take_from_bytes::<ValueRef<'a>>(rest).map_err(malformed)?;
            params.push(value);
        }
        self.rest = rest;
        self.prev = Some(sql);
        Ok(sql)
    }
}

struct Seq<'a>(&'a [StatementRef<'a>]);

/// One statement on the wire: its SQL only when it differs from the previous
/// statement's.
#[derive(Serialize)]
struct Out<'a> {
    sql: Option<&'a str>,
    params: &'a [ValueRef<'a>],
}

impl Serialize for Seq<'_> {
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
    use crate::{decode, encode, Request};

    fn statement(sql: &str, params: Vec<Value>) -> Statement {
        Statement {
            sql: sql.into(),
            params,
        }
    }

    #[test]
    fn every_value_kind_round_trips() {
        let values = vec![
            Value::Null,
            Value::Integer(-1),
            Value::Integer(i64::MAX),
            Value::Real(1.5),
            Value::Text(String::new()),
            Value::Text("héllo 😀".into()),
            Value::Blob(vec![0, 1, 255]),
            Value::Blob(vec![]),
        ];
        let cases: Vec<Vec<Statement>> = vec![
            vec![],
            vec![statement("SELECT 1", vec![])],
            values
                .iter()
                .enumerate()
                .map(|(i, v)| statement(if i % 3 == 2 { "B" } else { "A" }, vec![v.clone()]))
                .collect(),
            vec![
                statement("UPDATE t SET a = ?", values.clone()),
                statement("UPDATE t SET a = ?", vec![]),
                statement("INSERT", values[5..6].to_vec()),
            ],
        ];
        for stmts in cases {
            let request = Request::Batch {
                statements: stmts.as_slice().into(),
            };
            let Request::Batch { statements } = decode::<Request>(&encode(&request)).unwrap()
            else {
                panic!("not a batch");
            };
            assert_eq!(statements.len(), stmts.len());
            assert_eq!(statements.to_vec().unwrap(), stmts);
        }
    }

    #[test]
    fn repeated_sql_is_sent_once_and_read_borrowed() {
        let text = "x".repeat(100);
        let stmts: Vec<Statement> = (0..1000)
            .map(|i| {
                statement(
                    if i % 500 == 0 { "INSERT A" } else { "INSERT B" },
                    vec![Value::Integer(i)],
                )
            })
            .chain([statement("INSERT B", vec![Value::Text(text.clone())])])
            .collect();
        let statements = Statements::from(stmts.as_slice());
        let bytes = encode(&statements);
        assert!(bytes.len() < 1000 * 6 + 200, "{}", bytes.len());
        let decoded: Statements = decode(&bytes).unwrap();
        let mut cursor = decoded.cursor();
        let mut params = Vec::new();
        let mut sqls = Vec::new();
        while let Some(sql) = cursor.next(&mut params) {
            sqls.push(sql.unwrap());
        }
        assert_eq!(sqls.len(), 1001);
        assert_eq!(
            (sqls[0], sqls[1], sqls[500]),
            ("INSERT A", "INSERT B", "INSERT A")
        );
        // Texts point into the message: nothing was copied out of it.
        let ValueRef::Text(t) = params[0] else {
            panic!("not a text: {params:?}");
        };
        assert_eq!(t, text);
        let range = decoded.bytes.as_ptr_range();
        assert!(range.contains(&t.as_ptr()));
        // Equal SQL in different allocations is still one run.
        let a = String::from("INSERT C");
        let b = a.clone();
        let refs = [
            StatementRef {
                sql: &a,
                params: &[],
            },
            StatementRef {
                sql: &b,
                params: &[],
            },
        ];
        let one = Statements::encode(&refs[..1]);
        assert_eq!(Statements::encode(&refs).bytes.len(), one.bytes.len() + 2);
    }

    #[test]
    fn malformed_statements_are_typed_errors() {
        // One statement without SQL.
        let no_sql = encode(&serde_bytes::Bytes::new(&[1, 0, 0]));
        let s: Statements = decode(&no_sql).unwrap();
        let mut params = Vec::new();
        let mut cursor = s.cursor();
        assert!(matches!(
            cursor.next(&mut params),
            Some(Err(DecodeError::Malformed(_)))
        ));
        assert!(cursor.next(&mut params).is_none());
        assert!(s.to_vec().is_err());
        // Two statements announced, one present.
        let short = Statements::from(vec![statement("A", vec![Value::Integer(1)])]);
        let mut bytes = short.bytes.to_vec();
        bytes[0] = 2;
        let s: Statements = decode(&encode(&serde_bytes::Bytes::new(&bytes))).unwrap();
        assert!(s.to_vec().is_err());
        // A count no message could hold is refused before anything is sized.
        let hostile = encode(&serde_bytes::Bytes::new(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0]));
        assert!(decode::<Statements>(&hostile).is_err());
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
            assert_eq!(ValueRef::from(&v).to_value(), v);
        }
    }
}
