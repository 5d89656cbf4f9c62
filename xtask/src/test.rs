//! `cargo xtask test`: everything CI runs, suite by suite, with a summary at the end.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::build::WASM_CRATES;
use crate::setup::{CHROMEDRIVER, WASM_TARGET};
use crate::{build, cmd, serve, setup, Result};

/// A group of checks reported as one line of the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// rustfmt and clippy (native and wasm32).
    Lint,
    /// `cargo test --workspace` natively.
    Native,
    /// wasm-bindgen-test suites in headless Chromium.
    Wasm,
    /// The release build of the package into `dist/`.
    Build,
    /// Playwright end-to-end tests: the JS API through the demo (as Vite builds it and
    /// in Vite's dev server), tabs and failover, and the React hooks on a fixture page.
    E2e,
}

impl Suite {
    /// Every suite, in the order they run.
    pub const ALL: [Suite; 5] = [
        Suite::Lint,
        Suite::Native,
        Suite::Wasm,
        Suite::Build,
        Suite::E2e,
    ];

    /// Parses a suite name as given to `--only`.
    pub fn parse(name: &str) -> Result<Suite> {
        Suite::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                format!("unknown suite `{name}`: expected lint, native, wasm, build or e2e").into()
            })
    }

    /// The suite's name in `--only` and in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Lint => "lint",
            Suite::Native => "native",
            Suite::Wasm => "wasm",
            Suite::Build => "build",
            Suite::E2e => "e2e",
        }
    }

    /// Runs the suite against the repository at `root`.
    fn run(self, root: &Path) -> Result<()> {
        match self {
            Suite::Lint => lint(root),
            Suite::Native => cmd::run(
                Command::new("cargo")
                    .current_dir(root)
                    .args(["test", "--workspace"]),
            ),
            Suite::Wasm => wasm_tests(root),
            Suite::Build => build::build(root, true),
            Suite::E2e => e2e(root),
        }
    }
}

/// The outcome of one suite in the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Ran and succeeded.
    Passed,
    /// Ran and failed.
    Failed,
    /// Not run because an earlier suite failed.
    Skipped,
}

/// Which suites to run for `--only` (`None`: all); `e2e` needs `build`.
pub fn selected(only: Option<&[Suite]>) -> Vec<Suite> {
    let Some(only) = only else {
        return Suite::ALL.to_vec();
    };
    Suite::ALL
        .into_iter()
        .filter(|s| only.contains(s) || (*s == Suite::Build && only.contains(&Suite::E2e)))
        .collect()
}

/// Runs setup and then the selected suites in order, stopping at the first failure;
/// prints a summary ending in `suites: N passed, M failed`. True when all passed.
pub fn test(root: &Path, only: Option<&[Suite]>) -> bool {
    let suites = selected(only);
    let mut results: Vec<(&str, Outcome, f64)> = Vec::new();
    let started = Instant::now();
    let mut failed = match setup::setup(root) {
        Ok(()) => {
            results.push(("setup", Outcome::Passed, started.elapsed().as_secs_f64()));
            false
        }
        Err(e) => {
            eprintln!("xtask: setup failed: {e}");
            results.push(("setup", Outcome::Failed, started.elapsed().as_secs_f64()));
            true
        }
    };
    for suite in suites {
        if failed {
            results.push((suite.name(), Outcome::Skipped, 0.0));
            continue;
        }
        println!("\n==== {} ====", suite.name());
        let started = Instant::now();
        let outcome = match suite.run(root) {
            Ok(()) => Outcome::Passed,
            Err(e) => {
                eprintln!("xtask: suite {} failed: {e}", suite.name());
                failed = true;
                Outcome::Failed
            }
        };
        results.push((suite.name(), outcome, started.elapsed().as_secs_f64()));
    }
    print!("{}", summary(&results));
    !failed
}

