//! Japanese g2p: GPT-SoVITS `text/japanese.py` (`text_normalize` + `g2p(norm_text, with_prosody=True)`).
//!
//! In: text. Out: phones (OpenJTalk phonemes plus the prosody marks `[` `]` `#` of espnet's
//! `pyopenjtalk_g2p_prosody`, and the punctuation marks of the text), no word2ph (upstream has none).
//!
//! pyopenjtalk is replaced by the same OpenJTalk pipeline in pieces:
//! * text normalisation (`text2mecab`) and the NJD rules (pronunciation, digits, accent phrases, accent
//!   types, unvoiced vowels) and the full-context labels (`jpcommon`) come from `jpreprocess`, a Rust port
//!   of OpenJTalk;
//! * morphological analysis is MeCab itself (`libmecab.so.2`, opened at run time) on OpenJTalk's
//!   naist-jdic 1.11 (Debian `open-jtalk-mecab-naist-jdic`), with GPT-SoVITS's user dictionary
//!   (`ja_userdic/userdict.csv`) compiled by `mecab-dict-index` — exactly what upstream loads.
//!
//! `scripts/setup` prepares `<frontend dir>/open_jtalk_dic/` (the system dictionary files, a `dicrc`, and
//! `user.dic`). Everything is loaded on first use; a missing piece is a [`TextError::MissingData`].

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use jlabel::Label;
use jpreprocess_core::word_entry::WordEntry;
use jpreprocess_njd::{NJDNode, NJD};

use super::{Cleaned, FrontendData, TextError};

/// Sub-directory of the frontend data dir that holds the MeCab dictionary.
pub const DICT_SUBDIR: &str = "open_jtalk_dic";
/// The compiled GPT-SoVITS user dictionary inside [`DICT_SUBDIR`].
pub const USER_DIC: &str = "user.dic";

// ---------------------------------------------------------------------------------------------
// MeCab through its C API, loaded at run time (so building gsv needs no MeCab headers or library).

type MecabNew = unsafe extern "C" fn(c_int, *mut *mut c_char) -> *mut c_void;
type MecabStrerror = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type MecabDestroy = unsafe extern "C" fn(*mut c_void);
type MecabSparseTostr2 = unsafe extern "C" fn(*mut c_void, *const c_char, usize) -> *const c_char;

struct MecabApi {
    // Keeps the shared library mapped for as long as the function pointers live.
    _lib: libloading::Library,
    strerror: MecabStrerror,
    destroy: MecabDestroy,
    parse: MecabSparseTostr2,
}

/// A MeCab tagger. MeCab's tagger is not re-entrant, so parsing goes through a mutex.
pub struct Mecab {
    api: MecabApi,
    tagger: Mutex<TaggerPtr>,
}

struct TaggerPtr(*mut c_void);
// SAFETY: the pointer is only used while the mutex is held, and MeCab taggers may move between threads.
unsafe impl Send for TaggerPtr {}

