//! Shared by the HTTP, voices, reliability, corpus and batching tests: the real `gsv` binary on an ephemeral port
//! (`-p 0`, the bound address read from its stdout) and a small raw HTTP/1.1 client over `TcpStream`, so that
//! malformed requests (bad UTF-8, huge headers, stalled bodies) can be sent byte for byte. Every wait is bounded;
//! every server is killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const REF_TEXT: &str = "今天天气很好，我们去公园散步。";
pub const TEXT: &str = "你好，世界。";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gsv")
}

pub struct Server {
    pub child: Child,
    pub port: u16,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// What a start that should fail printed.
pub struct Failed {
    pub code: Option<i32>,
    pub stderr: String,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        Server::start_env(args, &[])
    }

    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        match Server::try_start(args, env) {
            Ok(s) => s,
            Err(f) => panic!("server did not start ({:?}): {}", f.code, f.stderr),
        }
    }

    /// Starts the server; `Err` with its exit code and stderr if it exits (or prints nothing) instead.
    pub fn try_start(args: &[&str], env: &[(&str, &str)]) -> Result<Server, Failed> {
        let mut child = Command::new(bin())
            .args(args)
            .args(["-p", "0", "--intra-threads", "1"])
            .current_dir(repo())
            .envs(env.iter().copied())
            .env("GSV_LOG", "info,ort=error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gsv");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let err_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(|l| l.ok()));
            for _ in lines {}
        });
        match rx.recv_timeout(Duration::from_secs(240)) {
            Ok(Some(line)) => {
                let port: u16 = line.rsplit(':').next().and_then(|p| p.trim().parse().ok()).unwrap_or_else(|| panic!("no port in {line:?}"));
                Ok(Server { child, port, stderr: Some(err_thread) })
            }
            _ => {
                let t0 = Instant::now();
                let code = loop {
                    if let Ok(Some(c)) = child.try_wait() {
                        break c.code();
                    }
                    if t0.elapsed() > Duration::from_secs(10) {
                        let _ = child.kill();
                        break child.wait().ok().and_then(|c| c.code());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                };
                Err(Failed { code, stderr: err_thread.join().unwrap_or_default() })
            }
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.port, "GET", path, &[], None)
    }

    pub fn post(&self, path: &str, body: &str) -> Resp {
        request(self.port, "POST", path, &[], Some(body.as_bytes()))
    }

    pub fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        request(self.port, method, path, headers, body)
    }

    /// `body` as JSON.
    pub fn json(&self, method: &str, path: &str, body: &serde_json::Value) -> Resp {
        self.req(method, path, &[("Content-Type", "application/json")], Some(body.to_string().as_bytes()))
    }

    pub fn metrics_with(&self, headers: &[(&str, &str)]) -> String {
        request(self.port, "GET", "/metrics", headers, None).text()
    }

    pub fn metric(&self, name: &str) -> f64 {
        self.metric_with(name, &[])
    }

    pub fn metric_with(&self, name: &str, headers: &[(&str, &str)]) -> f64 {
        let m = self.metrics_with(headers);
        m.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("metric {name} not found in\n{m}"))
    }

    /// VmRSS and VmHWM of the server process, in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let f = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0);
        (f("VmRSS:"), f("VmHWM:"))
    }

    /// Waits (at most `limit`) for the process to exit; its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Ok(Some(c)) = self.child.try_wait() {
                return Some(c);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Stops the server (SIGTERM) and returns its log.
    pub fn stop(self) -> String {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.log_after_exit()
    }

    /// Stops the server with api.py's `/control?command=exit` and returns its log.
    pub fn stop_with_control(self) -> String {
        let _ = request(self.port, "GET", "/control?command=exit", &[], None);
        self.log_after_exit()
    }

    fn log_after_exit(mut self) -> String {
        let _ = self.wait_exit(Duration::from_secs(30));
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    }

    pub fn sigterm(&self) {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunks: usize,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s
}

pub fn send_request(s: &mut TcpStream, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        // JSON unless the caller names the type (multipart uploads)
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        // the server may answer (413) and close before reading it all
        let _ = s.write_all(b);
    }
}

