//! The voice library over HTTP (`--voices DIR`, `/voices`), voice names on the synthesis routes, persistence of a
//! voice's features across restarts, the page on `/` next to api2's contract, and the route table: the real `gsv`
//! binary on the demo bundle, an ephemeral port, a small HTTP/1.1 client. Every wait is bounded.

use std::path::Path;

mod support;
use support::*;

/// The `x-gsv-timing` header of a synthesis answer.
fn timing(r: &Resp) -> String {
    r.header("x-gsv-timing").unwrap_or("").to_string()
}

/// `multipart/form-data` body: text fields and file fields (name, file name, bytes).
fn multipart(fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "gsv-test-boundary-7d1f";
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
    }
    for (k, f, data) in files {
        b.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"{f}\"\r\nContent-Type: audio/wav\r\n\r\n").as_bytes());
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), b)
}

fn demo_ref() -> Vec<u8> {
    std::fs::read(repo().join("onnx/demo/ref.wav")).unwrap()
}

fn add_voice(srv: &Server, name: &str, audio: &[u8], extra: &[(&str, &str)], key: Option<&str>) -> Resp {
    let mut fields = vec![("name", name), ("text", REF_TEXT), ("language", "zh")];
    fields.extend_from_slice(extra);
    let (ct, body) = multipart(&fields, &[("audio", "ref.wav", audio)]);
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut h = vec![("Content-Type", ct.as_str())];
    if let Some(a) = &auth {
        h.push(("Authorization", a.as_str()));
    }
    srv.req("POST", "/voices", &h, Some(&body))
}

fn no_hidden_leftovers(dir: &Path) {
    let hidden: Vec<String> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with('.')).collect();
    assert!(hidden.is_empty(), "leftovers: {hidden:?}");
}

