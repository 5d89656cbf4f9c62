use serde::{de::DeserializeOwned, Serialize};

use crate::{Error, RequestId};

/// Largest message accepted, in bytes. Larger ones are refused with a typed
/// error instead of exhausting the worker's memory.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Why bytes could not be decoded into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Longer than [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge(usize),
    /// Not a message of this protocol (or of another version of it).
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::bad_request(e.to_string())
    }
}

/// Encodes a message to bytes.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing these types cannot fail: no maps with non-string keys, no
    // sequences of unknown length. An empty buffer would decode as an error
    // on the other side rather than crash this one.
    // Most messages are small: one allocation up front instead of growing
    // from empty through 8, 16, 32 ... bytes.
    postcard::to_extend(message, Vec::with_capacity(128)).unwrap_or_default()
}

/// Decodes bytes into a message; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((message, [])) => Ok(message),
        Ok((_, rest)) => Err(DecodeError::Malformed(format!(
            "{} unexpected trailing bytes",
            rest.len()
        ))),
        Err(e) => Err(DecodeError::Malformed(e.to_string())),
    }
}

/// Reads the request id of a [`ToWorker::Request`] whose body could not be
/// decoded, so the sender can still be told why.
///
/// [`ToWorker::Request`]: crate::ToWorker::Request
pub fn peek_request_id(bytes: &[u8]) -> Option<RequestId> {
    // postcard writes an enum as its variant index (varint) then its fields;
    // the envelope's first field is the id. `Request` is `ToWorker`'s second
    // variant (a test pins this).
    const REQUEST_VARIANT: u32 = 1;
    let (index, rest) = postcard::take_from_bytes::<u32>(bytes).ok()?;
    if index != REQUEST_VARIANT {
        return None;
    }
    postcard::take_from_bytes::<RequestId>(rest)
        .ok()
        .map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    fn id(seq: u64) -> RequestId {
        RequestId {
            client: ClientId(0xdead_beef_cafe),
            seq,
        }
    }

    fn roundtrip<T>(message: T)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let bytes = encode(&message);
        assert_eq!(decode::<T>(&bytes).unwrap(), message);
    }

    #[test]
    fn every_request_kind_roundtrips() {
        let params = vec![
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Integer(i64::MAX),
            Value::Real(-0.5),
            Value::Real(f64::INFINITY),
            Value::Text("héllo \0 wörld".into()),
            Value::Blob(vec![0, 1, 2, 255]),
        ];
        let requests = vec![
            Request::Exec {
                sql: "CREATE TABLE t(x); INSERT INTO t VALUES (1)".into(),
                tx: None,
            },
            Request::Query {
                sql: "SELECT ?".into(),
                params: params.clone(),
                tx: Some(TxId(3)),
            },
            Request::Run {
                sql: "INSERT INTO t VALUES (?)".into(),
                params: params.clone(),
                tx: None,
            },
            Request::Batch {
                statements: vec![Statement {
                    sql: "INSERT INTO t VALUES (?)".into(),
                    params,
                }]
                .into(),
            },
            Request::Begin,
            Request::Commit { tx: TxId(1) },
            Request::Rollback { tx: TxId(u64::MAX) },
            Request::ChangesSince { after: 17 },
            Request::Tables {
                sql: "SELECT * FROM t".into(),
            },
            Request::BatchPart {
                index: 3,
                last: true,
                statements: vec![Statement {
                    sql: "INSERT INTO t VALUES (1)".into(),
                    params: vec![],
                }]
                .into(),
            },
            Request::CancelBatch,
        ];
        for (n, request) in requests.into_iter().enumerate() {
            roundtrip(ToWorker::Request(RequestEnvelope {
                id: id(n as u64),
                request,
                others_pending: n % 2 == 1,
            }));
        }
        roundtrip(ToWorker::Open(OpenParams {
            name: "app.db".into(),
            memory_fallback: true,
        }));
        roundtrip(ToWorker::Close);
        roundtrip(ToWorker::Warm);
        roundtrip(ToWorker::RouterLink);
        roundtrip(ToWorker::Attach {
            client: ClientId(5),
        });
        roundtrip(ToWorker::Gone {
            client: ClientId(5),
        });
        roundtrip(ToRouter::Hello {
            client: ClientId(1),
            tab_lock: "sqlite-tabs:app.db:tab:1".into(),
        });
        roundtrip(ToRouter::LeaderReady {
            client: ClientId(1),
            epoch: Epoch(2),
        });
        roundtrip(ToRouter::Bye {
            client: ClientId(1),
        });
        for message in [
            FromRouter::Connect {
                epoch: Epoch(2),
                leader: ClientId(1),
            },
            FromRouter::Attach {
                epoch: Epoch(2),
                client: ClientId(3),
            },
            FromRouter::Gone {
                client: ClientId(3),
            },
            FromRouter::LeaderLost { epoch: Epoch(2) },
            FromRouter::Welcome,
        ] {
            roundtrip(message);
        }
    }

    #[test]
    fn every_reply_kind_roundtrips() {
        let replies = vec![
            Ok(Reply::Done),
            Ok(Reply::Rows(Rows {
                columns: ["a".to_owned(), "a".to_owned()].into(),
                values: vec![Value::Integer(1), Value::Blob(vec![])],
            })),
            Ok(Reply::Run(RunResult {
                changes: 2,
                last_insert_rowid: -7,
            })),
            Ok(Reply::Batch(vec![RunResult::default(); 3])),
            Ok(Reply::Began(TxId(9))),
            Ok(Reply::Changes {
                events: vec![ChangeEvent {
                    seq: 2,
                    tables: vec!["a".into(), "b".into()],
                }],
                complete: true,
                head: 2,
            }),
            Ok(Reply::Tables(vec!["a".into()])),
            Err(Error::new(
                ErrorCode::Sqlite(2067),
                "UNIQUE constraint failed",
            )),
            Err(Error::new(ErrorCode::Timeout, "late")),
        ];
        for result in replies {
            roundtrip(FromWorker::Reply {
                id: id(1),
                result,
                change: Some(ChangeEvent {
                    seq: 3,
                    tables: vec!["t".into()],
                }),
            });
        }
        roundtrip(FromWorker::Replies(vec![
            crate::Answer {
                id: id(1),
                result: Ok(Reply::Done),
                change: Some(ChangeEvent {
                    seq: 4,
                    tables: vec!["t".into()],
                }),
            },
            crate::Answer {
                id: id(2),
                result: Err(Error::new(ErrorCode::Timeout, "late")),
                change: None,
            },
        ]));
        roundtrip(FromWorker::ChangedAll(vec![
            ChangeEvent {
                seq: 5,
                tables: vec!["a".into()],
            },
            ChangeEvent {
                seq: 6,
                tables: vec![],
            },
        ]));
        roundtrip(FromWorker::Ready);
        roundtrip(FromWorker::Opened(Ok(OpenInfo {
            storage: Storage::Opfs,
            seq: 42,
            epoch: Epoch(3),
        })));
        roundtrip(FromWorker::Opened(Err(Error::new(
            ErrorCode::OpfsUnavailable,
            "no OPFS",
        ))));
        roundtrip(FromWorker::Changed(ChangeEvent {
            seq: 5,
            tables: vec!["items".into()],
        }));
        roundtrip(FromWorker::Closed);
        roundtrip(FromWorker::Leader { epoch: Epoch(9) });
    }

    #[test]
    fn garbage_is_a_typed_error_not_a_panic() {
        for bytes in [
            &[][..],
            &[0xff; 12][..],
            &[1, 0x80][..],
            &[200, 1, 2, 3][..],
        ] {
            assert!(matches!(
                decode::<ToWorker>(bytes),
                Err(DecodeError::Malformed(_))
            ));
        }
        let mut bytes = encode(&ToWorker::Close);
        bytes.push(0);
        assert!(matches!(
            decode::<ToWorker>(&bytes),
            Err(DecodeError::Malformed(m)) if m.contains("trailing")
        ));
    }

    #[test]
    fn truncated_request_still_yields_its_id() {
        let bytes = encode(&ToWorker::Request(RequestEnvelope {
            id: id(77),
            request: Request::Query {
                sql: "SELECT 1".into(),
                params: vec![],
                tx: None,
            },
            others_pending: false,
        }));
        let cut = &bytes[..bytes.len() - 3];
        assert!(decode::<ToWorker>(cut).is_err());
        assert_eq!(peek_request_id(cut), Some(id(77)));
        assert_eq!(peek_request_id(&encode(&ToWorker::Close)), None);
    }

    #[test]
    fn decode_error_becomes_bad_request() {
        let e: Error = DecodeError::TooLarge(MAX_MESSAGE_BYTES + 1).into();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("exceeds"));
    }

    #[test]
    fn rows_are_split_by_column_count() {
        let rows = Rows {
            columns: ["a".to_owned(), "b".to_owned()].into(),
            values: (0..6).map(Value::Integer).collect(),
        };
        assert_eq!(rows.row_count(), 3);
        assert_eq!(
            rows.rows().nth(1).unwrap(),
            &[Value::Integer(2), Value::Integer(3)]
        );
        assert_eq!(Rows::default().row_count(), 0);
    }
}
