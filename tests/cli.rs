//! The `weir` binary as an operator meets it (SPEC "CLI" and "Details"): exit codes
//! 0 / 1 / 2, `check` output, usage errors naming the bad argument, the config lookup
//! order (`-c`, `./weir.toml`, the embedded default), `serve`, the access log on stdout,
//! the SIGTERM drain with a response in flight (and its `shutdown_grace` running out),
//! and `[runtime] workers`.
//!
//! Every test drives the built binary (`CARGO_BIN_EXE_weir`) on ephemeral ports, except
//! the embedded default, whose ports the SPEC fixes (that test skips when they are
//! taken). Every wait is bounded, and a started process is killed when its guard drops.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long anything may take to start, answer or exit before a test fails.
const PATIENCE: Duration = Duration::from_secs(15);

fn weir() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    // Diagnostics at `info` go to stderr; keep them, they help when a test fails.
    cmd.env_remove("WEIR_LOG");
    cmd
}

/// Runs weir to completion (commands that do not serve), bounded by `PATIENCE`.
fn run_to_end(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(output) => output.expect("wait for weir"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("weir {cmd:?} did not exit within {PATIENCE:?}");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------
// A running weir: stdout lines through a channel, stderr collected, killed on drop.
// ---------------------------------------------------------------------------

struct Weir {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Every stdout line received so far, in order.
    seen: Vec<String>,
    stdout_closed: bool,
}

/// The addresses weir announced on stdout at start.
struct Announced {
    /// `(listener name, address)`, one per bound address.
    listeners: Vec<(String, SocketAddr)>,
    admin: SocketAddr,
}

impl Announced {
    fn listener(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listener {name:?} announced: {:?}", self.listeners))
    }
}

impl Weir {
    fn spawn(cmd: &mut Command) -> Weir {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let collected = Arc::new(Mutex::new(String::new()));
        let sink = collected.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Weir {
            child,
            lines,
            stderr: collected,
            seen: Vec::new(),
            stdout_closed: false,
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next stdout line, or None at EOF or when `deadline` passes.
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        if self.stdout_closed {
            return None;
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.stdout_closed = true;
                None
            }
        }
    }

    /// Waits for the next stdout line satisfying `pred`.
    fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        while let Some(line) = self.next_line(deadline) {
            if pred(&line) {
                return line;
            }
        }
        panic!(
            "no stdout line {what} within {PATIENCE:?}\nstdout so far:\n{}\nstderr:\n{}",
            self.seen.join("\n"),
            self.stderr()
        );
    }

    /// Reads the start-up announcement: stdout is a pipe here, so it is one JSON line,
    /// `{"event":"listening","listeners":[{"name","addrs",..}],"admin",..}`.
    fn announced(&mut self) -> Announced {
        let deadline = Instant::now() + PATIENCE;
        while let Some(line) = self.next_line(deadline) {
            if let Some(listening) = listening(&line) {
                return announcement(&listening);
            }
        }
        let status = self.child.try_wait().ok().flatten();
        panic!(
            "weir did not announce its addresses within {PATIENCE:?} (exit: {status:?})\n\
             stdout:\n{}\nstderr:\n{}",
            self.seen.join("\n"),
            self.stderr()
        );
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Polls for the exit, bounded by `within`.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "weir did not exit within {within:?}\nstderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// After exit: every stdout line that is left (reader sees EOF once weir is gone).
    fn rest_of_stdout(&mut self) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut rest = Vec::new();
        while let Some(line) = self.next_line(deadline) {
            rest.push(line);
        }
        assert!(self.stdout_closed, "stdout not closed after exit");
        rest
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The start-up line, parsed, when `line` is one.
fn listening(line: &str) -> Option<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    (value["event"] == "listening").then_some(value)
}

/// The addresses in a `listening` line; panics on a malformed one.
fn announcement(listening: &serde_json::Value) -> Announced {
    let mut listeners = Vec::new();
    for listener in listening["listeners"]
        .as_array()
        .unwrap_or_else(|| panic!("no listeners in {listening}"))
    {
        let name = listener["name"].as_str().expect("listener name");
        for addr in listener["addrs"].as_array().expect("listener addrs") {
            let addr = addr.as_str().expect("address").parse().expect("address");
            listeners.push((name.to_owned(), addr));
        }
    }
    let admin = url_addr(listening["admin"].as_str().expect("admin URL"));
    assert_eq!(
        listening["dashboard"],
        format!("http://{admin}/"),
        "dashboard URL in {listening}"
    );
    Announced { listeners, admin }
}

/// `http://127.0.0.1:1234/...` -> `127.0.0.1:1234`.
fn url_addr(url: &str) -> SocketAddr {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http URL: {url:?}"));
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {url:?}: {e}"))
}

// ---------------------------------------------------------------------------
// HTTP/1.1 over a plain socket.
// ---------------------------------------------------------------------------

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        text(&self.body)
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

fn request_head(path: &str, extra: &[(&str, &str)]) -> String {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

fn try_get(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> std::io::Result<Response> {
    let mut stream = connect(addr)?;
    stream.write_all(request_head(path, extra).as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("malformed response: {:?}", text(&raw)),
        )
    })
}

fn get(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Response {
    try_get(addr, path, extra).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

fn head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn parse_head(head: &[u8]) -> Option<(u16, Vec<(String, String)>)> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some((status, headers))
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = head_end(raw)?;
    let (status, headers) = parse_head(&raw[..end])?;
    let mut response = Response {
        status,
        headers,
        body: raw[end..].to_vec(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        response.body = dechunk(&response.body)?;
    }
    Some(response)
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// Polls `check` every 20 ms until it returns Some, for at most `within`.
fn poll<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Configs.
// ---------------------------------------------------------------------------

const INDEX: &str = "<!doctype html><title>weir cli test</title><p>hello from the site</p>\n";

/// A site directory `site/` with `index.html`, and `name` holding a config on
/// ephemeral ports that serves it, followed by `extra` (more TOML sections).
fn site_config(dir: &Path, name: &str, extra: &str) -> std::path::PathBuf {
    fs::create_dir_all(dir.join("site")).unwrap();
    fs::write(dir.join("site/index.html"), INDEX).unwrap();
    let path = dir.join(name);
    fs::write(
        &path,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [[listeners]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\n\n\
             [[routes]]\npath = \"/\"\nbackends = [{{ site = \"web\" }}]\n\n\
             [sites.web]\nroot = \"site\"\n\n{extra}"
        ),
    )
    .unwrap();
    path
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Starts `cmd`, reads the announcement, checks the site and `/healthz`.
fn assert_serves_site(cmd: &mut Command) {
    let mut weir = Weir::spawn(cmd);
    let at = weir.announced();
    let web = at.listener("web");
    let response = get(web, "/", &[]);
    assert_eq!(response.status, 200, "GET / -> {}", response.text());
    assert_eq!(response.text(), INDEX);
    let health = get(at.admin, "/healthz", &[]);
    assert_eq!(health.status, 200, "/healthz -> {}", health.text());
}

// ---------------------------------------------------------------------------
// version, check, usage errors.
// ---------------------------------------------------------------------------

#[test]
fn version_prints_name_and_version() {
    let out = run_to_end(weir().arg("version"));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("weir {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_accepts_a_good_config() {
    let dir = tempdir();
    let cfg = site_config(dir.path(), "good.toml", "");
    let out = run_to_end(weir().arg("check").arg("-c").arg(&cfg));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn check_accepts_a_good_yaml_config() {
    let dir = tempdir();
    fs::create_dir_all(dir.path().join("site")).unwrap();
    fs::write(dir.path().join("site/index.html"), INDEX).unwrap();
    let cfg = dir.path().join("good.yaml");
    fs::write(
        &cfg,
        "admin:\n  listen: \"127.0.0.1:0\"\n\
         listeners:\n  - name: web\n    bind: [\"127.0.0.1:0\"]\n\
         routes:\n  - path: /\n    backends: [{ site: web }]\n\
         sites:\n  web:\n    root: site\n",
    )
    .unwrap();
    let out = run_to_end(weir().arg("check").arg("-c").arg(&cfg));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn check_prints_every_error_with_file_line_col_and_path() {
    let dir = tempdir();
    let cfg = dir.path().join("bad.toml");
    // Line 8: a route naming a site that does not exist; line 11: a root that is missing.
    fs::write(
        &cfg,
        "[admin]\n\
         listen = \"127.0.0.1:0\"\n\
         [[listeners]]\n\
         name = \"web\"\n\
         bind = [\"127.0.0.1:0\"]\n\
         [[routes]]\n\
         path = \"/\"\n\
         backends = [{ site = \"nope\" }]\n\
         \n\
         [sites.web]\n\
         root = \"no-such-dir\"\n",
    )
    .unwrap();
    let out = run_to_end(weir().arg("check").arg("-c").arg(&cfg));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("bad.toml:")).collect();
    assert_eq!(errors.len(), 2, "expected two errors, stderr:\n{stderr}");
    let site = errors
        .iter()
        .find(|l| l.contains("routes[0].backends[0].site"))
        .unwrap_or_else(|| panic!("no error for the unknown site:\n{stderr}"));
    let root = errors
        .iter()
        .find(|l| l.contains("sites.web.root"))
        .unwrap_or_else(|| panic!("no error for the missing root:\n{stderr}"));
    for (line, expected_line, what) in [(site, 8, "nope"), (root, 11, "no-such-dir")] {
        let (location, message) = split_location(line);
        assert_eq!(location.0, "bad.toml", "file in {line:?}");
        assert_eq!(location.1, expected_line, "line in {line:?}");
        assert!(location.2 >= 1, "column in {line:?}");
        assert!(message.contains(what), "{line:?} should mention {what:?}");
    }
}

/// `.../bad.toml:8:22: routes[0]...: message` -> ((file name, line, col), "routes[0]...: message").
fn split_location(line: &str) -> ((String, u32, u32), &str) {
    let mut parts = line.rsplitn(2, ".toml:");
    let after = parts.next().unwrap();
    let file = parts
        .next()
        .unwrap_or_else(|| panic!("no file in {line:?}"));
    let file = Path::new(&format!("{file}.toml"))
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut fields = after.splitn(3, ':');
    let row = fields.next().and_then(|s| s.parse().ok());
    let col = fields.next().and_then(|s| s.parse().ok());
    let rest = fields.next().unwrap_or("").trim_start();
    let (Some(row), Some(col)) = (row, col) else {
        panic!("no line:col in {line:?}");
    };
    // `path: message`: the key path comes before the message.
    assert!(
        rest.split_once(": ").is_some(),
        "no `path: message` in {line:?}"
    );
    ((file, row, col), rest)
}

#[test]
fn check_without_config_names_the_missing_argument() {
    let out = run_to_end(weir().arg("check"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("-c") || stderr.contains("--config"),
        "stderr should name -c: {stderr}"
    );
}

#[test]
fn check_of_a_missing_file_says_so() {
    let dir = tempdir();
    let missing = dir.path().join("missing.toml");
    let out = run_to_end(weir().arg("check").arg("-c").arg(&missing));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("missing.toml"), "stderr: {stderr}");
    assert!(
        stderr.to_lowercase().contains("no such file") || stderr.contains("not found"),
        "stderr should say the file is missing: {stderr}"
    );
}

#[test]
fn check_rejects_an_unknown_extension() {
    let dir = tempdir();
    let cfg = dir.path().join("weir.json");
    fs::write(&cfg, "{}").unwrap();
    let out = run_to_end(weir().arg("check").arg("-c").arg(&cfg));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("weir.json"), "stderr: {stderr}");
}

#[test]
fn unknown_flag_is_a_usage_error_naming_it() {
    let out = run_to_end(weir().arg("--bogus"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("--bogus"), "stderr: {stderr}");
}

#[test]
fn unknown_subcommand_is_a_usage_error_naming_it() {
    let out = run_to_end(weir().arg("frobnicate"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("frobnicate"), "stderr: {stderr}");
}

#[test]
fn missing_flag_value_is_a_usage_error_naming_it() {
    let out = run_to_end(weir().args(["serve", "--listen"]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("--listen"), "stderr: {stderr}");
}

#[test]
fn serve_rejects_a_bad_listen_address() {
    let dir = tempdir();
    let out = run_to_end(
        weir()
            .arg("serve")
            .arg(dir.path())
            .args(["--listen", "not-an-address"]),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("not-an-address"), "stderr: {stderr}");
    assert!(stderr.contains("--listen"), "stderr: {stderr}");
}

#[test]
fn serve_of_a_missing_directory_is_a_usage_error_naming_it() {
    let dir = tempdir();
    let missing = dir.path().join("no-such-dir");
    let out = run_to_end(
        weir()
            .arg("serve")
            .arg(&missing)
            .args(["--listen", "127.0.0.1:0"]),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("no-such-dir"), "stderr: {stderr}");
}

// ---------------------------------------------------------------------------
// run, and the config lookup order.
// ---------------------------------------------------------------------------

#[test]
fn run_with_config_serves_the_site_and_admin() {
    let dir = tempdir();
    let cfg = site_config(dir.path(), "cfg.toml", "");
    assert_serves_site(weir().arg("run").arg("-c").arg(&cfg));
}

#[test]
fn config_flag_without_subcommand_runs() {
    let dir = tempdir();
    let cfg = site_config(dir.path(), "cfg.toml", "");
    assert_serves_site(weir().arg("-c").arg(&cfg));
}

#[test]
fn weir_toml_in_the_working_directory_is_used() {
    let dir = tempdir();
    site_config(dir.path(), "weir.toml", "");
    assert_serves_site(weir().current_dir(dir.path()));
}

#[test]
fn run_with_relative_config_resolves_paths_against_its_directory() {
    let dir = tempdir();
    fs::create_dir(dir.path().join("conf")).unwrap();
    site_config(&dir.path().join("conf"), "weir.toml", "");
    assert_serves_site(
        weir()
            .current_dir(dir.path())
            .args(["run", "-c", "conf/weir.toml"]),
    );
}

#[test]
fn run_with_a_bad_config_exits_1() {
    let dir = tempdir();
    let cfg = site_config(
        dir.path(),
        "cfg.toml",
        "[limits]\nidle_timeout = \"soon\"\n",
    );
    let out = run_to_end(weir().arg("run").arg("-c").arg(&cfg));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("limits.idle_timeout"), "stderr: {stderr}");
}

#[test]
fn run_with_a_missing_config_exits_1() {
    let dir = tempdir();
    let out = run_to_end(
        weir()
            .arg("run")
            .arg("-c")
            .arg(dir.path().join("nope.toml")),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("nope.toml"), "stderr: {stderr}");
}

fn port_free(addr: &str) -> bool {
    TcpListener::bind(addr).is_ok()
}

#[test]
fn embedded_default_serves_the_working_directory() {
    const WEB: &str = "127.0.0.1:8080";
    const ADMIN: &str = "127.0.0.1:9901";
    if !port_free(WEB) || !port_free(ADMIN) {
        eprintln!("note: skipping the embedded-default test, {WEB} or {ADMIN} is in use");
        return;
    }
    let dir = tempdir();
    fs::write(dir.path().join("index.html"), INDEX).unwrap();
    let mut weir = Weir::spawn(weir().current_dir(dir.path()));
    // Another process may have taken a port since the probe: skip, don't fail.
    let started = poll(PATIENCE, || {
        if let Ok(Some(status)) = weir.child.try_wait() {
            return Some(Err(status));
        }
        TcpStream::connect(ADMIN).ok().map(|_| Ok(()))
    });
    match started {
        Some(Err(status)) if status.code() == Some(2) => {
            eprintln!(
                "note: skipping the embedded-default test, weir could not bind: {}",
                weir.stderr()
            );
            return;
        }
        Some(Err(status)) => panic!("weir exited with {status}: {}", weir.stderr()),
        Some(Ok(())) => {}
        None => panic!("admin {ADMIN} did not open: {}", weir.stderr()),
    }
    let at = weir.announced();
    assert_eq!(at.admin, ADMIN.parse().unwrap());
    assert!(
        at.listeners.iter().any(|(_, a)| *a == WEB.parse().unwrap()),
        "listeners announced: {:?}",
        at.listeners
    );
    assert!(
        weir.seen
            .iter()
            .any(|l| l.contains("http://127.0.0.1:8080")),
        "stdout: {:?}",
        weir.seen
    );
    assert!(
        weir.seen
            .iter()
            .any(|l| l.contains("http://127.0.0.1:9901")),
        "stdout: {:?}",
        weir.seen
    );
    let response = get(WEB.parse().unwrap(), "/", &[]);
    assert_eq!(response.status, 200, "GET / -> {}", response.text());
    assert_eq!(response.text(), INDEX);
    assert_eq!(get(at.admin, "/healthz", &[]).status, 200);
    weir.signal("TERM");
    assert_eq!(weir.wait_exit(PATIENCE).code(), Some(0));
}

// ---------------------------------------------------------------------------
// Start-up line.
// ---------------------------------------------------------------------------

/// stdout is a pipe here, not a terminal: weir prints one JSON line that says where
/// every listener and the admin port are, and nothing else until a request is logged.
#[test]
fn start_up_is_one_json_line_when_stdout_is_not_a_terminal() {
    let dir = tempdir();
    let cfg = site_config(
        dir.path(),
        "cfg.toml",
        "[[listeners]]\nname = \"other\"\nbind = [\"127.0.0.1:0\", \"[::1]:0\"]\n",
    );
    let mut weir = Weir::spawn(weir().arg("run").arg("-c").arg(&cfg));
    let first = weir.wait_line("at all", |_| true);
    let line: serde_json::Value = serde_json::from_str(&first)
        .unwrap_or_else(|e| panic!("the first stdout line is not JSON ({e}): {first}"));
    assert_eq!(line["event"], "listening", "{first}");
    assert_eq!(line["version"], env!("CARGO_PKG_VERSION"), "{first}");
    let listeners = line["listeners"].as_array().expect("listeners");
    let names: Vec<&str> = listeners
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert_eq!(names, ["web", "other"], "{first}");
    assert_eq!(listeners[0]["tls"], false, "{first}");
    assert_eq!(
        listeners[1]["addrs"].as_array().map(Vec::len),
        Some(2),
        "{first}"
    );
    let at = announcement(&line);
    let web = at.listener("web");
    assert_eq!(listeners[0]["urls"][0], format!("http://{web}/"), "{first}");
    // The addresses are the bound ones (port 0 resolved), and they answer.
    assert_ne!(web.port(), 0);
    assert_eq!(get(web, "/", &[]).status, 200);
    let dashboard = get(at.admin, "/", &[]);
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.text().contains("<html"), "{}", dashboard.text());

    weir.signal("TERM");
    assert_eq!(weir.wait_exit(PATIENCE).code(), Some(0));
    let rest = weir.rest_of_stdout();
    let json = rest.iter().filter(|l| l.starts_with('{')).count();
    // The one GET / above is in the access log; nothing else is on stdout.
    assert_eq!(json, 1, "stdout after the start-up line: {rest:?}");
    assert!(
        rest.iter().all(|l| listening(l).is_none()),
        "announced twice: {rest:?}"
    );
}

// ---------------------------------------------------------------------------
// serve.
// ---------------------------------------------------------------------------

#[test]
fn serve_hosts_a_directory_with_spa_fallback() {
    let dir = tempdir();
    fs::write(dir.path().join("index.html"), INDEX).unwrap();
    fs::write(dir.path().join("app.js"), "console.log(1)\n").unwrap();
    let mut weir = Weir::spawn(
        weir()
            .arg("serve")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"]),
    );
    let at = weir.announced();
    assert_eq!(at.listeners.len(), 1, "{:?}", at.listeners);
    let web = at.listeners[0].1;
    // One line: the URL, with the dashboard folded in.
    assert_eq!(weir.seen.len(), 1, "stdout: {:?}", weir.seen);
    let line = listening(&weir.seen[0]).expect("the start-up line");
    assert_eq!(line["serving"], dir.path().display().to_string());
    assert_eq!(line["listeners"][0]["urls"][0], format!("http://{web}/"));
    assert!(line.get("fingerprint").is_none(), "no TLS: {line}");

    let index = get(web, "/", &[]);
    assert_eq!(index.status, 200);
    assert_eq!(index.text(), INDEX);

    let js = get(web, "/app.js", &[]);
    assert_eq!(js.status, 200);
    assert_eq!(js.text(), "console.log(1)\n");
    assert!(
        js.header("content-type")
            .is_some_and(|t| t.starts_with("text/javascript")),
        "content-type: {:?}",
        js.header("content-type")
    );

    let route = get(web, "/some/route", &[("Accept", "text/html")]);
    assert_eq!(route.status, 200, "SPA fallback: {}", route.text());
    assert_eq!(route.text(), INDEX);

    // A missing asset is a 404, not the app shell.
    let asset = get(web, "/missing.js", &[("Accept", "*/*")]);
    assert_eq!(asset.status, 404);

    assert_eq!(get(at.admin, "/healthz", &[]).status, 200);
}

#[test]
fn serve_defaults_to_the_working_directory() {
    let dir = tempdir();
    fs::write(dir.path().join("index.html"), INDEX).unwrap();
    let mut weir =
        Weir::spawn(
            weir()
                .current_dir(dir.path())
                .args(["serve", "--listen", "127.0.0.1:0"]),
        );
    let at = weir.announced();
    let response = get(at.listeners[0].1, "/", &[]);
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), INDEX);
}

// ---------------------------------------------------------------------------
// Runtime failures.
// ---------------------------------------------------------------------------

#[test]
fn port_in_use_exits_2_with_a_one_line_reason() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempdir();
    fs::create_dir(dir.path().join("site")).unwrap();
    let cfg = dir.path().join("cfg.toml");
    fs::write(
        &cfg,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\
             [[listeners]]\nname = \"web\"\nbind = [\"{addr}\"]\n\
             [[routes]]\npath = \"/\"\nbackends = [{{ site = \"web\" }}]\n\
             [sites.web]\nroot = \"site\"\n"
        ),
    )
    .unwrap();
    let out = run_to_end(weir().arg("run").arg("-c").arg(&cfg));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let reason: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(reason.len(), 1, "one line expected, stderr:\n{stderr}");
    assert!(
        reason[0].contains(&addr.to_string()),
        "reason should name {addr}: {stderr}"
    );
    drop(taken);
}

#[test]
fn admin_port_in_use_exits_2_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempdir();
    let cfg = site_config(dir.path(), "cfg.toml", "");
    let body = fs::read_to_string(&cfg).unwrap().replacen(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{addr}\""),
        1,
    );
    fs::write(&cfg, body).unwrap();
    let out = run_to_end(weir().arg("run").arg("-c").arg(&cfg));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(&addr.to_string()), "stderr: {stderr}");
    drop(taken);
}

// ---------------------------------------------------------------------------
// SIGTERM.
// ---------------------------------------------------------------------------

#[test]
fn sigterm_with_nothing_in_flight_exits_0_promptly() {
    let dir = tempdir();
    let cfg = site_config(
        dir.path(),
        "cfg.toml",
        "[limits]\nshutdown_grace = \"10s\"\n",
    );
    let mut weir = Weir::spawn(weir().arg("run").arg("-c").arg(&cfg));
    let at = weir.announced();
    assert_eq!(get(at.listener("web"), "/", &[]).status, 200);
    let sent = Instant::now();
    weir.signal("TERM");
    let status = weir.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "stderr: {}", weir.stderr());
    // Well under the 10 s grace: nothing was waited for.
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        sent.elapsed()
    );
}

