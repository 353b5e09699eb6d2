//! The optional `g2pw.onnx` path against a Python re-implementation of upstream's g2pW code.
//!
//! `tests/python/g2pw_standin.py` (run here with the export venv: env `GSV_PYTHON`, default `.venv/bin/python`)
//! builds a random-weight stand-in with the real model's interface, adds it to a copy of onnx/demo with
//! `python -m export convert --g2pw`, and records what upstream's preprocessing and prediction (re-implemented in
//! `tests/python/g2pw_reference.py`) give on fixed sentences. Checked here:
//! (a) the Rust preprocessing (model queries and context window, the six input tensors, the dedup run plan)
//!     equals the Python one exactly, on real-format tokenizers;
//! (b) the readings follow the stand-in's argmax, run through ONNX Runtime, and reach the engine's phones;
//! (c) a bundle without `g2pw.onnx` behaves as before (the plain frontend path).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use gsv::engine::Engine;
use gsv::runtime::{Runtime, SessionOptions};
use gsv::text::g2pw;
use gsv::text::g2pw_onnx::{self, G2pw, G2pwLabels, G2pwModel, G2pwOnnxInput};
use gsv::text::{self, FrontendData, Language, SymbolVersion};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the Python side once per test binary; returns its output folder.
fn standin() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("g2pw-standin");
        let py = std::env::var("GSV_PYTHON").map(PathBuf::from).unwrap_or_else(|_| repo().join(".venv/bin/python"));
        let r = Command::new(&py)
            .arg(repo().join("tests/python/g2pw_standin.py"))
            .arg("--out")
            .arg(&out)
            .current_dir(repo())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} (scripts/setup --export makes the venv; or set GSV_PYTHON): {e}", py.display()));
        assert!(r.status.success(), "g2pw_standin.py failed:\n{}\n{}", String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
        out
    })
}

fn expected() -> Value {
    let p = standin().join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn data() -> &'static FrontendData {
    FrontendData::global().expect("frontend data (scripts/setup)")
}

fn rt() -> Runtime {
    Runtime::init(None).expect("ONNX Runtime (scripts/setup)")
}

fn model(bundle: &Path) -> G2pwModel {
    let tok = text::bert::load_tokenizer(&std::fs::read(bundle.join("tokenizer.json")).unwrap()).unwrap();
    let g = bundle.join("g2pw");
    G2pwModel::load(&g.join("POLYPHONIC_CHARS.txt"), &g.join("MONOPHONIC_CHARS.txt"), &g.join("bopomofo_to_pinyin_wo_tune_dict.json"), true, false, Arc::new(tok)).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}
fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}
fn i64s(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}
fn rows_i64(v: &Value) -> Vec<Vec<i64>> {
    v.as_array().unwrap().iter().map(i64s).collect()
}

fn assert_inputs(got: &G2pwOnnxInput, want: &Value, what: &str) {
    let rows = |a: &ndarray::Array2<i64>| a.rows().into_iter().map(|r| r.to_vec()).collect::<Vec<_>>();
    assert_eq!(rows(&got.input_ids), rows_i64(&want["input_ids"]), "{what}: input_ids");
    assert_eq!(rows(&got.token_type_ids), rows_i64(&want["token_type_ids"]), "{what}: token_type_ids");
    assert_eq!(rows(&got.attention_masks), rows_i64(&want["attention_masks"]), "{what}: attention_masks");
    let masks: Vec<Vec<f32>> = got.phoneme_masks.rows().into_iter().map(|r| r.to_vec()).collect();
    let want_masks: Vec<Vec<f32>> = want["phoneme_masks"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).collect();
    assert_eq!(masks, want_masks, "{what}: phoneme_masks");
    assert_eq!(got.char_ids, i64s(&want["char_ids"]), "{what}: char_ids");
    assert_eq!(got.position_ids, i64s(&want["position_ids"]), "{what}: position_ids");
}