fn c_string(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: MeCab returns NUL-terminated strings that stay valid until the next call on the tagger.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Mecab {
    /// Opens libmecab and a tagger on dictionary `dicdir` (which must hold a `dicrc`), with an optional
    /// user dictionary.
    pub fn open(dicdir: &Path, userdic: Option<&Path>) -> Result<Self, TextError> {
        let setup = "the Japanese and Korean frontends need libmecab (Debian libmecab2)";
        let mut last = String::new();
        let mut lib = None;
        for name in ["libmecab.so.2", "libmecab.so", "libmecab.2.dylib", "libmecab.dylib"] {
            // SAFETY: loading libmecab runs no initialisers with preconditions.
            match unsafe { libloading::Library::new(name) } {
                Ok(l) => {
                    lib = Some(l);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let lib = lib.ok_or_else(|| TextError::MissingData(format!("{setup}: {last}")))?;
        let sym = |e: libloading::Error| TextError::MissingData(format!("{setup}: {e}"));
        // SAFETY: the signatures are those of mecab.h (MeCab 0.99x C API).
        let (new, strerror, destroy, parse) = unsafe {
            (
                *lib.get::<MecabNew>(b"mecab_new\0").map_err(sym)?,
                *lib.get::<MecabStrerror>(b"mecab_strerror\0").map_err(sym)?,
                *lib.get::<MecabDestroy>(b"mecab_destroy\0").map_err(sym)?,
                *lib.get::<MecabSparseTostr2>(b"mecab_sparse_tostr2\0").map_err(sym)?,
            )
        };
        let dicrc = dicdir.join("dicrc");
        if !dicrc.is_file() {
            return Err(TextError::MissingData(format!("MeCab dictionary: {} not found (run scripts/setup)", dicrc.display())));
        }
        let path_arg = |p: &Path| {
            CString::new(p.to_string_lossy().into_owned())
                .map_err(|_| TextError::Data(format!("path with a NUL byte: {}", p.display())))
        };
        // The dicrc doubles as the resource file, so no system-wide mecabrc is needed.
        let mut args = vec![
            CString::new("mecab").unwrap_or_default(),
            CString::new("-r").unwrap_or_default(),
            path_arg(&dicrc)?,
            CString::new("-d").unwrap_or_default(),
            path_arg(dicdir)?,
        ];
        if let Some(u) = userdic {
            args.push(CString::new("-u").unwrap_or_default());
            args.push(path_arg(u)?);
        }
        let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr() as *mut c_char).collect();
        // SAFETY: argv holds args.len() valid C strings that outlive the call (MeCab copies them).
        let tagger = unsafe { new(argv.len() as c_int, argv.as_mut_ptr()) };
        if tagger.is_null() {
            // SAFETY: a null tagger asks for MeCab's global error message.
            let msg = c_string(unsafe { strerror(std::ptr::null_mut()) });
            return Err(TextError::MissingData(format!("MeCab could not open {}: {msg}", dicdir.display())));
        }
        Ok(Self { api: MecabApi { _lib: lib, strerror, destroy, parse }, tagger: Mutex::new(TaggerPtr(tagger)) })
    }

    /// MeCab's default output for `text`: one `(surface, features)` per morpheme (BOS/EOS left out).
    pub fn parse(&self, text: &str) -> Result<Vec<(String, String)>, TextError> {
        let guard = self.tagger.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the tagger is valid (non-null, destroyed only on drop) and used under the lock; the
        // input is passed with its length, the output copied before the lock is released.
        let out = unsafe { (self.api.parse)(guard.0, text.as_ptr() as *const c_char, text.len()) };
        if out.is_null() {
            let msg = c_string(unsafe { (self.api.strerror)(guard.0) });
            return Err(TextError::Data(format!("MeCab: {msg}")));
        }
        let s = c_string(out);
        drop(guard);
        let mut morphs = Vec::new();
        for line in s.lines() {
            if line == "EOS" {
                break;
            }
            match line.split_once('\t') {
                Some((surface, feat)) => morphs.push((surface.to_string(), feat.to_string())),
                None if line.is_empty() => {}
                None => return Err(TextError::Data(format!("MeCab: unexpected output line {line:?}"))),
            }
        }
        Ok(morphs)
    }
}

impl Drop for Mecab {
    fn drop(&mut self) {
        let t = self.tagger.get_mut().unwrap_or_else(|p| p.into_inner());
        if !t.0.is_null() {
            // SAFETY: created by mecab_new, destroyed once.
            unsafe { (self.api.destroy)(t.0) };
            t.0 = std::ptr::null_mut();
        }
    }
}

/// The Japanese frontend's run-time data: the MeCab tagger on naist-jdic + the user dictionary.
pub struct JaFrontend {
    mecab: Mecab,
}

impl JaFrontend {
    /// Opens `<frontend dir>/open_jtalk_dic` (with its `user.dic`, which upstream always loads).
    pub fn load(frontend_dir: &Path) -> Result<Self, TextError> {
        let dicdir: PathBuf = frontend_dir.join(DICT_SUBDIR);
        if !dicdir.join("sys.dic").is_file() {
            return Err(TextError::MissingData(format!(
                "Japanese dictionary (OpenJTalk naist-jdic) not found in {}",
                dicdir.display()
            )));
        }
        let user = dicdir.join(USER_DIC);
        if !user.is_file() {
            return Err(TextError::MissingData(format!(
                "Japanese user dictionary {} not found (compiled from GPT-SoVITS's userdict.csv)",
                user.display()
            )));
        }
        Ok(Self { mecab: Mecab::open(&dicdir, Some(&user))? })
    }

    /// The OpenJTalk front end: normalisation, MeCab, NJD rules, full-context labels
    /// (pyopenjtalk's `make_label(run_frontend(text))`).
    pub fn labels(&self, text: &str) -> Result<Vec<Label>, TextError> {
        let normalized = jpreprocess::normalize_text_for_naist_jdic(text);
        let morphs = self.mecab.parse(&normalized)?;
        let mut nodes = Vec::with_capacity(morphs.len());
        let mut prev_pos = "";
        for (surface, feat) in &morphs {
            // naist-jdic features: pos, 3 pos groups, ctype, cform, orig, read, pron, acc/mora, chain rule
            // (+ chain flag in NJD strings); absent trailing columns are empty, as in jpreprocess's csv loader.
            let mut cols: Vec<&str> = feat.split(',').collect();
            cols.resize(12, "");
            // 18 naist-jdic interjections (ありがとうございます, ...) carry the chain rule "-1", which
            // OpenJTalk matches against no rule and jpreprocess skips with a warning on stderr; "*" (no rule)
            // has the same effect without the warning.
            if cols[10] == "-1" {
                cols[10] = "*";
            }
            let patched = interjection_chain_rule(prev_pos, cols[10]);
            if let Some(r) = patched.as_deref() {
                cols[10] = r;
            }
            prev_pos = feat.split(',').next().unwrap_or("");
            let entry = WordEntry::load(&cols)
                .map_err(|e| TextError::Data(format!("NJD entry for {surface:?} ({feat}): {e}")))?;
            nodes.extend(NJDNode::load(surface, &entry));
        }
        let mut njd = NJD { nodes };
        // jpreprocess's rules assume well-formed dictionary entries; a panic there must not escape.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            njd.preprocess();
            jpreprocess_jpcommon::njdnodes_to_features(&njd.nodes)
        }))
        .map_err(|_| TextError::Data(format!("OpenJTalk front end failed on {text:?}")))
    }
}

