//! Chinese g2p (GPT-SoVITS `chinese2` for v2, `chinese` for v1).
//!
//! In: raw Chinese text. Out: [`Cleaned`] with opencpop phones (`zh`, `ang1`, punctuation), word2ph per
//! character of the normalised text. Pipeline: [`zh_norm::text_normalize`] → clauses → jieba POS cut ([`super::posseg`]) →
//! tone-sandhi pre-merge → per word: readings (v2: g2pW's converter over all clauses at once ([`super::g2pw`]),
//! with a bundle's `g2pw.onnx` for the polyphonic characters when there is one, then polyphonic.rep
//! corrections; v1: pypinyin per word) → tone sandhi → erhua (v2) → opencpop symbols.

use super::data::FrontendData;
use super::g2pw::PolyphoneReader;
use super::pinyin::{to_finals_tone3, to_initials, PyItem};
use super::zh_norm::{self, PUNCT};
use super::{Cleaned, SymbolVersion, TextError};

/// Python `str.isnumeric()` for one character (Unicode digits plus CJK numerals).
fn py_isnumeric(c: char) -> bool {
    c.is_numeric() || "〇一二三四五六七八九十百千万亿兆两零壹贰叁肆伍陆柒捌玖拾佰仟廿卅卌".contains(c)
}

fn set_tone(f: &mut String, tone: char) {
    if !f.is_empty() {
        f.pop();
        f.push(tone);
    }
}

fn tone_of(f: &str) -> Option<char> {
    f.chars().last()
}

fn all_tone_three(finals: &[String]) -> bool {
    finals.iter().all(|x| tone_of(x) == Some('3'))
}

type Seg = Vec<(String, String)>;

struct Sandhi<'a> {
    data: &'a FrontendData,
}

