//! Integration tests of the HTTP server: the real `gsv` binary on an ephemeral port (`-p 0`, the bound
//! address is read from its stdout) serving the demo bundle, driven by a small HTTP/1.1 client over
//! `TcpStream`. Every wait is bounded; every server is killed when its test ends.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::*;

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}
fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes(b[i..i + 2].try_into().unwrap())
}

/// A complete PCM16 mono 32 kHz WAV with consistent sizes; returns the sample count.
fn check_wav(b: &[u8]) -> usize {
    assert!(b.len() > 44, "body of {} bytes", b.len());
    assert_eq!(&b[0..4], b"RIFF");
    assert_eq!(&b[8..16], b"WAVEfmt ");
    assert_eq!(u16_at(b, 20), 1, "PCM");
    assert_eq!(u16_at(b, 22), 1, "mono");
    assert_eq!(u32_at(b, 24), 32000, "sample rate");
    assert_eq!(u16_at(b, 34), 16, "bits");
    assert_eq!(&b[36..40], b"data");
    let data = u32_at(b, 40) as usize;
    assert_eq!(data, b.len() - 44, "data size");
    assert_eq!(u32_at(b, 4) as usize, b.len() - 8, "RIFF size");
    data / 2
}

/// A second reference in `dir` (`support::write_second_ref`: same length, different voice features).
fn second_ref_in(dir: &Path) -> PathBuf {
    let p = dir.join("ref2.wav");
    write_second_ref(&p);
    p
}

/// The first second of the demo reference in `dir`: outside api2's 3-10 s range.
fn short_ref_in(dir: &Path) -> PathBuf {
    let p = dir.join("short.wav");
    write_cut_ref(&p, 1.0);
    p
}