/// OpenJTalk picks a word's accent-combination rule by the previous word's POS with a substring test
/// (`strstr(prev_pos, rule_pos)`), so after 感動詞 (お疲れ様でした) the `動詞%` rules apply; jpreprocess matches
/// POS exactly and finds none. For that case the first `動詞%` rule (OpenJTalk takes the first match) is
/// appended as the default rule, which jpreprocess uses when no POS rule matches.
fn interjection_chain_rule(prev_pos: &str, rules: &str) -> Option<String> {
    if prev_pos != "感動詞" || rules.split('/').any(|r| !r.contains('%')) {
        return None;
    }
    let first = rules.split('/').find_map(|r| r.strip_prefix("動詞%"))?;
    Some(format!("{rules}/{first}"))
}

/// Loads (once per [`FrontendData`]) the Japanese frontend.
pub fn frontend(data: &FrontendData) -> Result<&JaFrontend, TextError> {
    match data.ja.get_or_init(|| JaFrontend::load(&data.dir).map_err(|e| e.to_string())) {
        Ok(f) => Ok(f),
        Err(e) => Err(TextError::MissingData(e.clone())),
    }
}

// ---------------------------------------------------------------------------------------------
// espnet's pyopenjtalk_g2p_prosody (drop_unvoiced_vowels=True), on label fields.

/// The value the label regexes give when a field is `xx` (`_numeric_feature_by_regex`).
const NO_MATCH: i32 = -50;

fn a2(l: &Label) -> i32 {
    l.mora.as_ref().map_or(NO_MATCH, |m| m.position_forward as i32)
}

