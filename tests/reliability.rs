//! Reliability and security (issue 14): one test per defect the issue lists, plus the fault tests (bad bundles at
//! start and on `/set_model`, SIGTERM mid-stream, a reference deleted after it was cached, a wedged worker).
//! Each runs the real `gsv` binary (debug build, so the fault hooks of `engine/faults.rs` exist) on loopback.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

fn status_of(srv: &Server, refer: &str) -> (Resp, Duration) {
    let t0 = Instant::now();
    let r = srv.post("/", &api2_json(TEXT, Some((refer, REF_TEXT, "zh")), Some(1)));
    (r, t0.elapsed())
}

/// Defects 1 and 2: a FIFO, a device, a directory, a huge file, a truncated file or a file that decodes to minutes of
/// audio as reference: each a quick 400, nothing read whole into memory, and the (only) worker free for the next
/// request. Before: the FIFO blocked the worker (every later request 504), `/dev/zero` and the huge file were read whole.
#[test]
fn references_are_bounded_and_never_block_a_worker() {
    let dir = tmp_dir("bounded");
    let fifo = dir.join("ref.fifo");
    mkfifo(&fifo);
    let huge = dir.join("huge.wav");
    std::fs::File::create(&huge).unwrap().set_len(300 << 20).unwrap();
    let truncated = dir.join("truncated.wav");
    std::fs::write(&truncated, &std::fs::read(repo().join("onnx/demo/ref.wav")).unwrap()[..3000]).unwrap();
    // 70 s of 8 kHz 8-bit mono: 560 kB on disk, past the 60 s decode cap
    let long = dir.join("long.wav");
    let spec = hound::WavSpec { channels: 1, sample_rate: 8000, bits_per_sample: 8, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(&long, spec).unwrap();
    for i in 0..8000 * 70 {
        w.write_sample(((i % 50) as i8).wrapping_sub(25)).unwrap();
    }
    w.finalize().unwrap();

    let srv = Server::start(&["--workers", "1", "--timeout-s", "20"]);
    let (_, hwm0) = srv.rss_kib();
    let cases: Vec<(String, &str)> = vec![
        (fifo.display().to_string(), "not a regular file"),
        ("/dev/zero".into(), "not a regular file"),
        (dir.display().to_string(), "not a regular file"),
        (huge.display().to_string(), "larger than 4194304 bytes"),
        (truncated.display().to_string(), "参考音频"),
        (long.display().to_string(), "3-10 s"),
    ];
    for (p, want) in &cases {
        let (r, took) = status_of(&srv, p);
        assert_eq!(r.status, 400, "{p}: {}", r.text());
        assert!(r.json()["message"].as_str().unwrap_or("").contains(want), "{p}: {}", r.text());
        assert!(took < Duration::from_secs(10), "{p}: answered in {took:?}");
        assert_eq!(srv.get("/health").status, 200, "{p}");
    }
    // the same refusals on api_v2 and for extra references
    let v2 = serde_json::json!({"text": TEXT, "text_lang": "zh", "ref_audio_path": fifo.to_str().unwrap(), "prompt_text": REF_TEXT, "prompt_lang": "zh"});
    assert_eq!(srv.post("/tts", &v2.to_string()).status, 400);
    let aux = serde_json::json!({"text": TEXT, "text_language": "zh", "inp_refs": [fifo.to_str().unwrap()]});
    assert_eq!(srv.post("/", &aux.to_string()).status, 400);
    // the worker is free and nothing was read whole
    let ok = srv.post("/", &api2_json(TEXT, None, Some(1)));
    assert_eq!(ok.status, 200, "{}", ok.text());
    let (_, hwm1) = srv.rss_kib();
    assert!(hwm1 < hwm0 + 150 * 1024, "peak RSS grew from {hwm0} to {hwm1} KiB");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The decoder's cap, on the library: no decode goes past 60 s of audio.
#[test]
fn decode_stops_at_the_cap() {
    let spec = hound::WavSpec { channels: 2, sample_rate: 1000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut c = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut c, spec).unwrap();
    for _ in 0..1000 * 61 * 2 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
    let r = gsv::reference::decode_bytes(c.get_ref(), Some("wav"));
    assert!(matches!(&r, Err(e) if e.to_string().contains("longer than 60 s")), "{r:?}");
}

/// Defect 3: request bodies have a deadline. Uploads that stall after their headers get 408 after `--body-timeout-s`
/// and their connections are closed; a stalled upload does not hold up a graceful stop.
#[test]
fn stalled_uploads_time_out() {
    let mut srv = Server::start(&["--body-timeout-s", "2", "--timeout-s", "300"]);
    let stalled: Vec<std::net::TcpStream> = (0..30)
        .map(|_| {
            let mut s = connect(srv.port);
            s.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"text\": \"").unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    for s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let r = read_response(s);
        assert_eq!(r.status, 408, "{}", r.text());
        assert_eq!(r.json()["code"], 408);
    }
    assert!(t0.elapsed() < Duration::from_secs(12), "408s after {:?}", t0.elapsed());
    assert_eq!(srv.get("/health").status, 200);
    assert!(srv.metric("gsv_failures_total{kind=\"body_timeout\"}") >= 30.0);
    // SIGTERM with an upload stalled mid-body: the server is gone within the body deadline, not the 300 s timeout
    let mut s = connect(srv.port);
    s.write_all(b"POST /tts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 500\r\n\r\n{").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    srv.sigterm();
    let code = srv.wait_exit(Duration::from_secs(15)).expect("the server stops within the body deadline");
    assert!(code.success(), "{code:?}");
}

/// Defect 4: the file checked is the file read. A request is admitted while `root/sub/` is a real folder, waits in the
/// queue, and `sub` is swapped for a symlink to a folder outside the root before a worker takes the job: the job still
/// uses the file it was admitted with (before: the worker opened the path again and read the outside file, here a
/// 1 s recording, so a 400). A stored default (`/change_refer`) is confined again when used; a path outside the
/// root is 403 whether or not the file exists.
#[test]
fn confinement_has_no_race_and_no_oracle() {
    let dir = tmp_dir("race");
    let root = dir.join("refs");
    let outside = dir.join("outside");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("voice")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::copy(repo().join("onnx/demo/ref.wav"), root.join("sub/a.wav")).unwrap();
    std::fs::copy(repo().join("onnx/demo/ref.wav"), root.join("voice/v.wav")).unwrap();
    write_cut_ref(&outside.join("a.wav"), 1.0);
    std::fs::copy(repo().join("onnx/demo/ref.wav"), outside.join("v.wav")).unwrap();
    let srv = Server::start(&["--ref-root", root.to_str().unwrap(), "--workers", "1", "--max-queue", "4"]);
    let port = srv.port;
    let body = api2_json(TEXT, Some(("sub/a.wav", REF_TEXT, "zh")), Some(7));
    let expected = srv.post("/", &body);
    assert_eq!(expected.status, 200, "{}", expected.text());

    // occupy the worker, queue the request, swap the folder
    let long = serde_json::json!({"text": "今天天气很好，我们去公园散步。".repeat(12), "text_language": "zh", "seed": 1}).to_string();
    let busy = std::thread::spawn(move || request(port, "POST", "/", &[], Some(long.as_bytes())).status);
    assert!(wait_until(Duration::from_secs(30), || srv.metric("gsv_in_flight") >= 1.0));
    let b2 = body.clone();
    let queued = std::thread::spawn(move || request(port, "POST", "/", &[], Some(b2.as_bytes())));
    assert!(wait_until(Duration::from_secs(30), || srv.metric("gsv_queue_size") >= 1.0), "the request waits in the queue");
    std::fs::rename(root.join("sub"), dir.join("sub-old")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
    let r = queued.join().unwrap();
    assert_eq!(busy.join().unwrap(), 200);
    assert_eq!(r.status, 200, "the admitted file is the file read: {}", r.text());
    assert_eq!(r.body, expected.body, "same file, same seed: same audio");
    // a new request through the swapped folder is refused
    assert_eq!(srv.post("/", &body).status, 403);

    // a stored default is confined again at every use
    let c = srv.get(&format!("/change_refer?refer_wav_path=voice/v.wav&prompt_text={}&prompt_language=zh", enc(REF_TEXT)));
    assert_eq!(c.status, 200, "{}", c.text());
    assert_eq!(srv.post("/", &api2_json(TEXT, None, Some(7))).status, 200);
    std::fs::rename(root.join("voice"), dir.join("voice-old")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("voice")).unwrap();
    let r = srv.post("/", &api2_json(TEXT, None, Some(7)));
    assert_eq!(r.status, 403, "the stored default now resolves outside the root: {}", r.text());
    assert!(!r.text().contains(dir.to_str().unwrap()), "no stored path in the body: {}", r.text());

    // outside the root: 403 whether the file exists or not (no existence oracle)
    for p in [outside.join("v.wav"), outside.join("does-not-exist.wav"), dir.join("nope/x.wav")] {
        let r = srv.post("/", &api2_json(TEXT, Some((p.to_str().unwrap(), REF_TEXT, "zh")), None));
        assert_eq!(r.status, 403, "{}: {}", p.display(), r.text());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Defect 5: model folders are confined to the model roots (default: the start-up bundle folders and onnx/), with
/// the same 403 for a folder that exists and one that does not; `Bearer` is matched in any case.
#[test]
fn model_paths_are_confined() {
    let dir = tmp_dir("models");
    let copy = dir.join("bundle");
    copy_demo_bundle(&copy);
    let srv = Server::start(&["--api-key", "k1"]);
    let auth = |scheme: &str| format!("{scheme} k1");
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
        let r = request(srv.port, "GET", "/v1/models", &[("Authorization", &auth(scheme))], None);
        assert_eq!(r.status, 200, "{scheme}: {}", r.text());
    }
    let h = [("Authorization", "Bearer k1")];
    let set = |p: &str| request(srv.port, "POST", "/set_model", &h, Some(serde_json::json!({"gpt_model_path": p}).to_string().as_bytes()));
    for p in [copy.to_str().unwrap().to_string(), dir.join("missing").display().to_string(), "/etc".into(), "onnx/../../etc".into()] {
        let r = set(&p);
        assert_eq!(r.status, 403, "{p}: {}", r.text());
    }
    let r = request(srv.port, "GET", &format!("/set_gpt_weights?weights_path={}", enc(copy.to_str().unwrap())), &h, None);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(set("onnx/demo").status, 200, "the start-up bundle's folder is a root");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Defect 5: with `--admin-key`, the admin routes need it (the API key is not enough); the admin key works on the
/// synthesis routes too; `/health` and `/ready` need no key. With only `--api-key`, admin routes take the API key.
#[test]
fn admin_routes_need_the_admin_key() {
    let srv = Server::start(&["--api-key", "user", "--admin-key", "admin", "--no-warmup"]);
    let user = [("Authorization", "Bearer user")];
    let admin = [("Authorization", "bearer admin")];
    let get = |p: &str, h: &[(&str, &str)]| request(srv.port, "GET", p, h, None).status;
    let admin_routes = [
        "/set_model?gpt_model_path=onnx/demo",
        "/set_gpt_weights?weights_path=onnx/demo",
        "/set_sovits_weights?weights_path=onnx/demo",
        "/change_refer?refer_wav_path=onnx/demo/ref.wav",
        "/set_refer_audio?refer_audio_path=onnx/demo/ref.wav",
        "/metrics",
    ];
    for p in admin_routes {
        assert_eq!(get(p, &[]), 401, "{p} without a key");
        assert_eq!(get(p, &user), 401, "{p} with the API key");
        assert_eq!(get(p, &admin), 200, "{p} with the admin key");
    }
    assert_eq!(get("/control?command=exit", &user), 401);
    assert_eq!(get("/v1/models", &[]), 401);
    assert_eq!(get("/v1/models", &user), 200);
    assert_eq!(get("/v1/models", &admin), 200);
    assert_eq!(get("/health", &[]), 200);
    assert_eq!(get("/ready", &[]), 200);
    let r = request(srv.port, "POST", "/", &user, Some(api2_json(TEXT, None, Some(1)).as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    drop(srv);

    let srv = Server::start(&["--api-key", "only", "--no-warmup"]);
    assert_eq!(request(srv.port, "GET", "/metrics", &[], None).status, 401);
    assert_eq!(request(srv.port, "GET", "/metrics", &[("Authorization", "Bearer only")], None).status, 200);
    assert_eq!(request(srv.port, "GET", "/control?command=restart", &[("Authorization", "Bearer only")], None).status, 200);
}

/// Defect 6: `/ready` tells whether the server can synthesise; `/health` stays liveness. A default reference that
/// cannot be read makes the server not ready (started with --no-warmup) or stops it at start (warm-up failure).
#[test]
fn ready_and_warmup() {
    let dir = tmp_dir("ready");
    let short = dir.join("short.wav");
    write_cut_ref(&short, 1.0);
    let missing = dir.join("missing.wav");
    let srv = Server::start(&["--no-warmup", "-dr", missing.to_str().unwrap(), "-dt", REF_TEXT, "-dl", "zh"]);
    assert_eq!(srv.get("/health").status, 200, "alive");
    let r = srv.get("/ready");
    assert_eq!(r.status, 503, "{}", r.text());
    let j = r.json();
    assert_eq!(j["default_reference"], "unreadable", "{j}");
    assert!(j["reasons"].to_string().contains("default reference"), "{j}");
    assert!(!r.text().contains(dir.to_str().unwrap()), "no internal path: {}", r.text());
    // once the default is readable, the server is ready
    std::fs::copy(repo().join("onnx/demo/ref.wav"), &missing).unwrap();
    let r = srv.get("/ready");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["warmup"], "skipped");
    drop(srv);
    let srv = Server::start(&[]);
    let r = srv.get("/ready");
    assert_eq!((r.status, r.json()["warmup"].as_str()), (200, Some("passed")), "{}", r.text());
    drop(srv);

    // a warm-up that fails (the default reference is 1 s long) stops the server at start, with the reason
    let f = Server::try_start(&["-dr", short.to_str().unwrap(), "-dt", REF_TEXT, "-dl", "zh"], &[]).err().expect("must not start");
    assert_eq!(f.code, Some(2), "{}", f.stderr);
    assert!(f.stderr.contains("warm-up") && f.stderr.contains("3..10 s"), "{}", f.stderr);
    let f = Server::try_start(&["-dr", missing.with_extension("nope").to_str().unwrap(), "-dt", REF_TEXT, "-dl", "zh"], &[]).err().expect("must not start");
    assert!(f.stderr.contains("default reference") && f.stderr.contains("--no-warmup"), "{}", f.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Flips 64 bytes in the middle of a graph file (inside its weights: the file still parses).
fn corrupt_graph(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let mid = b.len() / 2;
    for x in &mut b[mid..mid + 64] {
        *x ^= 0x5a;
    }
    std::fs::write(path, b).unwrap();
}

/// Fault tests at start: a corrupt graph (integrity check against the manifest's sha256; `--skip-integrity` loads
/// it anyway), a corrupt manifest, a corrupt tokenizer: each a clear error and exit status 2, no server.
#[test]
fn corrupt_bundles_stop_the_start() {
    let dir = tmp_dir("corrupt");
    let graph = dir.join("graph");
    copy_demo_bundle(&graph);
    corrupt_graph(&graph.join("sovits_decode.onnx"));
    let f = Server::try_start(&["-s", graph.to_str().unwrap(), "--no-warmup"], &[]).err().expect("a corrupt graph must not load");
    assert_eq!(f.code, Some(2), "{}", f.stderr);
    assert!(f.stderr.contains("sovits_decode") && f.stderr.contains("sha256"), "{}", f.stderr);
    let srv = Server::start(&["-s", graph.to_str().unwrap(), "--no-warmup", "--skip-integrity"]);
    assert_eq!(srv.get("/health").status, 200, "--skip-integrity loads it");
    drop(srv);

    let manifest = dir.join("manifest");
    copy_demo_bundle(&manifest);
    std::fs::write(manifest.join("manifest.json"), "{\"format\": ").unwrap();
    let f = Server::try_start(&["-s", manifest.to_str().unwrap()], &[]).err().expect("a corrupt manifest must not load");
    assert_eq!(f.code, Some(2));
    assert!(f.stderr.contains("manifest"), "{}", f.stderr);

    let tok = dir.join("tokenizer");
    copy_demo_bundle(&tok);
    std::fs::write(tok.join("tokenizer.json"), "{\"version\": \"1.0\", \"model\": 5}").unwrap();
    let f = Server::try_start(&["-s", tok.to_str().unwrap(), "--no-warmup"], &[]).err().expect("a corrupt tokenizer must not load");
    assert_eq!(f.code, Some(2));
    assert!(f.stderr.contains("tokenizer"), "{}", f.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Fault test: `/set_model` with a corrupt bundle is refused without internal paths or ONNX Runtime text in the body,
/// and the old model keeps serving the same audio.
#[test]
fn corrupt_bundle_on_set_model_keeps_the_old_model() {
    let dir = tmp_dir("setmodel");
    let bad = dir.join("bad");
    copy_demo_bundle(&bad);
    corrupt_graph(&bad.join("gpt_step.onnx"));
    let garbage = dir.join("garbage");
    copy_demo_bundle(&garbage);
    std::fs::write(garbage.join("hubert.onnx"), b"not a protobuf at all").unwrap();
    let srv = Server::start(&["--model-root", dir.to_str().unwrap(), "--model-root", "onnx"]);
    let before = srv.post("/", &api2_json(TEXT, None, Some(3)));
    assert_eq!(before.status, 200);
    let gen = srv.get("/health").json()["generation"].clone();
    for (b, want) in [(&bad, "sha256"), (&garbage, "sha256")] {
        let r = srv.post("/set_model", &serde_json::json!({"gpt_model_path": b.to_str().unwrap()}).to_string());
        assert_eq!(r.status, 400, "{}", r.text());
        let t = r.text();
        assert!(t.contains(want), "{t}");
        assert!(!t.contains(dir.to_str().unwrap()) && !t.contains(".onnx") && !t.contains("onnxruntime"), "no internal detail: {t}");
    }
    // ONNX Runtime's own refusal (integrity not checked): still no internal text
    let r = srv.get(&format!("/set_sovits_weights?weights_path={}", enc(garbage.to_str().unwrap())));
    assert_eq!(r.status, 400);
    assert!(!r.text().contains(dir.to_str().unwrap()), "{}", r.text());
    assert_eq!(srv.get("/health").json()["generation"], gen, "the old model stays");
    let after = srv.post("/", &api2_json(TEXT, None, Some(3)));
    assert_eq!(after.status, 200);
    assert_eq!(after.body, before.body, "and serves the same audio");
    drop(srv);
    // with --skip-integrity, ONNX Runtime refuses the garbage graph: the answer is still generic
    let srv = Server::start(&["--model-root", dir.to_str().unwrap(), "--skip-integrity", "--no-warmup"]);
    let r = srv.post("/set_model", &serde_json::json!({"gpt_model_path": garbage.to_str().unwrap()}).to_string());
    assert_eq!(r.status, 400);
    let t = r.text();
    assert!(t.contains("ONNX Runtime could not load") && !t.contains(dir.to_str().unwrap()) && !t.contains("hubert.onnx"), "{t}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Defect 6: client text in log fields cannot forge log lines; `--log-format json` writes JSON lines carrying the
/// request id.
#[test]
fn logs_cannot_be_forged_and_json_logs() {
    let srv = Server::start(&["--no-warmup"]);
    let forged = "x.wav\n2099-01-01T00:00:00Z  INFO FORGED line\u{0}\u{1b}[2J";
    let r = srv.post("/", &api2_json(TEXT, Some((forged, REF_TEXT, "zh")), None));
    assert_eq!(r.status, 400);
    let log = srv.stop();
    assert!(!log.lines().any(|l| l.starts_with("2099") || l.contains("FORGED") && !l.contains("\\n")), "{log}");
    assert!(log.contains("\\n2099-01-01") && log.contains("\\0") && log.contains("\\x1b"), "escaped: {log}");
    assert!(!log.contains('\u{1b}') && !log.contains('\u{0}'));

    let srv = Server::start(&["--no-warmup", "--log-format", "json"]);
    let r = request(srv.port, "POST", "/", &[("X-Request-Id", "json-req-1")], Some(api2_json(TEXT, Some((forged, REF_TEXT, "zh")), None).as_bytes()));
    assert_eq!(r.status, 400);
    let log = srv.stop();
    let mut seen = false;
    for l in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
        if v["span"]["id"] == "json-req-1" {
            seen = true;
        }
    }
    assert!(seen, "a record with the request id: {log}");
    let bad = Server::try_start(&["--log-format", "xml"], &[]).err().expect("unknown log format");
    assert_eq!(bad.code, Some(2));
}

/// Defect 2 and 6: a worker stuck in a call past its deadline (the debug build's `GSV_TEST_STALL_TEXT` hook) is
/// abandoned and replaced: counted, `/health` and `/ready` recover, the next request is served by the replacement.
/// Every 504 is counted in `gsv_timeouts_total` when it is answered (before: the stuck job's and the queued job's 504s
/// were not counted until the worker got to them).
#[test]
fn wedged_worker_is_replaced_and_every_504_counted() {
    let srv = Server::start_env(
        &["--workers", "1", "--max-queue", "4", "--timeout-s", "2", "--wedge-margin-s", "1"],
        &[("GSV_TEST_STALL_TEXT", "STALL-HERE"), ("GSV_TEST_STALL_MS", "9000")],
    );
    let port = srv.port;
    let stuck = std::thread::spawn(move || request(port, "POST", "/", &[], Some(api2_json("你好，STALL-HERE世界。", None, Some(1)).as_bytes())).status);
    assert!(wait_until(Duration::from_secs(10), || srv.metric("gsv_in_flight") >= 1.0));
    let queued = std::thread::spawn(move || request(port, "POST", "/", &[], Some(api2_json(TEXT, None, Some(1)).as_bytes())).status);
    assert_eq!(stuck.join().unwrap(), 504);
    assert_eq!(queued.join().unwrap(), 504);
    assert_eq!(srv.metric("gsv_timeouts_total"), 2.0, "both 504s counted when answered");
    // replaced within the margin (plus the supervisor's period)
    assert!(wait_until(Duration::from_secs(6), || srv.metric("gsv_workers_wedged_total") >= 1.0), "wedged worker detected");
    assert_eq!(srv.metric("gsv_workers_abandoned"), 1.0, "the stuck thread is still in its call");
    let h = srv.get("/health");
    assert_eq!(h.status, 200, "{}", h.text());
    assert_eq!(h.json()["workers_wedged_total"], 1);
    let ok = srv.post("/", &api2_json(TEXT, None, Some(1)));
    assert_eq!(ok.status, 200, "the replacement serves: {}", ok.text());
    assert_eq!(srv.get("/ready").status, 200);
    // the abandoned thread returns eventually, drops its engine and exits
    assert!(wait_until(Duration::from_secs(15), || srv.metric("gsv_workers_abandoned") == 0.0));
    assert_eq!(srv.metric("gsv_timeouts_total"), srv.metric("gsv_requests_total{route=\"/\",status=\"504\"}"));
    let ok = srv.post("/", &api2_json(TEXT, None, Some(1)));
    assert_eq!(ok.status, 200);
}

/// Fault test: a reference cached by an earlier request and then deleted is not served from the cache: 400; a deleted
/// default reference makes `/ready` 503 while `/health` stays 200.
#[test]
fn reference_deleted_after_caching() {
    let dir = tmp_dir("deleted");
    let r1 = dir.join("r1.wav");
    write_second_ref(&r1);
    let srv = Server::start(&["--no-warmup"]);
    let body = api2_json(TEXT, Some((r1.to_str().unwrap(), REF_TEXT, "zh")), Some(5));
    assert_eq!(srv.post("/", &body).status, 200);
    let again = srv.post("/", &body);
    assert!(again.header("x-gsv-timing").unwrap_or("").contains("reference_cached=true"));
    std::fs::remove_file(&r1).unwrap();
    let r = srv.post("/", &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("file not found"));
    write_second_ref(&r1);
    let c = srv.get(&format!("/change_refer?refer_wav_path={}&prompt_text={}&prompt_language=zh", enc(r1.to_str().unwrap()), enc(REF_TEXT)));
    assert_eq!(c.status, 200);
    assert_eq!(srv.get("/ready").status, 200);
    std::fs::remove_file(&r1).unwrap();
    assert_eq!(srv.get("/ready").status, 503);
    assert_eq!(srv.get("/health").status, 200);
    assert_eq!(srv.post("/", &api2_json(TEXT, None, Some(5))).status, 400);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Fault test: SIGTERM while a response streams: the stream ends cleanly (every chunk, the terminating chunk, a WAV
/// of consistent length) and the process exits 0.
#[test]
fn sigterm_mid_stream_ends_cleanly() {
    let mut srv = Server::start(&[]);
    let body = serde_json::json!({"text": "你好，世界。今天天气很好。我们去公园散步吧。明天再见。", "text_lang": "zh", "ref_audio_path": "onnx/demo/ref.wav",
                                  "prompt_text": REF_TEXT, "prompt_lang": "zh", "seed": 3, "streaming_mode": true});
    let whole = {
        let mut b = body.clone();
        b["streaming_mode"] = false.into();
        srv.post("/tts", &b.to_string())
    };
    assert_eq!(whole.status, 200);
    let mut s = connect(srv.port);
    send_request(&mut s, "POST", "/tts", &[], Some(body.to_string().as_bytes()));
    let mut rd = std::io::BufReader::new(s);
    let (status, _) = try_read_head(&mut rd).expect("head");
    assert_eq!(status, 200);
    let mut got = read_chunk(&mut rd).expect("first chunk");
    srv.sigterm();
    while let Some(c) = read_chunk(&mut rd) {
        got.extend(c);
    }
    assert_eq!(got.len(), whole.body.len(), "the whole stream arrived");
    assert_eq!(&got[44..], &whole.body[44..]);
    let code = srv.wait_exit(Duration::from_secs(30)).expect("exits");
    assert!(code.success(), "{code:?}");
}
