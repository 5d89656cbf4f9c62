//! `cargo xtask setup`: install whatever the build and the tests need and is missing.
//! Idempotent and silent when everything is already there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::{cmd, Result};

/// The wasm target every browser crate builds for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// Debian's Chromium, the only browser the tests use (never a downloaded one).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver, used by wasm-bindgen-test-runner.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The programs `cargo install wasm-bindgen-cli` provides that the build and tests run.
const WASM_BINDGEN_TOOLS: [&str; 2] = ["wasm-bindgen", "wasm-bindgen-test-runner"];

/// Runs every setup step: lockfile, wasm target, Debian packages, wasm-bindgen-cli, npm.
pub fn setup(root: &Path) -> Result<()> {
    ensure_lockfile(root)?;
    ensure_wasm_target()?;
    ensure_system_packages()?;
    ensure_wasm_bindgen_cli(root)?;
    ensure_npm_deps(root)?;
    Ok(())
}

/// Creates `Cargo.lock` with `cargo generate-lockfile` if it does not exist yet.
fn ensure_lockfile(root: &Path) -> Result<()> {
    if !root.join("Cargo.lock").exists() {
        cmd::run(
            Command::new("cargo")
                .arg("generate-lockfile")
                .current_dir(root),
        )?;
    }
    Ok(())
}

/// Adds the wasm32 target with rustup unless it is installed.
fn ensure_wasm_target() -> Result<()> {
    if cmd::find_in_path("rustup").is_none() {
        // A toolchain not managed by rustup: trust that it has the target; the build
        // will say so clearly if it does not.
        return Ok(());
    }
    let installed = cmd::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .ok_or("`rustup target list --installed` failed")?;
    if !installed.lines().any(|l| l.trim() == WASM_TARGET) {
        cmd::run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    Ok(())
}

/// The Debian packages to install when clang, chromium or chromedriver is missing.
fn missing_system_tools() -> Vec<&'static str> {
    let mut missing = Vec::new();
    if cmd::find_in_path("clang").is_none() {
        missing.push("clang");
    }
    if !cmd::is_executable(Path::new(CHROMIUM)) {
        missing.push(CHROMIUM);
    }
    if !cmd::is_executable(Path::new(CHROMEDRIVER)) {
        missing.push(CHROMEDRIVER);
    }
    missing
}

/// True when this process runs as root.
fn is_root() -> bool {
    cmd::output(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0")
}

/// Builds an `apt-get` command, through `sudo` when not root.
fn apt_get(args: &[&str]) -> Result<Command> {
    let mut command = if is_root() {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    } else if cmd::find_in_path("sudo").is_some() {
        let mut c = Command::new("sudo");
        c.args(["DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        c
    } else {
        return Err(
            "not root and no sudo: install the Debian packages chromium, chromium-driver and clang"
                .into(),
        );
    };
    command.args(args);
    Ok(command)
}

/// Installs clang, chromium and chromium-driver with apt-get if any of them is missing.
fn ensure_system_packages() -> Result<()> {
    let missing = missing_system_tools();
    if missing.is_empty() {
        return Ok(());
    }
    println!(
        "setup: missing {}; installing with apt-get",
        missing.join(", ")
    );
    cmd::run(&mut apt_get(&["update", "-qq"])?)?;
    cmd::run(&mut apt_get(&[
        "install",
        "-y",
        "-qq",
        "chromium",
        "chromium-driver",
        "clang",
    ])?)?;
    let still = missing_system_tools();
    if !still.is_empty() {
        return Err(format!("still missing after apt-get install: {}", still.join(", ")).into());
    }
    Ok(())
}

/// Returns the versions of package `name` recorded in the `Cargo.lock` text `lock`.
pub fn lockfile_versions(lock: &str, name: &str) -> Vec<String> {
    let mut versions = Vec::new();
    let mut current: (Option<String>, Option<String>) = (None, None);
    let mut flush = |current: &mut (Option<String>, Option<String>)| {
        if let (Some(n), Some(v)) = (current.0.take(), current.1.take()) {
            if n == name {
                versions.push(v);
            }
        }
        *current = (None, None);
    };
    for line in lock.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(&mut current);
        } else if let Some(value) = toml_string(line, "name") {
            current.0 = Some(value);
        } else if let Some(value) = toml_string(line, "version") {
            current.1 = Some(value);
        }
    }
    flush(&mut current);
    versions
}

/// Parses a `key = "value"` TOML line, returning the value when the key matches.
pub fn toml_string(line: &str, key: &str) -> Option<String> {
    let rest = line
        .strip_prefix(key)?
        .trim_start()
        .strip_prefix('=')?
        .trim();
    let value = rest.strip_prefix('"')?;
    let end = value.find('"')?;
    Some(value[..end].to_string())
}

/// The `wasm-bindgen` version the workspace's `Cargo.lock` pins, if it depends on it.
fn locked_wasm_bindgen_version(root: &Path) -> Result<Option<String>> {
    let path = root.join("Cargo.lock");
    let lock = fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut versions = lockfile_versions(&lock, "wasm-bindgen");
    versions.dedup();
    match versions.len() {
        0 => Ok(None),
        1 => Ok(versions.pop()),
        _ => Err(format!(
            "Cargo.lock holds several wasm-bindgen versions ({}); pin exactly one",
            versions.join(", ")
        )
        .into()),
    }
}

/// The directory `cargo install` puts programs in: `$CARGO_INSTALL_ROOT/bin`, else
/// `$CARGO_HOME/bin`, else `~/.cargo/bin`.
pub fn cargo_bin_dir() -> PathBuf {
    let home = std::env::var_os("CARGO_INSTALL_ROOT")
        .or_else(|| std::env::var_os("CARGO_HOME"))
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"));
    home.join("bin")
}

/// True when `program --version` prints exactly `version` as one of its words.
fn has_version(program: &Path, version: &str) -> bool {
    cmd::output(Command::new(program).arg("--version"))
        .is_some_and(|out| out.split_whitespace().any(|word| word == version))
}

/// Makes sure `wasm-bindgen` and `wasm-bindgen-test-runner` of the version locked in
/// `Cargo.lock` come first in `PATH`, installing wasm-bindgen-cli if needed.
fn ensure_wasm_bindgen_cli(root: &Path) -> Result<()> {
    let Some(version) = locked_wasm_bindgen_version(root)? else {
        println!("setup: Cargo.lock has no wasm-bindgen yet; skipping wasm-bindgen-cli");
        return Ok(());
    };
    let in_path_ok = WASM_BINDGEN_TOOLS
        .iter()
        .all(|tool| cmd::find_in_path(tool).is_some_and(|p| has_version(&p, &version)));
    if in_path_ok {
        return Ok(());
    }
    let bin = cargo_bin_dir();
    let installed_ok = |bin: &Path| {
        WASM_BINDGEN_TOOLS
            .iter()
            .all(|tool| has_version(&bin.join(tool), &version))
    };
    if !installed_ok(&bin) {
        println!("setup: installing wasm-bindgen-cli {version} (takes a few minutes)");
        // No --locked: the CLI's own lockfile pins a crate version the registry lacks.
        cmd::run(Command::new("cargo").args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            &version,
        ]))?;
        if !installed_ok(&bin) {
            return Err(format!(
                "after `cargo install wasm-bindgen-cli --version {version}`, {} still does not \
                 hold wasm-bindgen and wasm-bindgen-test-runner {version}",
                bin.display()
            )
            .into());
        }
    }
    // Children (wasm-bindgen, and cargo's wasm32 runner) must find these first.
    cmd::prepend_path(&bin);
    Ok(())
}

