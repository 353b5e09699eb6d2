//! Reference-free synthesis (upstream's `ref_free` / `no_prompt_text`: an empty `prompt_text`) against the export's
//! PyTorch GPT, on the golden bundle (`onnx/golden`, exported by the Python tests) and its golden folder.
//!
//! What upstream gives the models when there is no transcript (`TTS_infer_pack/TTS.py` with `prompt_data=None`,
//! `inference_webui.py` with `ref_free`): the GPT gets the segment's phones and BERT features alone and no prompt
//! codes (`infer_panel(..., prompts=None, ...)`: positions restart at 0, the repetition penalty sees only generated
//! tokens); SoVITS still gets the reference recording's spectrogram (the timbre).
//!
//! Checked here, with the golden manifest's target text, language and greedy sampling parameters:
//! * the ONNX graphs with P = 0 (prefill) and positions from 0 (steps), run by gsv's own loop, give the same tokens
//!   as `tests/python/ref_free_reference.py` (the export's PyTorch model, first step written as upstream's ref-free
//!   branch), and the same first-step logits;
//! * the request path (`Engine::tts` with `prompt_text` ""): the GPT input is the segment's alone
//!   (`pipeline::gpt_text`), the same number of tokens is generated, and the audio is exactly those tokens plus the
//!   segment gap; a transcript of only whitespace is the same request;
//! * the reference still sets the timbre: another recording gives the same tokens but different audio.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use gsv::engine::{pipeline, Api2Cut, Engine, RefAudio, TextSplit, TtsRequest};
use gsv::gpt::{GenerateConfig, GptInput, SamplingParams};
use gsv::runtime::{Runtime, SessionOptions};
use gsv::text::{FrontendData, Language};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The golden bundle and golden folder (missing data is a failure, not a skip).
fn golden() -> (PathBuf, PathBuf) {
    let bundle = std::env::var("GSV_TEST_BUNDLE").map(PathBuf::from).unwrap_or_else(|_| repo().join("onnx/golden"));
    let golden = std::env::var("GSV_GOLDEN_DIR").map(PathBuf::from).unwrap_or_else(|_| repo().join("../shared/golden"));
    assert!(golden.join("manifest.json").is_file(), "golden data missing: {} (set GSV_GOLDEN_DIR)", golden.display());
    assert!(bundle.join("manifest.json").is_file(), "golden bundle missing: {} (scripts/test exports it first; or set GSV_TEST_BUNDLE)", bundle.display());
    (bundle, golden)
}

fn python_tokens(req: &Value) -> Value {
    let py = std::env::var("GSV_PYTHON").map(PathBuf::from).unwrap_or_else(|_| repo().join(".venv/bin/python"));
    let mut child = Command::new(&py)
        .arg(repo().join("tests/python/ref_free_reference.py"))
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} (scripts/setup --export makes the venv; or set GSV_PYTHON): {e}", py.display()));
    child.stdin.take().unwrap().write_all(req.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ref_free_reference.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON from ref_free_reference.py")
}

