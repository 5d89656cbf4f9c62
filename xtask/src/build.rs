//! `cargo xtask build`: compile the three browser crates to wasm, run wasm-bindgen,
//! assemble the npm package `sqlite-tabs` in `dist/`, install it into the apps that use
//! it by name (the React demo and the tests' React fixture) and build the demo with Vite.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::setup::{ensure_npm_deps_in, toml_string, WASM_TARGET};
use crate::{cmd, sizes, wasm_opt, Result};

/// The wasm crates: (cargo package, output file stem).
pub const WASM_CRATES: [(&str, &str); 3] = [
    ("sqlite-tabs-client", "sqlite_tabs_client"),
    ("sqlite-tabs-db-worker", "sqlite_tabs_db_worker"),
    ("sqlite-tabs-shared-worker", "sqlite_tabs_shared_worker"),
];

/// Folders of hand-written JS entry files, copied flat into `dist/`.
const JS_DIRS: [&str; 3] = [
    "crates/client/js",
    "crates/db-worker/js",
    "crates/shared-worker/js",
];

/// Files the package cannot work without (the `main`/`module` entry).
const REQUIRED_ENTRY: &str = "index.js";

/// Folders of apps that import the package by name from their `node_modules`, as a
/// user's app does: the React demo and the end-to-end tests (React hooks fixture).
const PACKAGE_USERS: [&str; 2] = ["demo", "tests"];

/// Builds everything into `<root>/dist` (release profile unless `release` is false)
/// and prints the size table. Does not run setup.
pub fn build(root: &Path, release: bool) -> Result<()> {
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(root)
        .args(["build", "--target", WASM_TARGET]);
    if release {
        cargo.arg("--release");
    }
    for (package, _) in WASM_CRATES {
        cargo.args(["-p", package]);
    }
    cmd::run(&mut cargo)?;

    let profile_dir =
        root.join("target")
            .join(WASM_TARGET)
            .join(if release { "release" } else { "debug" });
    let dist = root.join("dist");
    clean_dir(&dist)?;

    for (_, stem) in WASM_CRATES {
        let wasm = profile_dir.join(format!("{stem}.wasm"));
        if !wasm.exists() {
            return Err(format!(
                "{} was not produced: is the crate a cdylib?",
                wasm.display()
            )
            .into());
        }
        cmd::run(
            Command::new("wasm-bindgen")
                .current_dir(root)
                .args(["--target", "web", "--no-typescript", "--out-dir"])
                .arg("dist")
                .args(["--out-name", stem])
                .arg(wasm.strip_prefix(root).unwrap_or(&wasm)),
        )?;
    }

    if release {
        for (_, stem) in WASM_CRATES {
            wasm_opt::optimize(root, &dist.join(format!("{stem}_bg.wasm")))?;
        }
    }

    copy_js_entries(root, &dist)?;
    let version = workspace_field(root, "version")?;
    let license = workspace_field(root, "license")?;
    let files = package_files(&dist)?;
    fs::write(
        dist.join("package.json"),
        package_json(&version, &license, &files),
    )
    .map_err(|e| format!("writing dist/package.json: {e}"))?;

    let table = sizes::table(&dist)?;
    print!("{table}");
    fs::write(dist.join("SIZES.txt"), &table)
        .map_err(|e| format!("writing dist/SIZES.txt: {e}"))?;
    println!("package ready in {}", dist.display());

    // The demo's npm install takes the package from dist/, so it can only run now.
    ensure_npm_deps_in(&root.join("demo"))?;
    for app in PACKAGE_USERS {
        install_package(&dist, &root.join(app))?;
    }
    build_demo(root)
}

/// Copies the package in `dist` to `<app>/node_modules/sqlite-tabs`, replacing what
/// is there: what npm installs from a registry tarball (`package.json` and its
/// `files`), but refreshed at every build, which a `file:` dependency of npm is not.
fn install_package(dist: &Path, app: &Path) -> Result<()> {
    let target = app.join("node_modules").join("sqlite-tabs");
    // A symlink (npm's default for `file:`) is removed, not followed.
    if fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(&target).map_err(|e| format!("removing {}: {e}", target.display()))?;
    }
    clean_dir(&target)?;
    let files = package_files(dist)?;
    for name in files.iter().map(String::as_str).chain(["package.json"]) {
        copy_tree(&dist.join(name), &target.join(name))
            .map_err(|e| format!("copying dist/{name} to {}: {e}", target.display()))?;
    }
    Ok(())
}

/// Copies a file, or a folder with everything in it (wasm-bindgen's `snippets/`).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_dir() {
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        fs::copy(from, to).map(drop)
    }
}