/// Modification time of `path`, if it exists.
fn mtime(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

/// Runs `npm ci` in `tests/` when `node_modules` is missing or older than the lockfile.
fn ensure_npm_deps(root: &Path) -> Result<()> {
    ensure_npm_deps_in(&root.join("tests"))
}

/// Runs `npm ci` in `dir` when its `node_modules` is missing or older than its
/// lockfile (the benchmarks' peer engines live in a folder of their own).
pub fn ensure_npm_deps_in(dir: &Path) -> Result<()> {
    let lock = dir.join("package-lock.json");
    if !lock.exists() {
        return Err(format!("{} is missing", lock.display()).into());
    }
    let installed = mtime(&dir.join("node_modules/.package-lock.json"));
    let wanted = [mtime(&lock), mtime(&dir.join("package.json"))]
        .into_iter()
        .flatten()
        .max();
    let fresh = matches!((installed, wanted), (Some(i), Some(w)) if i >= w);
    if fresh {
        return Ok(());
    }
    if cmd::find_in_path("npm").is_none() {
        return Err("npm not found: install Node.js 20+ with npm".into());
    }
    cmd::run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .current_dir(dir),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
# This file is automatically @generated by Cargo.
version = 4

[[package]]
name = "wasm-bindgen"
version = "0.2.130"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = [
 "cfg-if",
]

[[package]]
name = "wasm-bindgen-backend"
version = "0.2.130"

[[package]]
name = "xtask"
version = "0.1.0"
"#;

    #[test]
    fn reads_versions_from_cargo_lock() {
        assert_eq!(lockfile_versions(LOCK, "wasm-bindgen"), vec!["0.2.130"]);
        assert_eq!(lockfile_versions(LOCK, "xtask"), vec!["0.1.0"]);
        assert!(lockfile_versions(LOCK, "cfg-if").is_empty());
        assert!(lockfile_versions(LOCK, "wasm").is_empty());
    }

    #[test]
    fn parses_toml_strings() {
        assert_eq!(
            toml_string(r#"version = "1.2.3""#, "version").as_deref(),
            Some("1.2.3")
        );
        assert_eq!(
            toml_string(r#"version="1""#, "version").as_deref(),
            Some("1")
        );
        assert_eq!(toml_string(r#"versions = "1""#, "version"), None);
        assert_eq!(toml_string("version.workspace = true", "version"), None);
    }
}
