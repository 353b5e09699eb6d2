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

/// Upstream's default `g2pw_polyphonic_context_chars`: the model sees the sentence from 16 characters before
/// the first polyphonic character to 16 after the last one.
pub const POLYPHONIC_CONTEXT_CHARS: usize = 16;

/// g2pW's neural polyphone model (`g2pw.onnx` of a bundle, [`super::g2pw_onnx`]).
pub trait PolyphoneReader {
    /// The model's own character tables (its POLYPHONIC_CHARS/MONOPHONIC_CHARS and bopomofo map): they decide
    /// which characters are asked about, as upstream reads them from the model folder.
    fn tables(&self) -> &G2pwTables;
    /// `prepare_onnx_input` + `predict` + the style conversion: one TONE3 pinyin per query (`None` where the
    /// predicted bopomofo has no pinyin). `texts[k]` is the (traditional) text the k-th query is asked in,
    /// `query_ids[k]` the character index in it.
    fn predict(&self, texts: &[String], query_ids: &[usize]) -> Result<Vec<Option<String>>, TextError>;
}

/// `_prepare_data`'s model queries for a batch of traditional sentences.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelQueries {
    /// The text each query is asked in: its sentence cut to the context window.
    pub texts: Vec<String>,
    /// Index of the polyphonic character in `texts[k]`.
    pub model_query_ids: Vec<usize>,
    /// Index of the polyphonic character in its sentence.
    pub result_query_ids: Vec<usize>,
    pub sent_ids: Vec<usize>,
}

/// The model queries of `_prepare_data`: for each sentence with polyphonic characters (per `tables`), one query
/// per such character, all asked in the same window of the sentence ([`POLYPHONIC_CONTEXT_CHARS`] around
/// the first and last of them).
pub fn model_queries(tables: &G2pwTables, sentences: &[Vec<char>]) -> ModelQueries {
    let mut q = ModelQueries::default();
    for (sent_id, sent) in sentences.iter().enumerate() {
        let poly: Vec<usize> = (0..sent.len()).filter(|&i| tables.polyphonic.contains(&sent[i])).collect();
        let (Some(&first), Some(&last)) = (poly.first(), poly.last()) else { continue };
        let left = first.saturating_sub(POLYPHONIC_CONTEXT_CHARS);
        let right = (last + POLYPHONIC_CONTEXT_CHARS + 1).min(sent.len());
        let window: String = sent[left..right].iter().collect();
        for &i in &poly {
            q.texts.push(window.clone());
            q.model_query_ids.push(i - left);
            q.result_query_ids.push(i);
            q.sent_ids.push(sent_id);
        }
    }
    q
}

/// Per-character readings of one clause (see the module doc). `model`: a bundle's `g2pw.onnx`, if any.
pub fn clause_readings(
    data: &FrontendData,
    seg: &str,
    model: Option<&dyn PolyphoneReader>,
) -> Result<Vec<String>, TextError> {
    Ok(batch_readings(data, &[seg.to_string()], model)?.pop().unwrap_or_default())
}

/// `G2PWOnnxConverter.__call__` on a batch of clauses (upstream's `_g2p` sends all clauses of one text at
/// once): per clause, one TONE3 reading per character (punctuation is returned as itself).
pub fn batch_readings(
    data: &FrontendData,
    segs: &[String],
    model: Option<&dyn PolyphoneReader>,
) -> Result<Vec<Vec<String>>, TextError> {
    let tables = match model {
        Some(m) => m.tables(),
        None => data.g2pw()?,
    };
    let s2tw = data.s2tw()?;
    let mut out: Vec<Vec<String>> = Vec::with_capacity(segs.len());
    let mut trads: Vec<Vec<char>> = Vec::with_capacity(segs.len());
    let mut contextual: Vec<Vec<String>> = Vec::with_capacity(segs.len());
    for seg in segs {
        let chars: Vec<char> = seg.chars().collect();
        let mut trad: Vec<char> = s2tw.convert(seg).chars().collect();
        if trad.len() != chars.len() {
            // upstream asserts equal lengths; keep the simplified clause instead of failing the request
            trad = chars.clone();
        }
        let simp_round_trip: String = trad.iter().map(|c| *data.t2s.get(c).unwrap_or(c)).collect();
        let round_trip = pinyin_items(data, &simp_round_trip);
        let fallback = |i: usize| -> String {
            round_trip.get(i).cloned().unwrap_or_else(|| chars.get(i).map(|c| c.to_string()).unwrap_or_default())
        };
        let mut readings = Vec::with_capacity(chars.len());
        for (i, c) in trad.iter().enumerate() {
            if tables.polyphonic.contains(c) {
                readings.push(String::new());
            } else if let Some(p) = tables.monophonic.get(c) {
                readings.push(p.clone());
            } else {
                readings.push(fallback(i));
            }
        }
        // without the model: the contextual reading of the simplified clause (module doc, step 4)
        let ctx = pinyin_items(data, seg);
        let ctx: Vec<String> = (0..chars.len()).map(|i| ctx.get(i).cloned().unwrap_or_else(|| fallback(i))).collect();
        out.push(readings);
        trads.push(trad);
        contextual.push(ctx);
    }
    let q = model_queries(tables, &trads);
    let predicted: Vec<Option<String>> = match model {
        Some(m) if !q.texts.is_empty() => m.predict(&q.texts, &q.model_query_ids)?,
        _ => Vec::new(),
    };
    for (k, (&s, &i)) in q.sent_ids.iter().zip(q.result_query_ids.iter()).enumerate() {
        // a prediction whose bopomofo has no pinyin (upstream would fail later) keeps the contextual reading
        let r = predicted.get(k).cloned().flatten().unwrap_or_else(|| contextual[s][i].clone());
        out[s][i] = r;
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