#[test]
fn preprocessing_matches_upstream_reimplementation() {
    let dir = standin();
    let exp = expected();
    // word pieces, accents, tabs, spaces, [UNK]: the demo tokenizer plus a few `##` pieces
    let tok_wp = tokenizers::Tokenizer::from_file(dir.join("tokenizer_wp.json")).unwrap();
    let poly = std::fs::read_to_string(dir.join("G2PWModel/POLYPHONIC_CHARS.txt")).unwrap();
    let labels = G2pwLabels::from_polyphonic(&poly, true, false).unwrap();
    assert_eq!(labels.labels.len() as u64, exp["labels"].as_u64().unwrap());
    for case in exp["prep_cases"].as_array().unwrap() {
        let texts = strings(&case["texts"]);
        let got = g2pw_onnx::prepare_onnx_input(&tok_wp, &labels, &texts, &usizes(&case["query_ids"])).unwrap();
        assert_inputs(&got, case, &format!("{texts:?}"));
    }
    // whole batches: queries and windows (_prepare_data), inputs, dedup plan
    let m = model(&dir.join("bundle"));
    for b in exp["batches"].as_array().unwrap() {
        let sents: Vec<Vec<char>> = strings(&b["sentences"]).iter().map(|s| s.chars().collect()).collect();
        let q = g2pw::model_queries(&m.tables, &sents);
        assert_eq!(q.texts, strings(&b["texts"]));
        assert_eq!(q.model_query_ids, usizes(&b["model_query_ids"]));
        assert_eq!(q.result_query_ids, usizes(&b["result_query_ids"]));
        assert_eq!(q.sent_ids, usizes(&b["sent_ids"]));
        let got = g2pw_onnx::prepare_onnx_input(m.tokenizer.as_ref(), &m.labels, &q.texts, &q.model_query_ids).unwrap();
        assert_inputs(&got, b, &format!("{:?}", b["sentences"]));
        let plan: Vec<(Vec<usize>, bool)> = b["plan"].as_array().unwrap().iter().map(|p| (usizes(&p[0]), p[1].as_bool().unwrap())).collect();
        assert_eq!(g2pw_onnx::run_plan(&q.texts), plan);
    }
}

#[test]
fn readings_follow_the_standin_argmax() {
    let dir = standin();
    let exp = expected();
    let bundle = dir.join("bundle");
    let m = model(&bundle);
    let b = gsv::bundle::Bundle::open(&bundle).unwrap();
    let mut g = G2pw::load(&rt(), &b, b.manifest.g2pw.as_ref().unwrap(), &SessionOptions::default(), m.tokenizer.clone()).unwrap();
    g.with_reader(|reader| {
    let s2tw = data().s2tw().unwrap();
    let mut differs = 0;
    for b in exp["batches"].as_array().unwrap() {
        let sents = strings(&b["sentences"]);
        let want: Vec<Option<String>> = b["readings"].as_array().unwrap().iter().map(|x| x.as_str().map(str::to_string)).collect();
        let got = reader.predict(&strings(&b["texts"]), &usizes(&b["model_query_ids"])).unwrap();
        assert_eq!(got, want, "{sents:?}");
        // the converter path: s2tw leaves these traditional sentences as they are, so the same queries are asked
        for s in &sents {
            assert_eq!(&s2tw.convert(s), s);
        }
        let with = g2pw::batch_readings(data(), &sents, Some(reader)).unwrap();
        let without = g2pw::batch_readings(data(), &sents, None).unwrap();
        for (k, (&s, &i)) in usizes(&b["sent_ids"]).iter().zip(usizes(&b["result_query_ids"]).iter()).enumerate() {
            assert_eq!(Some(&with[s][i]), want[k].as_ref(), "sentence {s} char {i}");
            differs += usize::from(with[s][i] != without[s][i]);
        }
        // characters the model is not asked about read as without it
        let asked: Vec<(usize, usize)> = usizes(&b["sent_ids"]).into_iter().zip(usizes(&b["result_query_ids"])).collect();
        for (s, (x, y)) in with.iter().zip(without.iter()).enumerate() {
            for (i, (rx, ry)) in x.iter().zip(y.iter()).enumerate() {
                if !asked.contains(&(s, i)) {
                    assert_eq!(rx, ry, "unasked char {i} of sentence {s}");
                }
            }
        }
    }
    assert!(differs > 0, "the random stand-in should disagree with the contextual reading somewhere");
    });
}

