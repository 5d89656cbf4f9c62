//! `cargo xtask`: the project's automation, in plain Rust.
//!
//! Subcommands (see [`USAGE`]): `setup`, `build`, `serve`, `demo`, `test`, `bench`.
//! Every child command is echoed as `$ cmd` before it runs and inherits stdio.

mod bench;
mod build;
mod cmd;
mod serve;
mod setup;
mod sizes;
mod test;
mod wasm_opt;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The error type of every fallible xtask function: a message that says what failed.
pub type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// Help text printed by `cargo xtask help` and after an argument error.
const USAGE: &str = "\
usage: cargo xtask <command> [flags]

commands:
  setup                 install what is missing: wasm32 target, clang, chromium,
                        chromedriver, wasm-bindgen-cli (version from Cargo.lock),
                        npm packages of tests/ (quiet when all present)
  build [--debug]       build the three wasm crates (release unless --debug), run
                        wasm-bindgen, assemble the npm package in dist/, print sizes
  serve [--port N] [--no-build] [--debug] [--isolated]
                        build (unless --no-build), then serve demo/ at / and dist/ at
                        /dist/ on http://127.0.0.1:N (default 8080); --isolated adds
                        COOP/COEP headers (cross-origin isolation)
  demo [--port N] [--debug] [--isolated]
                        build + serve on http://127.0.0.1:8080
  test [--only SUITES]  what CI runs: lint, native tests, wasm tests in headless
                        Chromium, release build, Playwright end-to-end tests;
                        SUITES is a comma-separated subset of lint,native,wasm,build,e2e
                        (e2e implies build)
  bench                 release build, then every engine on the same workloads in one
                        run (native rusqlite, sqlite-tabs leader and follower, peers,
                        failover); writes target/bench/results.json and BENCHMARKS.md
  help                  this text
";

/// Default port of `serve` and `demo`.
const DEFAULT_PORT: u16 = 8080;

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
enum Task {
    /// `setup`
    Setup,
    /// `build [--debug]`
    Build {
        /// Release profile unless `--debug`.
        release: bool,
    },
    /// `serve` and `demo`.
    Serve {
        /// Port on 127.0.0.1 (0 picks a free one).
        port: u16,
        /// Build before serving (false with `--no-build`).
        build: bool,
        /// Release profile unless `--debug`.
        release: bool,
        /// Send COOP/COEP headers.
        isolated: bool,
    },
    /// `test [--only …]`
    Test {
        /// The suites to run; `None` runs them all.
        only: Option<Vec<test::Suite>>,
    },
    /// `bench`
    Bench,
    /// `help`, `-h`, `--help` or no arguments.
    Help,
}

/// Parses the arguments after `cargo xtask` into a [`Task`].
fn parse_args(args: &[String]) -> Result<Task> {
    let Some((command, rest)) = args.split_first() else {
        return Ok(Task::Help);
    };
    let mut flags = rest.iter();
    match command.as_str() {
        "help" | "-h" | "--help" => Ok(Task::Help),
        "setup" => {
            if let Some(flag) = flags.next() {
                return Err(format!("setup takes no flags, got `{flag}`").into());
            }
            Ok(Task::Setup)
        }
        "build" => {
            let mut release = true;
            for flag in flags {
                match flag.as_str() {
                    "--debug" => release = false,
                    "--release" => release = true,
                    other => return Err(format!("unknown flag `{other}` for build").into()),
                }
            }
            Ok(Task::Build { release })
        }
        "serve" | "demo" => {
            let demo = command == "demo";
            let (mut port, mut build, mut release, mut isolated) =
                (DEFAULT_PORT, true, true, false);
            while let Some(flag) = flags.next() {
                match flag.as_str() {
                    "--port" => {
                        let value = flags.next().ok_or("--port needs a number")?;
                        port = parse_port(value)?;
                    }
                    p if p.starts_with("--port=") => port = parse_port(&p["--port=".len()..])?,
                    "--no-build" if !demo => build = false,
                    "--debug" => release = false,
                    "--isolated" => isolated = true,
                    other => return Err(format!("unknown flag `{other}` for {command}").into()),
                }
            }
            Ok(Task::Serve {
                port,
                build,
                release,
                isolated,
            })
        }
        "test" => {
            let mut only = None;
            while let Some(flag) = flags.next() {
                let list = match flag.as_str() {
                    "--only" => flags
                        .next()
                        .ok_or("--only needs a list of suites")?
                        .as_str(),
                    f if f.starts_with("--only=") => &f["--only=".len()..],
                    other => return Err(format!("unknown flag `{other}` for test").into()),
                };
                let suites = list
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(test::Suite::parse)
                    .collect::<Result<Vec<_>>>()?;
                if suites.is_empty() {
                    return Err("--only needs at least one suite".into());
                }
                only.get_or_insert_with(Vec::new).extend(suites);
            }
            Ok(Task::Test { only })
        }
        "bench" => match flags.next() {
            None => Ok(Task::Bench),
            Some(other) => Err(format!("unknown flag `{other}` for bench").into()),
        },
        other => Err(format!("unknown command `{other}`").into()),
    }
}

