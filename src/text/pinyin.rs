//! pypinyin-equivalent lookups on pypinyin's own data (read from the frontend data dir).
//!
//! In: Chinese text. Out: TONE3 readings (`hao3`, neutral tone as `5`, `ü` written `v`), using pypinyin's
//! forward-maximum-matching phrase segmentation (`mmseg`, `no_non_phrases=True`) and the first reading of
//! single characters, plus pypinyin's strict `to_initials` / `to_finals_tone3`.

use std::collections::{HashMap, HashSet};

/// One item of `lazy_pinyin` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PyItem {
    /// A Chinese character with its TONE3 reading.
    Han(String),
    /// A run of characters without reading (kept as-is, one item, as pypinyin does).
    Other(String),
}

#[derive(Debug, Default)]
pub struct PinyinDict {
    chars: HashMap<char, Vec<String>>,
    phrases: HashMap<String, Vec<String>>,
    prefixes: HashSet<String>,
}

/// Converts one tone-marked syllable (`hǎo`, `lǜ`, `de`) to TONE3 (`hao3`, `lv4`, `de5`).
pub fn to_tone3(marked: &str) -> String {
    let mut tone = 5u8;
    let mut out = String::with_capacity(marked.len() + 1);
    for c in marked.chars() {
        let (base, t): (&str, u8) = match c {
            'ā' => ("a", 1), 'á' => ("a", 2), 'ǎ' => ("a", 3), 'à' => ("a", 4),
            'ē' => ("e", 1), 'é' => ("e", 2), 'ě' => ("e", 3), 'è' => ("e", 4),
            'ī' => ("i", 1), 'í' => ("i", 2), 'ǐ' => ("i", 3), 'ì' => ("i", 4),
            'ō' => ("o", 1), 'ó' => ("o", 2), 'ǒ' => ("o", 3), 'ò' => ("o", 4),
            'ū' => ("u", 1), 'ú' => ("u", 2), 'ǔ' => ("u", 3), 'ù' => ("u", 4),
            'ǖ' => ("v", 1), 'ǘ' => ("v", 2), 'ǚ' => ("v", 3), 'ǜ' => ("v", 4),
            'ü' => ("v", 0),
            'ń' => ("n", 2), 'ň' => ("n", 3), 'ǹ' => ("n", 4),
            'ḿ' => ("m", 2),
            'ế' => ("ê", 2), 'ề' => ("ê", 4),
            '\u{304}' => ("", 1), '\u{301}' => ("", 2), '\u{30c}' => ("", 3), '\u{300}' => ("", 4),
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push_str(base);
        if t != 0 {
            tone = t;
        }
    }
    out.push(char::from(b'0' + tone));
    out
}

const INITIALS: &[&str] = &[
    "zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r", "z", "c", "s",
];

/// Splits a TONE3 syllable into (body, tone digit); no digit -> tone '5'.
fn split_tone(py: &str) -> (&str, char) {
    match py.chars().last() {
        Some(d @ '1'..='5') => (&py[..py.len() - 1], d),
        _ => (py, '5'),
    }
}

/// pypinyin `to_initials(py, strict=True)`.
pub fn to_initials(py: &str) -> String {
    let (body, _) = split_tone(py);
    for i in INITIALS {
        if body.starts_with(i) {
            return (*i).to_string();
        }
    }
    String::new()
}

/// pypinyin `to_finals_tone3(py, strict=True, neutral_tone_with_five=True)`, `ü` as `v`.
pub fn to_finals_tone3(py: &str) -> String {
    let (body, tone) = split_tone(py);
    let body = body.replace('ü', "v");
    let ini = to_initials(&body);
    let rest = &body[ini.len()..];
    let fin = if ini.is_empty() {
        if let Some(no_y) = body.strip_prefix('y') {
            if let Some(r) = no_y.strip_prefix('u').or_else(|| no_y.strip_prefix('v')) {
                format!("v{r}")
            } else if no_y.starts_with('i') {
                no_y.to_string()
            } else {
                format!("i{no_y}")
            }
        } else if let Some(no_w) = body.strip_prefix('w') {
            if no_w.starts_with('u') {
                no_w.to_string()
            } else {
                format!("u{no_w}")
            }
        } else {
            body.clone()
        }
    } else {
        let r = if matches!(ini.as_str(), "j" | "q" | "x") && rest.starts_with('u') {
            format!("v{}", &rest[1..])
        } else {
            rest.to_string()
        };
        match r.as_str() {
            "iu" => "iou".to_string(),
            "ui" => "uei".to_string(),
            "un" => "uen".to_string(),
            _ => r,
        }
    };
    format!("{fin}{tone}")
}

impl PinyinDict {
    /// `pinyin_dict.json`: {"codepoint": "reading,reading"}; `phrases_dict.json`: {"词语": [["cí"], ["yǔ"]]}.
    pub fn from_json(chars_json: &str, phrases_json: &str) -> Result<Self, String> {
        let raw: HashMap<String, String> = serde_json::from_str(chars_json).map_err(|e| format!("pinyin_dict.json: {e}"))?;
        let mut chars = HashMap::with_capacity(raw.len());
        for (k, v) in raw {
            let Some(c) = k.parse::<u32>().ok().and_then(char::from_u32) else { continue };
            let readings: Vec<String> = v.split(',').filter(|s| !s.is_empty()).map(to_tone3).collect();
            if !readings.is_empty() {
                chars.insert(c, readings);
            }
        }
        let raw: HashMap<String, Vec<Vec<String>>> =
            serde_json::from_str(phrases_json).map_err(|e| format!("phrases_dict.json: {e}"))?;
        let mut phrases = HashMap::with_capacity(raw.len());
        let mut prefixes = HashSet::new();
        for (k, v) in raw {
            let readings: Vec<String> = v.iter().map(|r| r.first().map(|s| to_tone3(s)).unwrap_or_default()).collect();
            if readings.len() != k.chars().count() {
                continue;
            }
            let mut p = String::new();
            for c in k.chars() {
                p.push(c);
                prefixes.insert(p.clone());
            }
            phrases.insert(k, readings);
        }
        Ok(Self { chars, phrases, prefixes })
    }

    pub fn is_han(&self, c: char) -> bool {
        self.chars.contains_key(&c)
    }

    /// First reading of a single character.
    pub fn char_reading(&self, c: char) -> Option<&str> {
        self.chars.get(&c).and_then(|v| v.first()).map(String::as_str)
    }

    /// pypinyin's `mmseg` cut (no_non_phrases=True) of a run of Chinese characters.
    fn mmseg(&self, run: &[char]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < run.len() {
            let mut last_valid = 0usize;
            let mut word = String::new();
            let mut all_prefix = true;
            for (k, &c) in run[start..].iter().enumerate() {
                word.push(c);
                if self.prefixes.contains(&word) {
                    if self.phrases.contains_key(&word) {
                        last_valid = k + 1;
                    }
                } else {
                    all_prefix = false;
                    break;
                }
            }
            if last_valid > 0 {
                out.push((start, start + last_valid));
                start += last_valid;
            } else if all_prefix {
                // whole remainder is a prefix but no phrase: single characters
                for i in start..run.len() {
                    out.push((i, i + 1));
                }
                break;
            } else {
                out.push((start, start + 1));
                start += 1;
            }
        }
        out
    }

    /// `lazy_pinyin(text, style=TONE3, neutral_tone_with_five=True)`.
    pub fn lazy_pinyin(&self, text: &str) -> Vec<PyItem> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let han = self.is_han(chars[i]);
            let mut j = i;
            while j < chars.len() && self.is_han(chars[j]) == han {
                j += 1;
            }
            if han {
                let run = &chars[i..j];
                for (a, b) in self.mmseg(run) {
                    let w: String = run[a..b].iter().collect();
                    if b - a > 1 {
                        if let Some(r) = self.phrases.get(&w) {
                            out.extend(r.iter().map(|s| PyItem::Han(s.clone())));
                            continue;
                        }
                    }
                    for &c in &run[a..b] {
                        out.push(PyItem::Han(self.char_reading(c).unwrap_or("").to_string()));
                    }
                }
            } else {
                out.push(PyItem::Other(chars[i..j].iter().collect()));
            }
            i = j;
        }
        out
    }

    /// `lazy_pinyin(word, style=FINALS_TONE3, neutral_tone_with_five=True)`.
    pub fn finals_tone3(&self, text: &str) -> Vec<String> {
        self.lazy_pinyin(text)
            .into_iter()
            .map(|it| match it {
                PyItem::Han(p) => to_finals_tone3(&p),
                PyItem::Other(s) => s,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone3() {
        assert_eq!(to_tone3("hǎo"), "hao3");
        assert_eq!(to_tone3("lǜ"), "lv4");
        assert_eq!(to_tone3("de"), "de5");
        assert_eq!(to_finals_tone3("yuan2"), "van2");
        assert_eq!(to_finals_tone3("jun1"), "vn1");
        assert_eq!(to_finals_tone3("gui4"), "uei4");
        assert_eq!(to_finals_tone3("you3"), "iou3");
        assert_eq!(to_finals_tone3("wu3"), "u3");
        assert_eq!(to_finals_tone3("yi1"), "i1");
        assert_eq!(to_initials("zhang1"), "zh");
        assert_eq!(to_initials("yi1"), "");
    }
}
