//! The `gsv` command line on the committed demo bundle: synth writes a valid WAV, batch mode reports per job,
//! and every kind of bad input gets one clear error line and a non-zero exit, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gsv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gsv"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run gsv")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gsv-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_tone(path: &Path, secs: f32, rate: u32, channels: u16) {
    let spec = hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = (secs * rate as f32) as usize;
    for i in 0..n {
        let v = ((i as f32 * 220.0 * 2.0 * std::f32::consts::PI / rate as f32).sin() * 8000.0) as i16;
        for _ in 0..channels {
            w.write_sample(v).unwrap();
        }
    }
    w.finalize().unwrap();
}

fn assert_clean_failure(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure, got success; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty() && !l.contains(" WARN ")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
}

#[test]
fn synth_demo_writes_pcm16_mono_32k() {
    let d = tmp("synth");
    let out = d.join("a.wav");
    let o = gsv(&["synth", "--text", "春天来了，河边的柳树发芽了。", "--out", out.to_str().unwrap(), "--seed", "7"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = hound::WavReader::open(&out).unwrap();
    let s = r.spec();
    assert_eq!((s.channels, s.sample_rate, s.bits_per_sample), (1, 32000, 16));
    assert_eq!(s.sample_format, hound::SampleFormat::Int);
    let n = r.len() as usize;
    // each segment: tokens * 1280 samples + 0.3 s (9600 samples) of silence
    assert!(n > 2 * 9600, "{n} samples");
    // same seed, same audio
    let out2 = d.join("b.wav");
    let o = gsv(&["synth", "--text", "春天来了，河边的柳树发芽了。", "--out", out2.to_str().unwrap(), "--seed", "7"]);
    assert!(o.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
}

#[test]
fn synth_bad_inputs_fail_cleanly() {
    let d = tmp("bad");
    let out = d.join("x.wav");
    let out = out.to_str().unwrap();
    let short = d.join("short.wav");
    write_tone(&short, 2.0, 22050, 1);
    let long = d.join("long.wav");
    write_tone(&long, 11.0, 16000, 2);
    let text = d.join("text.wav");
    std::fs::write(&text, "not audio at all").unwrap();
    let missing = d.join("missing.wav");
    let r = |p: &Path| p.to_str().unwrap().to_string();
    let with_ref = |p: &str| vec!["synth", "--text", "你好，世界。", "--out", out, "--ref-text", "今天天气很好。", "--ref-lang", "zh", "--ref"]
        .into_iter()
        .map(String::from)
        .chain(std::iter::once(p.to_string()))
        .collect::<Vec<_>>();
    let run = |v: Vec<String>| gsv(&v.iter().map(String::as_str).collect::<Vec<_>>());
    assert_clean_failure(&run(with_ref(&r(&missing))), "missing.wav");
    assert_clean_failure(&run(with_ref(&r(&text))), "error:");
    assert_clean_failure(&run(with_ref(&r(&short))), "error:");
    assert_clean_failure(&run(with_ref(&r(&long))), "error:");
    assert_clean_failure(&gsv(&["synth", "--text", "你好，世界。", "--lang", "xx", "--out", out]), "xx");
    assert_clean_failure(&gsv(&["synth", "--text", "", "--out", out]), "error:");
    assert_clean_failure(&gsv(&["synth", "--text", "。。，，！", "--out", out]), "error:");
    assert_clean_failure(&gsv(&["synth", "--text", "你好", "--out", out, "--speed", "0"]), "speed");
    assert_clean_failure(&gsv(&["synth", "--bundle", d.to_str().unwrap(), "--text", "你好", "--out", out]), "manifest");
    assert!(!Path::new(out).exists(), "no output on failure");
}

#[test]
fn batch_reports_each_job_and_fails_if_any_failed() {
    let d = tmp("batch");
    let jobs = d.join("jobs.jsonl");
    std::fs::write(
        &jobs,
        concat!(
            "{\"text\": \"今天天气很好。\", \"seed\": 1}\n",
            "# a comment line\n",
            "{\"text\": \"你好。\", \"lang\": \"klingon\"}\n",
            "{\"text\": \"河边的柳树发芽了。\", \"out\": \"named.wav\", \"seed\": 2}\n",
            "not json\n"
        ),
    )
    .unwrap();
    let outd = d.join("out");
    let o = gsv(&["synth", "--batch", jobs.to_str().unwrap(), "--out-dir", outd.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success());
    assert!(stdout.lines().last().unwrap_or("") == "2 passed, 2 failed", "{stdout}");
    assert!(outd.join("0001.wav").is_file() && outd.join("named.wav").is_file());
    assert!(stdout.contains("FAIL line 3") && stdout.contains("FAIL line 5"), "{stdout}");
    // all good -> exit 0
    std::fs::write(&jobs, "{\"text\": \"今天天气很好。\", \"seed\": 1}\n").unwrap();
    let o = gsv(&["synth", "--batch", jobs.to_str().unwrap(), "--out-dir", outd.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn phonemize_prints_json() {
    let o = gsv(&["phonemize", "--lang", "zh", "你好，世界。"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["phones"], serde_json::json!(["n", "i2", "h", "ao3", ",", "sh", "ir4", "j", "ie4", "."]));
    assert_eq!(v["phone_ids"].as_array().unwrap().len(), 10);
    assert_eq!(v["norm_text"], "你好,世界.");
    // fewer than 6 phones: upstream's get_phones_and_bert runs again with "." in front
    let o = gsv(&["phonemize", "--lang", "zh", "你好。"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["phones"], serde_json::json!([".", "n", "i2", "h", "ao3", "."]));
    assert_clean_failure(&gsv(&["phonemize", "--lang", "zz", "你好"]), "zz");
}

/// `gsv bench --json` says which precision each stage ran and whether ONNX Runtime's threads spin: the demo bundle
/// has no `quantization`, so the defaults are fp32 and gsv's spin default (off); the flags are checked before loading.
#[test]
fn bench_reports_precision_and_spin() {
    let o = gsv(&["bench", "--bundle", "onnx/demo", "--tokens", "2", "--json", "--intra-threads", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let j: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(j["precision"], serde_json::json!({"gpt": "fp32", "bert": "fp32", "vocoder": "fp32"}), "{out}");
    assert_eq!(j["intra_op_spinning"], "off");
    let o = gsv(&["bench", "--bundle", "onnx/demo", "--tokens", "2", "--json", "--ort-spin", "on", "--gpt-precision", "auto"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(j["intra_op_spinning"], "on");
    assert_clean_failure(&gsv(&["bench", "--bundle", "onnx/demo", "--tokens", "2", "--ort-spin", "sometimes"]), "--ort-spin must be on or off");
    assert_clean_failure(&gsv(&["bench", "--bundle", "onnx/demo", "--tokens", "2", "--gpt-precision", "int4"]), "graphs.gpt_prefill.variants.int4 is not in this bundle");
    assert_clean_failure(&gsv(&["bench", "--bundle", "onnx/demo", "--tokens", "2", "--vocoder-precision", "int3"]), "precision must be auto, fp32, int8 or int4");
}
