//! v2Pro / v2ProPlus pieces that stand without the engine (issue 12, phase 1):
//! * the speaker-verification model's 16 kHz signal: torchaudio `Resample(32000, 16000)` of the normalised
//!   32 kHz reference (`reference::resample_torchaudio`, the resampler that already makes `wav32k`), against
//!   golden `sv_wav16k` (`$GSV_GOLDEN_V2PRO_DIR`, default `<crate>/../shared/golden-v2pro`; missing = failure);
//! * manifest validation of v2Pro bundles (the `sv` graph and section, the changed `ref_enc`/`sovits_decode`
//!   I/O), and the exported golden bundles (`onnx/golden-v2pro`, `onnx/golden-v2proplus`, written by the Python
//!   tests) being read and validated, then refused by `Bundle::open` with a message until the engine runs them.

use std::path::{Path, PathBuf};

use gsv::bundle::{expected_io_for, is_v2pro, symbols_hash, Bundle, BundleError, Manifest, GRAPH_NAMES_V2PRO};
use gsv::reference::{self, Audio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_dir() -> PathBuf {
    let dir = std::env::var_os("GSV_GOLDEN_V2PRO_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/golden-v2pro"));
    assert!(dir.join("manifest.json").is_file(), "golden-v2pro data not found at {} (set GSV_GOLDEN_V2PRO_DIR)", dir.display());
    dir
}

/// f32 array of a little-endian `<f4` .npy file (C order), with its shape.
fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[0..6], b"\x93NUMPY", "{} is not .npy", path.display());
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        _ => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
    };
    let header = std::str::from_utf8(&b[start..start + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let s = &header[header.find("'shape': (").unwrap() + 10..];
    let shape: Vec<usize> = s[..s.find(')').unwrap()].split(',').map(str::trim).filter(|x| !x.is_empty()).map(|x| x.parse().unwrap()).collect();
    let n: usize = shape.iter().product();
    let data: Vec<f32> = b[start + hlen..].chunks_exact(4).take(n).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(data.len(), n, "{} truncated", path.display());
    (shape, data)
}

fn golden_array(name: &str) -> (Vec<usize>, Vec<f32>) {
    read_npy_f32(&golden_dir().join("arrays").join(format!("{name}.npy")))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, f64::max)
}

#[test]
fn sv_signal_from_golden_wav32k_matches_torchaudio() {
    let (_, wav32k) = golden_array("wav32k");
    let (shape, want) = golden_array("sv_wav16k");
    assert_eq!(shape[0], 1);
    let got = reference::resample_torchaudio(&wav32k, 32000, gsv::bundle::SV_RATE).unwrap();
    assert_eq!(got.len(), wav32k.len().div_ceil(2), "ceil(S / 2) samples");
    assert_eq!(got.len(), shape[1]);
    let err = max_abs_diff(&got, &want);
    eprintln!("sv_wav16k from golden wav32k: max abs err {err:.3e}");
    assert!(err <= 1e-5, "max abs err {err}");
}

#[test]
fn sv_signal_from_the_reference_file_matches() {
    // the whole chain the runtime runs: decode -> 32 kHz (torchaudio sinc, normalised) -> 16 kHz (sinc again)
    let audio: Audio = reference::load_file(&golden_dir().join("ref_audio/ref_native.wav")).unwrap();
    let wav32k = reference::vits_input(&audio, 32000).unwrap();
    let (_, want32) = golden_array("wav32k");
    assert!(max_abs_diff(&wav32k, &want32) <= 1e-5);
    let got = reference::resample_torchaudio(&wav32k, 32000, 16000).unwrap();
    let (_, want) = golden_array("sv_wav16k");
    let err = max_abs_diff(&got, &want);
    eprintln!("sv_wav16k from ref_native.wav: max abs err {err:.3e}");
    assert!(err <= 1e-5, "max abs err {err}");
    // and it is NOT the librosa (soxr) signal HuBERT gets: same length, different samples
    let (_, hubert16) = golden_array("wav16k");
    assert_eq!(hubert16.len(), want.len());
    assert!(max_abs_diff(&hubert16, &want) > 1e-3, "the two 16 kHz signals should differ");
}

fn v2pro_manifest(mutate: impl FnOnce(&mut serde_json::Value)) -> String {
    let symbols: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    let io = |i: &[&str], o: &[&str]| serde_json::json!({"file": "x.onnx", "inputs": i, "outputs": o, "sha256": "0"});
    let mut v = serde_json::json!({
        "format": "gsv-bundle", "format_version": 2, "model_version": "v2ProPlus",
        "sample_rate": 32000, "hop_length": 640, "filter_length": 2048, "win_length": 2048,
        "token_rate_hz": 25, "ssl_rate_hz": 50, "hubert_rate": 16000,
        "gpt": {"n_layer": 1, "n_head": 4, "hidden_dim": 64, "kv_head_dim": 16, "vocab_size": 1025, "eos": 1024,
                "phoneme_vocab_size": 5, "max_sec": 54, "top_k": 15},
        "sovits": {"inter_channels": 64, "hidden_channels": 192, "gin_channels": 128,
                   "upsample_rates": [10, 8, 2, 2, 2], "samples_per_frame": 640, "ref_enc_bins": 704,
                   "semantic_frame_rate": "25hz", "codebook_size": 1024},
        "symbols": {"version": "v2", "count": 5, "sha256": symbols_hash(&symbols), "list": symbols},
        "sv": {"graph": "sv", "input": "wav32k", "input_rate": 32000, "rate": 16000, "embedding_dim": 20480,
               "min_input_samples": 799, "fbank": {"num_mel_bins": 80}},
        "graphs": {
            "hubert": io(&["wav16k"], &["ssl"]),
            "vq_encode": io(&["ssl"], &["codes", "ssl_proj"]),
            "bert": io(&["input_ids", "attention_mask", "token_type_ids"], &["hidden"]),
            "gpt_prefill": io(&["phone_ids", "bert", "prompt"], &["logits", "k_0", "v_0"]),
            "gpt_step": io(&["token", "position", "seqlens_k", "total_len", "past_k_0", "past_v_0"], &["logits", "present_k_0", "present_v_0"]),
            "sv": io(&["wav32k"], &["sv_emb", "wav16k", "fbank"]),
            "ref_enc": io(&["spec", "sv_emb"], &["ge", "ge_refenc", "sv_proj"]),
            "sovits_decode": io(&["codes", "text", "ge", "noise_scale", "noise"], &["audio", "z", "m_p", "logs_p", "enc_p_x", "quantized", "ge512"])
        }
    });
    mutate(&mut v);
    v.to_string()
}