impl Sandhi<'_> {
    fn finals_of(&self, word: &str) -> Vec<String> {
        self.data.pinyin.finals_tone3(word)
    }

    fn split_word(&self, word: &str) -> (String, String) {
        let mut list: Vec<&str> = self.data.jieba.cut_for_search(word, true).into_iter().map(|t| t.word).collect();
        list.sort_by_key(|w| w.chars().count());
        let first = list.first().copied().unwrap_or(word);
        if let Some(rest) = word.strip_prefix(first) {
            (first.to_string(), rest.to_string())
        } else {
            let cut = word.len().saturating_sub(first.len());
            (word[..cut].to_string(), first.to_string())
        }
    }

    fn merge_bu(&self, seg: Seg) -> Seg {
        let mut out = Vec::new();
        let mut last = String::new();
        for (w, p) in seg {
            let w = if last == "不" { format!("不{w}") } else { w };
            if w != "不" {
                out.push((w.clone(), p));
            }
            last = w;
        }
        if last == "不" {
            out.push(("不".to_string(), "d".to_string()));
        }
        out
    }

    fn merge_yi(&self, seg: Seg) -> Seg {
        let mut out: Seg = Vec::new();
        let mut i = 0;
        while i < seg.len() {
            let (w, p) = &seg[i];
            if i >= 1 && w == "一" && i + 1 < seg.len() {
                if let Some(last) = out.last().cloned() {
                    if last.0 == seg[i + 1].0 && last.1 == "v" && seg[i + 1].1 == "v" {
                        let n = out.len();
                        out[n - 1] = (format!("{}一{}", last.0, seg[i + 1].0), last.1);
                        i += 2;
                        continue;
                    }
                }
            }
            out.push((w.clone(), p.clone()));
            i += 1;
        }
        let mut out2: Seg = Vec::new();
        for (w, p) in out {
            match out2.last_mut() {
                Some(last) if last.0 == "一" => last.0.push_str(&w),
                _ => out2.push((w, p)),
            }
        }
        out2
    }

    fn merge_reduplication(&self, seg: Seg) -> Seg {
        let mut out: Seg = Vec::new();
        for (w, p) in seg {
            match out.last_mut() {
                Some(last) if last.0 == w => last.0.push_str(&w),
                _ => out.push((w, p)),
            }
        }
        out
    }

    fn is_redup(w: &str) -> bool {
        let c: Vec<char> = w.chars().collect();
        c.len() == 2 && c[0] == c[1]
    }

    fn merge_three(&self, seg: Seg, whole_word: bool) -> Seg {
        let finals: Vec<Vec<String>> = seg.iter().map(|(w, _)| self.finals_of(w)).collect();
        let mut merged_last = vec![false; seg.len()];
        let mut out: Seg = Vec::new();
        for (i, (w, p)) in seg.iter().enumerate() {
            let cond = i >= 1
                && !merged_last[i - 1]
                && if whole_word {
                    all_tone_three(&finals[i - 1]) && all_tone_three(&finals[i])
                } else {
                    finals[i - 1].last().and_then(|f| tone_of(f)) == Some('3')
                        && finals[i].first().and_then(|f| tone_of(f)) == Some('3')
                };
            if cond && !Self::is_redup(&seg[i - 1].0) && seg[i - 1].0.chars().count() + w.chars().count() <= 3 {
                if let Some(last) = out.last_mut() {
                    last.0.push_str(w);
                    merged_last[i] = true;
                    continue;
                }
            }
            out.push((w.clone(), p.clone()));
        }
        out
    }

    fn merge_er(&self, seg: Seg) -> Seg {
        let mut out: Seg = Vec::new();
        for (i, (w, p)) in seg.iter().enumerate() {
            if i >= 1 && w == "儿" && seg[i - 1].0 != "#" {
                if let Some(last) = out.last_mut() {
                    last.0.push_str(w);
                    continue;
                }
            }
            out.push((w.clone(), p.clone()));
        }
        out
    }

    fn pre_merge(&self, seg: Seg) -> Seg {
        let seg = self.merge_bu(seg);
        let seg = self.merge_yi(seg);
        let seg = self.merge_reduplication(seg);
        let seg = self.merge_three(seg, true);
        let seg = self.merge_three(seg, false);
        self.merge_er(seg)
    }

    fn bu(&self, w: &[char], f: &mut [String]) {
        if w.len() == 3 && w[1] == '不' {
            if let Some(x) = f.get_mut(1) {
                set_tone(x, '5');
            }
        } else {
            for i in 0..w.len() {
                if w[i] == '不' && i + 1 < w.len() && f.get(i + 1).and_then(|x| tone_of(x)) == Some('4') {
                    if let Some(x) = f.get_mut(i) {
                        set_tone(x, '2');
                    }
                }
            }
        }
    }

    fn yi(&self, w: &[char], f: &mut [String]) {
        const PUNC: &str = "：，；。？！“”‘’':,;.?!";
        if w.contains(&'一') && w.iter().filter(|&&c| c != '一').all(|&c| py_isnumeric(c)) {
            return;
        }
        if w.len() == 3 && w[1] == '一' && w[0] == w[2] {
            if let Some(x) = f.get_mut(1) {
                set_tone(x, '5');
            }
        } else if w.len() >= 2 && w[0] == '第' && w[1] == '一' {
            if let Some(x) = f.get_mut(1) {
                set_tone(x, '1');
            }
        } else {
            for i in 0..w.len() {
                if w[i] == '一' && i + 1 < w.len() {
                    if f.get(i + 1).and_then(|x| tone_of(x)) == Some('4') {
                        if let Some(x) = f.get_mut(i) {
                            set_tone(x, '2');
                        }
                    } else if !PUNC.contains(w[i + 1]) {
                        if let Some(x) = f.get_mut(i) {
                            set_tone(x, '4');
                        }
                    }
                }
            }
        }
    }

    // one branch per rule of upstream's _neural_sandhi, in its order, even where two act alike
    #[allow(clippy::if_same_then_else)]
    fn neural(&self, word: &str, w: &[char], pos: &str, f: &mut Vec<String>) {
        let l = &self.data.lists;
        let n = f.len();
        for j in 1..w.len() {
            if w[j] == w[j - 1] && matches!(pos.chars().next(), Some('n' | 'v' | 'a')) && !l.must_not_neural_tone_words.contains(word) {
                if let Some(x) = f.get_mut(j) {
                    set_tone(x, '5');
                }
            }
        }
        let ge_idx = w.iter().position(|&c| c == '个');
        let last = w.last().copied();
        let set_last = |f: &mut Vec<String>| {
            if let Some(x) = f.last_mut() {
                set_tone(x, '5');
            }
        };
        let ends_with_must = |s: &str| {
            let c: Vec<char> = s.chars().collect();
            let tail: String = c[c.len().saturating_sub(2)..].iter().collect();
            l.must_neural_tone_words.contains(s) || l.must_neural_tone_words.contains(&tail)
        };
        if last.is_some_and(|c| "吧呢哈啊呐噻嘛吖嗨呐哦哒额滴哩哟喽啰耶喔诶".contains(c)) {
            set_last(f);
        } else if last.is_some_and(|c| "的地得".contains(c)) {
            set_last(f);
        } else if w.len() == 1 && "了着过".contains(w[0]) && matches!(pos, "ul" | "uz" | "ug") {
            set_last(f);
        } else if w.len() > 1 && last.is_some_and(|c| "们子".contains(c)) && matches!(pos, "r" | "n") && !l.must_not_neural_tone_words.contains(word) {
            set_last(f);
        } else if w.len() > 1 && last.is_some_and(|c| "上下里".contains(c)) && matches!(pos, "s" | "l" | "f") {
            set_last(f);
        } else if w.len() > 1 && last.is_some_and(|c| "来去".contains(c)) && "上下进出回过起开".contains(w[w.len() - 2]) {
            set_last(f);
        } else if (ge_idx.is_some_and(|g| g >= 1 && (py_isnumeric(w[g - 1]) || "几有两半多各整每做是".contains(w[g - 1])))) || word == "个" {
            if let Some(x) = ge_idx.and_then(|g| f.get_mut(g)) {
                set_tone(x, '5');
            }
        } else if ends_with_must(word) {
            set_last(f);
        }
        let (a, b) = self.split_word(word);
        let la = a.chars().count().min(n);
        for (k, sub) in [a, b].iter().enumerate() {
            if ends_with_must(sub) {
                let idx = if k == 0 { la.checked_sub(1) } else { n.checked_sub(1).filter(|&i| i >= la) };
                if let Some(x) = idx.and_then(|i| f.get_mut(i)) {
                    set_tone(x, '5');
                }
            }
        }
    }

    fn three(&self, word: &str, w: &[char], f: &mut [String]) {
        if w.len() == 2 && all_tone_three(f) {
            set_tone(&mut f[0], '2');
        } else if w.len() == 3 && f.len() == 3 {
            let (a, _) = self.split_word(word);
            let la = a.chars().count().min(3);
            if all_tone_three(f) {
                if la == 2 {
                    set_tone(&mut f[0], '2');
                    set_tone(&mut f[1], '2');
                } else if la == 1 {
                    set_tone(&mut f[1], '2');
                }
            } else {
                let (first, second) = f.split_at_mut(la);
                if all_tone_three(first) && first.len() == 2 {
                    set_tone(&mut first[0], '2');
                }
                if all_tone_three(second) && second.len() == 2 {
                    set_tone(&mut second[0], '2');
                } else if !all_tone_three(second)
                    && second.first().and_then(|x| tone_of(x)) == Some('3')
                    && first.last().and_then(|x| tone_of(x)) == Some('3')
                {
                    if let Some(x) = first.last_mut() {
                        set_tone(x, '2');
                    }
                }
            }
        } else if w.len() == 4 && f.len() == 4 {
            let (a, b) = f.split_at_mut(2);
            for sub in [a, b] {
                if all_tone_three(sub) {
                    set_tone(&mut sub[0], '2');
                }
            }
        }
    }

    fn modified_tone(&self, word: &str, pos: &str, mut f: Vec<String>) -> Vec<String> {
        let w: Vec<char> = word.chars().collect();
        self.bu(&w, &mut f);
        self.yi(&w, &mut f);
        self.neural(word, &w, pos, &mut f);
        self.three(word, &w, &mut f);
        f
    }
}