/// Sentences with polyphonic characters (simplified, as users write them).
const SENTENCES: &[&str] = &["我们一起去银行取钱，行不行？", "他长大了，头发很长。", "重要的是重新开始，这本书的重量不轻。"];

#[test]
fn engine_uses_the_bundle_model_and_a_bundle_without_it_is_unchanged() {
    let dir = standin();
    let rt = rt();
    let opts = SessionOptions::default();
    let eopts = gsv::engine::EngineOptions::from(opts.clone());
    let mut with = Engine::load(&rt, &dir.join("bundle"), &eopts).unwrap();
    let mut plain = Engine::load(&rt, &repo().join("onnx/demo"), &eopts).unwrap();
    assert!(with.has_g2pw());
    assert!(!plain.has_g2pw(), "onnx/demo has no g2pw entry");
    // the same model run outside the engine
    let m = model(&dir.join("bundle"));
    let b = gsv::bundle::Bundle::open(&dir.join("bundle")).unwrap();
    let mut g = G2pw::load(&rt, &b, b.manifest.g2pw.as_ref().unwrap(), &opts, m.tokenizer.clone()).unwrap();
    let mut differs = 0;
    for s in SENTENCES {
        for lang in ["zh", "all_zh", "auto"] {
            let l = Language::from_code(lang).unwrap();
            let a = with.text_features(data(), s, l).unwrap();
            let b = plain.text_features(data(), s, l).unwrap();
            let want_a = g.with_reader(|reader| text::phonemize_with_polyphones(data(), s, lang, SymbolVersion::V2, Some(reader))).unwrap();
            let want_b = text::phonemize_with(data(), s, lang, SymbolVersion::V2).unwrap();
            assert_eq!(a.phone_ids, want_a.phone_ids, "{s} {lang}: engine with g2pw.onnx");
            assert_eq!(b.phone_ids, want_b.phone_ids, "{s} {lang}: engine without g2pw.onnx = the plain frontend");
            assert_eq!(a.norm_text, b.norm_text);
            differs += usize::from(a.phone_ids != b.phone_ids);
        }
    }
    assert!(differs > 0, "the stand-in's readings never reached the phones");
    // text without polyphonic characters: identical either way
    for s in ["我爱你，天气晴朗。", "我喜欢你。"] {
        let trad: Vec<char> = data().s2tw().unwrap().convert(s).chars().collect();
        assert!(g2pw::model_queries(&m.tables, &[trad]).texts.is_empty(), "{s} has polyphonic characters");
        assert_eq!(with.text_features(data(), s, Language::Zh).unwrap().phone_ids, plain.text_features(data(), s, Language::Zh).unwrap().phone_ids, "{s}");
    }
}

#[test]
fn bundle_g2pw_entry_is_checked() {
    let dir = standin();
    let src = dir.join("bundle");
    let copy = |name: &str, edit: &dyn Fn(&mut Value)| -> PathBuf {
        let d = dir.join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("g2pw")).unwrap();
        for e in std::fs::read_dir(&src).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
            }
        }
        for e in std::fs::read_dir(src.join("g2pw")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, d.join("g2pw").join(p.file_name().unwrap())).unwrap();
        }
        let mp = d.join("manifest.json");
        let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&mp).unwrap()).unwrap();
        edit(&mut m);
        std::fs::write(&mp, m.to_string()).unwrap();
        d
    };
    let err = |d: &Path| gsv::bundle::Bundle::open(d).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err(&copy("no-table", &|m| m["g2pw"]["monophonic_chars"] = "g2pw/missing.txt".into())).contains("g2pw.monophonic_chars"));
    assert!(err(&copy("v1", &|m| m["model_version"] = "v1".into())).contains("g2pw"));
    // a label count that does not match the tables: the engine refuses the bundle at load
    let d = copy("labels", &|m| m["g2pw"]["labels"] = 7.into());
    let e = Engine::load(&rt(), &d, &SessionOptions::default().into()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("labels"), "{e}");
}
