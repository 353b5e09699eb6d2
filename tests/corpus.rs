//! The malformed-input corpus (issue 14): every case of `tests/corpus/cases.jsonl` is sent to one server, byte for
//! byte, its status checked, then `/health` must be 200 and the process alive. One runner, cases as data.
//!
//! A case: `name`, `method`, `path`, optional `headers` (or `headers_b64` for bytes that are not UTF-8), `body` (or
//! `body_b64`, or `chunked`: sent with chunked transfer), `auth` (`admin` by default: the admin key works on every
//! route; `user`, `none`, `raw` = only the case's own headers), `expect` (a status) or `expect_any` (one of them; 0 =
//! the server closed the connection without an answer), and the special kinds: `raw` / `raw_b64` (the whole request
//! as given), `slow` (`send` N bytes of the body then stall, or `drip_ms` + `pieces`, or `close` after N bytes),
//! `chunked_stall`, `many_headers`, `raw_content_length` (the case's Content-Length header, not the body's), `race`
//! (a file of the root flipped between a symlink inside and one outside while the request runs).
//! Placeholders in paths, headers and bodies: `{ROOT}` (the `--ref-root`), `{OUT}` (a folder outside it), `{FIFO}`,
//! `{REF_TEXT}`. The fixtures (FIFO, folder, sparse file over `--max-ref-bytes`, truncated/empty/text/1 s/70 s
//! recordings, symlinks out of the root, to a device, dangling, inside) are made here.

mod support;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const MIN_CASES: usize = 150;

struct Fixtures {
    root: std::path::PathBuf,
    out: std::path::PathBuf,
    fifo: std::path::PathBuf,
}