#[test]
fn api2_api_v2_and_openai_routes() {
    let dir = tmp_dir("routes");
    let short = short_ref_in(&dir);
    let srv = Server::start(&[]);
    let h = srv.get("/health");
    assert_eq!(h.status, 200);
    // the demo bundle has no `quantization`: every stage runs fp32 (the precision each stage runs is reported)
    assert_eq!(h.json()["precision"], serde_json::json!({"gpt": "fp32", "bert": "fp32", "vocoder": "fp32"}));

    // GET and POST on / with the demo's default reference
    let r = srv.get(&format!("/?text={}&text_language=zh&seed=1", enc(TEXT)));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("audio/wav"));
    assert!(r.header("x-gsv-timing").is_some_and(|t| t.contains("rtf=")));
    assert!(r.header("x-request-id").is_some());
    let n = check_wav(&r.body);
    assert!(n > 32000 * 3 / 10, "at least the 0.3 s of silence");
    let p = srv.post("/", &api2_json(TEXT, None, Some(1)));
    assert_eq!(p.status, 200);
    check_wav(&p.body);
    assert_eq!(p.body, r.body, "GET and POST with the same seed give the same audio");

    // default-reference rule: all three given -> used; one missing -> all three from the defaults
    let given = srv.post("/", &api2_json(TEXT, Some(("onnx/demo/ref.wav", REF_TEXT, "zh")), Some(1)));
    assert_eq!(given.status, 200);
    assert_eq!(given.body, r.body, "the given reference is the default one: same audio");
    let partial = srv.post("/", &serde_json::json!({"text": TEXT, "text_language": "zh", "refer_wav_path": short.to_str().unwrap(), "prompt_text": "", "seed": 1}).to_string());
    assert_eq!(partial.status, 200, "an incomplete reference falls back to the default: {}", partial.text());
    assert_eq!(partial.body, r.body);

    // JSON 400s in api2's shape
    let bad = |r: Resp, what: &str| {
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
        let j = r.json();
        assert_eq!(j["code"], 400, "{what}");
        assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
        j["message"].as_str().unwrap().to_string()
    };
    bad(srv.post("/", r#"{"text": "你好，世界。", "text_language": "xx"}"#), "bad language");
    bad(srv.post("/", r#"{"text": "你好，世界。", "text_language": "ZH", "refer_wav_path": "onnx/demo/ref.wav", "prompt_text": "x", "prompt_language": "中文x"}"#), "bad prompt language");
    let m = bad(srv.post("/", r#"{"text": "好", "text_language": "zh"}"#), "short text");
    assert!(m.contains("至少输入4个字符"), "{m}");
    bad(srv.post("/", r#"{"text_language": "zh"}"#), "missing text");
    bad(srv.post("/", "{not json"), "bad JSON");
    bad(srv.post("/", "[1, 2]"), "JSON not an object");
    let m = bad(srv.post("/", &api2_json(TEXT, Some(("/no/such/file.wav", REF_TEXT, "zh")), None)), "missing reference");
    assert!(m.contains("file not found"), "{m}");
    let m = bad(srv.post("/", &api2_json(TEXT, Some((short.to_str().unwrap(), REF_TEXT, "zh")), None)), "reference too short");
    assert!(m.contains("3~10"), "{m}");
    // Korean and Cantonese (issue 13): audio, no longer a 400
    for body in [r#"{"text": "안녕하세요 세계", "text_language": "ko"}"#, r#"{"text": "我今日好開心，你呢？", "text_language": "yue"}"#] {
        let r = srv.post("/", body);
        assert_eq!(r.status, 200, "{body}: {}", r.text());
        assert_eq!(&r.body[0..4], b"RIFF", "{body}");
    }
    let long = "你好。".repeat(4000);
    bad(srv.post("/", &api2_json(&long, None, None)), "text too long");
    // a body over --max-body (1 MiB): refused from its Content-Length, before it is read
    let big = request(srv.port, "POST", "/", &[("Content-Length", "2097152")], None);
    assert_eq!(big.status, 413);
    assert_eq!(big.json()["code"], 413);
    // FastAPI-style 404 / 405
    assert_eq!(srv.get("/nope").status, 404);
    assert_eq!(request(srv.port, "DELETE", "/", &[], None).status, 405);

    // api_v2 /tts: its exact messages, then streaming
    let v2 = |body: serde_json::Value| srv.post("/tts", &body.to_string());
    let full = serde_json::json!({"text": "你好，世界。今天天气很好。我们去公园散步吧。明天再见。", "text_lang": "zh", "ref_audio_path": "onnx/demo/ref.wav", "prompt_text": REF_TEXT, "prompt_lang": "zh", "seed": 3, "text_split_method": "cut5"});
    for (remove, msg) in [("ref_audio_path", "ref_audio_path is required"), ("text", "text is required"), ("text_lang", "text_lang is required"), ("prompt_lang", "prompt_lang is required")] {
        let mut b = full.clone();
        b.as_object_mut().unwrap().remove(remove);
        let r = v2(b);
        assert_eq!(r.status, 400);
        assert_eq!(r.json(), serde_json::json!({"message": msg}));
    }
    let mut b = full.clone();
    b["text_lang"] = "fr".into();
    assert_eq!(v2(b).json(), serde_json::json!({"message": "text_lang: fr is not supported in version v2"}));
    let mut b = full.clone();
    b["media_type"] = "wma".into();
    assert_eq!(v2(b).json(), serde_json::json!({"message": "media_type: wma is not supported"}));
    let mut b = full.clone();
    b["text_split_method"] = "cut9".into();
    assert_eq!(v2(b).json(), serde_json::json!({"message": "text_split_method:cut9 is not supported"}));
    let mut b = full.clone();
    b["streaming_mode"] = 7.into();
    assert_eq!(v2(b).json(), serde_json::json!({"message": "the value of streaming_mode must be 0, 1, 2, 3(int) or true/false(bool)"}));
    let mut b = full.clone();
    b["ref_audio_path"] = short.to_str().unwrap().into();
    let j = v2(b).json();
    assert_eq!(j["message"], "tts failed", "{j}");
    assert!(j.get("code").is_none());

    let whole = v2(full.clone());
    assert_eq!(whole.status, 200);
    let n_whole = check_wav(&whole.body);

    // streaming: header for unknown length, then PCM segment by segment; the first chunk arrives before the end
    let mut b = full.clone();
    b["streaming_mode"] = true.into();
    let mut s = connect(srv.port);
    let t0 = Instant::now();
    send_request(&mut s, "POST", "/tts", &[], Some(b.to_string().as_bytes()));
    let mut rd = BufReader::new(s);
    let (status, headers) = read_head(&mut rd);
    assert_eq!(status, 200);
    assert!(headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")));
    let first = read_chunk(&mut rd).expect("first chunk");
    let t_first = t0.elapsed();
    let mut body = first.clone();
    let mut chunks = 1;
    while let Some(c) = read_chunk(&mut rd) {
        chunks += 1;
        body.extend(c);
    }
    let t_end = t0.elapsed();
    assert!(chunks >= 2, "one chunk per segment, got {chunks}");
    assert!(t_first < t_end, "first audio {t_first:?} before the end {t_end:?}");
    assert_eq!(&body[0..4], b"RIFF");
    assert_eq!(u32_at(&body, 40), 0xFFFF_FFFF, "streaming header: unknown data size");
    assert_eq!(u32_at(&body, 24), 32000);
    assert_eq!((body.len() - 44) / 2, n_whole, "streamed PCM = the non-streaming response's PCM length");
    assert_eq!(&body[44..], &whole.body[44..], "same seed: same audio streamed or not");

    // streaming_mode 2: token-chunk streaming (decode while generating): more chunks than segments, same length
    let mut b = full.clone();
    b["streaming_mode"] = 2.into();
    b["min_chunk_length"] = 8.into();
    let mut s = connect(srv.port);
    send_request(&mut s, "POST", "/tts", &[], Some(b.to_string().as_bytes()));
    let mut rd = BufReader::new(s);
    let (status, _) = read_head(&mut rd);
    assert_eq!(status, 200);
    let mut tbody = Vec::new();
    let mut tchunks = 0;
    while let Some(c) = read_chunk(&mut rd) {
        tchunks += 1;
        tbody.extend(c);
    }
    assert!(tchunks > chunks, "token streaming sends more pieces ({tchunks}) than segment streaming ({chunks})");
    assert_eq!((tbody.len() - 44) / 2, n_whole, "same PCM length as whole-segment decoding");

    // raw media type: no header
    let mut b = full.clone();
    b["media_type"] = "raw".into();
    let raw = v2(b);
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, whole.body[44..]);

    // OpenAI-style
    let o = srv.post("/v1/audio/speech", &serde_json::json!({"model": "tts-1", "input": TEXT, "voice": "default", "response_format": "wav", "seed": 5}).to_string());
    assert_eq!(o.status, 200, "{}", o.text());
    check_wav(&o.body);
    let o = srv.post("/v1/audio/speech", &serde_json::json!({"model": "default", "input": TEXT, "voice": "default", "response_format": "pcm", "speed": 1.25}).to_string());
    assert_eq!(o.status, 200);
    assert_eq!(o.header("content-type"), Some("audio/pcm"));
    assert!(o.chunks >= 1 && o.body.len().is_multiple_of(2) && !o.body.starts_with(b"RIFF"));
    let e = srv.post("/v1/audio/speech", &serde_json::json!({"model": "other", "input": TEXT}).to_string());
    assert_eq!(e.status, 404);
    assert_eq!(e.json()["error"]["code"], "model_not_found");
    let e = srv.post("/v1/audio/speech", &serde_json::json!({"input": TEXT, "response_format": "wma"}).to_string());
    assert_eq!(e.status, 400);
    assert_eq!(e.json()["error"]["param"], "response_format");

    // metrics count the requests
    assert!(srv.metric("gsv_requests_total{route=\"/\",status=\"200\"}") >= 4.0);
    assert!(srv.metric("gsv_requests_total{route=\"/\",status=\"400\"}") >= 9.0);
    assert!(srv.metric("gsv_gpt_tokens_total") > 0.0);
    let log = srv.stop_with_control();
    assert!(log.contains("request"), "structured request log lines");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_default_reference_and_model_flags() {
    // explicit -s: the bundle's demo reference is not a default -> the exact api2 400
    let srv = Server::start(&["-s", "onnx/demo"]);
    let r = srv.get(&format!("/?text={}&text_language=zh", enc(TEXT)));
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("content-length"), Some("64"));
    assert_eq!(r.body, "{\"code\":400,\"message\":\"未指定参考音频且接口无预设\"}".as_bytes());
    let r = srv.post("/", &api2_json(TEXT, Some(("onnx/demo/ref.wav", REF_TEXT, "")), None));
    assert_eq!(r.text(), "{\"code\":400,\"message\":\"未指定参考音频且接口无预设\"}");
    // complete reference in the request works
    let r = srv.post("/", &api2_json(TEXT, Some(("onnx/demo/ref.wav", REF_TEXT, "zh")), None));
    assert_eq!(r.status, 200);
    check_wav(&r.body);
    // /change_refer sets a default, after which the short form works
    let e = srv.post("/change_refer", "{}");
    assert_eq!(e.status, 400);
    assert_eq!(e.json()["message"], r#"缺少任意一项以下参数: "path", "text", "language""#);
    let c = srv.get(&format!("/change_refer?refer_wav_path=onnx/demo/ref.wav&prompt_text={}&prompt_language=zh", enc(REF_TEXT)));
    assert_eq!(c.json(), serde_json::json!({"code": 0, "message": "Success"}));
    assert_eq!(srv.post("/", &api2_json(TEXT, None, None)).status, 200);
    drop(srv);

    // start-up errors: checkpoints print the convert command; -s and -g must name the same bundle
    let out = Command::new(env!("CARGO_BIN_EXE_gsv")).args(["-s", "SoVITS_weights/voice_e8.pth", "-g", "GPT_weights/voice-e15.ckpt", "-p", "0"]).current_dir(repo()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("python -m export convert --gpt GPT_weights/voice-e15.ckpt --sovits SoVITS_weights/voice_e8.pth"), "{err}");
    let d = tmp_dir("otherbundle");
    std::fs::write(d.join("manifest.json"), "{}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gsv")).args(["-s", "onnx/demo", "-g", d.to_str().unwrap(), "-p", "0"]).current_dir(repo()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("different bundles"));
    let _ = std::fs::remove_dir_all(&d);
}

/// Runs one api2 request on its own connection; returns (status, body).
fn synth(port: u16, body: &str) -> (u16, Vec<u8>) {
    let r = request(port, "POST", "/", &[], Some(body.as_bytes()));
    (r.status, r.body)
}

#[test]
fn concurrent_requests_keep_their_voice() {
    let dir = tmp_dir("conc");
    let ref2 = second_ref_in(&dir);
    let ref2 = ref2.to_str().unwrap().to_string();
    let srv = Server::start(&["--workers", "2", "--max-queue", "32"]);
    let jobs: Vec<String> = (0..16)
        .map(|i| {
            let r = if i % 2 == 0 { "onnx/demo/ref.wav" } else { ref2.as_str() };
            api2_json("你好，世界。今天天气很好。", Some((r, REF_TEXT, "zh")), Some(100 + (i / 4) as u64))
        })
        .collect();
    // one at a time
    let sequential: Vec<Vec<u8>> = jobs.iter().map(|j| {
        let (s, b) = synth(srv.port, j);
        assert_eq!(s, 200);
        b
    }).collect();
    // all at once
    let port = srv.port;
    let handles: Vec<_> = jobs.iter().cloned().map(|j| std::thread::spawn(move || synth(port, &j))).collect();
    let concurrent: Vec<(u16, Vec<u8>)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, ((s, b), seq)) in concurrent.iter().zip(&sequential).enumerate() {
        assert_eq!(*s, 200, "job {i}");
        check_wav(b);
        assert!(b == seq, "job {i}: concurrent output differs from the same request run alone");
    }
    // the two references give different voices (same text and seed)
    assert_ne!(sequential[0], sequential[1], "reference 1 and 2 with seed 100 must differ");
    assert_eq!(sequential[0], sequential[2], "same reference, same seed: same audio");
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn overload_disconnect_and_model_swap() {
    let srv = Server::start(&["--workers", "1", "--max-queue", "1"]);
    let port = srv.port;
    let long = serde_json::json!({"text": "今天天气很好，我们去公园散步。".repeat(20), "text_language": "zh", "seed": 1}).to_string();
    // fill the worker and the one queue place, then a third request is refused with 429
    let mut a = connect(port);
    send_request(&mut a, "POST", "/", &[], Some(long.as_bytes()));
    std::thread::sleep(Duration::from_millis(300));
    let mut b = connect(port);
    send_request(&mut b, "POST", "/", &[], Some(long.as_bytes()));
    let t0 = Instant::now();
    while srv.metric("gsv_queue_size") < 1.0 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = srv.post("/", &long);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["code"], 429);
    assert_eq!(srv.metric("gsv_rejected_total"), 1.0);

    // both clients hang up: the running request stops within a step, the queued one never runs
    drop(a);
    drop(b);
    let t0 = Instant::now();
    while (srv.metric("gsv_cancelled_total") < 2.0 || srv.metric("gsv_in_flight") > 0.0) && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(srv.metric("gsv_cancelled_total"), 2.0, "both disconnected requests counted");
    assert_eq!(srv.metric("gsv_in_flight"), 0.0);
    assert!(t0.elapsed() < Duration::from_secs(10), "work stopped promptly ({:?})", t0.elapsed());

    // /set_model while requests run: they finish, the generation changes, new requests work
    let body = api2_json("你好，世界。今天天气很好。", None, Some(7));
    let before = srv.post("/", &body);
    assert_eq!(before.status, 200);
    let runners: Vec<_> = (0..2).map(|_| {
        let b = body.clone();
        std::thread::spawn(move || synth(port, &b))
    }).collect();
    std::thread::sleep(Duration::from_millis(200));
    let gen0 = srv.get("/health").json()["generation"].as_u64().unwrap();
    let s = srv.post("/set_model", r#"{"gpt_model_path": "onnx/demo", "sovits_model_path": "onnx/demo"}"#);
    assert_eq!(s.json(), serde_json::json!({"code": 0, "message": "Success"}));
    for h in runners {
        let (st, b) = h.join().unwrap();
        assert_eq!(st, 200);
        assert_eq!(b, before.body, "a request running across the swap is not disturbed");
    }
    assert!(srv.get("/health").json()["generation"].as_u64().unwrap() > gen0);
    let after = srv.post("/", &body);
    assert_eq!(after.status, 200);
    assert_eq!(after.body, before.body, "same bundle reloaded: same audio");
    let v2 = srv.get("/set_gpt_weights?weights_path=onnx/demo");
    assert_eq!(v2.json(), serde_json::json!({"message": "success"}));
    let bad = srv.get("/set_sovits_weights?weights_path=SoVITS_weights/x.pth");
    assert_eq!(bad.status, 400);
    let j = bad.json();
    assert_eq!(j["message"], "change sovits weight failed");
    assert!(j["Exception"].as_str().unwrap().contains("python -m export convert"));
    // outside the model roots (the start-up bundle's folder and onnx/): 403, existing or not (issue 14)
    let bad = srv.post("/set_model", r#"{"gpt_model_path": "/nonexistent/bundle"}"#);
    assert_eq!(bad.status, 403);
    assert_eq!(bad.json()["code"], 403);
    let bad = srv.post("/set_model", r#"{"gpt_model_path": "onnx/nonexistent"}"#);
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["code"], 400);
    assert_eq!(srv.metric("gsv_model_swaps_total"), 2.0);
}

#[test]
fn reference_roots_and_api_key() {
    let dir = tmp_dir("roots");
    let root = dir.join("refs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(repo().join("onnx/demo/ref.wav"), root.join("a.wav")).unwrap();
    std::fs::copy(repo().join("onnx/demo/ref.wav"), dir.join("outside.wav")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.join("outside.wav"), root.join("link.wav")).unwrap();
    let srv = Server::start(&["--ref-root", root.to_str().unwrap(), "--api-key", "sekrit"]);
    let auth = [("Authorization", "Bearer sekrit")];
    let post = |body: String| request(srv.port, "POST", "/", &auth, Some(body.as_bytes()));

    // the key is required everywhere but /health
    assert_eq!(srv.get("/health").status, 200);
    let r = srv.post("/", &api2_json(TEXT, None, None));
    assert_eq!(r.status, 401);
    assert_eq!(srv.get("/metrics").status, 401);
    assert_eq!(request(srv.port, "POST", "/", &[("Authorization", "Bearer wrong")], Some(api2_json(TEXT, None, None).as_bytes())).status, 401);

    let ok = post(api2_json(TEXT, Some(("a.wav", REF_TEXT, "zh")), Some(1)));
    assert_eq!(ok.status, 200, "a file inside the root, by relative name: {}", ok.text());
    let ok = post(api2_json(TEXT, Some((root.join("a.wav").to_str().unwrap(), REF_TEXT, "zh")), Some(1)));
    assert_eq!(ok.status, 200);
    let outside = dir.join("outside.wav");
    let escapes = [
        "../outside.wav".to_string(),
        format!("{}/../outside.wav", root.display()),
        outside.display().to_string(),
        "link.wav".to_string(),
        "/etc/passwd".to_string(),
    ];
    for e in &escapes {
        let r = post(api2_json(TEXT, Some((e, REF_TEXT, "zh")), None));
        assert_eq!(r.status, 403, "{e}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(!r.text().contains(&dir.display().to_string()) || r.text().contains(e.as_str()), "no internal paths beyond what was sent");
    }
    // api_v2 and change_refer are confined too
    let r = request(srv.port, "POST", "/tts", &auth, Some(serde_json::json!({"text": TEXT, "text_lang": "zh", "ref_audio_path": "../outside.wav", "prompt_text": REF_TEXT, "prompt_lang": "zh"}).to_string().as_bytes()));
    assert_eq!(r.status, 403);
    let r = request(srv.port, "GET", "/change_refer?refer_wav_path=/etc/passwd&prompt_text=x&prompt_language=zh", &auth, None);
    assert_eq!(r.status, 403);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn timeout_and_graceful_shutdown() {
    // 9,000 characters (under --max-text): far more than 2 s of work on any machine
    let srv = Server::start(&["--timeout-s", "2"]);
    let long = serde_json::json!({"text": "今天天气很好，我们去公园散步。".repeat(600), "text_language": "zh"}).to_string();
    let t0 = Instant::now();
    let r = srv.post("/", &long);
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["code"], 504);
    assert!(t0.elapsed() < Duration::from_secs(10));
    let t0 = Instant::now();
    while srv.metric("gsv_in_flight") > 0.0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(srv.metric("gsv_timeouts_total") >= 1.0);

    // SIGTERM while a request runs: it still gets its whole answer, then the process exits 0
    let port = srv.port;
    let body = api2_json("你好，世界。今天天气很好。我们去公园散步吧。", None, Some(1));
    let h = std::thread::spawn(move || synth(port, &body));
    let t0 = Instant::now();
    while srv.metric("gsv_in_flight") < 1.0 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let (status, wav) = h.join().unwrap();
    assert_eq!(status, 200);
    check_wav(&wav);
    let mut srv = srv;
    let t0 = Instant::now();
    let code = loop {
        if let Some(c) = srv.child.try_wait().unwrap() {
            break c;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "{code:?}");
}

/// Polls `/health` until `done` holds for its answer (at most 30 s); returns the last answer.
fn health_until(srv: &Server, done: impl Fn(&Resp) -> bool) -> Resp {
    let t0 = Instant::now();
    loop {
        let r = srv.get("/health");
        if done(&r) || t0.elapsed() > Duration::from_secs(30) {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A job that panics inside its worker (the debug build's `GSV_TEST_PANIC_TEXT` hook) is answered with a 500 that
/// carries its request id; the worker's engine is rebuilt, the restart counted, and the server keeps serving.
/// When the rebuild fails too (`GSV_TEST_FAIL_REBUILD`) and no other worker exists, `/health` is 503.
#[test]
fn panicking_job_is_answered_and_the_worker_rebuilt() {
    let mark = "PANIC-NOW";
    let srv = Server::start_env(&["--workers", "1"], &[("GSV_TEST_PANIC_TEXT", mark)]);
    assert_eq!(srv.get("/health").status, 200);
    let bad = api2_json(&format!("你好，{mark}世界。"), None, Some(1));
    let r = request(srv.port, "POST", "/", &[("X-Request-Id", "boom-1")], Some(bad.as_bytes()));
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("boom-1"));
    let j = r.json();
    assert_eq!(j["code"], 500);
    assert!(j["message"].as_str().unwrap().contains("boom-1"), "the 500 names the request id: {j}");
    // the next request on the same server succeeds, on the rebuilt engine
    let ok = srv.post("/", &api2_json(TEXT, None, Some(1)));
    assert_eq!(ok.status, 200, "{}", ok.text());
    check_wav(&ok.body);
    assert_eq!(srv.metric("gsv_worker_restarts_total"), 1.0);
    let h = health_until(&srv, |r| r.status == 200);
    assert_eq!(h.status, 200, "{}", h.text());
    assert_eq!(h.json()["workers_serving"], 1);
    // api_v2's shape: a 500 too, without the panic's text
    let v2 = srv.post("/tts", &serde_json::json!({"text": format!("你好，{mark}世界。"), "text_lang": "zh", "ref_audio_path": "onnx/demo/ref.wav", "prompt_text": REF_TEXT, "prompt_lang": "zh"}).to_string());
    assert_eq!(v2.status, 500);
    assert!(!v2.text().contains("test fault"), "no panic message in the body: {}", v2.text());
    assert_eq!(srv.metric("gsv_worker_restarts_total"), 2.0);
    assert_eq!(srv.post("/", &api2_json(TEXT, None, Some(1))).body, ok.body, "the rebuilt engine gives the same audio");
    let log = srv.stop_with_control();
    assert!(log.contains("job panicked") && log.contains("engine rebuilt"), "{log}");

    // every worker broken: the panic's rebuild fails, and so does every later load
    let srv = Server::start_env(&["--workers", "1"], &[("GSV_TEST_PANIC_TEXT", mark), ("GSV_TEST_FAIL_REBUILD", "1")]);
    assert_eq!(srv.get("/health").status, 200);
    let r = srv.post("/", &bad);
    assert_eq!(r.status, 500);
    assert_eq!(srv.metric("gsv_worker_restarts_total"), 1.0);
    // the worker publishes `rebuilding` before the 500 goes out, then `broken` once the reload has failed
    let h = health_until(&srv, |r| r.json()["worker_states"] == serde_json::json!(["broken"]));
    assert_eq!(h.json()["worker_states"], serde_json::json!(["broken"]), "{}", h.text());
    assert_eq!(h.status, 503, "{}", h.text());
    assert_eq!(h.json()["status"], "unavailable");
    // a request now gets a clean 500 (the worker tries to load its engine again and cannot), not a hang
    let r = srv.post("/", &api2_json(TEXT, None, Some(1)));
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(srv.get("/health").status, 503);
}

/// One voice is encoded once per server: with two workers, the voice computed for the first request is a cache hit
/// for requests running on the other worker (`X-GSV-Timing: reference_cached`, the cache counters in /metrics).
#[test]
fn voice_encoded_once_across_workers() {
    let dir = tmp_dir("shared-cache");
    let ref2 = second_ref_in(&dir);
    let ref2 = ref2.to_str().unwrap().to_string();
    let srv = Server::start(&["--workers", "2", "--no-warmup"]);
    let body = api2_json("你好，世界。今天天气很好。", Some((&ref2, REF_TEXT, "zh")), Some(4));
    let timing = |r: &Resp| r.header("x-gsv-timing").unwrap_or("").to_string();
    let first = srv.post("/", &body);
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(timing(&first).contains("reference_cached=false"), "{}", timing(&first));
    assert_eq!(srv.metric("gsv_reference_cache_misses_total"), 1.0);
    // two at once: both workers are busy at the same time, so one of them is not the worker that encoded the voice
    let port = srv.port;
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let b = body.clone();
            std::thread::spawn(move || request(port, "POST", "/", &[], Some(b.as_bytes())))
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200);
        assert!(timing(&r).contains("reference_cached=true"), "{}", timing(&r));
        assert_eq!(r.body, first.body, "same seed, same voice: same audio");
    }
    assert_eq!(srv.metric("gsv_reference_cache_misses_total"), 1.0, "the voice was encoded once");
    assert_eq!(srv.metric("gsv_reference_cache_hits_total"), 2.0);
    let log = srv.stop_with_control();
    let workers: std::collections::BTreeSet<&str> = log.lines().filter(|l| l.contains("synthesis done")).filter_map(|l| l.split("worker=").nth(1)).map(|w| w.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("")).collect();
    assert_eq!(workers.len(), 2, "both workers ran requests: {workers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A v2ProPlus bundle (issue 12; `onnx/golden-v2proplus`, exported by the Python tests from `../shared/golden-v2pro`)
/// serves on every route: api2 `/` (GET and POST, api.py's `inp_refs`), api_v2 `/tts` (whole, streamed by segment
/// and by token chunks) and the OpenAI route. The default voice, speaker-verification embedding included, is
/// encoded once for all of them (the reference cache counters: one miss, every other request a hit).
#[test]
fn v2proplus_bundle_on_every_route() {
    let golden = std::env::var_os("GSV_GOLDEN_V2PRO_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/golden-v2pro"));
    let reference = golden.join("ref_audio/ref_native.wav");
    assert!(reference.is_file(), "golden-v2pro data missing: {} (set GSV_GOLDEN_V2PRO_DIR)", reference.display());
    let bundle = std::env::var_os("GSV_TEST_BUNDLE_V2PROPLUS").map(PathBuf::from).unwrap_or_else(|| repo().join("onnx/golden-v2proplus"));
    assert!(bundle.join("manifest.json").is_file(), "golden bundle missing: {} (scripts/test exports it first)", bundle.display());
    let dir = tmp_dir("v2proplus");
    // a second voice for inp_refs: the reference reversed and negated
    let aux = {
        let mut r = hound::WavReader::open(&reference).unwrap();
        let spec = r.spec();
        let mut s: Vec<i16> = r.samples::<i16>().map(|x| x.unwrap()).collect();
        s.reverse();
        let out = dir.join("aux.wav");
        let mut w = hound::WavWriter::create(&out, spec).unwrap();
        for x in s {
            w.write_sample(x.saturating_neg()).unwrap();
        }
        w.finalize().unwrap();
        out
    };
    let (b, r) = (bundle.to_str().unwrap(), reference.to_str().unwrap());
    let srv = Server::start(&["-s", b, "-dr", r, "-dt", REF_TEXT, "-dl", "zh", "--no-warmup"]);
    let text = "春天来了，河边的柳树发芽了。";
    let timing = |r: &Resp| r.header("x-gsv-timing").unwrap_or("").to_string();

    // api2 `/`
    let g = srv.get(&format!("/?text={}&text_language=zh&seed=3", enc(text)));
    assert_eq!(g.status, 200, "{}", g.text());
    assert!(timing(&g).contains("reference_cached=false"), "{}", timing(&g));
    let n = check_wav(&g.body);
    assert!(n > 9600, "speech before the 0.3 s of silence ({n} samples)");
    let p = srv.post("/", &api2_json(text, Some((r, REF_TEXT, "zh")), Some(3)));
    assert_eq!(p.status, 200, "{}", p.text());
    assert!(timing(&p).contains("reference_cached=true"), "{}", timing(&p));
    assert_eq!(p.body, g.body, "the default voice given explicitly: same audio");
    let mut j = serde_json::json!({"text": text, "text_language": "zh", "seed": 3});
    j["inp_refs"] = serde_json::json!([aux.to_str().unwrap()]);
    let i = srv.post("/", &j.to_string());
    assert_eq!(i.status, 200, "{}", i.text());
    check_wav(&i.body);
    assert_ne!(i.body, g.body, "inp_refs average the speaker vectors");

    // api_v2 /tts: whole, then streamed by segments and by token chunks (same PCM length)
    let full = serde_json::json!({"text": "春天来了。河边的柳树发芽了。", "text_lang": "zh", "ref_audio_path": r, "prompt_text": REF_TEXT, "prompt_lang": "zh", "seed": 4, "text_split_method": "cut5"});
    let whole = srv.post("/tts", &full.to_string());
    assert_eq!(whole.status, 200, "{}", whole.text());
    let n_whole = check_wav(&whole.body);
    for mode in [1, 2] {
        let mut b = full.clone();
        b["streaming_mode"] = mode.into();
        b["min_chunk_length"] = 8.into();
        let s = srv.post("/tts", &b.to_string());
        assert_eq!(s.status, 200, "mode {mode}: {}", s.text());
        assert!(s.chunks >= 2, "mode {mode}: streamed ({} chunks)", s.chunks);
        assert_eq!(u32_at(&s.body, 40), 0xFFFF_FFFF, "mode {mode}: streaming header");
        assert_eq!((s.body.len() - 44) / 2, n_whole, "mode {mode}: same PCM length as the whole response");
        if mode == 1 {
            assert_eq!(&s.body[44..], &whole.body[44..], "segment streaming: the same audio");
        }
    }

    // OpenAI
    let o = srv.post("/v1/audio/speech", &serde_json::json!({"model": "tts-1", "input": text, "voice": "default", "response_format": "wav", "seed": 5}).to_string());
    assert_eq!(o.status, 200, "{}", o.text());
    check_wav(&o.body);
    let o = srv.post("/v1/audio/speech", &serde_json::json!({"input": text, "voice": "default", "response_format": "pcm"}).to_string());
    assert_eq!(o.status, 200, "{}", o.text());
    assert!(!o.body.is_empty() && !o.body.starts_with(b"RIFF"));

    // eight requests on one voice: encoded once
    assert_eq!(srv.metric("gsv_reference_cache_misses_total"), 1.0, "the default voice was encoded once");
    assert_eq!(srv.metric("gsv_reference_cache_hits_total"), 7.0);
    srv.stop_with_control();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Korean and Cantonese (issue 13) on every route: api2 `/` (target and prompt language), api_v2 `/tts` (every ko/yue
/// code it lists), the OpenAI route's `language`; malformed Korean/Cantonese text is a 200 or a 400, never a 500,
/// and the server stays up.
#[test]
fn korean_and_cantonese_on_every_route() {
    let srv = Server::start(&[]);
    let wav_ok = |r: Resp, what: &str| {
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("audio/wav"), "{what}");
        let n = check_wav(&r.body);
        assert!(n > 32000 * 3 / 10, "{what}: speech before api2's 0.3 s of silence ({n} samples)");
    };
    const KO: &str = "안녕하세요, 저는 학생입니다. 3개를 샀어요.";
    const YUE: &str = "我今日好開心，你呢？佢哋去咗邊度？";
    for (text, lang) in [(KO, "ko"), (YUE, "yue")] {
        wav_ok(srv.get(&format!("/?text={}&text_language={lang}&seed=2", enc(text))), &format!("GET / {lang}"));
        // the reference transcript in the language too
        let body = serde_json::json!({"text": text, "text_language": lang, "refer_wav_path": "onnx/demo/ref.wav",
                                      "prompt_text": text, "prompt_language": lang, "seed": 2});
        wav_ok(srv.post("/", &body.to_string()), &format!("POST / {lang} prompt"));
        let o = srv.post("/v1/audio/speech", &serde_json::json!({"input": text, "voice": "default", "language": lang, "response_format": "wav", "seed": 2}).to_string());
        wav_ok(o, &format!("/v1/audio/speech {lang}"));
    }
    for (text, lang) in [(KO, "ko"), (KO, "all_ko"), (YUE, "yue"), (YUE, "all_yue"), (YUE, "auto_yue"), ("我用iPhone拍照，很好看。", "all_zh")] {
        let b = serde_json::json!({"text": text, "text_lang": lang, "ref_audio_path": "onnx/demo/ref.wav", "prompt_text": REF_TEXT,
                                   "prompt_lang": "zh", "seed": 2});
        wav_ok(srv.post("/tts", &b.to_string()), &format!("/tts {lang}"));
    }
    let b = serde_json::json!({"text": YUE, "text_lang": "yue", "ref_audio_path": "onnx/demo/ref.wav", "prompt_text": YUE, "prompt_lang": "yue"});
    wav_ok(srv.post("/tts", &b.to_string()), "/tts yue prompt");
    // malformed input: lone jamo, unassigned and private-use code points, emoji, stray marks
    for text in ["ㅋㅋㅋㅋㅋ", "ᄀᄀᄀ ᅡᅡ ᆨᆨ", "한\u{0378}국\u{E000}어 😀😀", "粵語😀😀😀！！", "咗咗咗咗 ~~~~", "\u{AC00}\u{0301}\u{0301} 가나다"] {
        for lang in ["ko", "yue"] {
            let r = srv.post("/", &serde_json::json!({"text": text, "text_language": lang}).to_string());
            assert!(r.status == 200 || r.status == 400, "{lang} {text:?}: {} {}", r.status, r.text());
            let r = srv.post("/tts", &serde_json::json!({"text": text, "text_lang": lang, "ref_audio_path": "onnx/demo/ref.wav", "prompt_text": REF_TEXT, "prompt_lang": "zh"}).to_string());
            assert!(r.status == 200 || r.status == 400, "/tts {lang} {text:?}: {} {}", r.status, r.text());
        }
    }
    assert_eq!(srv.get("/health").status, 200);
    let log = srv.stop_with_control();
    assert!(!log.contains("panicked"), "{log}");
}

// ---------------------------------------------------------------- audio formats (issue 10)

/// What Debian's ffprobe and ffmpeg (the independent decoder; scripts/setup installs it) make of a body.
#[derive(Debug)]
struct Decoded {
    codec: String,
    rate: u32,
    channels: u32,
    pcm: Vec<i16>,
}

/// Decodes `body` (`raw_rate`: headerless PCM16 mono at that rate). `strict`: any decoder complaint fails.
fn ffdecode(label: &str, body: &[u8], raw_rate: Option<u32>, strict: bool) -> Decoded {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("gsv-http-decode-{}-{k}.bin", std::process::id()));
    std::fs::write(&path, body).unwrap();
    let raw: Vec<String> = match raw_rate {
        Some(r) => vec!["-f".into(), "s16le".into(), "-ar".into(), r.to_string(), "-ac".into(), "1".into()],
        None => vec![],
    };
    let probe = Command::new("ffprobe").args(["-v", "error"]).args(&raw).args(["-show_streams", "-of", "json"]).arg(&path).output();
    let probe = probe.unwrap_or_else(|e| panic!("ffprobe is missing ({e}): scripts/setup installs Debian's ffmpeg"));
    assert!(probe.status.success(), "{label}: ffprobe failed: {}", String::from_utf8_lossy(&probe.stderr));
    let v: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let streams = v["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{label}: one audio stream expected: {v}");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-v", "error"]);
    if strict {
        cmd.args(["-xerror", "-err_detect", "crccheck+bitstream+buffer"]);
    }
    let out = cmd.args(&raw).arg("-i").arg(&path).args(["-f", "s16le", "-acodec", "pcm_s16le", "-"]).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "{label}: ffmpeg could not decode: {}", String::from_utf8_lossy(&out.stderr));
    if strict {
        assert!(out.stderr.is_empty(), "{label}: decoder reported: {}", String::from_utf8_lossy(&out.stderr));
    }
    Decoded {
        codec: streams[0]["codec_name"].as_str().unwrap_or("").to_string(),
        rate: streams[0]["sample_rate"].as_str().and_then(|r| r.parse().ok()).unwrap_or(0),
        channels: streams[0]["channels"].as_u64().unwrap_or(0) as u32,
        pcm: out.stdout.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect(),
    }
}

/// Checks an encoded response against the WAV of the same seeded request (`wav`: its PCM at `model_rate`):
/// codec, rate (= `X-GSV-Sample-Rate`), one channel, and the decoded length within one codec frame after the delays
/// the container cannot carry (a streamed MP3 has no LAME tag: LAME's 1105 samples; ADTS: FFmpeg's 1024 priming).
/// `same_pcm`: the response was decoded from the same PCM (not token chunks), so lossless formats are bit-exact.
fn check_format(label: &str, fmt: &str, body: &[u8], rate_header: u32, streamed: bool, wav: &[i16], model_rate: u32, same_pcm: bool) {
    let (codec, raw) = match fmt {
        "wav" => ("pcm_s16le", false),
        "raw" | "pcm" => ("pcm_s16le", true),
        "ogg" => ("vorbis", false),
        "opus" => ("opus", false),
        "mp3" => ("mp3", false),
        "aac" => ("aac", false),
        "flac" => ("flac", false),
        other => panic!("unknown format {other}"),
    };
    // a streamed WAV says 0xFFFFFFFF bytes: ffmpeg flags its short last read, so it is decoded leniently
    let strict = !(fmt == "wav" && streamed);
    let d = ffdecode(label, body, raw.then_some(rate_header), strict);
    assert_eq!(d.codec, codec, "{label}: codec");
    assert_eq!(d.rate, rate_header, "{label}: X-GSV-Sample-Rate is the encoded stream's rate");
    assert_eq!(d.channels, 1, "{label}: mono");
    let n = (wav.len() as u64 * d.rate as u64 + model_rate as u64 / 2) / model_rate as u64;
    let resampled = d.rate != model_rate;
    let (extra, frame) = match fmt {
        "wav" | "raw" | "pcm" | "flac" => (0, usize::from(resampled)),
        "ogg" | "opus" => (0, 1),
        "mp3" if streamed => (1105, if d.rate >= 32_000 { 1152 } else { 576 }),
        "mp3" => (0, 1),
        "aac" => (1024, 1024),
        _ => unreachable!(),
    };
    let want = n as i64 + extra;
    let got = d.pcm.len() as i64;
    eprintln!("{label}: {} bytes, {codec} {} Hz, {got} samples decoded for {n} (+{extra})", body.len(), d.rate);
    assert!((got - want).unsigned_abs() as usize <= frame, "{label}: decoded {got} samples, expected {n} + {extra} within {frame}");
    if same_pcm && !resampled && matches!(fmt, "wav" | "raw" | "flac") {
        assert!(d.pcm == wav, "{label}: a lossless format must give back the WAV's samples");
    }
    if !matches!(fmt, "wav" | "raw" | "pcm" | "flac") {
        assert!(d.pcm.iter().any(|&s| s.unsigned_abs() > 64), "{label}: audio, not silence");
    }
}

/// A streamed response: status, headers, and each chunk with the time it arrived (from sending the request).
fn stream_request(port: u16, path: &str, body: &str) -> (u16, Vec<(String, String)>, Vec<(Duration, Vec<u8>)>) {
    let mut s = connect(port);
    let t0 = Instant::now();
    send_request(&mut s, "POST", path, &[], Some(body.as_bytes()));
    let mut rd = BufReader::new(s);
    let (status, headers) = read_head(&mut rd);
    let mut chunks = Vec::new();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        while let Some(c) = read_chunk(&mut rd) {
            chunks.push((t0.elapsed(), c));
        }
    } else {
        let mut b = Vec::new();
        rd.read_to_end(&mut b).unwrap();
        chunks.push((t0.elapsed(), b));
    }
    (status, headers, chunks)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// PCM of a complete WAV body (44-byte header).
fn wav_pcm(b: &[u8]) -> Vec<i16> {
    check_wav(b);
    b[44..].chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect()
}

/// A value of `X-GSV-Timing` (`key=value` or `key;dur=value`).
fn timing(r: &Resp, key: &str) -> f64 {
    let t = r.header("x-gsv-timing").unwrap_or_else(|| panic!("no X-GSV-Timing: {:?}", r.headers));
    t.split(", ")
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=').or_else(|| v.strip_prefix(";dur="))))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} not in {t}"))
}

const LONG_TEXT: &str = "你好，世界。今天天气很好。我们去公园散步吧。";

/// Streamed encoded responses: several chunks, the first one before the last (synthesis still running), and the
/// first chunk alone already decodes to audio. Returns the whole body.
fn check_streamed(label: &str, fmt: &str, chunks: &[(Duration, Vec<u8>)], rate: u32) -> Vec<u8> {
    assert!(chunks.len() >= 2, "{label}: streamed in {} chunk(s)", chunks.len());
    let (t_first, first) = &chunks[0];
    let t_end = chunks.last().unwrap().0;
    assert!(*t_first < t_end, "{label}: first bytes at {t_first:?}, the end at {t_end:?}");
    let raw = matches!(fmt, "raw" | "pcm");
    let early = ffdecode(&format!("{label} (first chunk)"), first, raw.then_some(rate), false);
    assert!(early.pcm.len() >= 1_000, "{label}: the first chunk decodes to only {} samples", early.pcm.len());
    chunks.iter().flat_map(|(_, c)| c.iter().copied()).collect()
}

#[test]
fn every_format_of_every_route() {
    let srv = Server::start(&[]);
    let sr = 32_000u32;
    let v2_body = |media: &str, mode: u8| {
        serde_json::json!({"text": LONG_TEXT, "text_lang": "zh", "ref_audio_path": "onnx/demo/ref.wav", "prompt_text": REF_TEXT,
            "prompt_lang": "zh", "seed": 11, "media_type": media, "streaming_mode": mode, "min_chunk_length": 8})
        .to_string()
    };

    // api_v2 /tts: the reference WAV, then every media_type whole and streamed (segments, token chunks)
    let wav = srv.post("/tts", &v2_body("wav", 0));
    assert_eq!(wav.status, 200, "{}", wav.text());
    let ref_pcm = wav_pcm(&wav.body);
    for media in ["wav", "raw", "ogg", "aac", "mp3", "flac", "opus"] {
        let r = srv.post("/tts", &v2_body(media, 0));
        let label = format!("/tts {media} whole");
        assert_eq!(r.status, 200, "{label}: {}", r.text());
        assert_eq!(r.chunks, 0, "{label}: one complete file with Content-Length");
        assert_eq!(r.header("x-gsv-format"), Some(if media == "raw" { "raw" } else { media }));
        let ct = r.header("content-type").unwrap().to_string();
        let want_ct = match media {
            "mp3" => "audio/mpeg".to_string(),
            "opus" => "audio/ogg; codecs=opus".to_string(),
            m => format!("audio/{m}"),
        };
        assert_eq!(ct, want_ct, "{label}");
        let rate: u32 = r.header("x-gsv-sample-rate").unwrap().parse().unwrap();
        check_format(&label, media, &r.body, rate, false, &ref_pcm, sr, true);
        for mode in [1u8, 2, 3] {
            let label = format!("/tts {media} streaming_mode {mode}");
            let (status, headers, chunks) = stream_request(srv.port, "/tts", &v2_body(media, mode));
            assert_eq!(status, 200, "{label}");
            assert_eq!(header(&headers, "x-gsv-streaming"), Some(if mode == 1 { "segments" } else { "tokens" }), "{label}");
            let rate: u32 = header(&headers, "x-gsv-sample-rate").unwrap().parse().unwrap();
            let body = check_streamed(&label, media, &chunks, rate);
            check_format(&label, media, &body, rate, true, &ref_pcm, sr, mode == 1);
        }
    }

    // api.py / (the demo's default reference): its -mt formats (here per request, gsv's `media_type` extension)
    let api_body = |media: &str, stream: bool| serde_json::json!({"text": LONG_TEXT, "text_language": "zh", "seed": 11, "media_type": media, "streaming_mode": stream}).to_string();
    let wav = srv.post("/", &api_body("wav", false));
    assert_eq!(wav.status, 200);
    let api_pcm = wav_pcm(&wav.body);
    assert_eq!(srv.post("/", &serde_json::json!({"text": LONG_TEXT, "text_language": "zh", "seed": 11}).to_string()).body, wav.body, "-mt wav is the default");
    for media in ["wav", "raw", "ogg", "aac", "mp3", "flac", "opus"] {
        let r = srv.post("/", &api_body(media, false));
        let label = format!("/ {media} whole");
        assert_eq!(r.status, 200, "{label}: {}", r.text());
        let rate: u32 = r.header("x-gsv-sample-rate").unwrap().parse().unwrap();
        check_format(&label, media, &r.body, rate, false, &api_pcm, sr, true);
        let label = format!("/ {media} streamed");
        let (status, headers, chunks) = stream_request(srv.port, "/", &api_body(media, true));
        assert_eq!(status, 200, "{label}");
        let rate: u32 = header(&headers, "x-gsv-sample-rate").unwrap().parse().unwrap();
        let body = check_streamed(&label, media, &chunks, rate);
        check_format(&label, media, &body, rate, true, &api_pcm, sr, true);
    }
    let e = srv.post("/", &api_body("wma", false));
    assert_eq!((e.status, e.json()["code"].as_i64()), (400, Some(400)), "{}", e.text());

    // OpenAI: every response_format; mp3 when absent; streamed by default (WAV complete), `stream: false` complete
    let oa = |fmt: Option<&str>, extra: serde_json::Value| {
        let mut v = serde_json::json!({"model": "tts-1", "input": LONG_TEXT, "voice": "alloy", "seed": 11, "language": "zh"});
        if let Some(f) = fmt {
            v["response_format"] = f.into();
        }
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v.to_string()
    };
    let wav = srv.post("/v1/audio/speech", &oa(Some("wav"), serde_json::json!({})));
    assert_eq!(wav.status, 200, "{}", wav.text());
    assert_eq!(wav.chunks, 0, "OpenAI wav: a complete file");
    let oa_pcm = wav_pcm(&wav.body);
    for fmt in [None, Some("mp3"), Some("opus"), Some("aac"), Some("flac"), Some("wav"), Some("pcm")] {
        let name = fmt.unwrap_or("mp3");
        let label = format!("OpenAI {}", fmt.unwrap_or("(default)"));
        let (status, headers, chunks) = stream_request(srv.port, "/v1/audio/speech", &oa(fmt, serde_json::json!({"stream": name != "wav"})));
        assert_eq!(status, 200, "{label}");
        let rate: u32 = header(&headers, "x-gsv-sample-rate").unwrap().parse().unwrap();
        if name == "pcm" {
            assert_eq!(rate, 24_000, "OpenAI pcm is 24 kHz");
            assert_eq!(header(&headers, "content-type"), Some("audio/pcm"));
        }
        if name == "mp3" {
            assert_eq!(header(&headers, "content-type"), Some("audio/mpeg"));
        }
        let streamed = name != "wav";
        let body = if streamed { check_streamed(&label, name, &chunks, rate) } else { chunks.concat_bytes() };
        check_format(&label, name, &body, rate, streamed, &oa_pcm, sr, true);
        // the same without streaming: one complete file (an MP3 with its LAME tag: exact length)
        let r = srv.post("/v1/audio/speech", &oa(fmt, serde_json::json!({"stream": false})));
        assert_eq!((r.status, r.chunks), (200, 0), "{label} stream:false");
        check_format(&format!("{label} complete"), name, &r.body, rate, false, &oa_pcm, sr, true);
    }
    // the default request (no stream field) streams mp3 as OpenAI does
    let (status, headers, chunks) = stream_request(srv.port, "/v1/audio/speech", &oa(None, serde_json::json!({})));
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-gsv-format"), Some("mp3"));
    assert!(chunks.len() >= 2, "mp3 is streamed by default");

    // SSE: speech.audio.delta events with base64 audio, then speech.audio.done with usage
    for fmt in ["mp3", "pcm", "opus"] {
        let label = format!("OpenAI sse {fmt}");
        let (status, headers, chunks) = stream_request(srv.port, "/v1/audio/speech", &oa(Some(fmt), serde_json::json!({"stream_format": "sse"})));
        assert_eq!(status, 200, "{label}");
        assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
        let rate: u32 = header(&headers, "x-gsv-sample-rate").unwrap().parse().unwrap();
        assert!(chunks.len() >= 2 && chunks[0].0 < chunks.last().unwrap().0, "{label}: events as the audio is produced");
        let text = String::from_utf8(chunks.concat_bytes()).unwrap();
        let events: Vec<serde_json::Value> = text
            .split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap_or_else(|| panic!("{label}: not a data line: {e:?}"))).unwrap())
            .collect();
        let (done, deltas) = events.split_last().unwrap();
        assert_eq!(done["type"], "speech.audio.done", "{label}");
        let u = &done["usage"];
        assert_eq!(u["input_tokens"].as_u64().unwrap(), LONG_TEXT.chars().count() as u64);
        assert!(u["output_tokens"].as_u64().unwrap() > 0);
        assert_eq!(u["total_tokens"].as_u64().unwrap(), u["input_tokens"].as_u64().unwrap() + u["output_tokens"].as_u64().unwrap());
        assert!(deltas.len() >= 2, "{label}: {} deltas", deltas.len());
        let mut audio = Vec::new();
        for d in deltas {
            assert_eq!(d["type"], "speech.audio.delta", "{label}");
            audio.extend(b64decode(d["audio"].as_str().unwrap()));
        }
        check_format(&label, fmt, &audio, rate, true, &oa_pcm, sr, true);
    }
    srv.stop_with_control();
}

trait ConcatBytes {
    fn concat_bytes(&self) -> Vec<u8>;
}

impl ConcatBytes for Vec<(Duration, Vec<u8>)> {
    fn concat_bytes(&self) -> Vec<u8> {
        self.iter().flat_map(|(_, c)| c.iter().copied()).collect()
    }
}

/// Standard base64 with padding (RFC 4648), for the SSE events.
fn b64decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let b = s.as_bytes();
    assert_eq!(b.len() % 4, 0, "base64 length");
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for q in b.chunks(4) {
        let pad = q.iter().filter(|&&c| c == b'=').count();
        let n = q.iter().take(4 - pad).enumerate().fold(0u32, |acc, (i, &c)| acc | (val(c) << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

#[test]
fn speed_reference_free_voices_and_openai_errors() {
    let srv = Server::start(&["--voice", "rf=onnx/demo/ref.wav||zh", "--voice", "named=onnx/demo/ref.wav|今天天气很好，我们去公园散步。|zh"]);

    // `/`: api2.py ignores `speed` (pyvideotrans sends 2.0): same seed with and without it = the same audio
    let api = |extra: serde_json::Value| {
        let mut v = serde_json::json!({"text": LONG_TEXT, "text_language": "zh", "seed": 21});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        srv.post("/", &v.to_string())
    };
    let plain = api(serde_json::json!({}));
    let fast = api(serde_json::json!({"speed": 2.0}));
    assert_eq!((plain.status, fast.status), (200, 200));
    assert_eq!(timing(&fast, "tokens"), timing(&plain, "tokens"), "same tokens");
    assert_eq!(check_wav(&fast.body), check_wav(&plain.body), "same duration");
    assert_eq!(fast.body, plain.body, "speed on / does not change the audio");
    // the other api.py fields stay honoured
    let k = api(serde_json::json!({"top_k": 3, "temperature": 0.7}));
    assert_eq!(k.status, 200);
    assert_ne!(k.body, plain.body, "top_k/temperature on / change the generation");

    // /tts speed_factor 2.0: the same tokens, the speech about twice as fast (0.3 s of silence per segment stays)
    let v2 = |speed: f64| {
        let b = serde_json::json!({"text": LONG_TEXT, "text_lang": "zh", "ref_audio_path": "onnx/demo/ref.wav", "prompt_text": REF_TEXT,
            "prompt_lang": "zh", "seed": 21, "speed_factor": speed});
        srv.post("/tts", &b.to_string())
    };
    let (one, two) = (v2(1.0), v2(2.0));
    assert_eq!((one.status, two.status), (200, 200), "{}", two.text());
    assert_eq!(timing(&one, "tokens"), timing(&two, "tokens"), "speed does not change the GPT's tokens");
    let segs = timing(&one, "segments");
    let speech = |r: &Resp| check_wav(&r.body) as f64 - segs * 9_600.0;
    let ratio = speech(&one) / speech(&two);
    eprintln!("/tts speed_factor 2.0: speech {:.0} -> {:.0} samples, ratio {ratio:.3}", speech(&one), speech(&two));
    assert!((1.85..=2.05).contains(&ratio), "speed_factor 2.0 should halve the speech, ratio {ratio}");
    // OpenAI speed: honoured too, and only within 0.25-4.0
    let oa = |extra: serde_json::Value| {
        let mut v = serde_json::json!({"model": "tts-1", "input": LONG_TEXT, "voice": "default", "seed": 21, "language": "zh", "response_format": "wav"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        srv.post("/v1/audio/speech", &v.to_string())
    };
    let o1 = oa(serde_json::json!({}));
    let o2 = oa(serde_json::json!({"speed": 2.0}));
    assert_eq!((o1.status, o2.status), (200, 200));
    assert!(check_wav(&o2.body) < check_wav(&o1.body) * 7 / 10, "OpenAI speed 2.0 shortens the audio");
    for bad in [0.2, 4.5] {
        let e = oa(serde_json::json!({"speed": bad}));
        assert_eq!(e.status, 400);
        assert_eq!(e.json()["error"]["param"], "speed", "{}", e.text());
        assert_eq!(e.json()["error"]["type"], "invalid_request_error");
    }
    assert_eq!(oa(serde_json::json!({"speed": 4.0})).status, 200);

    // OpenAI voices: spec names and any other name are the default voice; `{"id": ...}` objects too;
    // `instructions` is accepted and changes nothing
    for voice in [serde_json::json!("alloy"), serde_json::json!("verse"), serde_json::json!("somebody"), serde_json::json!({"id": "voice_1234"})] {
        let r = oa(serde_json::json!({"voice": voice}));
        assert_eq!(r.status, 200, "{voice}: {}", r.text());
        assert_eq!(r.body, o1.body, "{voice} speaks with the default voice");
    }
    assert_eq!(oa(serde_json::json!({"instructions": "Speak in a cheerful tone."})).body, o1.body);
    assert_eq!(oa(serde_json::json!({"voice": "named"})).body, o1.body, "a --voice with the same reference");

    // reference-free: /tts with prompt_text "" or absent, / with ref_free, an OpenAI voice without transcript
    let v2rf = |prompt: Option<&str>| {
        let mut b = serde_json::json!({"text": LONG_TEXT, "text_lang": "zh", "ref_audio_path": "onnx/demo/ref.wav", "prompt_lang": "zh", "seed": 21});
        if let Some(p) = prompt {
            b["prompt_text"] = p.into();
        }
        srv.post("/tts", &b.to_string())
    };
    let (rf_empty, rf_absent) = (v2rf(Some("")), v2rf(None));
    assert_eq!((rf_empty.status, rf_absent.status), (200, 200), "{}", rf_empty.text());
    check_wav(&rf_empty.body);
    assert_eq!(rf_empty.body, rf_absent.body, "empty and absent prompt_text are the same request");
    assert_ne!(rf_empty.body, one.body, "without the transcript the GPT sees something else");
    let rf_api = api(serde_json::json!({"ref_free": true, "refer_wav_path": "onnx/demo/ref.wav", "prompt_text": REF_TEXT}));
    assert_eq!(rf_api.status, 200, "{}", rf_api.text());
    assert_ne!(rf_api.body, plain.body, "/ with ref_free does not use the transcript");
    assert_eq!(api(serde_json::json!({"ref_free": true})).body, rf_api.body, "ref_free with the default reference's audio");
    // ... while an empty prompt_text on / keeps api2's rule: the default reference, transcript included
    let partial = api(serde_json::json!({"refer_wav_path": "onnx/demo/ref.wav", "prompt_text": "", "prompt_language": "zh"}));
    assert_eq!(partial.body, plain.body, "api2's default-reference rule wins on /");
    let rf_voice = oa(serde_json::json!({"voice": "rf"}));
    assert_eq!(rf_voice.status, 200, "{}", rf_voice.text());
    assert_ne!(rf_voice.body, o1.body, "a voice without transcript is reference-free");

    // OpenAI's error object on every failure of the route
    let openai_error = |r: Resp, status: u16, what: &str| {
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
        let j = r.json();
        let e = &j["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {j}");
        assert!(e["type"].is_string() && e.get("param").is_some() && e.get("code").is_some(), "{what}: {j}");
        j
    };
    let j = openai_error(oa(serde_json::json!({"stream_format": "chunks"})), 400, "stream_format");
    assert_eq!(j["error"]["param"], "stream_format");
    let j = openai_error(srv.post("/v1/audio/speech", r#"{"model": "tts-1", "voice": "alloy"}"#), 400, "no input");
    assert_eq!(j["error"]["param"], "input");
    openai_error(srv.post("/v1/audio/speech", "{not json"), 400, "bad JSON");
    let j = openai_error(oa(serde_json::json!({"model": "nope"})), 404, "unknown model");
    assert_eq!((j["error"]["code"].as_str(), j["error"]["param"].as_str()), (Some("model_not_found"), Some("model")));
    openai_error(oa(serde_json::json!({"voice": {"name": "x"}})), 400, "voice object without id");
    openai_error(oa(serde_json::json!({"input": "好"})), 400, "text too short");
    openai_error(srv.get("/v1/audio/speech"), 405, "GET");
    openai_error(srv.get("/v1/nothing"), 404, "unknown path");
    openai_error(request(srv.port, "POST", "/v1/audio/speech", &[("Content-Length", "2097152")], None), 413, "body too large");

    // /control: api_v2's bodies
    let c = srv.get("/control");
    assert_eq!((c.status, c.json()), (400, serde_json::json!({"message": "command is required"})));
    let c = srv.post("/control", "{}");
    assert_eq!((c.status, c.json()), (400, serde_json::json!({"message": "command is required"})));
    let c = srv.get("/control?command=dance");
    assert_eq!((c.status, c.text().as_str()), (200, "null"), "an unknown command does nothing, as upstream");
    srv.stop_with_control();
}

#[test]
fn api_py_media_type_speed_flag_and_strict_voices() {
    // api.py: -sm normal without -mt serves ogg, streamed; --api-py-speed honours `speed` on /
    let srv = Server::start(&["-sm", "normal", "--api-py-speed", "--strict-voices", "--voice", "mine=onnx/demo/ref.wav|今天天气很好，我们去公园散步。|zh"]);
    let (status, headers, chunks) = stream_request(srv.port, "/", &serde_json::json!({"text": LONG_TEXT, "text_language": "zh", "seed": 31}).to_string());
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("audio/ogg"));
    let body = check_streamed("-sm normal", "ogg", &chunks, 32_000);
    let d = ffdecode("-sm normal", &body, None, true);
    assert_eq!((d.codec.as_str(), d.rate), ("vorbis", 32_000));
    let wav = |speed: f64| {
        srv.post("/", &serde_json::json!({"text": LONG_TEXT, "text_language": "zh", "seed": 31, "speed": speed, "media_type": "wav", "streaming_mode": false}).to_string())
    };
    let (one, two) = (wav(1.0), wav(2.0));
    assert_eq!((one.status, two.status), (200, 200));
    assert_eq!(timing(&one, "tokens"), timing(&two, "tokens"));
    let segs = timing(&one, "segments");
    let ratio = (check_wav(&one.body) as f64 - segs * 9_600.0) / (check_wav(&two.body) as f64 - segs * 9_600.0);
    assert!((1.85..=2.05).contains(&ratio), "--api-py-speed: speed 2.0 on / halves the speech, ratio {ratio}");
    // --strict-voices: only configured voices
    let oa = |voice: &str| srv.post("/v1/audio/speech", &serde_json::json!({"input": LONG_TEXT, "voice": voice, "response_format": "wav", "seed": 1}).to_string());
    let e = oa("alloy");
    assert_eq!(e.status, 400);
    assert_eq!(e.json()["error"]["param"], "voice");
    assert!(e.json()["error"]["message"].as_str().unwrap().contains("mine"), "names the configured voices: {}", e.text());
    assert_eq!(oa("mine").status, 200);
    assert_eq!(oa("default").status, 200);
    srv.stop_with_control();

    // -mt: an unknown name is refused at start-up, not silently replaced
    let out = Command::new(env!("CARGO_BIN_EXE_gsv")).args(["-mt", "wma", "-p", "0"]).current_dir(repo()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("-mt/--media_type"), "{}", String::from_utf8_lossy(&out.stderr));
    // -mt aac: / answers ADTS at api.py's 128 kbps
    let srv = Server::start(&["-mt", "aac", "--no-warmup"]);
    let r = srv.post("/", &serde_json::json!({"text": LONG_TEXT, "text_language": "zh", "seed": 31}).to_string());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("audio/aac"));
    let d = ffdecode("-mt aac", &r.body, None, true);
    assert_eq!(d.codec, "aac");
    let kbps = r.body.len() as f64 * 8.0 / (d.pcm.len() as f64 / d.rate as f64) / 1000.0;
    assert!(kbps < 160.0, "api.py's aac is 128 kbps (api_v2's 192): {kbps:.0} kbps");
    srv.stop_with_control();
}