#[test]
fn reference_free_tokens_equal_pytorch_and_the_request_path_uses_them() {
    let (bundle, golden) = golden();
    let m: Value = serde_json::from_str(&std::fs::read_to_string(golden.join("manifest.json")).unwrap()).unwrap();
    let inputs = &m["inputs"];
    let ckpt = m["models"].as_object().unwrap().keys().find(|k| k.ends_with(".ckpt")).map(|k| golden.join("models").join(k)).expect("a .ckpt in the golden manifest");
    let text = inputs["target_text"].as_str().unwrap();
    let lang = Language::from_api(inputs["target_language"].as_str().unwrap()).expect("golden target language");
    let reference = golden.join(inputs["reference_wav"].as_str().unwrap());
    let penalties: Vec<f32> = match &inputs["repetition_penalty"] {
        Value::Array(a) => a.iter().map(|v| v.as_f64().unwrap() as f32).collect(),
        v => vec![v.as_f64().unwrap() as f32],
    };
    let params = SamplingParams {
        top_k: inputs["top_k"].as_u64().unwrap() as usize,
        top_p: inputs["top_p"].as_f64().unwrap() as f32,
        temperature: inputs["temperature"].as_f64().unwrap() as f32,
        repetition_penalty: penalties[0],
    };
    assert_eq!(params.top_k, 1, "the golden set's sampling is greedy");
    let early = inputs["early_stop_num"].as_i64().unwrap();

    let rt = Runtime::init(None).unwrap();
    let mut engine = Engine::load(&rt, &bundle, &SessionOptions { intra_threads: 2, ..Default::default() }.into()).unwrap();
    let data = FrontendData::global().unwrap();

    // the request as the server builds it: no transcript, one segment
    let mut req = TtsRequest::new(text, lang, RefAudio::Path(reference.clone()), "", lang);
    req.split = TextSplit::Api2(Api2Cut::None);
    req.top_k = params.top_k;
    req.top_p = params.top_p;
    req.temperature = params.temperature;
    req.repetition_penalty = penalties[0];
    req.early_stop_num = Some(early);
    req.seed = Some(5);
    assert!(req.ref_free());
    let plan = pipeline::plan(&req).unwrap();
    assert_eq!(plan.prompt_text, "", "no transcript is preprocessed");
    assert_eq!(plan.segments.len(), 1);
    let feats = engine.text_features(data, &plan.segments[0], lang).unwrap();
    let (ids, bert) = pipeline::gpt_text(None, &feats).unwrap();
    assert_eq!(ids, feats.phone_ids, "reference-free: the segment's phones alone");
    assert_eq!(bert, feats.bert, "reference-free: the segment's BERT features alone");

    // gsv's loop over the ONNX graphs, no prompt codes, against the export's PyTorch model in upstream's ref_free
    // branch; once per repetition penalty of the golden set
    let bert_rows: Vec<Vec<f32>> = bert.rows().into_iter().map(|r| r.to_vec()).collect();
    let mut outs = Vec::new();
    // and once more past the EOS (as `gsv bench` forces a length): early_stop_num + 1 positions from 0
    let runs: Vec<(f32, bool)> = penalties.iter().map(|&rp| (rp, false)).chain(std::iter::once((penalties[0], true))).collect();
    for (rp, ignore_eos) in runs {
        let p = SamplingParams { repetition_penalty: rp, ..params };
        let cfg = GenerateConfig { params: p, seed: 0, early_stop_num: early, record_logits: true, ignore_eos, ..Default::default() };
        let out = engine.gpt_mut().generate(&GptInput { phone_ids: &ids, bert: bert.view(), prompt: &[] }, &cfg, &mut |_| true).unwrap();
        let py = python_tokens(&serde_json::json!({
            "ckpt": ckpt, "phone_ids": ids, "bert": bert_rows, "top_k": p.top_k, "top_p": p.top_p,
            "temperature": p.temperature, "repetition_penalty": p.repetition_penalty, "early_stop_num": early,
            "ignore_eos": ignore_eos,
        }));
        let torch_tokens: Vec<i64> = py["tokens"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        eprintln!("reference-free greedy, repetition penalty {rp}, ignore EOS {ignore_eos}: {} phones -> {} tokens (PyTorch {}), stop {:?}", ids.len(), out.tokens.len(), torch_tokens.len(), out.stop);
        assert!(out.tokens.len() >= 11, "no EOS before step 11: {} tokens", out.tokens.len());
        if ignore_eos {
            assert_eq!(out.tokens.len() as i64, early + 1);
        }
        assert_eq!(out.tokens, torch_tokens, "greedy tokens without a prompt (rp {rp}): gsv (ONNX) vs PyTorch");
        let first: Vec<f32> = py["first_logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(first.len(), out.step_logits[0].len());
        for (i, (a, b)) in out.step_logits[0].iter().zip(&first).enumerate() {
            assert!((a - b).abs() <= 1e-4 + 1e-3 * b.abs(), "first-step logit {i}: ONNX {a} vs PyTorch {b}");
        }
        outs.push((cfg, out));
    }
    let (cfg, out) = outs.swap_remove(0);

    // with the transcript and the prompt codes the GPT sees something else: a different generation
    let (voice, _) = engine.voice(&RefAudio::Path(reference.clone()), &|| false).unwrap();
    let prompt_text = inputs["prompt_text"].as_str().unwrap();
    let prompt_lang = Language::from_api(inputs["prompt_language"].as_str().unwrap()).unwrap();
    let pf = engine.text_features(data, prompt_text, prompt_lang).unwrap();
    let (pids, pbert) = pipeline::gpt_text(Some(&pf), &feats).unwrap();
    assert_eq!(pids.len(), pf.phone_ids.len() + feats.phone_ids.len());
    let prompted = engine.gpt_mut().generate(&GptInput { phone_ids: &pids, bert: pbert.view(), prompt: &voice.prompt_codes }, &cfg, &mut |_| true).unwrap();
    assert_ne!(prompted.tokens, out.tokens, "the prompt changes the generation (otherwise this test shows nothing)");

    // the request path: the same tokens' worth of audio, plus the segment's 0.3 s gap
    let mut run = |r: &TtsRequest| {
        let mut pcm: Vec<i16> = Vec::new();
        let st = engine
            .tts(data, r, &|| false, &mut |seg| {
                pcm.extend_from_slice(&seg.pcm);
                true
            })
            .unwrap();
        (pcm, st)
    };
    let (a, st) = run(&req);
    assert_eq!(st.tokens, out.tokens.len(), "Engine::tts generated what the GPT generates without a prompt");
    assert_eq!(a.len(), out.tokens.len() * 1280 + 9600);
    assert!(a.iter().any(|&s| s != 0), "audio, not silence");
    let mut blank = req.clone();
    blank.prompt_text = " \n".into();
    let (b, _) = run(&blank);
    assert_eq!(a, b, "a transcript of only whitespace is reference-free too");

    // the timbre still comes from the reference: another recording, same tokens, other audio
    let dir = std::env::temp_dir().join(format!("gsv-ref-free-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let other = dir.join("other.wav");
    let mut rd = hound::WavReader::open(&reference).unwrap();
    let spec = rd.spec();
    let mut s: Vec<i16> = rd.samples::<i16>().map(|x| x.unwrap()).collect();
    s.reverse();
    let mut w = hound::WavWriter::create(&other, spec).unwrap();
    for x in s {
        w.write_sample(x).unwrap();
    }
    w.finalize().unwrap();
    let mut req2 = req.clone();
    req2.ref_audio = RefAudio::Path(other);
    let (c, st2) = run(&req2);
    assert_eq!(st2.tokens, st.tokens, "the GPT does not see the reference recording when reference-free");
    assert_eq!(c.len(), a.len());
    assert_ne!(c, a, "SoVITS takes the timbre from the reference recording");
    let _ = std::fs::remove_dir_all(&dir);
}