/// Formats the summary: one line per suite, then `suites: N passed, M failed`.
fn summary(results: &[(&str, Outcome, f64)]) -> String {
    let mut out = String::from("\n==== summary ====\n");
    for (name, outcome, secs) in results {
        let line = match outcome {
            Outcome::Passed => format!("{name:<8} passed  ({secs:.1} s)"),
            Outcome::Failed => format!("{name:<8} FAILED  ({secs:.1} s)"),
            Outcome::Skipped => format!("{name:<8} skipped (an earlier suite failed)"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let passed = results.iter().filter(|r| r.1 == Outcome::Passed).count();
    let failed = results.iter().filter(|r| r.1 == Outcome::Failed).count();
    out.push_str(&format!("suites: {passed} passed, {failed} failed\n"));
    out
}

/// rustfmt check, clippy natively on the whole workspace, clippy on wasm32.
fn lint(root: &Path) -> Result<()> {
    cmd::run(
        Command::new("cargo")
            .current_dir(root)
            .args(["fmt", "--all", "--", "--check"]),
    )?;
    cmd::run(Command::new("cargo").current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let mut wasm = Command::new("cargo");
    wasm.current_dir(root)
        .args(["clippy", "--all-targets", "--target", WASM_TARGET]);
    for (package, _) in WASM_CRATES {
        wasm.args(["-p", package]);
    }
    wasm.args(["-p", "sqlite-tabs-protocol", "--", "-D", "warnings"]);
    cmd::run(&mut wasm)
}

/// `<root>/target/tmp`, created: TMPDIR for chromedriver and Playwright profiles.
fn test_tmpdir(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target").join("tmp");
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Runs the wasm-bindgen-test suites in headless Chromium: always the db-worker's,
/// and the client's and shared-worker's when they have a `tests/` folder.
fn wasm_tests(root: &Path) -> Result<()> {
    let tmp = test_tmpdir(root)?;
    // Profile directories of earlier runs are garbage; start clean.
    if let Ok(entries) = fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let _ = fs::remove_dir_all(entry.path()).or_else(|_| fs::remove_file(entry.path()));
        }
    }
    let default_webdriver = root.join("crates/db-worker/webdriver.json");
    for (package, crate_dir) in [
        ("sqlite-tabs-db-worker", "crates/db-worker"),
        ("sqlite-tabs-client", "crates/client"),
        ("sqlite-tabs-shared-worker", "crates/shared-worker"),
    ] {
        let dir = root.join(crate_dir);
        if package != "sqlite-tabs-db-worker" && !dir.join("tests").is_dir() {
            continue;
        }
        let mut cargo = Command::new("cargo");
        cargo
            .current_dir(&dir)
            .args(["test", "--target", WASM_TARGET, "-p", package])
            .env("CHROMEDRIVER", CHROMEDRIVER)
            .env("WASM_BINDGEN_TEST_TIMEOUT", "120")
            .env("TMPDIR", &tmp);
        // The runner reads webdriver.json from the current directory; a crate without
        // its own uses the db-worker's.
        if !dir.join("webdriver.json").exists() && default_webdriver.exists() {
            cargo.env("WASM_BINDGEN_TEST_WEBDRIVER_JSON", &default_webdriver);
        }
        cmd::run(&mut cargo)?;
    }
    Ok(())
}

/// Serves the demo and dist/ on an ephemeral port and runs Playwright against it
/// (whose global setup builds the React fixture pages into target/fixtures/).
fn e2e(root: &Path) -> Result<()> {
    let tmp = test_tmpdir(root)?;
    let server = serve::serve(root, 0, false)?;
    println!("serving the demo at {}/", server.base_url());
    let result = cmd::run(
        Command::new("npx")
            .current_dir(root.join("tests"))
            .args(["--no-install", "playwright", "test"])
            .env("SQLITE_TABS_BASE_URL", server.base_url())
            .env("TMPDIR", &tmp),
    );
    server.stop();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_suites() {
        assert_eq!(selected(None), Suite::ALL.to_vec());
        assert_eq!(
            selected(Some(&[Suite::E2e])),
            vec![Suite::Build, Suite::E2e]
        );
        assert_eq!(
            selected(Some(&[Suite::Native, Suite::Lint])),
            vec![Suite::Lint, Suite::Native]
        );
        assert!(Suite::parse("unit").is_err());
        assert_eq!(Suite::parse("wasm").unwrap(), Suite::Wasm);
    }

    #[test]
    fn summary_ends_with_the_counting_line() {
        let text = summary(&[
            ("setup", Outcome::Passed, 0.1),
            ("lint", Outcome::Passed, 2.0),
            ("native", Outcome::Failed, 3.0),
            ("wasm", Outcome::Skipped, 0.0),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.last(), Some(&"suites: 2 passed, 1 failed"));
        assert!(lines.contains(&"native   FAILED  (3.0 s)"));
        assert!(lines.contains(&"wasm     skipped (an earlier suite failed)"));
    }
}
