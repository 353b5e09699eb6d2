//! Text-frontend checks against a golden folder (for `gsv parity`).
//!
//! In: a golden folder laid out as `../shared/golden` (`text_frontend/clean_text_cases.json`, optionally
//! `text_frontend/text_split_cases.json`; the symbol table version is taken from the `symbols_v1.json` /
//! `symbols_v2.json` file next to them). Out: one [`TextCheck`] per case: phones, ids, norm_text and word2ph must
//! all equal what GPT-SoVITS recorded. Everything is read from the folder, so unseen golden sets work unchanged.

use std::path::Path;

use serde_json::Value;

use super::{clean_text, cut, phonemize_with, FrontendData, Lang, SymbolTable, SymbolVersion};

/// One check: `PASS|FAIL text <name>` plus what differed.
#[derive(Debug, Clone)]
pub struct TextCheck {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

impl std::fmt::Display for TextCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} text {}", if self.pass { "PASS" } else { "FAIL" }, self.name)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(|x| x.as_str().unwrap_or("").to_string()).collect()).unwrap_or_default()
}

fn short(s: &str) -> String {
    let t: String = s.chars().take(24).collect();
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t
    }
}

/// Runs every text case of `dir` (a golden folder). A folder without text cases gives one failing check.
pub fn check(data: &FrontendData, dir: &Path) -> Vec<TextCheck> {
    let tf = dir.join("text_frontend");
    let version = if tf.join("symbols_v1.json").is_file() && !tf.join("symbols_v2.json").is_file() {
        SymbolVersion::V1
    } else {
        SymbolVersion::V2
    };
    let vname = if version == SymbolVersion::V1 { "v1" } else { "v2" };
    let mut out = Vec::new();
    let fail = |name: &str, detail: String| TextCheck { name: name.to_string(), pass: false, detail };
    let cases: Value = match std::fs::read_to_string(tf.join("clean_text_cases.json")).map(|s| serde_json::from_str(&s)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return vec![fail("clean_text_cases", format!("invalid json: {e}"))],
        Err(e) => return vec![fail("clean_text_cases", format!("{}: {e}", tf.display()))],
    };
    let table = SymbolTable::builtin(version);
    for (k, c) in cases["cases"].as_array().map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
        let lang = c["language"].as_str().unwrap_or("");
        let text = c["text"].as_str().unwrap_or("");
        let name = format!("{vname} {lang} #{k} {}", short(text));
        let want_phones = strs(&c["phones"]);
        let want_ids: Vec<i64> = c["phone_ids"].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default();
        let want_norm = c["norm_text"].as_str().unwrap_or("");
        let want_w2p: Option<Vec<usize>> =
            c["word2ph"].as_array().map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0) as usize).collect());
        let got = if lang == "zh_mixed" {
            phonemize_with(data, text, "zh", version).map(|p| (p.phones, p.phone_ids, None, p.norm_text))
        } else {
            let l = match lang {
                "zh" => Lang::Zh,
                "en" => Lang::En,
                "ja" => Lang::Ja,
                "ko" => Lang::Ko,
                "yue" => Lang::Yue,
                other => {
                    out.push(fail(&name, format!("unknown case language {other:?}")));
                    continue;
                }
            };
            clean_text(data, text, l, version).and_then(|r| Ok((table.ids(&r.phones)?, r.phones, r.word2ph, r.norm_text))).map(
                |(ids, ph, w, n)| (ph, ids, w, n),
            )
        };
        let check = match got {
            Err(e) => fail(&name, format!("error: {e}")),
            Ok((ph, ids, w2p, norm)) => {
                let mut why = Vec::new();
                if ph != want_phones {
                    why.push(format!("phones want [{}] got [{}]", want_phones.join(" "), ph.join(" ")));
                } else if ids != want_ids {
                    why.push("phone ids differ".to_string());
                }
                if norm != want_norm {
                    why.push(format!("norm_text want {want_norm:?} got {norm:?}"));
                }
                if lang != "zh_mixed" && w2p != want_w2p {
                    why.push(format!("word2ph want {want_w2p:?} got {w2p:?}"));
                }
                TextCheck { name, pass: why.is_empty(), detail: why.join("; ") }
            }
        };
        out.push(check);
    }
    if let Ok(Ok(j)) = std::fs::read_to_string(tf.join("text_split_cases.json")).map(|s| serde_json::from_str::<Value>(&s)) {
        for (k, p) in j["paragraphs"].as_array().map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
            let text = p["text"].as_str().unwrap_or("");
            let lang = p["language"].as_str().unwrap_or("");
            if let Some(methods) = p["methods"].as_object() {
                for (m, want) in methods {
                    let got = cut::cut(m, text).map_err(|e| e.to_string());
                    let ok = got.as_deref().ok() == want.as_str();
                    out.push(TextCheck { name: format!("split #{k} {m}"), pass: ok, detail: if ok { String::new() } else { format!("{got:?}") } });
                }
            }
            for m in ["cut5", "cut1"] {
                let key = format!("TextPreprocessor.pre_seg_text(text, lang, '{m}')");
                if p.get(&key).is_none() {
                    continue;
                }
                let got = cut::pre_seg_text(text, lang, m).map_err(|e| e.to_string());
                let ok = got.as_ref().ok() == Some(&strs(&p[&key]));
                out.push(TextCheck { name: format!("split #{k} pre_seg {m}"), pass: ok, detail: if ok { String::new() } else { format!("{got:?}") } });
            }
        }
    }
    if out.is_empty() {
        out.push(fail("clean_text_cases", "no cases".to_string()));
    }
    out
}
