//! Upstream v2's g2pW converter (`text/g2pw/onnx_api.py`, `_G2PWBaseOnnxConverter`), per clause.
//!
//! In: one clause of normalised Chinese text (Latin letters removed), as `chinese2._g2p` hands it to g2pW.
//! Out: one TONE3 reading per character (punctuation is returned as itself).
//!
//! What upstream does, and what is done here:
//! 1. the clause is converted with OpenCC `s2tw` ([`super::opencc`], OpenCC's own data) — exact;
//! 2. a pypinyin reading (`pinyin(style=TONE3, neutral_tone_with_five=True)`, phrase-aware) is computed on the
//!    traditional clause converted back with `char_convert.tranditional_to_simplified` — exact;
//! 3. per traditional character: characters in `POLYPHONIC_CHARS.txt` (minus upstream's `non_polyphonic` set) go
//!    to the neural model; characters in `MONOPHONIC_CHARS.txt` (minus `non_monophonic`) take the table's bopomofo,
//!    converted with g2pW's `bopomofo_to_pinyin_wo_tune_dict.json` — exact; all others take step 2's reading — exact;
//! 4. the neural model: with a bundle's `g2pw.onnx` ([`super::g2pw_onnx`]) it runs as upstream runs it; without it
//!    the polyphonic character takes its best contextual reading on the *simplified* clause: pypinyin's phrase
//!    dictionary reading (the word dictionary corrections of `polyphonic.rep` and tone sandhi follow in
//!    [`super::zh`], as upstream applies them after g2pW) — an approximation of the model.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::pinyin::PyItem;
use super::{FrontendData, TextError};

/// Characters upstream removes from the polyphonic list (they are read from the tables instead).
const NON_POLYPHONIC: &str = "一不和咋嗲剖差攢倒難奔勁拗肖瘙誒泊听噢";
/// Characters upstream removes from the monophonic table.
const NON_MONOPHONIC: &str = "似攢";

/// g2pW's character tables.
#[derive(Debug, Default)]
pub struct G2pwTables {
    /// `polyphonic_chars_new`: the characters the neural model is asked about.
    pub polyphonic: HashSet<char>,
    /// All characters of POLYPHONIC_CHARS.txt with their candidate readings (TONE3), in file order: the model's
    /// label set per character (`char2phonemes`).
    pub candidates: HashMap<char, Vec<String>>,
    /// `monophonic_chars_dict`, readings converted to TONE3 pinyin.
    pub monophonic: HashMap<char, String>,
    /// `bopomofo_to_pinyin_wo_tune_dict.json`.
    pub bopomofo: HashMap<String, String>,
}

impl G2pwTables {
    /// Reads MONOPHONIC_CHARS.txt, POLYPHONIC_CHARS.txt and g2pw_bopomofo_to_pinyin.json from `dir`.
    pub fn load(dir: &Path) -> Result<Self, TextError> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| TextError::MissingData(format!("{}: {e}", p.display())))
        };
        let bopomofo: HashMap<String, String> = serde_json::from_str(&read("g2pw_bopomofo_to_pinyin.json")?)
            .map_err(|e| TextError::Data(format!("g2pw_bopomofo_to_pinyin.json: {e}")))?;
        Ok(Self::from_texts(&read("MONOPHONIC_CHARS.txt")?, &read("POLYPHONIC_CHARS.txt")?, bopomofo))
    }

    pub fn from_texts(mono: &str, poly: &str, bopomofo: HashMap<String, String>) -> Self {
        let mut t = G2pwTables { bopomofo, ..Default::default() };
        for line in poly.lines() {
            let Some((c, b)) = line.split_once('\t') else { continue };
            let Some(ch) = c.chars().next() else { continue };
            let py = t.to_pinyin(b.trim()).unwrap_or_default();
            t.candidates.entry(ch).or_default().push(py);
        }
        t.polyphonic = t.candidates.keys().copied().filter(|c| !NON_POLYPHONIC.contains(*c)).collect();
        for line in mono.lines() {
            let Some((c, b)) = line.split_once('\t') else { continue };
            let Some(ch) = c.chars().next() else { continue };
            if NON_MONOPHONIC.contains(ch) {
                continue;
            }
            if let Some(py) = t.to_pinyin(b.trim()) {
                t.monophonic.insert(ch, py);
            }
        }
        t
    }

    /// `_convert_bopomofo_to_pinyin`: `ㄏㄠ3` -> `hao3` (None when the syllable is not in the map).
    pub fn to_pinyin(&self, bopomofo: &str) -> Option<String> {
        let tone = bopomofo.chars().last().filter(|c| ('1'..='5').contains(c))?;
        let body = &bopomofo[..bopomofo.len() - tone.len_utf8()];
        self.bopomofo.get(body).map(|p| format!("{p}{tone}"))
    }
}