fn fixtures(dir: &Path) -> Fixtures {
    let root = dir.join("refs");
    let out = dir.join("outside");
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(repo().join("onnx/demo/ref.wav"), root.join("good.wav")).unwrap();
    std::fs::copy(repo().join("onnx/demo/ref.wav"), out.join("v.wav")).unwrap();
    write_cut_ref(&root.join("short.wav"), 1.0);
    write_cut_ref(&out.join("short.wav"), 1.0);
    let wav = std::fs::read(repo().join("onnx/demo/ref.wav")).unwrap();
    std::fs::write(root.join("trunc.wav"), &wav[..wav.len().min(3000)]).unwrap();
    std::fs::write(root.join("empty.wav"), b"").unwrap();
    std::fs::write(root.join("text.wav"), "this is not audio, only text that pretends to be a WAV file\n".repeat(50)).unwrap();
    std::fs::File::create(root.join("huge.wav")).unwrap().set_len(10 << 20).unwrap();
    let spec = hound::WavSpec { channels: 1, sample_rate: 8000, bits_per_sample: 8, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(root.join("long.wav"), spec).unwrap();
    for i in 0..8000 * 70 {
        w.write_sample(((i % 40) as i8).wrapping_sub(20)).unwrap();
    }
    w.finalize().unwrap();
    let fifo = root.join("ref.fifo");
    mkfifo(&fifo);
    std::os::unix::fs::symlink(out.join("v.wav"), root.join("link-out.wav")).unwrap();
    std::os::unix::fs::symlink(out.join("gone.wav"), root.join("link-dangling.wav")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", root.join("link-dev.wav")).unwrap();
    std::os::unix::fs::symlink("good.wav", root.join("link-in.wav")).unwrap();
    std::os::unix::fs::symlink("good.wav", root.join("flip.wav")).unwrap();
    Fixtures { root, out, fifo }
}

fn subst(s: &str, f: &Fixtures) -> String {
    s.replace("{ROOT}", f.root.to_str().unwrap())
        .replace("{OUT}", f.out.to_str().unwrap())
        .replace("{FIFO}", f.fifo.to_str().unwrap())
        .replace("{REF_TEXT}", REF_TEXT)
}

fn b64(s: &str) -> Vec<u8> {
    base64::decode(s).expect("base64 in the corpus")
}

/// The request head (up to and including the blank line) and the body, as bytes.
fn build(case: &Value, f: &Fixtures) -> (Vec<u8>, Vec<u8>) {
    let s = |k: &str| case.get(k).and_then(Value::as_str).map(|v| subst(v, f));
    if let Some(raw) = s("raw") {
        return (raw.into_bytes(), vec![]);
    }
    if let Some(raw) = case.get("raw_b64").and_then(Value::as_str) {
        return (b64(raw), vec![]);
    }
    let method = s("method").unwrap_or_else(|| "GET".into());
    let path = s("path").unwrap_or_else(|| "/".into());
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n").into_bytes();
    let mut header = |k: &[u8], v: &[u8]| {
        head.extend_from_slice(k);
        head.extend_from_slice(b": ");
        head.extend_from_slice(v);
        head.extend_from_slice(b"\r\n");
    };
    match s("auth").as_deref().unwrap_or("admin") {
        "admin" => header(b"Authorization", b"Bearer admin"),
        "user" => header(b"Authorization", b"Bearer user"),
        _ => {}
    }
    if let Some(h) = case.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            header(k.as_bytes(), subst(v.as_str().unwrap_or(""), f).as_bytes());
        }
    }
    if let Some(h) = case.get("headers_b64").and_then(Value::as_object) {
        for (k, v) in h {
            header(k.as_bytes(), &b64(v.as_str().unwrap_or("")));
        }
    }
    if let Some(n) = case.get("many_headers").and_then(Value::as_u64) {
        for i in 0..n {
            header(format!("X-H{i}").as_bytes(), b"v");
        }
    }
    let mut body = match (s("body"), case.get("body_b64").and_then(Value::as_str)) {
        (Some(b), _) => b.into_bytes(),
        (None, Some(b)) => b64(b),
        _ => vec![],
    };
    if let Some(c) = s("chunked") {
        header(b"Transfer-Encoding", b"chunked");
        body.clear();
        for piece in c.as_bytes().chunks(8192) {
            body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            body.extend_from_slice(piece);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
    } else if case.get("chunked_stall").is_some() {
        header(b"Transfer-Encoding", b"chunked");
        body = b"20\r\n{\"text\": \"".to_vec();
    } else if (s("body").is_some() || case.get("body_b64").is_some()) && case.get("raw_content_length").is_none() {
        header(b"Content-Type", b"application/json");
        header(b"Content-Length", body.len().to_string().as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    (head, body)
}

/// Sends one case and reads the answer (status 0: closed without one).
fn send(port: u16, case: &Value, f: &Fixtures) -> Resp {
    let (head, body) = build(case, f);
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let _ = s.write_all(&head);
    let slow = case.get("slow");
    match slow {
        Some(sl) if sl.get("drip_ms").is_some() => {
            let pieces = sl["pieces"].as_u64().unwrap_or(4).max(1) as usize;
            let ms = sl["drip_ms"].as_u64().unwrap_or(100);
            for p in body.chunks(body.len().div_ceil(pieces).max(1)) {
                std::thread::sleep(Duration::from_millis(ms));
                let _ = s.write_all(p);
            }
        }
        Some(sl) => {
            let n = (sl["send"].as_u64().unwrap_or(0) as usize).min(body.len());
            let _ = s.write_all(&body[..n]);
            if sl.get("close").is_some() {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            // then stall: the server's body deadline must answer
        }
        None => {
            let _ = s.write_all(&body);
        }
    }
    read_response(s)
}

#[test]
fn malformed_input_corpus() {
    let text = std::fs::read_to_string(repo().join("tests/corpus/cases.jsonl")).unwrap();
    let cases: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad corpus line ({e}): {l}")))
        .collect();
    assert!(cases.len() >= MIN_CASES, "{} cases, at least {MIN_CASES} wanted", cases.len());
    let dir = tmp_dir("corpus");
    let f = fixtures(&dir);
    let mut srv = Server::start(&[
        "--ref-root",
        f.root.to_str().unwrap(),
        "--api-key",
        "user",
        "--admin-key",
        "admin",
        "--body-timeout-s",
        "2",
        "--max-body",
        "65536",
        "--max-text",
        "2000",
        "--timeout-s",
        "120",
        "--workers",
        "1",
        "--max-queue",
        "8",
        // `/` validates `speed` only where it honours it (api2 ignores the field), and unknown OpenAI voices are
        // refused only with --strict-voices: the corpus checks the strict forms
        "--api-py-speed",
        "--strict-voices",
    ]);
    let t0 = Instant::now();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap_or("?");
        let want: Vec<u64> = match (case.get("expect"), case.get("expect_any")) {
            (Some(e), _) => vec![e.as_u64().unwrap()],
            (None, Some(a)) => a.as_array().unwrap().iter().filter_map(Value::as_u64).collect(),
            _ => panic!("case {name}: no expect"),
        };
        let statuses: Vec<u16> = if let Some(link) = case.get("race").and_then(Value::as_str) {
            // flip root/LINK between a file inside and a 1 s file outside while requests run: each answer is the
            // inside file's (200) or a refusal (403), never the outside file's 400
            let stop = Arc::new(AtomicBool::new(false));
            let (st, l, inside, outside) = (stop.clone(), f.root.join(link), "good.wav".to_string(), f.out.join("short.wav"));
            let flipper = std::thread::spawn(move || {
                let tmp = l.with_extension("tmp");
                let mut i = 0u64;
                while !st.load(Ordering::Relaxed) {
                    let _ = std::fs::remove_file(&tmp);
                    let target = if i.is_multiple_of(2) { outside.clone() } else { std::path::PathBuf::from(&inside) };
                    let _ = std::os::unix::fs::symlink(&target, &tmp);
                    let _ = std::fs::rename(&tmp, &l);
                    i += 1;
                    std::thread::sleep(Duration::from_micros(300));
                }
            });
            let s: Vec<u16> = (0..4).map(|_| send(srv.port, case, &f).status).collect();
            stop.store(true, Ordering::Relaxed);
            let _ = flipper.join();
            s
        } else {
            vec![send(srv.port, case, &f).status]
        };
        for got in statuses {
            if !want.contains(&(got as u64)) {
                failures.push(format!("{name}: got {got}, expected {want:?}"));
            }
        }
        let h = request(srv.port, "GET", "/health", &[], None);
        if h.status != 200 {
            failures.push(format!("{name}: /health {} afterwards: {}", h.status, h.text()));
        }
        assert!(srv.child.try_wait().unwrap().is_none(), "the server exited after case {name}");
    }
    let took = t0.elapsed();
    let log = srv.stop();
    assert!(!log.contains("panicked"), "a panic in the log: {log}");
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    println!("corpus: {} cases passed in {:.1} s", cases.len(), took.as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}
