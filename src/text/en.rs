//! English g2p (GPT-SoVITS `english.py`) — dictionary side.
//!
//! In: English text. Out: ARPAbet phones. Status: the dictionaries (cmudict.rep / cmudict-fast.rep /
//! engdict-hot.rep) are loaded; the full pipeline (number normalisation, g2p_en GRU for OOV words) is not
//! finished, so [`clean`] returns [`TextError::Unsupported`] for now.

use std::collections::HashMap;
use std::path::Path;

use super::{Cleaned, TextError};

/// Word (upper case) -> phones.
#[derive(Debug, Default)]
pub struct EnDict {
    pub words: HashMap<String, Vec<String>>,
}

impl EnDict {
    /// Reads cmudict-fast.rep then engdict-hot.rep (hot entries override) from the data dir.
    pub fn load(dir: &Path) -> Result<Self, TextError> {
        let mut words = HashMap::new();
        for f in ["cmudict-fast.rep", "engdict-hot.rep"] {
            let p = dir.join(f);
            let text = std::fs::read_to_string(&p).map_err(|e| TextError::MissingData(format!("{}: {e}", p.display())))?;
            for line in text.lines() {
                if line.starts_with(";;;") {
                    continue;
                }
                let mut it = line.split_whitespace();
                let Some(w) = it.next() else { continue };
                let phones: Vec<String> = it.map(str::to_string).collect();
                if !phones.is_empty() {
                    words.insert(w.to_uppercase(), phones);
                }
            }
        }
        Ok(Self { words })
    }
}

/// `clean_text(text, "en", ..)` — not finished.
pub fn clean(_data: &super::FrontendData, _text: &str) -> Result<Cleaned, TextError> {
    Err(TextError::Unsupported("en (English g2p is not finished yet)".into()))
}