fn merge_erhua(data: &FrontendData, initials: Vec<String>, mut finals: Vec<String>, word: &str, pos: &str) -> (Vec<String>, Vec<String>) {
    let w: Vec<char> = word.chars().collect();
    let n = finals.len();
    if n >= 1 && w.get(n - 1) == Some(&'儿') && finals[n - 1] == "er1" {
        finals[n - 1] = "er2".to_string();
    }
    let l = &data.lists;
    if !l.must_erhua.contains(word) && (l.not_erhua.contains(word) || matches!(pos, "a" | "j" | "nr")) {
        return (initials, finals);
    }
    if n != w.len() {
        return (initials, finals);
    }
    let tail: String = w[w.len().saturating_sub(2)..].iter().collect();
    let mut new_finals: Vec<String> = Vec::with_capacity(n);
    for (i, phn) in finals.into_iter().enumerate() {
        let mut phn = phn;
        if i == n - 1 && w[i] == '儿' && (phn == "er2" || phn == "er5") && !l.not_erhua.contains(&tail) {
            if let Some(t) = new_finals.last().and_then(|x| x.chars().last()) {
                phn = format!("er{t}");
            }
        }
        new_finals.push(phn);
    }
    (initials, new_finals)
}

fn to_phones(data: &FrontendData, c: &str, v: &str, phones: &mut Vec<String>, word2ph: &mut Vec<usize>) -> Result<(), TextError> {
    if c == v {
        phones.push(c.to_string());
        word2ph.push(1);
        return Ok(());
    }
    let mut chars: Vec<char> = v.chars().collect();
    let tone = match chars.pop() {
        Some(t @ '1'..='5') => t,
        _ => return Err(TextError::UnknownPinyin(format!("{c}{v}"))),
    };
    let v0: String = chars.into_iter().collect();
    let pinyin = if !c.is_empty() {
        let v1 = match v0.as_str() {
            "uei" => "ui",
            "iou" => "iu",
            "uen" => "un",
            x => x,
        };
        format!("{c}{v1}")
    } else {
        match v0.as_str() {
            "ing" => "ying".to_string(),
            "i" => "yi".to_string(),
            "in" => "yin".to_string(),
            "u" => "wu".to_string(),
            _ => match v0.chars().next() {
                Some('v') => format!("yu{}", &v0[1..]),
                Some('i') => format!("y{}", &v0[1..]),
                Some('u') => format!("w{}", &v0[1..]),
                _ => v0.clone(),
            },
        }
    };
    let Some((nc, nv)) = data.opencpop.get(&pinyin) else {
        return Err(TextError::UnknownPinyin(format!("{c}{v}")));
    };
    phones.push(nc.clone());
    phones.push(format!("{nv}{tone}"));
    word2ph.push(2);
    Ok(())
}