/// Whoever reads the announced URLs may signal at once: the handlers must already be
/// in place, or the default action kills weir instead of a clean exit 0.
#[test]
fn signals_right_after_the_announcement_are_handled() {
    let dir = tempdir();
    let cfg = site_config(dir.path(), "cfg.toml", "");
    for round in 0..10 {
        let mut weir = Weir::spawn(weir().arg("run").arg("-c").arg(&cfg));
        let line = weir.wait_line("announcing the listeners", |l| listening(l).is_some());
        if round % 2 == 1 {
            // HUP reloads; it must not terminate.
            let admin = listening(&line).map(|l| announcement(&l).admin);
            weir.signal("HUP");
            let reloaded = poll(PATIENCE, || {
                let status = try_get(admin?, "/status", &[]).ok()?;
                let status: serde_json::Value = serde_json::from_slice(&status.body).ok()?;
                (status["generation"] == 2).then_some(())
            });
            assert!(reloaded.is_some(), "SIGHUP did not reload (round {round})");
            assert!(
                weir.child.try_wait().unwrap().is_none(),
                "SIGHUP killed weir (round {round})"
            );
        }
        weir.signal("TERM");
        let status = weir.wait_exit(PATIENCE);
        assert_eq!(
            status.code(),
            Some(0),
            "round {round}: {status}, stderr: {}",
            weir.stderr()
        );
    }
}

