//! The sqlite-tabs wire protocol: every message between the tab client, the
//! SharedWorker router and the database worker, defined once.
//!
//! Messages are plain Rust values encoded with [`encode`] into bytes (postcard)
//! and sent as a transferred `ArrayBuffer`; [`decode`] turns bytes back into a
//! message or a typed [`DecodeError`], never a panic.

mod codec;
mod codes;
mod compact;
mod error;
mod message;
pub mod names;
mod statements;
mod value;

pub use codec::{decode, encode, peek_request_id, DecodeError, MAX_MESSAGE_BYTES};
pub use codes::result_code_name;
pub use error::{Error, ErrorCode};
pub use message::{
    Answer, ChangeEvent, ClientId, Epoch, FromRouter, FromWorker, OpenInfo, OpenParams, Reply,
    Request, RequestEnvelope, RequestId, Rows, RunResult, Statement, Storage, ToRouter, ToWorker,
    TxId,
};
pub use statements::{Cursor, StatementRef, Statements, ValueRef};
pub use value::Value;