/// g2p of normalised text.
pub fn g2p(data: &FrontendData, norm: &str, version: SymbolVersion) -> Result<(Vec<String>, Vec<usize>), TextError> {
    g2p_with(data, norm, version, None)
}

/// [`g2p`] with a bundle's g2pW model for the polyphonic characters (v2 only; v1 never asks g2pW).
pub fn g2p_with(
    data: &FrontendData,
    norm: &str,
    version: SymbolVersion,
    model: Option<&dyn PolyphoneReader>,
) -> Result<(Vec<String>, Vec<usize>), TextError> {
    // clauses: split after every punctuation mark (dropping whitespace after it)
    let mut clauses = Vec::new();
    let mut cur = String::new();
    let mut after_p = false;
    for ch in norm.chars() {
        if after_p && ch.is_whitespace() {
            continue;
        }
        if after_p {
            clauses.push(std::mem::take(&mut cur));
        }
        cur.push(ch);
        after_p = PUNCT.contains(&ch);
    }
    clauses.push(cur);
    let sandhi = Sandhi { data };
    let mut phones = Vec::new();
    let mut word2ph = Vec::new();
    let segs: Vec<String> = clauses
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|clause| clause.chars().filter(|c| !c.is_ascii_alphabetic()).collect())
        .collect();
    // upstream's _g2p hands every non-empty clause of the text to g2pW in one batch
    let mut batch: std::vec::IntoIter<Vec<String>> = if version == SymbolVersion::V2 {
        let inputs: Vec<String> = segs.iter().filter(|s| !s.is_empty()).cloned().collect();
        super::g2pw::batch_readings(data, &inputs, model)?.into_iter()
    } else {
        Vec::new().into_iter()
    };
    for seg in &segs {
        let readings = if version == SymbolVersion::V2 && !seg.is_empty() { batch.next().unwrap_or_default() } else { Vec::new() };
        let tags: Seg = data.posseg()?.cut(seg);
        let tags = sandhi.pre_merge(tags);
        let mut pos_chars = 0usize;
        let mut initials = Vec::new();
        let mut finals = Vec::new();
        for (word, pos) in &tags {
            let wlen = word.chars().count();
            let start = pos_chars;
            pos_chars += wlen;
            if pos == "eng" {
                continue;
            }
            let (ini, fin): (Vec<String>, Vec<String>) = if version == SymbolVersion::V2 {
                let mut wp: Vec<String> = readings.get(start..(start + wlen).min(readings.len())).unwrap_or(&[]).to_vec();
                if let Some(fix) = data.polyphonic.get(word.as_str()) {
                    wp = fix.clone();
                } else {
                    for (i, ch) in word.chars().enumerate() {
                        if let Some(fix) = data.polyphonic.get(&ch.to_string()).and_then(|v| v.first()) {
                            if let Some(x) = wp.get_mut(i) {
                                *x = fix.clone();
                            }
                        }
                    }
                }
                wp.iter()
                    .map(|p| {
                        if p.chars().next().is_some_and(|c| c.is_alphabetic()) {
                            (to_initials(p), to_finals_tone3(p))
                        } else {
                            (p.clone(), p.clone())
                        }
                    })
                    .unzip()
            } else {
                data.pinyin
                    .lazy_pinyin(word)
                    .into_iter()
                    .map(|it| match it {
                        PyItem::Han(p) => (to_initials(&p), to_finals_tone3(&p)),
                        PyItem::Other(s) => (s.clone(), s),
                    })
                    .unzip()
            };
            let fin = sandhi.modified_tone(word, pos, fin);
            let (ini, fin) = if version == SymbolVersion::V2 { merge_erhua(data, ini, fin, word, pos) } else { (ini, fin) };
            initials.extend(ini);
            finals.extend(fin);
        }
        for (c, v) in initials.iter().zip(finals.iter()) {
            to_phones(data, c, v, &mut phones, &mut word2ph)?;
        }
    }
    Ok((phones, word2ph))
}