/// Phonemes with prosody marks: `^` first, `$`/`?` last, `_` for pauses, `[` rise, `]` fall,
/// `#` accent-phrase border.
pub fn g2p_prosody(labels: &[Label]) -> Vec<String> {
    let n = labels.len();
    let mut out = Vec::with_capacity(n * 2);
    for (i, lab) in labels.iter().enumerate() {
        let mut p3 = lab.phoneme.c.clone().unwrap_or_else(|| "xx".to_string());
        if matches!(p3.as_str(), "A" | "E" | "I" | "O" | "U") {
            p3 = p3.to_lowercase();
        }
        if p3 == "sil" {
            if i == 0 {
                out.push("^".to_string());
            } else if i == n - 1 {
                // E3 of the last label: whether the last accent phrase is a question.
                match lab.accent_phrase_prev.as_ref().map(|a| a.is_interrogative) {
                    Some(false) => out.push("$".to_string()),
                    Some(true) => out.push("?".to_string()),
                    None => {}
                }
            }
            continue;
        }
        if p3 == "pau" {
            out.push("_".to_string());
            continue;
        }
        let ends_mora = matches!(p3.as_str(), "a" | "e" | "i" | "o" | "u" | "N" | "cl");
        out.push(p3);
        let a1 = lab.mora.as_ref().map_or(NO_MATCH, |m| m.relative_accent_position as i32);
        let a2c = a2(lab);
        let a3 = lab.mora.as_ref().map_or(NO_MATCH, |m| m.position_backward as i32);
        let f1 = lab.accent_phrase_curr.as_ref().map_or(NO_MATCH, |a| a.mora_count as i32);
        let a2_next = labels.get(i + 1).map_or(NO_MATCH, a2);
        if a3 == 1 && a2_next == 1 && ends_mora {
            out.push("#".to_string());
        } else if a1 == 0 && a2_next == a2c + 1 && a2c != f1 {
            out.push("]".to_string());
        } else if a2c == 1 && a2_next == 2 {
            out.push("[".to_string());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// japanese.py

/// `_japanese_characters`: letters, decimal digits (Unicode `\d`), 々, kana, CJK ideographs, full-width
/// digits/letters, half-width katakana. Everything else is a mark that splits the text.
fn is_japanese_char(c: char) -> bool {
    static DIGIT: OnceLock<Option<fancy_regex::Regex>> = OnceLock::new();
    if c.is_ascii_alphanumeric()
        || matches!(c, '\u{3005}' | '\u{3040}'..='\u{30ff}' | '\u{4e00}'..='\u{9fff}' | '\u{ff11}'..='\u{ff19}'
            | '\u{ff21}'..='\u{ff3a}' | '\u{ff41}'..='\u{ff5a}' | '\u{ff66}'..='\u{ff9d}')
    {
        return true;
    }
    if c.is_ascii() || !c.is_numeric() {
        return false;
    }
    // Python's `\d` is Unicode category Nd, as is the regex crate's.
    let re = DIGIT.get_or_init(|| fancy_regex::Regex::new(r"^\d$").ok());
    let mut buf = [0u8; 4];
    re.as_ref().is_some_and(|r| r.is_match(c.encode_utf8(&mut buf)).unwrap_or(false))
}

/// `post_replace_ph`.
fn post_replace(ph: String) -> String {
    let r = match ph.as_str() {
        "：" | "；" | "，" | "·" | "、" => ",",
        "。" | "\n" => ".",
        "！" => "!",
        "？" => "?",
        "..." => "…",
        _ => return ph,
    };
    r.to_string()
}

/// `preprocess_jap(text, with_prosody=True)` + `post_replace_ph`.
pub fn g2p(fe: &JaFrontend, norm_text: &str) -> Result<Vec<String>, TextError> {
    // symbols_to_japanese, then lower case.
    let text = norm_text.replace('％', "パーセント").to_lowercase();
    let mut phones = Vec::new();
    let mut piece = String::new();
    let flush = |piece: &mut String, phones: &mut Vec<String>| -> Result<(), TextError> {
        if !piece.is_empty() {
            let p = g2p_prosody(&fe.labels(piece)?);
            if p.len() > 2 {
                phones.extend(p[1..p.len() - 1].iter().cloned());
            }
            piece.clear();
        }
        Ok(())
    };
    for c in text.chars() {
        if is_japanese_char(c) {
            piece.push(c);
            continue;
        }
        flush(&mut piece, &mut phones)?;
        if c != ' ' {
            phones.push(c.to_string());
        }
    }
    flush(&mut piece, &mut phones)?;
    Ok(phones.into_iter().map(post_replace).collect())
}

/// `clean_text(text, "ja")` before the symbol check: `text_normalize` then `g2p`.
pub fn clean(data: &FrontendData, text: &str) -> Result<Cleaned, TextError> {
    let norm_text = super::cut::replace_consecutive_punctuation(text);
    let fe = frontend(data)?;
    let phones = g2p(fe, &norm_text)?;
    Ok(Cleaned { phones, word2ph: None, norm_text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_chars() {
        for c in ['a', 'Z', '5', '々', 'あ', 'ー', '・', '漢', '１', 'Ａ', 'ｚ', 'ｱ', '٣', '０'] {
            assert!(is_japanese_char(c), "{c}");
        }
        for c in [' ', '、', '。', '！', '?', '％', '\n', '①', 'é', '가'] {
            assert!(!is_japanese_char(c), "{c}");
        }
    }

    #[test]
    fn missing_dictionary_is_a_clear_error() {
        match JaFrontend::load(Path::new("/nonexistent/gsv-frontend")) {
            Err(e @ TextError::MissingData(_)) => assert!(e.to_string().contains("scripts/setup"), "{e}"),
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("loaded a dictionary from nowhere"),
        }
    }

    #[test]
    fn interjection_rules() {
        let r = "形容詞%F2@-1/動詞%F2@0/動詞%F2@1";
        assert_eq!(interjection_chain_rule("感動詞", r).as_deref(), Some("形容詞%F2@-1/動詞%F2@0/動詞%F2@1/F2@0"));
        assert_eq!(interjection_chain_rule("名詞", r), None);
        assert_eq!(interjection_chain_rule("感動詞", "C1"), None);
        assert_eq!(interjection_chain_rule("感動詞", "名詞%F1"), None);
    }

    #[test]
    fn post_replace_marks() {
        let got: Vec<String> = ["、", "。", "！", "？", "：", "a", "…"].iter().map(|s| post_replace(s.to_string())).collect();
        assert_eq!(got, [",", ".", "!", "?", ",", "a", "…"]);
    }
}
