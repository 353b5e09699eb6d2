//! Run-time frontend data (third-party dictionaries that are never committed).
//!
//! In: a directory filled by `scripts/setup` (default `.data/frontend/` under the current directory,
//! next to the executable, or under this crate's source root; env `GSV_FRONTEND_DIR` overrides).
//! Out: parsed dictionaries ([`FrontendData`]). A missing file is a clear [`TextError::MissingData`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::en::EnDict;
use super::pinyin::PinyinDict;
use super::TextError;

/// Word lists that upstream keeps in its Python sources (extracted by scripts/setup into zh_lists.json).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ZhLists {
    pub must_neural_tone_words: HashSet<String>,
    pub must_not_neural_tone_words: HashSet<String>,
    pub must_erhua: HashSet<String>,
    pub not_erhua: HashSet<String>,
    pub simplified_characters: String,
    pub traditional_characters: String,
    pub measure_units: Vec<(String, String)>,
    pub com_quantifiers: String,
}

/// Everything the zh / en frontends read at run time.
pub struct FrontendData {
    pub dir: PathBuf,
    pub pinyin: PinyinDict,
    /// polyphonic.rep + polyphonic-fix.rep: word -> TONE3 readings.
    pub polyphonic: HashMap<String, Vec<String>>,
    /// opencpop-strict.txt: pinyin (no tone) -> (initial, final).
    pub opencpop: HashMap<String, (String, String)>,
    pub lists: ZhLists,
    /// traditional -> simplified.
    pub t2s: HashMap<char, char>,
    /// g2pW's character tables, read on first use (see [`Self::g2pw`]).
    pub g2pw: OnceLock<Result<super::g2pw::G2pwTables, String>>,
    /// ToJyutping's dictionary (Cantonese), read on first use (see [`Self::jyutping`]).
    pub jyutping: OnceLock<Result<super::yue::JyutpingDict, String>>,
    /// Korean g2p tables (g2pk2), read on first use (see [`Self::korean`]).
    pub korean: OnceLock<Result<super::ko::KoData, String>>,
    /// OpenCC `s2tw`, read on first use (see [`Self::s2tw`]).
    pub s2tw: OnceLock<Result<super::opencc::S2tw, String>>,
    /// jieba-rs, for `cut_for_search` (tone sandhi's `_split_word`).
    pub jieba: jieba_rs::Jieba,
    /// jieba's POS segmenter (`jieba_fast.posseg` upstream), loaded on first use (see [`Self::posseg`]).
    pub posseg: OnceLock<Result<super::posseg::PosSeg, String>>,
    pub en: EnDict,
    /// `auto`'s language detector (fastText lid.176.ftz + budoux), read on first use (see [`Self::langdetect`]).
    pub langdetect: OnceLock<Result<super::splitlang::LangDetect, String>>,
    /// The Japanese frontend (MeCab + dictionaries), opened on first use (see [`super::ja::frontend`]).
    pub ja: OnceLock<Result<super::ja::JaFrontend, String>>,
}

fn read(dir: &Path, name: &str) -> Result<String, TextError> {
    let p = dir.join(name);
    std::fs::read_to_string(&p).map_err(|e| TextError::MissingData(format!("{}: {e}", p.display())))
}

fn parse_rep_line(line: &str) -> Option<(String, Vec<String>)> {
    let (k, v) = line.split_once(':')?;
    let v: Vec<String> = v
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().trim_matches('\'').trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    Some((k.trim().to_string(), v))
}

