//! The SharedWorker router of sqlite-tabs.
//!
//! Every tab connects to it; it keeps the registry of tabs and the current
//! leader, and brokers a direct `MessagePort` between each tab and the
//! leader's database worker. Only a skeleton until the multi-tab coordinator
//! lands: it loads and answers nothing yet.

pub mod registry;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen::prelude::*;

/// Entry point called by `shared-worker.js` once the module is loaded.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen]
pub fn start() {}