/// Parses a TCP port number.
fn parse_port(value: &str) -> Result<u16> {
    value
        .parse()
        .map_err(|_| format!("invalid port `{value}`: expected a number 0-65535").into())
}

/// The repository root: the parent of this crate's directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// Runs a parsed task against the repository at `root`.
fn run(task: Task, root: &Path) -> Result<ExitCode> {
    match task {
        Task::Help => print!("{USAGE}"),
        Task::Bench => bench::bench(root)?,
        Task::Setup => setup::setup(root)?,
        Task::Build { release } => {
            setup::setup(root)?;
            build::build(root, release)?;
        }
        Task::Serve {
            port,
            build: do_build,
            release,
            isolated,
        } => {
            if do_build {
                setup::setup(root)?;
                build::build(root, release)?;
            }
            let server = serve::serve(root, port, isolated)?;
            println!(
                "serving {} at http://127.0.0.1:{}/ (dist/ at /dist/){} — Ctrl+C to stop",
                root.join("demo").display(),
                server.port(),
                if isolated {
                    ", cross-origin isolated"
                } else {
                    ""
                }
            );
            server.join();
        }
        Task::Test { only } => {
            if !test::test(root, only.as_deref()) {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = match parse_args(&args) {
        Ok(task) => task,
        Err(e) => {
            eprintln!("xtask: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(task, &repo_root()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test::Suite;

    fn parse(line: &str) -> Result<Task> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse_args(&args)
    }

    #[test]
    fn parses_commands_and_flags() {
        assert_eq!(parse("").unwrap(), Task::Help);
        assert_eq!(parse("--help").unwrap(), Task::Help);
        assert_eq!(parse("setup").unwrap(), Task::Setup);
        assert_eq!(parse("build").unwrap(), Task::Build { release: true });
        assert_eq!(
            parse("build --debug").unwrap(),
            Task::Build { release: false }
        );
        assert_eq!(
            parse("serve --port 9000 --no-build --isolated").unwrap(),
            Task::Serve {
                port: 9000,
                build: false,
                release: true,
                isolated: true
            }
        );
        assert_eq!(
            parse("demo").unwrap(),
            Task::Serve {
                port: 8080,
                build: true,
                release: true,
                isolated: false
            }
        );
        assert_eq!(
            parse("demo --port=0 --debug").unwrap(),
            Task::Serve {
                port: 0,
                build: true,
                release: false,
                isolated: false
            }
        );
        assert_eq!(parse("test").unwrap(), Task::Test { only: None });
        assert_eq!(
            parse("test --only native,e2e --only=lint").unwrap(),
            Task::Test {
                only: Some(vec![Suite::Native, Suite::E2e, Suite::Lint])
            }
        );
    }

    #[test]
    fn rejects_bad_arguments() {
        for line in [
            "frobnicate",
            "setup --x",
            "build --fast",
            "serve --port",
            "serve --port 70000",
            "serve --port abc",
            "demo --no-build",
            "test --only",
            "test --only unit",
            "test --only ,",
        ] {
            assert!(parse(line).is_err(), "`{line}` should be rejected");
        }
    }
}
