//! `cargo xtask bench`: every engine on the same workloads in one run.
//!
//! Steps, each printing JSON lines (`{"engine","workload","samples_ms",…}`)
//! that are collected into `target/bench/lines.jsonl`:
//! native rusqlite on disk (`crates/bench-native`), sqlite-tabs through its
//! whole path from a leader and a follower tab with the raw transport floors
//! (`tests/bench/ours.mjs`), the peer engines in their workers
//! (`bench/peers/run.mjs`, when installed), and failover times
//! (`tests/bench/failover.mjs`, a table of its own). `tests/bench/report.mjs`
//! then writes `target/bench/results.json` and `BENCHMARKS.md`.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{build, cmd, serve, setup, Result};

/// Runs a step, echoing its output and keeping its JSON lines.
fn step(cmd: &mut Command, lines: &mut Vec<String>) -> Result<String> {
    println!("$ {}", cmd::display(cmd));
    let output = cmd.stderr(Stdio::inherit()).output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    print!("{text}");
    if !output.status.success() {
        return Err(format!("`{}` failed ({})", cmd::display(cmd), output.status).into());
    }
    lines.extend(
        text.lines()
            .filter(|l| l.starts_with('{'))
            .map(str::to_owned),
    );
    Ok(text)
}

/// Builds in release, serves with COOP/COEP (fine timers) and runs every step.
pub fn bench(root: &Path) -> Result<()> {
    setup::setup(root)?;
    build::build(root, true)?;
    let out_dir = root.join("target/bench");
    let tmp = root.join("target/tmp");
    fs::create_dir_all(&out_dir)?;
    fs::create_dir_all(&tmp)?;
    let server = serve::serve(root, 0, true)?;
    let url = server.base_url();
    let mut lines = Vec::new();

    // Native rusqlite runs first and again last: this machine's speed drifts
    // over minutes, and report.mjs pools both runs' samples.
    let native = || {
        let mut c = Command::new("cargo");
        c.current_dir(root)
            .args([
                "run",
                "--release",
                "--quiet",
                "-p",
                "sqlite-tabs-bench-native",
                "--",
            ])
            .arg("--dir")
            .arg(&tmp);
        c
    };
    step(&mut native(), &mut lines)?;
    // The engine called directly in its worker (no router, no JS API).
    step(
        Command::new("cargo")
            .current_dir(root.join("crates/db-worker"))
            .args([
                "test",
                "--release",
                "--target",
                crate::setup::WASM_TARGET,
                "--test",
                "pragma_bench",
                "--",
                "--include-ignored",
                "--nocapture",
            ])
            .env("CHROMEDRIVER", crate::setup::CHROMEDRIVER)
            .env("TMPDIR", &tmp),
        &mut lines,
    )?;
    let node = |script: &str| {
        let mut c = Command::new("node");
        c.current_dir(root.join("tests"))
            .arg(script)
            .env("SQLITE_TABS_BASE_URL", &url)
            .env("SQLITE_TABS_BENCH_URL", &url)
            .env("TMPDIR", &tmp);
        c
    };
    // Installed first: ours.mjs measures the peers' first visit next to ours.
    let peers = root.join("bench/peers");
    let with_peers = peers.join("package-lock.json").exists();
    if with_peers {
        setup::ensure_npm_deps_in(&peers)?;
    }
    step(&mut node("bench/ours.mjs"), &mut lines)?;
    if with_peers {
        step(&mut node("../bench/peers/run.mjs"), &mut lines)?;
    } else {
        println!("peers skipped: bench/peers has no package-lock.json");
    }
    let failover = step(&mut node("bench/failover.mjs"), &mut lines)?;
    step(&mut native(), &mut lines)?;

    let jsonl = out_dir.join("lines.jsonl");
    fs::File::create(&jsonl)?.write_all(lines.join("\n").as_bytes())?;
    fs::write(out_dir.join("failover.txt"), failover)?;
    cmd::run(
        Command::new("node")
            .current_dir(root.join("tests"))
            .arg("bench/report.mjs")
            .arg(&jsonl)
            .arg(out_dir.join("failover.txt"))
            .arg(root.join("BENCHMARKS.md"))
            .arg(out_dir.join("results.json")),
    )
}