fn field_of(r: Result<(), BundleError>) -> String {
    match r {
        Err(BundleError::Field { field, .. }) => field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn v2pro_manifest_validates_and_each_mismatch_names_its_field() {
    let ok = Manifest::from_json(&v2pro_manifest(|_| {}), "t").unwrap();
    ok.validate().unwrap();
    assert!(ok.is_v2pro() && is_v2pro("v2Pro") && !is_v2pro("v2"));
    assert_eq!(ok.graph_names(), &GRAPH_NAMES_V2PRO[..]);
    assert_eq!(ok.sv.as_ref().unwrap().embedding_dim, 20480);
    let bad = |f: &dyn Fn(&mut serde_json::Value)| Manifest::from_json(&v2pro_manifest(|v| f(v)), "t").unwrap().validate();
    bad(&|v| v["model_version"] = "v2Pro".into()).unwrap(); // v2Pro (not Plus): the same layout
    assert_eq!(field_of(bad(&|v| { v.as_object_mut().unwrap().remove("sv"); })), "sv");
    assert_eq!(field_of(bad(&|v| { v["graphs"].as_object_mut().unwrap().remove("sv"); })), "graphs.sv");
    assert_eq!(field_of(bad(&|v| v["graphs"]["ref_enc"]["inputs"] = serde_json::json!(["spec"]))), "graphs.ref_enc.inputs");
    assert_eq!(
        field_of(bad(&|v| v["graphs"]["sovits_decode"]["outputs"] = serde_json::json!(["audio", "z", "m_p", "logs_p", "enc_p_x", "quantized"]))),
        "graphs.sovits_decode.outputs"
    );
    assert_eq!(field_of(bad(&|v| v["sv"]["input"] = "wav16k".into())), "sv.input");
    assert_eq!(field_of(bad(&|v| v["sv"]["input_rate"] = 16000.into())), "sv.input_rate");
    assert_eq!(field_of(bad(&|v| v["sv"]["rate"] = 8000.into())), "sv.rate");
    assert_eq!(field_of(bad(&|v| v["symbols"]["version"] = "v1".into())), "symbols.version");
    assert_eq!(field_of(bad(&|v| v["model_version"] = "v3".into())), "model_version");
    // a v2 manifest with an sv section (or a v2Pro ref_enc) is inconsistent
    assert_eq!(field_of(bad(&|v| v["model_version"] = "v2".into())), "sv");
}

#[test]
fn v2pro_io_table() {
    let (i, o) = expected_io_for("sv", 2, "v2Pro").unwrap();
    assert_eq!(i.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), ["wav32k"]);
    assert_eq!(o.iter().map(|x| (x.0.as_str(), x.2)).collect::<Vec<_>>(), [("sv_emb", 2), ("wav16k", 2), ("fbank", 3)]);
    assert!(expected_io_for("sv", 2, "v2").is_none(), "v2 bundles have no sv graph");
    let (i, _) = expected_io_for("ref_enc", 2, "v2").unwrap();
    assert_eq!(i.len(), 1);
    let (_, o) = expected_io_for("sovits_decode", 2, "v2ProPlus").unwrap();
    assert_eq!(o.last().unwrap().0, "ge512");
}

/// onnx/golden-v2pro and onnx/golden-v2proplus are exported by tests/python/test_bundle_golden.py (scripts/test
/// runs pytest first); a missing bundle is a failure.
fn exported(name: &str, env: &str) -> PathBuf {
    let dir = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| repo().join("onnx").join(name));
    assert!(
        dir.join("manifest.json").is_file(),
        "golden bundle missing: {} (scripts/test exports it with `python -m export convert ... --sv` first; or set {env})",
        dir.display()
    );
    dir
}

#[test]
fn exported_v2pro_bundles_validate_and_are_refused_until_the_engine_runs_them() {
    for (name, env, version) in [("golden-v2pro", "GSV_TEST_BUNDLE_V2PRO", "v2Pro"), ("golden-v2proplus", "GSV_TEST_BUNDLE_V2PROPLUS", "v2ProPlus")] {
        let dir = exported(name, env);
        let b = Bundle::read(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_eq!(b.manifest.model_version, version);
        let sv = b.manifest.sv.as_ref().unwrap();
        assert_eq!((sv.input.as_str(), sv.input_rate, sv.rate, sv.embedding_dim), ("wav32k", 32000, 16000, 20480));
        assert!(b.graph_path("sv").is_file());
        let err = Bundle::open(&dir).unwrap_err().to_string();
        assert!(err.contains(version) && err.contains("cannot run"), "{err}");
    }
}
