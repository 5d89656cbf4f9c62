//! A small static HTTP/1.1 server for the demo and the end-to-end tests.
//!
//! Bound to 127.0.0.1 only. `/dist/…` maps to `<root>/dist/…` (the package),
//! `/bench/…` to `<root>/bench/…`, `/fixtures/…` to `<root>/target/fixtures/…` (test
//! pages built by the end-to-end suite), every other path to the built React demo,
//! `<root>/demo/dist/…` (`/` is `demo/dist/index.html`). One thread per connection,
//! keep-alive, `Cache-Control: no-store`; COOP/COEP headers only when `isolated`.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::Result;

/// How long an idle keep-alive connection stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request head (request line + headers) accepted.
const MAX_HEAD: u64 = 64 * 1024;
/// Largest request body read (and discarded) before the connection is closed.
const MAX_BODY: u64 = 1024 * 1024;

/// A running server; stops when dropped (or with [`Server::stop`]).
pub struct Server {
    /// The port it listens on (the real one when 0 was asked for).
    port: u16,
    /// Set to make the accept loop and the connections end.
    stop: Arc<AtomicBool>,
    /// The accept loop.
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL, `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Blocks for as long as the server runs (until the process is interrupted).
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Stops accepting connections and waits for the accept loop to end. Open
    /// connections close after their current request.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Shared by [`Server::stop`] and `Drop`.
    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept() so it sees the flag.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What every connection handler needs to know.
struct Site {
    /// The repository root (holds `demo/dist/` and `dist/`).
    root: PathBuf,
    /// Send COOP/COEP headers.
    isolated: bool,
    /// Set when the server stops.
    stop: Arc<AtomicBool>,
}

/// Starts serving `root` on 127.0.0.1:`port` (0 picks a free port) in a background
/// thread and returns at once; [`Server::port`] tells the bound port.
pub fn serve(root: &Path, port: u16, isolated: bool) -> Result<Server> {
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
        format!("cannot listen on 127.0.0.1:{port}: {e} (another server? try --port N)")
    })?;
    let port = listener.local_addr()?.port();
    let stop = Arc::new(AtomicBool::new(false));
    let site = Arc::new(Site {
        root: root.to_path_buf(),
        isolated,
        stop: Arc::clone(&stop),
    });
    let thread = thread::Builder::new()
        .name("xtask-serve".into())
        .spawn(move || accept_loop(listener, site))?;
    Ok(Server {
        port,
        stop,
        thread: Some(thread),
    })
}

/// Accepts connections until the stop flag is set, one thread each.
fn accept_loop(listener: TcpListener, site: Arc<Site>) {
    for stream in listener.incoming() {
        if site.stop.load(Ordering::SeqCst) {
            break;
        }
        match stream {
            Ok(stream) => {
                let site = Arc::clone(&site);
                let spawned = thread::Builder::new()
                    .name("xtask-serve-conn".into())
                    .spawn(move || {
                        let _ = handle_connection(stream, &site);
                    });
                if let Err(e) = spawned {
                    eprintln!("serve: cannot spawn a connection thread: {e}");
                }
            }
            Err(e) => {
                eprintln!("serve: accept failed: {e}");
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A parsed request head.
#[derive(Debug)]
struct Request {
    /// `GET`, `HEAD`, …
    method: String,
    /// The request target as sent, e.g. `/dist/index.js?v=1`.
    target: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    version: String,
    /// Header names in lower case, with their values.
    headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (lower case), if present.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after this request.
    fn keep_alive(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.version == "HTTP/1.0" {
            connection.contains("keep-alive")
        } else {
            !connection.contains("close")
        }
    }
}

/// Reads one request head; `Ok(None)` when the client closed the connection cleanly.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let bad = |msg: &str| io::Error::new(io::ErrorKind::InvalidData, msg.to_string());
    let mut limited = reader.take(MAX_HEAD);
    let mut line = String::new();
    // Tolerate empty lines before the request line (RFC 9112 §2.2).
    loop {
        line.clear();
        if limited.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    let mut request = Request {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers: Vec::new(),
    };
    loop {
        line.clear();
        if limited.read_line(&mut line)? == 0 {
            return Err(bad("request head too large or cut short"));
        }
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| bad("malformed header"))?;
        request
            .headers
            .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Some(request))
}

/// Serves requests on one connection until it closes, errs or is not kept alive.
fn handle_connection(stream: TcpStream, site: &Site) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) => break,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let response = Response::text(400, "Bad Request", "400 Bad Request\n");
                response.write(&mut writer, false, false, site.isolated)?;
                break;
            }
            Err(_) => break, // timeout or reset
        };
        // Discard a body, if any (GET/HEAD normally have none).
        let body_len: u64 = match request.header("content-length").map(str::parse) {
            Some(Ok(n)) => n,
            Some(Err(_)) => break,
            None => 0,
        };
        if request.header("transfer-encoding").is_some() || body_len > MAX_BODY {
            break;
        }
        io::copy(&mut (&mut reader).take(body_len), &mut io::sink())?;

        let keep_alive = request.keep_alive() && !site.stop.load(Ordering::SeqCst);
        let response = respond(&request, &site.root);
        if response.status >= 400 {
            eprintln!(
                "serve: {} {} -> {}",
                request.method, request.target, response.status
            );
        }
        let head_only = request.method == "HEAD";
        response.write(&mut writer, head_only, keep_alive, site.isolated)?;
        if !keep_alive {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
    Ok(())
}

/// A response about to be written.
struct Response {
    /// Status code.
    status: u16,
    /// Reason phrase.
    reason: &'static str,
    /// `Content-Type` value.
    content_type: &'static str,
    /// Extra headers (name, value).
    extra: Vec<(&'static str, &'static str)>,
    /// The body (also measured for HEAD).
    body: Vec<u8>,
}

impl Response {
    /// A plain-text response.
    fn text(status: u16, reason: &'static str, body: &str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            extra: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// Writes status line, headers and (unless `head_only`) the body.
    fn write(
        &self,
        out: &mut impl Write,
        head_only: bool,
        keep_alive: bool,
        isolated: bool,
    ) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: {}\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        );
        for (name, value) in &self.extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if isolated {
            head.push_str("Cross-Origin-Opener-Policy: same-origin\r\n");
            head.push_str("Cross-Origin-Embedder-Policy: require-corp\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        out.write_all(&bytes)?;
        out.flush()
    }
}

/// Builds the response to `request` from the files under `root`.
fn respond(request: &Request, root: &Path) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        let mut response = Response::text(405, "Method Not Allowed", "405 Method Not Allowed\n");
        response.extra.push(("Allow", "GET, HEAD"));
        return response;
    }
    let not_found = || Response::text(404, "Not Found", "404 Not Found\n");
    let Some(path) = resolve(root, &request.target) else {
        return not_found();
    };
    let demo = root.join("demo").join("dist");
    if path.starts_with(&demo) && !demo.join("index.html").is_file() {
        return Response::text(
            404,
            "Not Found",
            "404 Not Found: the demo is not built; run `cargo xtask build`\n",
        );
    }
    match fs::read(&path) {
        Ok(body) => Response {
            status: 200,
            reason: "OK",
            content_type: mime_type(&path),
            extra: Vec::new(),
            body,
        },
        Err(_) => not_found(),
    }
}

/// Maps a request target to a file: `/dist/…` under `root/dist`, `/bench/…` under
/// `root/bench` (benchmark pages and peer engines), `/fixtures/…` under
/// `root/target/fixtures`, anything else under `root/demo/dist` (Vite's build of the
/// demo, whose pages ask for `/assets/…`), a directory to its `index.html`. `None` for targets that try to leave
/// those folders (`..`) or are not origin-form paths.
pub fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path)?;
    if !decoded.starts_with('/') {
        return None;
    }
    let segments: Vec<&str> = decoded
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if segments
        .iter()
        .any(|s| *s == ".." || s.contains('\\') || s.contains('\0'))
    {
        return None;
    }
    let (mut file, rest) = match segments.split_first() {
        Some((&"dist", rest)) => (root.join("dist"), rest),
        Some((&"bench", rest)) => (root.join("bench"), rest),
        Some((&"fixtures", rest)) => (root.join("target").join("fixtures"), rest),
        _ => (root.join("demo").join("dist"), &segments[..]),
    };
    file.extend(rest);
    if file.is_dir() {
        file.push("index.html");
    }
    Some(file)
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `Content-Type` for a file, by extension.
pub fn mime_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "json" | "map" => "application/json",
        "css" => "text/css; charset=utf-8",
        "ts" | "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A fresh directory with demo/ and dist/ files, removed on drop.
    struct TempSite(PathBuf);

    impl TempSite {
        fn new(name: &str) -> TempSite {
            let dir = std::env::temp_dir().join(format!(
                "xtask-serve-{name}-{}-{:?}",
                std::process::id(),
                thread::current().id()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("demo/dist/sub")).unwrap();
            fs::create_dir_all(dir.join("dist")).unwrap();
            fs::create_dir_all(dir.join("target/fixtures/react")).unwrap();
            fs::write(dir.join("demo/dist/index.html"), "<h1>demo</h1>").unwrap();
            fs::write(dir.join("demo/dist/app.js"), "export {};").unwrap();
            fs::write(dir.join("demo/dist/sub/index.html"), "sub").unwrap();
            fs::write(dir.join("demo/package.json"), "{}").unwrap();
            fs::write(dir.join("target/fixtures/react/hooks.html"), "hooks").unwrap();
            fs::write(dir.join("dist/mod.wasm"), b"\0asm\x01\0\0\0").unwrap();
            fs::write(dir.join("dist/index.js"), "export const x = 1;").unwrap();
            fs::write(dir.join("secret.txt"), "nope").unwrap();
            TempSite(dir)
        }
    }

    impl Drop for TempSite {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Sends raw request bytes and reads until the server closes the connection.
    fn exchange(port: u16, raw: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    }

    fn get(port: u16, target: &str) -> String {
        exchange(
            port,
            &format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
    }

    #[test]
    fn maps_urls_to_files() {
        let root = Path::new("/r");
        let demo = |p: &str| Some(root.join("demo/dist").join(p));
        assert_eq!(resolve(root, "/app.js?x=1#y"), demo("app.js"));
        assert_eq!(
            resolve(root, "/dist/index.js"),
            Some(root.join("dist/index.js"))
        );
        assert_eq!(resolve(root, "/a%20b.js"), demo("a b.js"));
        assert_eq!(resolve(root, "/../Cargo.toml"), None);
        assert_eq!(resolve(root, "/dist/../../etc/passwd"), None);
        assert_eq!(
            resolve(root, "/bench/raw/echo-worker.js"),
            Some(root.join("bench/raw/echo-worker.js"))
        );
        assert_eq!(
            resolve(root, "/fixtures/react/hooks.html"),
            Some(root.join("target/fixtures/react/hooks.html"))
        );
        assert_eq!(resolve(root, "/assets/a.js"), demo("assets/a.js"));
        assert_eq!(resolve(root, "/%2e%2e/Cargo.toml"), None);
        assert_eq!(resolve(root, "/a\\..\\b"), None);
        assert_eq!(resolve(root, "/%zz"), None);
        assert_eq!(resolve(root, "http://evil/x"), None);
        assert_eq!(mime_type(Path::new("a.wasm")), "application/wasm");
        assert_eq!(
            mime_type(Path::new("a.MJS")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(mime_type(Path::new("a.d.ts")), "text/plain; charset=utf-8");
        assert_eq!(mime_type(Path::new("noext")), "application/octet-stream");
    }

    #[test]
    fn serves_files_with_headers() {
        let site = TempSite::new("files");
        let server = serve(&site.0, 0, false).unwrap();
        let port = server.port();
        assert_ne!(port, 0);

        let index = get(port, "/");
        assert!(index.starts_with("HTTP/1.1 200 OK\r\n"), "{index}");
        assert!(index.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(index.contains("Cache-Control: no-store\r\n"));
        assert!(index.contains("Content-Length: 13\r\n"));
        assert!(!index.contains("Cross-Origin"));
        assert!(index.ends_with("\r\n\r\n<h1>demo</h1>"));

        let wasm = get(port, "/dist/mod.wasm");
        assert!(
            wasm.contains("Content-Type: application/wasm\r\n"),
            "{wasm}"
        );
        assert!(get(port, "/sub/").ends_with("\r\n\r\nsub"));
        assert!(get(port, "/app.js").contains("text/javascript"));
        assert!(get(port, "/fixtures/react/hooks.html").ends_with("\r\n\r\nhooks"));

        for target in [
            "/nope.js",
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/dist/../../secret.txt",
            "/../package.json",
        ] {
            let r = get(port, target);
            assert!(r.starts_with("HTTP/1.1 404 "), "{target}: {r}");
        }

        let head = exchange(port, "HEAD /app.js HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(
            head.contains("Content-Length: 10\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        let post = exchange(
            port,
            "POST / HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        );
        assert!(
            post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD"),
            "{post}"
        );
        let garbage = exchange(port, "garbage\r\n\r\n");
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
        server.stop();
    }

    #[test]
    fn says_when_the_demo_is_not_built() {
        let site = TempSite::new("unbuilt");
        fs::remove_dir_all(site.0.join("demo/dist")).unwrap();
        let server = serve(&site.0, 0, false).unwrap();
        let index = get(server.port(), "/");
        assert!(
            index.starts_with("HTTP/1.1 404 ") && index.contains("cargo xtask build"),
            "{index}"
        );
        assert!(get(server.port(), "/dist/index.js").starts_with("HTTP/1.1 200 OK"));
        server.stop();
    }

    #[test]
    fn keeps_connections_alive_and_serves_concurrently() {
        let site = TempSite::new("keepalive");
        let server = serve(&site.0, 0, true).unwrap();
        let port = server.port();
        // Two requests on one connection; the second one closes it.
        let both = exchange(
            port,
            "GET /app.js HTTP/1.1\r\n\r\nGET /dist/index.js HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(both.matches("HTTP/1.1 200 OK").count(), 2, "{both}");
        assert!(both.contains("Connection: keep-alive\r\n"));
        assert!(both.contains("Cross-Origin-Opener-Policy: same-origin\r\n"));
        assert!(both.contains("Cross-Origin-Embedder-Policy: require-corp\r\n"));
        // An idle open connection does not block others.
        let _idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let clients: Vec<_> = (0..8)
            .map(|_| thread::spawn(move || get(port, "/dist/mod.wasm")))
            .collect();
        for client in clients {
            assert!(client.join().unwrap().starts_with("HTTP/1.1 200 OK"));
        }
        drop(server);
        // Nobody answers any more. The connect itself may succeed: a process that
        // another test forks holds a copy of the listening socket until it execs,
        // and the connection is then reset.
        let answer = TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut c| {
                c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                c.write_all(b"GET /app.js HTTP/1.1\r\nConnection: close\r\n\r\n")
                    .ok()?;
                let mut out = String::new();
                c.read_to_string(&mut out).ok()?;
                Some(out).filter(|out| !out.is_empty())
            });
        assert_eq!(answer, None);
    }
}