#[test]
fn voice_library_over_http_and_restart_costs_nothing() {
    let dir = tmp_dir("lib");
    let lib = dir.join("voices");
    let lib_s = lib.to_str().unwrap();
    let srv = Server::start(&["--voices", lib_s, "--no-warmup"]);

    // empty library: the default reference only
    let r = srv.req("GET", "/voices", &[], None);
    assert_eq!(r.status, 200);
    let list = r.json();
    assert_eq!(list.as_array().map(|a| a.len()), Some(1), "{list}");
    assert_eq!((list[0]["name"].as_str(), list[0]["source"].as_str()), (Some("default"), Some("default")));

    // add: 201, Location, the voice in the list and on disk
    let r = add_voice(&srv, "alice", &demo_ref(), &[], None);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("location"), Some("/voices/alice"));
    let v = r.json();
    assert_eq!((v["name"].as_str(), v["language"].as_str(), v["text"].as_str()), (Some("alice"), Some("zh"), Some(REF_TEXT)));
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(lib.join("alice/voice.json")).unwrap()).unwrap();
    assert_eq!(meta["audio"], "ref.wav");
    assert!(meta["created_at"].as_str().unwrap_or("").ends_with('Z'));
    assert_eq!(std::fs::read(lib.join("alice/ref.wav")).unwrap(), demo_ref());
    assert_eq!(srv.req("GET", "/voices/alice", &[], None).json()["name"], "alice");
    no_hidden_leftovers(&lib);

    // refusals: taken name, bad names, bad audio, missing fields, not multipart, unknown fields, unknown voice
    let r = add_voice(&srv, "alice", &second_ref_wav(), &[], None);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("already exists"), "{}", r.text());
    for bad in ["../evil", ".hidden", "a/b", "default", &"x".repeat(65)] {
        let r = add_voice(&srv, bad, &demo_ref(), &[], None);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    let r = add_voice(&srv, "short", &cut_ref_wav(1.0), &[], None);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("3..10 s"), "{}", r.text());
    let r = add_voice(&srv, "noise", b"this is not audio at all, just bytes", &[], None);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = add_voice(&srv, "lang", &demo_ref(), &[], None);
    assert_eq!(r.status, 201);
    let (ct, body) = multipart(&[("name", "nolang"), ("text", REF_TEXT)], &[("audio", "a.wav", &demo_ref())]);
    let r = srv.req("POST", "/voices", &[("Content-Type", &ct)], Some(&body));
    assert!(r.status == 400 && r.text().contains("language"), "{} {}", r.status, r.text());
    let (ct, body) = multipart(&[("name", "x"), ("text", REF_TEXT), ("language", "klingon")], &[("audio", "a.wav", &demo_ref())]);
    assert_eq!(srv.req("POST", "/voices", &[("Content-Type", &ct)], Some(&body)).status, 400);
    let (ct, body) = multipart(&[("name", "x"), ("evil", "1")], &[]);
    assert_eq!(srv.req("POST", "/voices", &[("Content-Type", &ct)], Some(&body)).status, 400);
    assert_eq!(srv.json("POST", "/voices", &serde_json::json!({"name": "x"})).status, 400);
    assert_eq!(srv.req("GET", "/voices/nobody", &[], None).status, 404);
    assert_eq!(srv.req("DELETE", "/voices/nobody", &[], None).status, 404);
    assert_eq!(srv.req("DELETE", "/voices/default", &[], None).status, 409);
    assert_eq!(srv.req("PUT", "/voices/alice", &[], None).status, 405);
    no_hidden_leftovers(&lib);

    // synthesis by name: OpenAI `voice`, /tts `voice`; the first request computes and stores the features
    let speech = serde_json::json!({"input": "你好，世界。", "voice": "alice", "language": "zh", "seed": 3, "response_format": "wav"});
    let r = srv.json("POST", "/v1/audio/speech", &speech);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(timing(&r).contains("reference_cached=false"), "{}", timing(&r));
    let first_audio = r.body.clone();
    let stored: Vec<_> = std::fs::read_dir(lib.join("alice/features")).unwrap().flatten().collect();
    assert_eq!(stored.len(), 1, "features stored beside the voice");
    let r = srv.json("POST", "/tts", &serde_json::json!({"text": "你好，世界。", "text_lang": "zh", "voice": "alice", "seed": 3}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(timing(&r).contains("reference_cached=true"), "{}", timing(&r));
    // an unknown name: 400 on /tts (OpenAI's route speaks it with the default voice unless --strict-voices)
    let r = srv.json("POST", "/tts", &serde_json::json!({"text": "你好。", "text_lang": "zh", "voice": "bob"}));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("unknown voice `bob`") && r.text().contains("alice"), "{}", r.text());
    drop(srv);

    // restart: the first request is answered from the stored features, with the same audio
    let srv = Server::start(&["--voices", lib_s, "--no-warmup"]);
    let r = srv.json("POST", "/v1/audio/speech", &speech);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(timing(&r).contains("reference_cached=true"), "second start, first request: {}", timing(&r));
    assert_eq!(r.body, first_audio, "same seed, same voice, stored features: same audio");

    // stale features (the audio changed on disk) are recomputed, never used
    drop(srv);
    std::fs::write(lib.join("alice/ref.wav"), second_ref_wav()).unwrap();
    let srv = Server::start(&["--voices", lib_s, "--no-warmup"]);
    let r = srv.json("POST", "/v1/audio/speech", &speech);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(timing(&r).contains("reference_cached=false"), "changed audio must be recomputed: {}", timing(&r));
    assert_ne!(r.body, first_audio);

    // delete: gone from the list and the disk
    let r = srv.req("DELETE", "/voices/alice", &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["deleted"], true);
    assert!(!lib.join("alice").exists());
    assert_eq!(srv.req("GET", "/voices/alice", &[], None).status, 404);
    no_hidden_leftovers(&lib);
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn voices_need_the_key_uploads_are_bounded_and_writes_atomic() {
    let dir = tmp_dir("keys");
    let lib = dir.join("voices");
    // an interrupted upload of an earlier process: a hidden folder, never a voice, removed at start
    std::fs::create_dir_all(lib.join(".tmp-ghost-1-0")).unwrap();
    std::fs::write(lib.join(".tmp-ghost-1-0/voice.json"), b"{\"half\":").unwrap();
    let srv = Server::start(&["--voices", lib.to_str().unwrap(), "--no-warmup", "--api-key", "sekret", "--max-upload", "200000"]);
    no_hidden_leftovers(&lib);
    assert_eq!(srv.req("GET", "/voices", &[], None).status, 401);
    assert_eq!(add_voice(&srv, "carol", &demo_ref(), &[], None).status, 401);
    assert_eq!(add_voice(&srv, "carol", &demo_ref(), &[], Some("wrong")).status, 401);
    // the page, its files and the API description need no key; the API does
    let page = srv.req("GET", "/", &[("Accept", "text/html")], None);
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap_or("").starts_with("text/html"));
    assert_eq!(srv.req("GET", "/ui/app.js", &[], None).status, 200);
    assert_eq!(srv.req("GET", "/openapi.json", &[], None).status, 200);
    assert_eq!(srv.req("GET", "/?text=hi&text_language=zh", &[("Accept", "text/html")], None).status, 401);
    // over --max-upload: 413, nothing written
    let big = vec![0u8; 300_000];
    let r = add_voice(&srv, "big", &big, &[], Some("sekret"));
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(!lib.join("big").exists());
    // two uploads of one name at once: one voice, one conflict
    let port = srv.port;
    let handles: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                let audio = if i == 0 { demo_ref() } else { second_ref_wav() };
                let (ct, body) = multipart(&[("name", "dave"), ("text", REF_TEXT), ("language", "zh")], &[("audio", "r.wav", &audio)]);
                request(port, "POST", "/voices", &[("Content-Type", &ct), ("Authorization", "Bearer sekret")], Some(&body)).status
            })
        })
        .collect();
    let mut codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    codes.sort();
    assert_eq!(codes, vec![201, 409]);
    let r = srv.req("GET", "/voices", &[("Authorization", "Bearer sekret")], None);
    let names: Vec<String> = r.json().as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(names, vec!["default", "dave"]);
    no_hidden_leftovers(&lib);
    assert_eq!(srv.req("DELETE", "/voices/dave", &[], None).status, 401);
    assert_eq!(srv.req("DELETE", "/voices/dave", &[("Authorization", "Bearer sekret")], None).status, 200);
    drop(srv);

    // a read-only library serves its voices and refuses writes with 403
    let ro = dir.join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    let srv = Server::start(&["--voices", ro.to_str().unwrap(), "--no-warmup"]);
    assert_eq!(add_voice(&srv, "erin", &demo_ref(), &[], None).status, 201);
    drop(srv);
    let readonly = |on: bool| {
        for p in [ro.clone(), ro.join("erin"), ro.join("erin/features")] {
            if let Ok(m) = std::fs::metadata(&p) {
                let mut perm = m.permissions();
                perm.set_readonly(on);
                let _ = std::fs::set_permissions(&p, perm);
            }
        }
    };
    readonly(true);
    // root ignores permission bits; the test then only checks that a read-only library still serves
    let is_root = unsafe_geteuid_is_root();
    let srv = Server::start(&["--voices", ro.to_str().unwrap(), "--no-warmup"]);
    let r = srv.json("POST", "/v1/audio/speech", &serde_json::json!({"input": "你好，世界。", "voice": "erin", "seed": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    if !is_root {
        assert_eq!(add_voice(&srv, "frank", &demo_ref(), &[], None).status, 403);
    }
    drop(srv);
    readonly(false);
    let _ = std::fs::remove_dir_all(&dir);
}

fn unsafe_geteuid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// `/` answers the page only to a browser asking for HTML without a query; api2's contract is unchanged; every
/// route in the OpenAPI document answers (none is 404/405), an undescribed path is 404.
#[test]
fn page_contract_and_described_routes() {
    let srv = Server::start(&["--no-warmup"]);
    let html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let page = srv.req("GET", "/", &[("Accept", html)], None);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<audio id=\"player\""), "the page");
    assert!(page.header("content-security-policy").unwrap_or("").contains("default-src 'self'"));
    // api2: a query string, a POST, no Accept, */*: audio or api2's errors, as before
    let r = srv.req("GET", "/?text=%E4%BD%A0%E5%A5%BD%EF%BC%8C%E4%B8%96%E7%95%8C%E3%80%82&text_language=zh&seed=1", &[("Accept", html)], None);
    assert_eq!((r.status, r.header("content-type")), (200, Some("audio/wav")));
    let r = srv.req("GET", "/", &[], None);
    assert_eq!(r.status, 400, "api2 GET / with nothing: its error");
    assert!(r.text().contains("\"code\":400"), "{}", r.text());
    let r = srv.req("GET", "/", &[("Accept", "*/*")], None);
    assert_eq!(r.status, 400);
    let r = srv.req("POST", "/", &[("Accept", html)], Some(b"{}"));
    assert_eq!(r.status, 400);
    assert_eq!(srv.req("GET", "/ui/style.css", &[], None).header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(srv.req("GET", "/ui/nope.js", &[], None).status, 404);

    let doc = srv.req("GET", "/openapi.json", &[], None);
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        let concrete = path.replace("{name}", "default").replace("{file}", if path.starts_with("/docs") { "gsv-init.js" } else { "app.js" });
        for method in item.as_object().unwrap().keys() {
            let m = method.to_uppercase();
            // bodies that cannot do anything: empty JSON objects (POST /control without a command is a 400)
            let body: Option<&[u8]> = if m == "POST" { Some(b"{}") } else { None };
            let r = srv.req(&m, &concrete, &[("Content-Type", "application/json")], body);
            assert!(![404, 405].contains(&r.status), "{m} {concrete}: {} {}", r.status, r.text());
        }
    }
    assert_eq!(srv.req("GET", "/not-a-route", &[], None).status, 404);
    assert_eq!(srv.req("DELETE", "/tts", &[], None).status, 405);
    assert_eq!(srv.req("GET", "/health", &[], None).status, 200, "still serving");
}