#[test]
fn sigint_exits_0() {
    let dir = tempdir();
    let cfg = site_config(dir.path(), "cfg.toml", "");
    let mut weir = Weir::spawn(weir().arg("run").arg("-c").arg(&cfg));
    weir.announced();
    weir.signal("INT");
    assert_eq!(weir.wait_exit(PATIENCE).code(), Some(0));
}

/// Byte `i` of the large file: a pattern that catches reordering or gaps.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

#[test]
fn sigterm_drains_a_response_in_flight() {
    const SIZE: usize = 50 * 1024 * 1024;
    let dir = tempdir();
    let cfg = site_config(
        dir.path(),
        "cfg.toml",
        "[limits]\nshutdown_grace = \"10s\"\n",
    );
    let big: Vec<u8> = (0..SIZE).map(pattern).collect();
    fs::write(dir.path().join("site/big.bin"), &big).unwrap();
    drop(big);

    let mut weir = Weir::spawn(weir().arg("run").arg("-c").arg(&cfg));
    let at = weir.announced();
    let web = at.listener("web");
    // Ready follows the announcement within moments (the accept loops start after it).
    let ready = poll(PATIENCE, || {
        (get(at.admin, "/readyz", &[]).status == 200).then_some(())
    });
    assert!(ready.is_some(), "/readyz never turned 200 after start");

    // Start the download and read only its first few KiB.
    let mut download = connect(web).unwrap();
    download
        .write_all(request_head("/big.bin", &[]).as_bytes())
        .unwrap();
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 4096];
    while head_end(&received).is_none() || received.len() < 8 * 1024 {
        let n = download.read(&mut chunk).expect("read the first KiB");
        assert!(n > 0, "response ended early: {:?}", text(&received));
        received.extend_from_slice(&chunk[..n]);
    }
    let end = head_end(&received).unwrap();
    let (status, headers) = parse_head(&received[..end]).expect("response head");
    assert_eq!(status, 200);
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .expect("content-length on the large file");
    assert_eq!(length, SIZE);

    weir.signal("TERM");

    // (a) readiness: never 200 again while admin still answers (503 expected).
    let readyz = poll(Duration::from_secs(5), || {
        match try_get(at.admin, "/readyz", &[]) {
            Ok(r) if r.status == 200 => None,
            Ok(r) => Some(Some(r.status)),
            Err(_) => Some(None),
        }
    });
    match readyz {
        Some(Some(status)) => assert_eq!(status, 503, "/readyz while draining"),
        Some(None) => eprintln!("note: admin stopped answering during the drain"),
        None => panic!("/readyz still 200 five seconds after SIGTERM"),
    }

    // (b) the listener stops accepting: a new connection is refused.
    let refused = poll(Duration::from_secs(5), || match TcpStream::connect_timeout(
        &web,
        Duration::from_millis(500),
    ) {
        Err(_) => Some(()),
        Ok(_) => None,
    });
    assert!(
        refused.is_some(),
        "listener {web} still accepts five seconds after SIGTERM"
    );

    // The process waits for the download: it has not exited yet.
    assert!(
        weir.child.try_wait().unwrap().is_none(),
        "weir exited with a response in flight; stderr: {}",
        weir.stderr()
    );

    // (c) the response in flight completes, every byte in place.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = download
            .read(&mut chunk)
            .expect("read the rest of the body");
        if n == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..n]);
        assert!(Instant::now() < deadline, "download too slow");
    }
    let body = &received[end..];
    assert_eq!(body.len(), SIZE, "body length after the drain");
    if let Some(i) = body.iter().enumerate().position(|(i, &b)| b != pattern(i)) {
        panic!("body differs from the file at byte {i}");
    }

    // (d) then weir exits 0.
    let status = weir.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr: {}", weir.stderr());
}