/// pypinyin `pinyin(text, style=TONE3, neutral_tone_with_five=True)` flattened to one string per item: one
/// item per Chinese character, one per run of other characters (as pypinyin groups them).
fn pinyin_items(data: &FrontendData, text: &str) -> Vec<String> {
    data.pinyin
        .lazy_pinyin(text)
        .into_iter()
        .map(|it| match it {
            PyItem::Han(p) => p,
            PyItem::Other(s) => s,
        })
        .collect()
}

/// A polyphonic character's reading without the neural model: the contextual reading on the simplified clause.
pub trait PolyphoneReader {
    /// `queries`: indices (in chars of `trad`) the model is asked about. Returns one reading per query, or
    /// None to use the fallback.
    fn predict(&self, trad: &str, queries: &[usize]) -> Option<Vec<String>>;
}

/// Per-character readings of one clause (see the module doc). `model`: a loaded `g2pw.onnx`, if any.
pub fn clause_readings(
    data: &FrontendData,
    seg: &str,
    model: Option<&dyn PolyphoneReader>,
) -> Result<Vec<String>, TextError> {
    let tables = data.g2pw()?;
    let s2tw = data.s2tw()?;
    let chars: Vec<char> = seg.chars().collect();
    let mut trad: Vec<char> = s2tw.convert(seg).chars().collect();
    if trad.len() != chars.len() {
        // upstream asserts equal lengths; keep the simplified clause instead of failing the request
        trad = chars.clone();
    }
    let simp_round_trip: String = trad.iter().map(|c| *data.t2s.get(c).unwrap_or(c)).collect();
    let round_trip = pinyin_items(data, &simp_round_trip);
    let contextual = pinyin_items(data, seg);
    let fallback = |i: usize| -> String {
        round_trip.get(i).cloned().unwrap_or_else(|| chars.get(i).map(|c| c.to_string()).unwrap_or_default())
    };
    let mut out: Vec<String> = Vec::with_capacity(chars.len());
    let mut queries = Vec::new();
    for (i, c) in trad.iter().enumerate() {
        if tables.polyphonic.contains(c) {
            queries.push(i);
            out.push(String::new());
        } else if let Some(p) = tables.monophonic.get(c) {
            out.push(p.clone());
        } else {
            out.push(fallback(i));
        }
    }
    if queries.is_empty() {
        return Ok(out);
    }
    let trad_s: String = trad.iter().collect();
    let predicted = model.and_then(|m| m.predict(&trad_s, &queries)).filter(|p| p.len() == queries.len());
    for (k, &i) in queries.iter().enumerate() {
        out[i] = match &predicted {
            Some(p) => p[k].clone(),
            None => contextual.get(i).cloned().unwrap_or_else(|| fallback(i)),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bopomofo() {
        let map: HashMap<String, String> =
            [("ㄏㄠ", "hao"), ("ㄓ", "zhi"), ("ㄩㄢ", "yuan")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let t = G2pwTables::from_texts("好\tㄏㄠ3\n似\tㄙ4\n", "只\tㄓ1\n只\tㄓ3\n一\tㄧ1\n", map);
        assert_eq!(t.to_pinyin("ㄏㄠ3").as_deref(), Some("hao3"));
        assert_eq!(t.to_pinyin("ㄩㄢ5").as_deref(), Some("yuan5"));
        assert_eq!(t.to_pinyin("ㄏㄠ"), None);
        assert_eq!(t.to_pinyin(""), None);
        assert_eq!(t.monophonic.get(&'好').map(String::as_str), Some("hao3"));
        assert!(!t.monophonic.contains_key(&'似'), "non_monophonic");
        assert!(t.polyphonic.contains(&'只'));
        assert!(!t.polyphonic.contains(&'一'), "non_polyphonic");
        assert_eq!(t.candidates[&'只'], ["zhi1", "zhi3"]);
    }
}