/// Status line and headers; `None` when the connection closed (or failed) before a status line.
pub fn try_read_head(r: &mut BufReader<TcpStream>) -> Option<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok())?;
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).ok()? == 0 {
            break;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Some((status, headers))
}

pub fn read_chunk(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut l = String::new();
    r.read_line(&mut l).ok()?;
    let n = usize::from_str_radix(l.trim().split(';').next()?, 16).ok()?;
    if n == 0 {
        let mut end = String::new();
        let _ = r.read_line(&mut end);
        return None;
    }
    let mut buf = vec![0u8; n + 2];
    r.read_exact(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Status line and headers of a response that must have them.
pub fn read_head(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    try_read_head(r).expect("a status line and headers")
}

/// Reads a whole response; status 0 when the server closed the connection without one.
pub fn read_response(s: TcpStream) -> Resp {
    let mut r = BufReader::new(s);
    let Some((status, headers)) = try_read_head(&mut r) else {
        return Resp { status: 0, headers: vec![], body: vec![], chunks: 0 };
    };
    let get = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    let mut chunks = 0;
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while let Some(c) = read_chunk(&mut r) {
            chunks += 1;
            body.extend(c);
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0; n];
        let _ = r.read_exact(&mut body);
    } else {
        let _ = r.read_to_end(&mut body);
    }
    Resp { status, headers, body, chunks }
}

pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    let mut s = connect(port);
    send_request(&mut s, method, path, headers, body);
    read_response(s)
}

/// Sends `raw` bytes as they are and reads the answer (status 0: the server closed the connection without one).
pub fn raw_request(port: u16, raw: &[u8], read_timeout: Duration) -> Resp {
    let mut s = connect(port);
    s.set_read_timeout(Some(read_timeout)).unwrap();
    // a server that answers early (413, 431) may close before everything is written: not an error here
    let _ = s.write_all(raw);
    read_response(s)
}

pub fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

pub fn api2_json(text: &str, refer: Option<(&str, &str, &str)>, seed: Option<u64>) -> String {
    let mut v = serde_json::json!({"text": text, "text_language": "zh"});
    if let Some((p, t, l)) = refer {
        v["refer_wav_path"] = p.into();
        v["prompt_text"] = t.into();
        v["prompt_language"] = l.into();
    }
    if let Some(s) = seed {
        v["seed"] = s.into();
    }
    v.to_string()
}

pub fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gsv-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A WAV file's bytes: `samples` in the demo reference's format.
fn wav_bytes(spec: hound::WavSpec, samples: impl IntoIterator<Item = i16>) -> Vec<u8> {
    let mut cur = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
    for x in samples {
        w.write_sample(x).unwrap();
    }
    w.finalize().unwrap();
    cur.into_inner()
}

/// The first `secs` seconds of the demo reference, as a WAV file (1 s: outside api2's 3-10 s range).
pub fn cut_ref_wav(secs: f64) -> Vec<u8> {
    let mut r = hound::WavReader::open(repo().join("onnx/demo/ref.wav")).unwrap();
    let spec = r.spec();
    let s: Vec<i16> = r.samples::<i16>().take((spec.sample_rate as f64 * secs) as usize).map(|x| x.unwrap()).collect();
    wav_bytes(spec, s)
}

/// A second voice, as a WAV file: the demo reference reversed and negated (same length, other features).
pub fn second_ref_wav() -> Vec<u8> {
    let mut r = hound::WavReader::open(repo().join("onnx/demo/ref.wav")).unwrap();
    let spec = r.spec();
    let s: Vec<i16> = r.samples::<i16>().map(|x| x.unwrap()).collect();
    wav_bytes(spec, s.into_iter().rev().map(i16::saturating_neg))
}

pub fn write_cut_ref(path: &Path, secs: f64) {
    std::fs::write(path, cut_ref_wav(secs)).unwrap();
}

pub fn write_second_ref(path: &Path) {
    std::fs::write(path, second_ref_wav()).unwrap();
}

pub fn mkfifo(p: &Path) {
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success(), "mkfifo {}", p.display());
}

/// Copies the demo bundle (every file) into `dst`.
pub fn copy_demo_bundle(dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(repo().join("onnx/demo")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

/// Polls `f` every 50 ms until it holds (at most `limit`); whether it held.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
