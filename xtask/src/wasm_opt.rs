//! Binaryen's `wasm-opt` over the release wasm files: about 10% smaller
//! gzipped at the same speed (`-O2`; `-Oz` saves under 1% more).
//!
//! Installed from npm (`binaryen`, pinned in `xtask/wasm-opt/package-lock.json`)
//! because Debian's binaryen is too old for the wasm features rustc emits.

use std::path::Path;
use std::process::Command;

use crate::{cmd, setup, Result};

/// The features rustc enables for wasm32-unknown-unknown; wasm-opt must
/// accept them and must not add others.
const FEATURES: [&str; 6] = [
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-reference-types",
    "--enable-multivalue",
    "--enable-mutable-globals",
];

/// Optimizes `wasm` in place, installing wasm-opt first if needed.
pub fn optimize(root: &Path, wasm: &Path) -> Result<()> {
    let dir = root.join("xtask").join("wasm-opt");
    setup::ensure_npm_deps_in(&dir)?;
    let bin = dir.join("node_modules").join(".bin").join("wasm-opt");
    cmd::run(
        Command::new(&bin)
            .arg("-O2")
            .args(FEATURES)
            .arg(wasm)
            .arg("-o")
            .arg(wasm),
    )
}