impl FrontendData {
    /// The default data dir: `$GSV_FRONTEND_DIR`, else the first `.data/frontend` found in the current
    /// directory, next to the executable (and its parents), or in this crate's source tree.
    pub fn default_dir() -> PathBuf {
        if let Ok(d) = std::env::var("GSV_FRONTEND_DIR") {
            return PathBuf::from(d);
        }
        let mut cands = vec![PathBuf::from(".data/frontend")];
        if let Ok(exe) = std::env::current_exe() {
            for a in exe.ancestors().skip(1).take(4) {
                cands.push(a.join(".data/frontend"));
            }
        }
        cands.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".data/frontend"));
        cands.iter().find(|p| p.join("pinyin_dict.json").is_file()).cloned().unwrap_or_else(|| cands[0].clone())
    }

    /// Loads (once) from [`Self::default_dir`].
    pub fn global() -> Result<&'static FrontendData, TextError> {
        static G: OnceLock<Result<FrontendData, String>> = OnceLock::new();
        match G.get_or_init(|| Self::load(&Self::default_dir()).map_err(|e| match e { TextError::MissingData(m) => m, other => other.to_string() })) {
            Ok(d) => Ok(d),
            Err(e) => Err(TextError::MissingData(e.clone())),
        }
    }

    /// The POS segmenter, read from this data dir on first use.
    pub fn posseg(&self) -> Result<&super::posseg::PosSeg, TextError> {
        match self.posseg.get_or_init(|| super::posseg::PosSeg::load(&self.dir).map_err(|e| match e { TextError::MissingData(m) => m, other => other.to_string() })) {
            Ok(p) => Ok(p),
            Err(e) => Err(TextError::MissingData(e.clone())),
        }
    }

    /// g2pW's tables, read from this data dir on first use.
    pub fn g2pw(&self) -> Result<&super::g2pw::G2pwTables, TextError> {
        match self.g2pw.get_or_init(|| super::g2pw::G2pwTables::load(&self.dir).map_err(|e| match e { TextError::MissingData(m) => m, other => other.to_string() })) {
            Ok(t) => Ok(t),
            Err(e) => Err(TextError::MissingData(e.clone())),
        }
    }

    /// OpenCC `s2tw`, read from `opencc/` of this data dir on first use.
    pub fn s2tw(&self) -> Result<&super::opencc::S2tw, TextError> {
        match self.s2tw.get_or_init(|| super::opencc::S2tw::load(&self.dir.join("opencc")).map_err(|e| match e { TextError::MissingData(m) => m, other => other.to_string() })) {
            Ok(t) => Ok(t),
            Err(e) => Err(TextError::MissingData(e.clone())),
        }
    }

    /// ToJyutping's dictionary, read from this data dir on first use.
    pub fn jyutping(&self) -> Result<&super::yue::JyutpingDict, TextError> {
        match self.jyutping.get_or_init(|| super::yue::JyutpingDict::load(&self.dir).map_err(|e| match e { TextError::MissingData(m) => m, other => other.to_string() })) {
            Ok(t) => Ok(t),
            Err(e) => Err(TextError::MissingData(e.clone())),
        }
    }

    /// `auto`'s language detector, read from this data dir on first use.
    pub fn langdetect(&self) -> Result<&super::splitlang::LangDetect, TextError> {
        match self.langdetect.get_or_init(|| super::splitlang::LangDetect::load(&self.dir).map_err(|e| match e { TextError::MissingData(m) => m, other => other.to_string() })) {
            Ok(t) => Ok(t),
            Err(e) => Err(TextError::MissingData(e.clone())),
        }
    }

    /// The Korean tables, read from this data dir on first use.
    pub fn korean(&self) -> Result<&super::ko::KoData, TextError> {
        match self.korean.get_or_init(|| super::ko::KoData::load(&self.dir).map_err(|e| match e { TextError::MissingData(m) => m, other => other.to_string() })) {
            Ok(t) => Ok(t),
            Err(e) => Err(TextError::MissingData(e.clone())),
        }
    }

    pub fn load(dir: &Path) -> Result<Self, TextError> {
        let pinyin = PinyinDict::from_json(&read(dir, "pinyin_dict.json")?, &read(dir, "phrases_dict.json")?)
            .map_err(TextError::Data)?;
        let mut polyphonic = HashMap::new();
        for f in ["polyphonic.rep", "polyphonic-fix.rep"] {
            for line in read(dir, f)?.lines() {
                if let Some((k, v)) = parse_rep_line(line) {
                    polyphonic.insert(k, v);
                }
            }
        }
        let mut opencpop = HashMap::new();
        for line in read(dir, "opencpop-strict.txt")?.lines() {
            let mut it = line.split('\t');
            let (Some(k), Some(v)) = (it.next(), it.next()) else { continue };
            if let Some((a, b)) = v.trim().split_once(' ') {
                opencpop.insert(k.to_string(), (a.to_string(), b.to_string()));
            }
        }
        let lists: ZhLists =
            serde_json::from_str(&read(dir, "zh_lists.json")?).map_err(|e| TextError::Data(format!("zh_lists.json: {e}")))?;
        let t2s = lists
            .traditional_characters
            .chars()
            .zip(lists.simplified_characters.chars())
            .filter(|(t, s)| t != s)
            .collect();
        let en = EnDict::load(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            pinyin,
            polyphonic,
            opencpop,
            lists,
            t2s,
            g2pw: OnceLock::new(),
            s2tw: OnceLock::new(),
            jyutping: OnceLock::new(),
            korean: OnceLock::new(),
            jieba: jieba_rs::Jieba::new(),
            posseg: OnceLock::new(),
            en,
            ja: OnceLock::new(),
            langdetect: OnceLock::new(),
        })
    }
}