/// Builds the React demo (`demo/` into `demo/dist/`) with its own Vite, against the
/// package installed in its `node_modules`.
fn build_demo(root: &Path) -> Result<()> {
    cmd::run(Command::new("npx").current_dir(root.join("demo")).args([
        "--no-install",
        "vite",
        "build",
        "--logLevel",
        "warn",
    ]))?;
    println!("demo built in {}", root.join("demo/dist").display());
    Ok(())
}

/// Removes `dir` if present and creates it empty, so stale files never linger.
fn clean_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(())
}

/// Copies every file of the crates' `js/` folders into `dist/`, refusing name clashes.
fn copy_js_entries(root: &Path, dist: &Path) -> Result<()> {
    for dir in JS_DIRS {
        let src = root.join(dir);
        if !src.is_dir() {
            println!("build: warning: {dir}/ does not exist; nothing copied from it");
            continue;
        }
        let mut entries: Vec<PathBuf> = fs::read_dir(&src)
            .map_err(|e| format!("reading {}: {e}", src.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.is_file())
            .collect();
        entries.sort();
        for file in entries {
            let name = file.file_name().expect("a file has a name");
            let target = dist.join(name);
            if target.exists() {
                return Err(format!(
                    "{} would overwrite dist/{} (name clash)",
                    file.display(),
                    name.to_string_lossy()
                )
                .into());
            }
            fs::copy(&file, &target)
                .map_err(|e| format!("copying {} to dist/: {e}", file.display()))?;
        }
    }
    if !dist.join(REQUIRED_ENTRY).exists() {
        return Err(format!(
            "dist/{REQUIRED_ENTRY} is missing: crates/client/js/{REQUIRED_ENTRY} must exist"
        )
        .into());
    }
    Ok(())
}

/// Reads the string `key` of `[workspace.package]` in the root `Cargo.toml`.
pub fn workspace_field(root: &Path, key: &str) -> Result<String> {
    let path = root.join("Cargo.toml");
    let text = fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut in_section = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == "[workspace.package]";
        } else if in_section {
            if let Some(value) = toml_string(line, key) {
                return Ok(value);
            }
        }
    }
    Err(format!("no [workspace.package] {key} in {}", path.display()).into())
}

/// Names of the files and folders (wasm-bindgen's `snippets/`) that go into the
/// published package (all but the build report and package.json itself), sorted.
fn package_files(dist: &Path) -> Result<Vec<String>> {
    let mut files: Vec<String> = fs::read_dir(dist)
        .map_err(|e| format!("reading {}: {e}", dist.display()))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "package.json" && name != "SIZES.txt")
        .collect();
    files.sort();
    Ok(files)
}

/// Quotes `s` as a JSON string.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The text of `dist/package.json` for package `version` under `license` holding `files`.
pub fn package_json(version: &str, license: &str, files: &[String]) -> String {
    let files = files
        .iter()
        .map(|f| format!("    {}", json_string(f)))
        .collect::<Vec<_>>()
        .join(",\n");
    format!(
        r#"{{
  "name": "sqlite-tabs",
  "version": {version},
  "description": "One SQLite database on OPFS shared by all tabs of a web app (Rust + wasm)",
  "license": {license},
  "type": "module",
  "main": "index.js",
  "module": "index.js",
  "types": "index.d.ts",
  "exports": {{
    ".": {{
      "types": "./index.d.ts",
      "default": "./index.js"
    }},
    "./react": {{
      "types": "./react.d.ts",
      "default": "./react.js"
    }},
    "./package.json": "./package.json"
  }},
  "peerDependencies": {{
    "react": ">=18"
  }},
  "peerDependenciesMeta": {{
    "react": {{
      "optional": true
    }}
  }},
  "sideEffects": false,
  "files": [
{files}
  ]
}}
"#,
        version = json_string(version),
        license = json_string(license),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_workspace_version() {
        let version = workspace_field(&crate::repo_root(), "version").unwrap();
        assert!(version.split('.').count() == 3, "{version}");
        assert!(workspace_field(&crate::repo_root(), "no-such-key").is_err());
    }

    #[test]
    fn writes_package_json() {
        let json = package_json("1.2.3", "MIT", &["index.js".into(), "a\"b.js".into()]);
        assert!(json.contains(r#""version": "1.2.3""#));
        assert!(json.contains(r#""type": "module""#));
        assert!(json.contains(r#""license": "MIT""#));
        assert!(json.contains("    \"index.js\",\n    \"a\\\"b.js\"\n  ]"));
        assert!(json.contains(r#""default": "./index.js""#));
        assert!(json.contains(r#""default": "./react.js""#));
        assert!(json.contains(r#""types": "./react.d.ts""#));
        assert!(json
            .contains("\"peerDependenciesMeta\": {\n    \"react\": {\n      \"optional\": true"));
    }
}