/// `cleaner.special`: in Chinese text, `￥` and `^` mark pauses. Upstream's `clean_special` replaces the first
/// of these that occurs by "," before normalising, and every "," phone of the result becomes the pause symbol.
const SPECIAL: &[(char, &str)] = &[('￥', "SP2"), ('^', "SP3")];

/// `clean_text(text, "zh", version)` before the UNK mapping.
pub fn clean(data: &FrontendData, text: &str, version: SymbolVersion) -> Result<Cleaned, TextError> {
    clean_with(data, text, version, None)
}

/// [`clean`] with a bundle's g2pW model (see [`g2p_with`]).
pub fn clean_with(data: &FrontendData, text: &str, version: SymbolVersion, model: Option<&dyn PolyphoneReader>) -> Result<Cleaned, TextError> {
    if let Some((mark, pause)) = SPECIAL.iter().find(|(m, _)| text.contains(*m)) {
        let text = text.replace(*mark, ",");
        let mut c = clean_plain(data, &text, version, model)?;
        for p in c.phones.iter_mut().filter(|p| p.as_str() == ",") {
            *p = (*pause).to_string();
        }
        return Ok(c);
    }
    clean_plain(data, text, version, model)
}

fn clean_plain(data: &FrontendData, text: &str, version: SymbolVersion, model: Option<&dyn PolyphoneReader>) -> Result<Cleaned, TextError> {
    let norm = zh_norm::text_normalize(data, text);
    let (phones, word2ph) = g2p_with(data, &norm, version, model)?;
    if word2ph.len() != norm.chars().count() {
        return Err(TextError::Data(format!("word2ph has {} entries for {} characters", word2ph.len(), norm.chars().count())));
    }
    Ok(Cleaned { phones, word2ph: Some(word2ph), norm_text: norm })
}
