//! Child processes: echo them as `$ cmd`, inherit stdio, turn failures into errors;
//! plus small helpers to find programs and capture their output.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Result;

/// Quotes `s` for display when it holds characters a shell would split or expand.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Shows a path relative to the repository root when it lies inside it.
fn short_path(path: &Path) -> String {
    let root = crate::repo_root();
    match path.strip_prefix(&root) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// Formats a command as a shell line: `cd DIR && VAR=value program args…`.
pub fn display(cmd: &Command) -> String {
    let mut parts = Vec::new();
    // The repository root is where a reader runs commands from: no `cd` for it, and
    // paths in variables are shown relative to it unless the command runs elsewhere.
    let root = crate::repo_root();
    let elsewhere = cmd.get_current_dir().filter(|d| *d != root);
    if let Some(dir) = elsewhere {
        parts.push(format!("cd {} &&", quote(&short_path(dir))));
    }
    for (key, value) in cmd.get_envs() {
        // PATH changes made by setup are not interesting to a reader.
        if key == "PATH" {
            continue;
        }
        if let Some(value) = value {
            let value = value.to_string_lossy();
            let value = if elsewhere.is_none() && Path::new(value.as_ref()).is_absolute() {
                short_path(Path::new(value.as_ref()))
            } else {
                value.into_owned()
            };
            parts.push(format!("{}={}", key.to_string_lossy(), quote(&value)));
        }
    }
    parts.push(quote(&cmd.get_program().to_string_lossy()));
    parts.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    parts.join(" ")
}

/// Echoes `cmd` as `$ cmd`, runs it with inherited stdio and fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    println!("$ {line}");
    let status = cmd
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("could not start `{line}`: {e}"))?;
    if !status.success() {
        return Err(format!("`{line}` failed ({status})").into());
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout, or `None` if it cannot start or fails.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Finds an executable named `name` in the directories of `PATH`.
pub fn find_in_path(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name.as_ref()))
        .find(|candidate| is_executable(candidate))
}

/// True when `path` is a regular file with an execute bit.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Puts `dir` first in this process's `PATH`, so children find its programs first.
pub fn prepend_path(dir: &Path) {
    let old = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&old).filter(|d| d != dir));
    if let Ok(joined) = std::env::join_paths(dirs) {
        std::env::set_var("PATH", joined);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_commands_like_a_shell_line() {
        let root = crate::repo_root();
        let mut cmd = Command::new("cargo");
        cmd.args(["test", "--target", "wasm32-unknown-unknown", "a b"])
            .current_dir(root.join("crates/db-worker"))
            .env("TMPDIR", root.join("target/tmp"))
            .env("PATH", "/x");
        assert_eq!(
            display(&cmd),
            format!(
                "cd crates/db-worker && TMPDIR={} cargo test --target wasm32-unknown-unknown 'a b'",
                quote(&root.join("target/tmp").display().to_string())
            )
        );
        assert_eq!(quote("it's"), r"'it'\''s'");
        let mut at_root = Command::new("cargo");
        at_root
            .arg("build")
            .current_dir(&root)
            .env("TMPDIR", root.join("target/tmp"));
        assert_eq!(display(&at_root), "TMPDIR=target/tmp cargo build");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn finds_programs_and_captures_output() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("surely-no-such-program-xyz").is_none());
        assert_eq!(
            output(Command::new("sh").args(["-c", "echo hi"])).as_deref(),
            Some("hi\n")
        );
        assert_eq!(output(Command::new("sh").args(["-c", "exit 3"])), None);
        assert!(run(Command::new("sh").args(["-c", "exit 3"])).is_err());
        assert!(run(&mut Command::new("surely-no-such-program-xyz")).is_err());
    }
}
