//! The size table of the package: raw and gzip bytes of every `.wasm` and `.js` file.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::Result;

/// Size in bytes of `data` gzipped at the best compression level.
pub fn gzip_len(data: &[u8]) -> Result<u64> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data)?;
    Ok(encoder.finish()?.len() as u64)
}

/// Formats a byte count in KiB with one decimal.
fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// One row of the table: file name, raw bytes, gzip bytes.
type Row = (String, u64, u64);

/// Formats the rows and their total as the text of the size table.
pub fn format_table(rows: &[Row]) -> String {
    let total_raw: u64 = rows.iter().map(|r| r.1).sum();
    let total_gz: u64 = rows.iter().map(|r| r.2).sum();
    let total_label = "total (what a tab downloads)";
    let width = rows
        .iter()
        .map(|r| r.0.len())
        .chain([total_label.len(), "file".len()])
        .max()
        .unwrap_or(4);
    let mut out = format!(
        "{:<width$}  {:>10}  {:>11}  {:>10}  {:>11}\n",
        "file", "raw bytes", "raw", "gzip bytes", "gzip"
    );
    let mut line = |name: &str, raw: u64, gz: u64| {
        let _ = writeln!(
            out,
            "{name:<width$}  {raw:>10}  {:>11}  {gz:>10}  {:>11}",
            kib(raw),
            kib(gz)
        );
    };
    for (name, raw, gz) in rows {
        line(name, *raw, *gz);
    }
    line(total_label, total_raw, total_gz);
    out
}

/// Measures every `.wasm` and `.js` file in `dist` (wasm-bindgen's `snippets/`
/// included) and returns the table text.
pub fn table(dist: &Path) -> Result<String> {
    let mut rows: Vec<Row> = Vec::new();
    let mut dirs = vec![dist.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(ext, "wasm" | "js") {
                continue;
            }
            let data = fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let name = path
                .strip_prefix(dist)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            rows.push((name, data.len() as u64, gzip_len(&data)?));
        }
    }
    // .wasm first (they dominate), then .js, each by name.
    rows.sort_by(|a, b| (!a.0.ends_with(".wasm"), &a.0).cmp(&(!b.0.ends_with(".wasm"), &b.0)));
    Ok(format_table(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_shrinks_repetitive_data() {
        let data = vec![b'a'; 100_000];
        let gz = gzip_len(&data).unwrap();
        assert!(gz > 18 && gz < 1_000, "{gz}");
    }

    #[test]
    fn formats_rows_and_total() {
        let table = format_table(&[
            ("a.wasm".into(), 2048, 1024),
            ("index.js".into(), 1000, 400),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("file"));
        assert!(lines[1].starts_with("a.wasm") && lines[1].contains("2.0 KiB"));
        assert!(lines[3].starts_with("total (what a tab downloads)"));
        assert!(lines[3].contains("3048") && lines[3].contains("1424"));
    }
}
