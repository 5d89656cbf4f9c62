//! The SharedWorker router of sqlite-tabs.
//!
//! Every tab connects to it. It keeps the registry of tabs and the current
//! leader ([`registry`], plain Rust), learns of dead tabs through their Web
//! Locks, and brokers a direct `MessagePort` between each tab and the
//! leader's database worker, so requests never pass through here.

pub mod registry;

#[cfg(target_arch = "wasm32")]
mod router;

#[cfg(target_arch = "wasm32")]
pub use router::{start, Router};
