//! Cantonese g2p (upstream v2 `text/cantonese.py`).
//!
//! In: raw Cantonese text (Chinese characters). Out: [`Cleaned`] with v2 Cantonese phones (`Yg`, `Yau2`,
//! punctuation), word2ph (2 per syllable, 1 per punctuation mark) per character of the normalised text.
//! Pipeline, as upstream: `zh_normalization`'s `TextNormalizer` (numbers, dates, units ... read in Mandarin
//! characters, then read in Cantonese) -> cantonese.py's own punctuation map (no run collapsing) -> ToJyutping's
//! longest-match reading of every character (its `trie.txt`, from the ToJyutping 3.2.0 wheel at set-up) ->
//! initial/final split with cantonese.py's INITIALS list, `Y` prefix, tone on the final.
//! A character ToJyutping has no reading for is an error (upstream raises there too).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::zh_norm;
use super::{Cleaned, FrontendData, TextError};

const ONSET: [&str; 20] = ["", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "ng", "gw", "kw", "w", "h", "z", "c", "s", "j"];
const NUCLEUS: [&str; 6] = ["aa", "a", "e", "i", "o", "u"];
const RHYME: [&str; 13] = ["oe", "oen", "oeng", "oet", "oek", "eoi", "eon", "eot", "yu", "yun", "yut", "m", "ng"];
const CODA: [&str; 9] = ["", "i", "u", "m", "n", "ng", "p", "t", "k"];

/// ToJyutping's syllable id -> jyutping (`Jyutping.__init__` from an int).
fn jyutping_of(id: usize) -> String {
    let onset = ONSET.get(id / 402).copied().unwrap_or("");
    let r = (id % 402) / 6;
    let rhyme = if r >= 54 {
        RHYME.get(r - 54).copied().unwrap_or("").to_string()
    } else {
        format!("{}{}", NUCLEUS.get(r / 9).copied().unwrap_or(""), CODA[r % 9])
    };
    format!("{onset}{rhyme}{}", id % 6 + 1)
}

/// ToJyutping's trie: key -> first value (its syllables), plus every prefix of a key.
#[derive(Debug, Default)]
pub struct JyutpingDict {
    values: HashMap<String, Vec<String>>,
    prefixes: HashSet<String>,
}

impl JyutpingDict {
    pub fn load(dir: &Path) -> Result<Self, TextError> {
        let p = dir.join("jyutping_trie.txt");
        let s = std::fs::read_to_string(&p).map_err(|e| TextError::MissingData(format!("{}: {e}", p.display())))?;
        Self::parse(&s).ok_or_else(|| TextError::Data(format!("{}: not a ToJyutping trie", p.display())))
    }

    /// Parses ToJyutping's serialised trie (the loop at the top of its `Trie.py`).
    pub fn parse(s: &str) -> Option<Self> {
        let c: Vec<char> = s.chars().collect();
        let mut d = JyutpingDict::default();
        let mut stack: Vec<String> = vec![String::new()];
        let mut i = 1;
        while let Some(top) = stack.last() {
            let mut key = top.clone();
            while (*c.get(i)? as u32) >= 256 {
                key.push(c[i]);
                i += 1;
            }
            let depth = key.chars().count();
            let mut first: Option<Vec<String>> = None;
            while (*c.get(i)? as u32) < 123 {
                let mut w = Vec::new();
                let mut n = 0;
                while n < depth {
                    let a = (*c.get(i)? as usize).checked_sub(33)?;
                    let b = (*c.get(i + 1)? as usize).checked_sub(33)?;
                    w.push(jyutping_of(a * 90 + b));
                    i += 2;
                    if c.get(i) == Some(&'~') {
                        i += 1;
                    } else {
                        n += 1;
                    }
                }
                first.get_or_insert(w);
            }
            if let Some(w) = first {
                let mut p = String::new();
                for ch in key.chars() {
                    p.push(ch);
                    d.prefixes.insert(p.clone());
                }
                d.values.insert(key.clone(), w);
            }
            match c.get(i) {
                Some('{') => {
                    i += 1;
                    stack.push(key);
                }
                Some('}') => {
                    i += 1;
                    stack.pop();
                }
                _ => {}
            }
        }
        Some(d)
    }

    /// `ToJyutping.get_jyutping_list`: (character, reading) by longest match; a multi-syllable reading of one
    /// character is joined with spaces, as ToJyutping does.
    pub fn get(&self, text: &str) -> Vec<(char, Option<String>)> {
        let s: Vec<char> = text.chars().collect();
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            let mut best: Option<(&Vec<String>, usize)> = None;
            let mut key = String::new();
            for (j, &ch) in s.iter().enumerate().skip(i) {
                key.push(ch);
                if !self.prefixes.contains(&key) {
                    break;
                }
                if let Some(v) = self.values.get(&key) {
                    best = Some((v, j));
                }
            }
            match best {
                Some((v, k)) if k > i => {
                    for (n, &ch) in s[i..=k].iter().enumerate() {
                        out.push((ch, v.get(n).cloned()));
                    }
                    i = k + 1;
                }
                Some((v, _)) => {
                    out.push((s[i], Some(v.join(" "))));
                    i += 1;
                }
                None => {
                    out.push((s[i], None));
                    i += 1;
                }
            }
        }
        out
    }
}

/// cantonese.py `replace_punctuation` (its own map: no 嗯/呣 rewrite, `~` and `～` become `-`).
fn replace_punctuation(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mapped = if c == '.' && chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') {
            i += 2;
            '…'
        } else {
            match c {
                '：' | '；' | '，' | '·' | '、' => ',',
                '。' | '\n' | '$' => '.',
                '！' => '!',
                '？' => '?',
                '—' | '～' | '~' => '-',
                other => other,
            }
        };
        i += 1;
        if ('\u{4e00}'..='\u{9fa5}').contains(&mapped) || zh_norm::PUNCT.contains(&mapped) {
            out.push(mapped);
        }
    }
    out
}

