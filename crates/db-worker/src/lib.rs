//! The sqlite-tabs database worker.
//!
//! [`engine`] and [`scheduler`] are plain Rust over `rusqlite::Connection`
//! and run natively too (unit-tested with `cargo test`); the `worker` module
//! is the thin wasm glue that owns the OPFS pool inside a dedicated Worker.

pub mod coalesce;
pub mod engine;
pub mod retry;
pub mod scheduler;

#[cfg(target_arch = "wasm32")]
pub mod worker;

#[cfg(test)]
mod tests;