/// An upstream that reads requests and never answers; says on the channel
/// each time a request head has arrived. Lives until the test process ends.
fn silent_upstream() -> (SocketAddr, Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
    let addr = listener.local_addr().expect("upstream address");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let tx = tx.clone();
            thread::spawn(move || {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    seen.extend_from_slice(&buf[..n]);
                    if head_end(&seen).is_some() {
                        seen.clear();
                        let _ = tx.send(());
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[test]
fn sigterm_gives_up_on_a_request_in_flight_after_shutdown_grace() {
    let (upstream, arrived) = silent_upstream();
    let dir = tempdir();
    let cfg = site_config(
        dir.path(),
        "cfg.toml",
        &format!(
            "[[routes]]\npath = \"/hang/\"\nbackends = [{{ service = \"hang\" }}]\n\n\
             [services.hang]\nendpoints = [\"{upstream}\"]\n\n\
             [limits]\nshutdown_grace = \"1s\"\n"
        ),
    );
    let mut weir = Weir::spawn(weir().arg("run").arg("-c").arg(&cfg));
    let at = weir.announced();
    let mut client = connect(at.listener("web")).unwrap();
    client
        .write_all(request_head("/hang/x", &[]).as_bytes())
        .unwrap();
    arrived
        .recv_timeout(PATIENCE)
        .expect("the request never reached the upstream");

    let sent = Instant::now();
    weir.signal("TERM");
    let status = weir.wait_exit(Duration::from_secs(4));
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(0), "stderr: {}", weir.stderr());
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}: the request in flight was not given its 1 s grace"
    );

    // The client's connection ends (closed or reset), whatever was said on it.
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the client's connection is still open after weir exited: {e}")
            }
            Err(_) => break,
        }
    }
    if let Some(response) = parse_response(&rest) {
        assert!(
            response.status >= 500,
            "{} {}",
            response.status,
            response.text()
        );
    }
}

