//! The sqlite-tabs client: the JavaScript API a tab uses (see `js/index.js`
//! for the public facade and `js/index.d.ts` for its types).
//!
//! It spawns the tab's database worker, matches every request to its answer
//! by id, gives every request a timeout, and dispatches change events to
//! subscribers.

#[cfg(target_arch = "wasm32")]
mod convert;
#[cfg(target_arch = "wasm32")]
mod database;
#[cfg(target_arch = "wasm32")]
mod locks;
pub mod seq;

#[cfg(target_arch = "wasm32")]
pub use database::{open_database, Database, Transaction};