/// cantonese.py `text_normalize`.
pub fn text_normalize(data: &FrontendData, text: &str) -> String {
    zh_norm::split_sentences(data, text).iter().map(|s| replace_punctuation(&zh_norm::normalize_sentence(data, s))).collect()
}

/// cantonese.py's INITIALS, in its order (the first prefix that matches is the initial).
const INITIALS: [&str; 47] = [
    "aa", "aai", "aak", "aap", "aat", "aau", "ai", "au", "ap", "at", "ak", "a", "p", "b", "e", "ts", "t", "dz", "d", "kw",
    "k", "gw", "g", "f", "h", "l", "m", "ng", "n", "s", "y", "w", "c", "z", "j", "ong", "on", "ou", "oi", "ok", "o", "uk",
    "ung", "sp", "spl", "spn", "sil",
];

fn is_jyutping(s: &str) -> bool {
    // ^([a-z]+[1-6]+[ ]?)+$
    let mut state = 0; // 0: expecting letters, 1: in letters, 2: in digits, 3: after a space
    for c in s.chars() {
        state = match (state, c) {
            (0 | 1 | 3, 'a'..='z') => 1,
            (1 | 2, '1'..='6') => 2,
            (2, ' ') => 3,
            (2, 'a'..='z') => 1,
            _ => return false,
        };
    }
    state == 2 || state == 3
}

/// cantonese.py `g2p` on normalised text.
pub fn g2p(data: &FrontendData, norm: &str) -> Result<(Vec<String>, Vec<usize>), TextError> {
    let dict = data.jyutping()?;
    let mut syllables: Vec<String> = Vec::new();
    for (ch, reading) in dict.get(norm) {
        if zh_norm::PUNCT.contains(&ch) {
            syllables.push(ch.to_string());
            continue;
        }
        match reading {
            Some(r) if is_jyutping(&r) => syllables.push(r),
            _ => return Err(TextError::Data(format!("no Cantonese reading for {ch:?}"))),
        }
    }
    let mut phones = Vec::new();
    let mut word2ph = Vec::new();
    for syl in syllables {
        if syl.chars().count() == 1 && zh_norm::PUNCT.contains(&syl.chars().next().unwrap_or(' ')) {
            phones.push(syl);
            word2ph.push(1);
            continue;
        }
        let (body, tone) = match syl.chars().last() {
            Some(t @ '0'..='9') => (&syl[..syl.len() - 1], t.to_string()),
            _ => (syl.as_str(), String::new()),
        };
        let Some(initial) = INITIALS.iter().find(|i| body.starts_with(**i)) else { continue };
        let (ini, fin) = if body.starts_with("nga") {
            (&body[..2], if body.len() > 2 { &body[2..] } else { &body[body.len() - 1..] })
        } else {
            let rest = &body[initial.len()..];
            (*initial, if rest.is_empty() { &initial[initial.len() - 1..] } else { rest })
        };
        phones.push(format!("Y{ini}"));
        // tone 0 (no digit) keeps the bare final, as upstream
        let t = if tone == "0" { String::new() } else { tone };
        phones.push(format!("Y{fin}{t}"));
        word2ph.push(2);
    }
    Ok((phones, word2ph))
}

/// `clean_text(text, "yue", "v2")` before the UNK mapping.
pub fn clean(data: &FrontendData, text: &str) -> Result<Cleaned, TextError> {
    let norm = text_normalize(data, text);
    let (phones, word2ph) = g2p(data, &norm)?;
    if word2ph.len() != norm.chars().count() {
        return Err(TextError::Data(format!("word2ph has {} entries for {} characters", word2ph.len(), norm.chars().count())));
    }
    Ok(Cleaned { phones, word2ph: Some(word2ph), norm_text: norm })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syllable_ids() {
        // id = tone + rhyme*6 + onset*402 (ToJyutping's Jyutping class)
        assert_eq!(jyutping_of(0), "aa1");
        assert_eq!(jyutping_of(402 * 8 + 6 * (9 * 2 + 5) + 4), "leng5"); // l + e + ng, tone 5
        assert_eq!(jyutping_of(402 * 19 + 6 * (54 + 8) + 5), "jyu6");
        assert!(is_jyutping("liu4 ge3") && is_jyutping("nei5") && !is_jyutping("nei") && !is_jyutping(""));
    }

    #[test]
    fn trie() {
        // {你<nei5>好<hou2>{好<nei5 hou2 for the pair>}}, built with the same encoding
        let enc = |id: usize| -> String {
            [char::from_u32((id / 90 + 33) as u32).unwrap(), char::from_u32((id % 90 + 33) as u32).unwrap()].iter().collect()
        };
        let nei5 = 402 * 7 + 6 * (2 * 9 + 1) + 4; // n + ei + 5
        let hou2 = 402 * 15 + 6 * (4 * 9 + 2) + 1; // h + ou + 2
        let t = format!("{{你{}{{好{}{}}}好{}}}", enc(nei5), enc(nei5), enc(hou2), enc(hou2));
        let d = JyutpingDict::parse(&t).expect("trie");
        assert_eq!(jyutping_of(nei5), "nei5");
        let got: Vec<(char, Option<String>)> = d.get("你好好x");
        assert_eq!(
            got,
            vec![('你', Some("nei5".into())), ('好', Some("hou2".into())), ('好', Some("hou2".into())), ('x', None)]
        );
    }
}