/// Threads of process `pid` that are tokio's runtime threads, by name.
fn tokio_threads(pid: u32) -> usize {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/PID/task");
    tasks
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| {
            // "tokio-rt-worker", or the older "tokio-runtime-worker" cut to
            // the 15 bytes a thread name keeps.
            let comm = comm.trim_end();
            comm == "tokio-rt-worker" || comm == "tokio-runtime-w"
        })
        .count()
}

/// `[runtime] workers` is the number of worker threads, whatever the
/// machine has. The config has no site, so no blocking-pool threads (which
/// tokio names alike) are started.
#[test]
fn runtime_workers_sets_the_worker_threads() {
    let (upstream, _arrived) = silent_upstream();
    for workers in [3, 5] {
        let dir = tempdir();
        let cfg = dir.path().join("cfg.toml");
        fs::write(
            &cfg,
            format!(
                "[admin]\nlisten = \"127.0.0.1:0\"\n\n[runtime]\nworkers = {workers}\n\n\
                 [[listeners]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\n\n\
                 [[routes]]\npath = \"/\"\nbackends = [{{ service = \"api\" }}]\n\n\
                 [services.api]\nendpoints = [\"{upstream}\"]\n"
            ),
        )
        .unwrap();
        let mut weir = Weir::spawn(weir().arg("run").arg("-c").arg(&cfg));
        let at = weir.announced();
        assert_eq!(get(at.admin, "/healthz", &[]).status, 200);
        // The workers start with the runtime, before the announcement.
        let threads = tokio_threads(weir.child.id());
        assert_eq!(
            threads, workers,
            "workers = {workers} gave {threads} runtime threads"
        );
        weir.signal("TERM");
        assert_eq!(weir.wait_exit(PATIENCE).code(), Some(0));
    }
}

// ---------------------------------------------------------------------------
// Access log.
// ---------------------------------------------------------------------------

#[test]
fn access_log_is_one_json_line_per_request() {
    let dir = tempdir();
    let cfg = site_config(dir.path(), "cfg.toml", "");
    let mut weir = Weir::spawn(weir().arg("run").arg("-c").arg(&cfg));
    let at = weir.announced();
    let response = get(
        at.listener("web"),
        "/index.html?q=1",
        &[("X-Request-Id", "cli-test-1")],
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-request-id"), Some("cli-test-1"));

    let line = weir.wait_line("with the access-log JSON", |l| l.starts_with('{'));
    let entry: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    for field in [
        "time",
        "client_ip",
        "method",
        "host",
        "path",
        "protocol",
        "status",
        "bytes",
        "duration_ms",
        "route",
        "backend",
        "request_id",
    ] {
        assert!(entry.get(field).is_some(), "no {field:?} in {line}");
    }
    assert_eq!(entry["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(entry["method"], "GET", "{line}");
    assert_eq!(entry["host"], "x", "{line}");
    assert!(
        entry["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/index.html")),
        "{line}"
    );
    assert_eq!(entry["protocol"], "h1", "{line}");
    assert_eq!(entry["status"], 200, "{line}");
    assert_eq!(entry["bytes"], INDEX.len(), "{line}");
    assert!(entry["duration_ms"].is_number(), "{line}");
    assert_eq!(entry["backend"], "web", "{line}");
    assert_eq!(entry["request_id"], "cli-test-1", "{line}");
    let time = entry["time"].as_str().unwrap_or("");
    assert!(
        time.len() >= 20 && time.as_bytes()[4] == b'-' && time.contains('T'),
        "time not RFC 3339: {line}"
    );

    // A 404 is logged too, with a generated request id.
    assert_eq!(get(at.listener("web"), "/nope.txt", &[]).status, 404);
    let line = weir.wait_line("for the 404", |l| l.contains("/nope.txt"));
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["status"], 404, "{line}");
    assert!(
        entry["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{line}"
    );
}

#[test]
fn access_log_off_prints_nothing() {
    let dir = tempdir();
    let cfg = site_config(dir.path(), "cfg.toml", "[access_log]\nformat = \"off\"\n");
    let mut weir = Weir::spawn(weir().arg("run").arg("-c").arg(&cfg));
    let at = weir.announced();
    assert_eq!(get(at.listener("web"), "/", &[]).status, 200);
    assert_eq!(get(at.listener("web"), "/nope", &[]).status, 404);
    weir.signal("TERM");
    assert_eq!(weir.wait_exit(PATIENCE).code(), Some(0));
    // Exit flushes the log writer: whatever it had is on stdout by now.
    let rest = weir.rest_of_stdout();
    assert!(
        rest.iter().all(|l| l.trim().is_empty()),
        "access log is off, yet stdout has: {rest:?}"
    );
}

#[test]
fn access_log_json_lines_are_flushed_on_exit() {
    let dir = tempdir();
    let cfg = site_config(dir.path(), "cfg.toml", "");
    let mut weir = Weir::spawn(weir().arg("run").arg("-c").arg(&cfg));
    let at = weir.announced();
    for _ in 0..3 {
        assert_eq!(get(at.listener("web"), "/", &[]).status, 200);
    }
    weir.signal("TERM");
    assert_eq!(weir.wait_exit(PATIENCE).code(), Some(0));
    let rest = weir.rest_of_stdout();
    let json = rest.iter().filter(|l| l.starts_with('{')).count();
    assert_eq!(json, 3, "stdout after start: {rest:?}");
}

#[test]
fn access_log_combined_format() {
    let dir = tempdir();
    let cfg = site_config(
        dir.path(),
        "cfg.toml",
        "[access_log]\nformat = \"combined\"\n",
    );
    let mut weir = Weir::spawn(weir().arg("run").arg("-c").arg(&cfg));
    let at = weir.announced();
    let response = get(
        at.listener("web"),
        "/",
        &[
            ("User-Agent", "cli-test/1.0"),
            ("Referer", "http://ref.example/"),
        ],
    );
    assert_eq!(response.status, 200);
    let line = weir.wait_line("in combined format", |l| l.contains("\"GET / HTTP/1.1\""));
    // 127.0.0.1 - - [26/Nov/2026:12:45:23 +0000] "GET / HTTP/1.1" 200 71 "referer" "agent"
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    let (_, after_time) = line.split_once("] ").unwrap_or_else(|| panic!("{line}"));
    let time = &line["127.0.0.1 - - [".len()..line.find(']').unwrap()];
    assert!(time.ends_with(" +0000") && time.contains('/'), "{line}");
    assert_eq!(
        after_time,
        format!(
            "\"GET / HTTP/1.1\" 200 {} \"http://ref.example/\" \"cli-test/1.0\"",
            INDEX.len()
        ),
        "{line}"
    );
    assert!(!line.starts_with('{'), "{line}");
}

/// Two processes with the same `WEIR_AFFINITY_KEY` honour each other's
/// pins (replicas, restarts); without it each signs with its own key.
#[test]
fn replicas_sharing_an_affinity_key_honour_each_other_s_pins() {
    let dir = tempdir();
    for name in ["blue", "green"] {
        fs::create_dir_all(dir.path().join(name)).unwrap();
        fs::write(dir.path().join(name).join("id.txt"), name).unwrap();
    }
    let cfg = dir.path().join("cfg.toml");
    fs::write(
        &cfg,
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\n\n\
         [[routes]]\npath = \"/\"\naffinity = { cookie = \"pin\" }\n\
         backends = [{ site = \"blue\", weight = 50 }, { site = \"green\", weight = 50 }]\n\n\
         [sites.blue]\nroot = \"blue\"\n\n[sites.green]\nroot = \"green\"\n",
    )
    .unwrap();
    let start = |key: Option<&str>| {
        let mut cmd = weir();
        cmd.arg("run")
            .arg("-c")
            .arg(&cfg)
            .env_remove(weir::balancer::affinity::KEY_ENV);
        if let Some(key) = key {
            cmd.env(weir::balancer::affinity::KEY_ENV, key);
        }
        let mut running = Weir::spawn(&mut cmd);
        let web = running.announced().listener("web");
        (running, web)
    };
    let cookie_of = |reply: &Response| {
        let set = reply.header("set-cookie").expect("a pin").to_owned();
        set.split(';').next().unwrap().to_owned()
    };
    let shared = "0123456789abcdef-shared-secret";
    let (first, web) = start(Some(shared));
    let pinned = get(web, "/id.txt", &[]);
    let cookie = cookie_of(&pinned);
    let backend = text(&pinned.body);
    drop(first);

    // Another process with the key: the pin holds, and is not set again.
    let (_second, web) = start(Some(shared));
    for _ in 0..10 {
        let reply = get(web, "/id.txt", &[("cookie", &cookie)]);
        assert_eq!(text(&reply.body), backend);
        assert_eq!(reply.header("set-cookie"), None);
    }
    // One with a key of its own does not take the pin: it pins anew.
    let (_third, web) = start(Some("another-key-of-16-bytes-at-least"));
    let reply = get(web, "/id.txt", &[("cookie", &cookie)]);
    assert!(
        reply.header("set-cookie").is_some(),
        "a foreign pin was honoured"
    );

    // A key too short to be one is refused at start.
    let short = run_to_end(
        weir()
            .arg("run")
            .arg("-c")
            .arg(&cfg)
            .env(weir::balancer::affinity::KEY_ENV, "short"),
    );
    assert_eq!(short.status.code(), Some(1), "{}", text(&short.stderr));
    assert!(text(&short.stderr).contains("WEIR_AFFINITY_KEY"));
}
