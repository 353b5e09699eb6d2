//! English g2p: GPT-SoVITS `text/english.py` (`text_normalize` + `en_G2p`) in plain Rust.
//!
//! In: English text. Out: [`Cleaned`] (ARPAbet phones + punctuation, `norm_text`).
//! Pipeline, as upstream:
//! 1. normalisation ([`normalize`], `en_normalization/expend.py` with inflect's number words),
//! 2. TweetTokenizer-style tokens ([`tokenize`], the subset reachable after normalisation),
//! 3. per token: single letters, g2p_en homographs, then `qryword`: CMU dict (cmudict.rep, then
//!    cmudict-fast.rep for missing words, engdict-hot.rep overriding; AE/AI/AR/IOS/HUD/OS removed),
//!    the name dictionary for Title-case words, letter-by-letter for OOV words of <= 3 letters,
//!    possessive `'s`, wordsegment compound splitting, and finally g2p_en's GRU (plain Rust, f32, greedy).
//! 4. `g2p` filtering and `replace_phs` (symbols2 membership, `'` -> `-`), and `clean_text`'s "," prefix
//!    for fewer than 4 phones.
//!
//! Known difference: nltk's POS tagger is not available, so g2p_en homographs always take the reading
//! for tag "NN" (pron1 when its POS starts with "NN", else pron2).
//! Data: `.data/frontend/` (cmudict*.rep, engdict-hot.rep, namedict.tsv, wordsegment_*.txt,
//! g2p_en_homographs.en, g2p_en/*.npy), all from PyPI wheels via `scripts/setup`.

use std::collections::HashMap;
use std::path::Path;

use fancy_regex::{Captures, Regex};
use unicode_normalization_alignments::UnicodeNormalization;

use super::symbols::{SymbolTable, SymbolVersion};
use super::{Cleaned, TextError};

// ---------------------------------------------------------------------------------------------
// data

fn read(dir: &Path, name: &str) -> Result<String, TextError> {
    let p = dir.join(name);
    std::fs::read_to_string(&p).map_err(|e| TextError::MissingData(format!("{}: {e}", p.display())))
}

/// A homograph entry of g2p_en: (pron1, pron2, pos1).
type Homograph = (Vec<String>, Vec<String>, String);

/// Everything the English g2p reads at run time.
#[derive(Default)]
pub struct EnDict {
    /// Lower-case word -> first pronunciation (upstream `get_dict()` + hot words, minus the removed
    /// abbreviations).
    pub words: HashMap<String, Vec<String>>,
    /// Lower-case name -> pronunciation (`namedict_cache.pickle`).
    pub names: HashMap<String, Vec<String>>,
    pub homographs: HashMap<String, Homograph>,
    pub seg: WordSegment,
    pub gru: Option<G2pGru>,
}

impl std::fmt::Debug for EnDict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EnDict({} words, {} names)", self.words.len(), self.names.len())
    }
}

impl EnDict {
    pub fn load(dir: &Path) -> Result<Self, TextError> {
        let mut words: HashMap<String, Vec<String>> = HashMap::new();
        // cmudict.rep: entries from line 57 on, "WORD  PH PH ..." (two spaces).
        for line in read(dir, "cmudict.rep")?.lines().skip(56) {
            let line = line.trim();
            let Some((w, ph)) = line.split_once("  ") else { continue };
            let ph = ph.split("  ").next().unwrap_or("");
            words.insert(w.to_lowercase(), ph.split(' ').map(str::to_string).collect());
        }
        for line in read(dir, "cmudict-fast.rep")?.lines() {
            let mut it = line.trim().split(' ');
            let w = it.next().unwrap_or("").to_lowercase();
            words.entry(w).or_insert_with(|| it.map(str::to_string).collect());
        }
        for line in read(dir, "engdict-hot.rep")?.lines() {
            let mut it = line.trim().split(' ');
            let w = it.next().unwrap_or("").to_lowercase();
            words.insert(w, it.map(str::to_string).collect());
        }
        for w in ["ae", "ai", "ar", "ios", "hud", "os"] {
            words.remove(w);
        }
        let mut names = HashMap::new();
        for line in read(dir, "namedict.tsv")?.lines() {
            if let Some((w, ph)) = line.split_once('\t') {
                names.insert(w.to_string(), ph.split(' ').map(str::to_string).collect());
            }
        }
        let mut homographs = HashMap::new();
        for line in read(dir, "g2p_en_homographs.en")?.lines() {
            if line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.trim().split('|').collect();
            if f.len() == 4 {
                let sp = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
                homographs.insert(f[0].to_lowercase(), (sp(f[1]), sp(f[2]), f[3].to_string()));
            }
        }
        // GPT-SoVITS's corrections of two homographs.
        let sp = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        homographs.insert("read".into(), (sp("R IY1 D"), sp("R EH1 D"), "VBP".into()));
        homographs
            .insert("complex".into(), (sp("K AH0 M P L EH1 K S"), sp("K AA1 M P L EH0 K S"), "JJ".into()));
        let seg = WordSegment::load(dir)?;
        let gru = Some(G2pGru::load(&dir.join("g2p_en"))?);
        Ok(Self { words, names, homographs, seg, gru })
    }
}

// ---------------------------------------------------------------------------------------------
// numbers (inflect's number_to_words / ordinal, as far as expend.py uses them)

const UNIT: [&str; 10] = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
const TEEN: [&str; 10] =
    ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"];
const TEN: [&str; 10] = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];
const MILL: [&str; 12] = [
    " ", " thousand", " million", " billion", " trillion", " quadrillion", " quintillion", " sextillion",
    " septillion", " octillion", " nonillion", " decillion",
];

fn tenfn(tens: usize, units: usize, mill: &str) -> String {
    if tens != 1 {
        let hy = if tens != 0 && units != 0 { "-" } else { "" };
        format!("{}{hy}{}{mill}", TEN[tens], UNIT[units])
    } else {
        format!("{}{mill}", TEEN[units])
    }
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// inflect `number_to_words(digits, andword=andword)` (group 0) for a plain digit string, as the list of
/// ", "-separated chunks. `None` when the number is too large for inflect (it raises).
fn number_chunks(digits: &str, andword: &str) -> Option<Vec<String>> {
    let d: Vec<usize> = digits.bytes().filter(u8::is_ascii_digit).map(|b| (b - b'0') as usize).collect();
    let start = d.iter().position(|&x| x != 0).unwrap_or(d.len());
    let d = &d[start..];
    let chunk = if d.is_empty() {
        "zero".to_string()
    } else if d == [1] {
        "one".to_string()
    } else {
        // 3-digit groups from the right, then the 1-2 leading digits.
        let n_full = d.len() / 3;
        let lead = d.len() % 3;
        if n_full + usize::from(lead > 0) > MILL.len() {
            return None;
        }
        let mut parts: Vec<String> = Vec::new(); // right to left
        for g in 0..n_full {
            let e = d.len() - 3 * g;
            let (h, t, u) = (d[e - 3], d[e - 2], d[e - 1]);
            let mill = MILL[g];
            let s = if h != 0 {
                let and = if t != 0 || u != 0 { format!(" {andword} ") } else { String::new() };
                format!("{} hundred{and}{}{mill}, ", UNIT[h], tenfn(t, u, MILL[0]))
            } else if t != 0 || u != 0 {
                format!("{}{mill}, ", tenfn(t, u, MILL[0]))
            } else {
                String::new()
            };
            parts.push(s);
        }
        match lead {
            2 => parts.push(format!("{}, ", tenfn(d[0], d[1], MILL[n_full]))),
            1 => parts.push(format!("{}{}, ", UNIT[d[0]], MILL[n_full])),
            _ => {}
        }
        parts.reverse();
        let mut s: String = parts.concat();
        if s.ends_with(", ") {
            s.truncate(s.len() - 2);
        }
        let s = ws_comma(&s);
        // COMMA_WORD: ", (\S+)\s+\Z" -> " and \1"
        let s = match s.rfind(", ") {
            Some(p) => {
                let tail = &s[p + 2..];
                let word = tail.trim_end();
                if !word.is_empty() && !word.contains(char::is_whitespace) && tail.len() > word.len() {
                    format!("{} {andword} {word}", &s[..p])
                } else {
                    s
                }
            }
            None => s,
        };
        collapse_ws(&ws_comma(&s))
    };
    Some(chunk.split(", ").map(str::to_string).collect())
}

/// `\s+,` -> `,`
fn ws_comma(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == ',' {
            while out.ends_with(char::is_whitespace) {
                out.pop();
            }
        }
        out.push(c);
    }
    out
}

/// inflect `_sub_ord`: ordinal of the last word.
fn sub_ord(val: &str) -> String {
    for (suf, rep) in [
        ("ty", "tieth"),
        ("one", "first"),
        ("two", "second"),
        ("three", "third"),
        ("five", "fifth"),
        ("eight", "eighth"),
        ("nine", "ninth"),
        ("twelve", "twelfth"),
    ] {
        // the leftmost match wins in the regex; among these suffixes only one can end the string
        // at the earliest position ("twelve" vs. none of the others).
        if let Some(stem) = val.strip_suffix(suf) {
            return format!("{stem}{rep}");
        }
    }
    format!("{val}th")
}

/// `number_to_words(n, andword=..)` for digit strings, optionally with an ordinal suffix (st/nd/rd/th).
fn number_to_words(num: &str, andword: &str) -> String {
    let (digits, ord) = match num.get(num.len().saturating_sub(2)..) {
        Some(s @ ("st" | "nd" | "rd" | "th")) if num.len() > 2 || s == num => (&num[..num.len() - 2], true),
        _ => (num, false),
    };
    match number_chunks(digits, andword) {
        Some(mut chunks) => {
            if ord {
                if let Some(last) = chunks.last_mut() {
                    *last = sub_ord(last);
                }
            }
            chunks.join(", ")
        }
        // inflect raises NumOutOfRangeError (> 36 digits); read the digits one by one instead.
        None => digits.chars().filter_map(|c| c.to_digit(10)).map(|x| digit_word(x as usize)).collect::<Vec<_>>().join(" "),
    }
}

fn digit_word(d: usize) -> &'static str {
    if d == 0 { "zero" } else { UNIT[d] }
}

/// inflect `ordinal(digits)`: "1" -> "1st".
fn ordinal_digits(num: &str) -> String {
    let d: Vec<u32> = num.chars().filter_map(|c| c.to_digit(10)).collect();
    let n100 = d.iter().rev().take(2).rev().fold(0, |a, x| a * 10 + x);
    let suf = match n100 {
        11..=13 => "th",
        _ => match n100 % 10 {
            1 => "st",
            2 => "nd",
            3 => "rd",
            _ => "th",
        },
    };
    format!("{num}{suf}")
}

/// `int(s)` of a digit string as u128 (saturating; only compared with small bounds).
fn int_val(s: &str) -> u128 {
    s.chars().filter_map(|c| c.to_digit(10)).fold(0u128, |a, x| a.saturating_mul(10).saturating_add(x as u128))
}

fn strip_zeros(s: &str) -> String {
    let t = s.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.into() }
}

/// expend.py `_expand_number`.
fn expand_number(s: &str) -> String {
    let num = int_val(s);
    if num > 1000 && num < 3000 {
        if num == 2000 {
            "two thousand".into()
        } else if num > 2000 && num < 2010 {
            format!("two thousand {}", number_to_words(&(num % 100).to_string(), "and"))
        } else if num.is_multiple_of(100) {
            format!("{} hundred", number_to_words(&(num / 100).to_string(), "and"))
        } else {
            // group=2, zero="oh": pairs of digits.
            let (a, b) = ((num / 100) as usize, (num % 100) as usize);
            let pair = |p: usize| {
                let (t, u) = (p / 10, p % 10);
                if t != 0 {
                    tenfn(t, u, "")
                } else if u != 0 {
                    format!("oh {}", UNIT[u])
                } else {
                    "oh oh".into()
                }
            };
            format!("{} {}", pair(a), pair(b))
        }
    } else {
        number_to_words(&strip_zeros(s), "")
    }
}

// ---------------------------------------------------------------------------------------------
// normalisation (expend.py `normalize` + english.py `text_normalize`)

struct Res {
    ordinal_number: Regex,
    asmd: Regex,
    integer: Regex,
    comma_number: Regex,
    time: Regex,
    measurement: Regex,
    pounds_start: Regex,
    pounds_end: Regex,
    dollars_start: Regex,
    dollars_end: Regex,
    decimal: Regex,
    fraction: Regex,
    ordinal: Regex,
    number: Regex,
    ie: Regex,
    eg: Regex,
    consecutive_punct: Regex,
}

fn res() -> &'static Res {
    static R: std::sync::OnceLock<Res> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let r = |s: &str| Regex::new(s).expect("static regex");
        let sup = "[⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ]*";
        let operand = format!(r"((-?)((\d+)(\.\d+)?{sup})|(\.\d+{sup})|([A-Za-z]{sup}))");
        Res {
            ordinal_number: r(r"\b([0-9]+)\. "),
            asmd: r(&format!(r"{operand}\s+([+\-×÷=])\s+{operand}")),
            integer: r(r"(?:^|\s+)(-)(\d+)"),
            comma_number: r(r"([0-9][0-9\,]+[0-9])"),
            time: r(r"\b([01]?[0-9]|2[0-3]):([0-5][0-9])\b"),
            measurement: r(r"\b([0-9]+(\.[0-9]+)?(m|km|km/h|ft|L|tbsp|tsp|h|min|s|°C|°F))\b"),
            pounds_start: r(r"£([0-9\.\,]*[0-9]+)"),
            pounds_end: r(r"([0-9\.\,]*[0-9]+)£"),
            dollars_start: r(r"\$([0-9\.\,]*[0-9]+)"),
            dollars_end: r(r"([(0-9\.\,]*[0-9]+)\$"),
            decimal: r(r"([0-9]+\.\s*[0-9]+)"),
            fraction: r(r"([0-9]+/[0-9]+)"),
            ordinal: r(r"[0-9]+(st|nd|rd|th)"),
            number: r(r"[0-9]+"),
            ie: r(r"(?i)i\.e\."),
            eg: r(r"(?i)e\.g\."),
            consecutive_punct: r(r"([!?…,.\-\s])([!?…,.\-])+"),
        }
    })
}

fn sub(re: &Regex, text: &str, f: impl Fn(&Captures) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in re.captures_iter(text) {
        let Ok(caps) = caps else { return text.to_string() };
        let Some(m) = caps.get(0) else { continue };
        out.push_str(&text[last..m.start()]);
        out.push_str(&f(&caps));
        last = m.end();
    }
    out.push_str(&text[last..]);
    out
}

fn g<'a>(c: &'a Captures, i: usize) -> &'a str {
    c.get(i).map(|m| m.as_str()).unwrap_or("")
}

/// Python `int(s)` for the money helpers (digits only; anything else counts as 0 instead of raising).
fn money_int(s: &str) -> u128 {
    int_val(s)
}

fn expand_money(m: &str, unit: (&str, &str), sub_unit: (&str, &str)) -> String {
    let parts: Vec<&str> = m.split('.').collect();
    if parts.len() > 2 {
        return format!("{m} {}", unit.1);
    }
    let whole = if parts[0].is_empty() { 0 } else { money_int(parts[0]) };
    let frac = match parts.get(1) {
        Some(p) if !p.is_empty() => {
            let mut s = p.to_string();
            while s.chars().count() < 2 {
                s.push('0');
            }
            money_int(&s)
        }
        _ => 0,
    };
    let u = |n: u128, (one, many): (&str, &str)| if n == 1 { one.to_string() } else { many.to_string() };
    match (whole != 0, frac != 0) {
        (true, true) => format!("{whole} {} and {frac} {}", u(whole, unit), u(frac, sub_unit)),
        (true, false) => format!("{whole} {}", u(whole, unit)),
        (false, true) => format!("{frac} {}", u(frac, sub_unit)),
        _ => format!("zero {}", unit.1),
    }
}

/// expend.py `normalize`.
pub fn normalize(text: &str) -> String {
    let r = res();
    let mut t = sub(&r.ordinal_number, text, |c| format!("{}, ", ordinal_digits(g(c, 1))));
    let mut guard = 0;
    while r.asmd.is_match(&t).unwrap_or(false) && guard < 10_000 {
        guard += 1;
        let op = |o: &str| match o {
            "+" => " plus ",
            "-" => " minus ",
            "×" => " times ",
            "÷" => " divided by ",
            _ => " Equals ",
        };
        t = sub(&r.asmd, &t, |c| format!("{}{}{}", g(c, 1), op(g(c, 8)), g(c, 9)));
    }
    t = sub(&r.integer, &t, |c| format!("{}{}", if c.get(1).is_some() { "negative " } else { "" }, g(c, 2)));
    t = sub(&r.comma_number, &t, |c| g(c, 1).replace(',', ""));
    t = sub(&r.time, &t, |c| {
        let mut h = int_val(g(c, 1));
        let m = int_val(g(c, 2));
        let period = if h < 12 { "a.m." } else { "p.m." };
        if h > 12 {
            h -= 12;
        }
        let hw = number_to_words(&h.to_string(), "and");
        if m == 0 {
            format!("{hw} o'clock {period}")
        } else {
            format!("{hw} {} {period}", number_to_words(&m.to_string(), "and"))
        }
    });
    t = sub(&r.measurement, &t, |c| {
        let sign = g(c, 3);
        let whole = g(c, 1);
        let num = int_val(&whole.replace(sign, "").replace('.', ""));
        let names = match sign {
            "m" => ("meter", "meters"),
            "km" => ("kilometer", "kilometers"),
            "km/h" => ("kilometer per hour", "kilometers per hour"),
            "ft" => ("feet", "feet"),
            "L" => ("liter", "liters"),
            "tbsp" => ("tablespoon", "tablespoons"),
            "tsp" => ("teaspoon", "teaspoons"),
            "h" => ("hour", "hours"),
            "min" => ("minute", "minutes"),
            "s" => ("second", "seconds"),
            "°C" => ("degree celsius", "degrees celsius"),
            _ => ("degree fahrenheit", "degrees fahrenheit"),
        };
        let name = if c.get(2).is_none() && num == 1 { names.0 } else { names.1 };
        whole.replace(sign, &format!(" {name}"))
    });
    t = sub(&r.pounds_start, &t, |c| expand_money(g(c, 1), ("pound", "pounds"), ("penny", "pence")));
    t = sub(&r.pounds_end, &t, |c| expand_money(g(c, 1), ("pound", "pounds"), ("penny", "pence")));
    t = sub(&r.dollars_start, &t, |c| expand_money(g(c, 1), ("dollar", "dollars"), ("cent", "cents")));
    t = sub(&r.dollars_end, &t, |c| expand_money(g(c, 1), ("dollar", "dollars"), ("cent", "cents")));
    t = sub(&r.decimal, &t, |c| {
        let m = g(c, 1);
        let (a, b) = m.split_once('.').unwrap_or((m, ""));
        let digits: Vec<String> = b.chars().map(|ch| if ch == '.' { "point".to_string() } else { ch.to_string() }).collect();
        format!("{a} point {}", digits.join(" "))
    });
    t = sub(&r.fraction, &t, |c| {
        let m = g(c, 0);
        let (a, b) = m.split_once('/').unwrap_or((m, "1"));
        let (num, den) = (int_val(a), int_val(b));
        let np = number_to_words(&strip_zeros(a), "and");
        if den == 2 {
            format!("{np} {}", if num == 1 { "half" } else { "halves" })
        } else if den == 1 {
            np
        } else {
            let mut dp = sub_ord(&number_to_words(&strip_zeros(b), "and"));
            if num > 1 {
                dp.push('s');
            }
            format!("{np} {dp}")
        }
    });
    t = sub(&r.ordinal, &t, |c| number_to_words(g(c, 0), "and"));
    t = sub(&r.number, &t, |c| expand_number(g(c, 0)));
    // strip accents (NFD, drop combining marks), then the character filter
    let t: String = t.nfd().map(|(c, _)| c).filter(|c| !is_mark(*c)).collect();
    let t = t.replace('%', " percent");
    let t: String = t.chars().filter(|c| c.is_ascii_alphabetic() || " '.,?!-".contains(*c)).collect();
    let t = r.ie.replace_all(&t, "that is").to_string();
    let t = r.eg.replace_all(&t, "for example").to_string();
    // `(?<!^)(?<![\s])([A-Z])` -> " \1": split runs of capitals (and CamelCase) into letters
    let mut out = String::with_capacity(t.len() * 2);
    let mut prev: Option<char> = None;
    for c in t.chars() {
        if c.is_ascii_uppercase() && prev.is_some_and(|p| !p.is_whitespace()) {
            out.push(' ');
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

/// Unicode category Mn for the ranges NFD produces (combining diacritics).
fn is_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F | 0x3099 | 0x309A)
}

/// english.py `text_normalize`.
pub fn text_normalize(text: &str) -> String {
    // rep_map: the keys are regex-escaped upstream, so the bracket keys only match their literal text.
    let mut t = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for (k, v) in [("[;:：，；]", ","), ("[\"’]", "'"), ("。", "."), ("！", "!"), ("？", "?")] {
            if let Some(r) = rest.strip_prefix(k) {
                t.push_str(v);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        t.push(c);
        rest = &rest[c.len_utf8()..];
    }
    let t = normalize(&t);
    res().consecutive_punct.replace_all(&t, "$1").to_string()
}

// ---------------------------------------------------------------------------------------------
// tokenisation (nltk TweetTokenizer on normalised text)

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_letter(c: char) -> bool {
    is_word(c) && !c.is_numeric() && c != '_'
}

/// Naked-domain URL at `i` (TweetTokenizer tries URLs first): returns the end index.
fn naked_domain(ch: &[char], i: usize) -> Option<usize> {
    if !ch[i].is_ascii_alphanumeric() || (i > 0 && ch[i - 1] == '@') {
        return None;
    }
    // labels separated by [.-]
    let mut labels: Vec<(char, usize, usize)> = Vec::new(); // (separator before, start, end)
    let mut j = i;
    while j < ch.len() && ch[j].is_ascii_alphanumeric() {
        j += 1;
    }
    labels.push((' ', i, j));
    while j + 1 < ch.len() && (ch[j] == '.' || ch[j] == '-') && ch[j + 1].is_ascii_alphanumeric() {
        let s = j + 1;
        let mut e = s;
        while e < ch.len() && ch[e].is_ascii_alphanumeric() {
            e += 1;
        }
        labels.push((ch[j], s, e));
        j = e;
    }
    for k in (1..labels.len()).rev() {
        let (sep, s, e) = labels[k];
        let ok = sep == '.'
            && (2..=13).contains(&(e - s))
            && ch[s..e].iter().all(|c| c.is_ascii_alphabetic())
            && (e == ch.len() || !is_word(ch[e]))
            && !(e < ch.len() && ch[e] == '@');
        if ok {
            return Some(e);
        }
    }
    None
}

/// nltk `TweetTokenizer().tokenize` for the characters that survive normalisation.
pub fn tokenize(text: &str) -> Vec<String> {
    // HANG_RE: 4+ repeats of a non-letter/digit -> 3
    let mut ch: Vec<char> = Vec::new();
    for c in text.chars() {
        let n = ch.len();
        if !c.is_alphanumeric() && n >= 3 && ch[n - 1] == c && ch[n - 2] == c && ch[n - 3] == c {
            continue;
        }
        ch.push(c);
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < ch.len() {
        let c = ch[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let end = if let Some(e) = naked_domain(&ch, i) {
            e
        } else if is_letter(c) {
            // letter (letter|'|-|_)+ letter, else a plain word run
            let mut j = i + 1;
            while j < ch.len() && (is_letter(ch[j]) || matches!(ch[j], '\'' | '-' | '_')) {
                j += 1;
            }
            let mut e = j;
            while e > i + 2 && !is_letter(ch[e - 1]) {
                e -= 1;
            }
            if e >= i + 3 && is_letter(ch[e - 1]) {
                e
            } else {
                let mut e = i;
                while e < ch.len() && is_word(ch[e]) {
                    e += 1;
                }
                e
            }
        } else if is_word(c) {
            let mut e = i;
            while e < ch.len() && is_word(ch[e]) {
                e += 1;
            }
            e
        } else if c == '.' {
            // ellipsis: "." ( [spaces]* "." )+
            let mut e = i + 1;
            let mut k = i + 1;
            loop {
                while k < ch.len() && ch[k].is_whitespace() && ch[k] != '\n' && ch[k] != '\r' {
                    k += 1;
                }
                if k < ch.len() && ch[k] == '.' {
                    k += 1;
                    e = k;
                } else {
                    break;
                }
            }
            e
        } else {
            i + 1
        };
        out.push(ch[i..end].iter().collect());
        i = end;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// wordsegment 1.3.1

#[derive(Default)]
pub struct WordSegment {
    unigrams: HashMap<String, f64>,
    bigrams: HashMap<String, f64>,
}

const WS_TOTAL: f64 = 1024908267229.0;
const WS_LIMIT: usize = 24;

impl WordSegment {
    fn load(dir: &Path) -> Result<Self, TextError> {
        let parse = |name: &str| -> Result<HashMap<String, f64>, TextError> {
            let mut m = HashMap::new();
            for line in read(dir, name)?.lines() {
                if let Some((w, n)) = line.split_once('\t') {
                    let v: f64 = n.trim().parse().map_err(|e| TextError::Data(format!("{name}: {e}")))?;
                    m.insert(w.to_string(), v);
                }
            }
            Ok(m)
        };
        Ok(Self { unigrams: parse("wordsegment_unigrams.txt")?, bigrams: parse("wordsegment_bigrams.txt")? })
    }

    fn unigram_score(&self, word: &str) -> f64 {
        match self.unigrams.get(word) {
            Some(c) => c / WS_TOTAL,
            None => {
                let p: f64 = format!("1e{}", word.len()).parse().unwrap_or(f64::INFINITY);
                10.0 / (WS_TOTAL * p)
            }
        }
    }

    fn score(&self, word: &str, previous: &str) -> f64 {
        let key = format!("{previous} {word}");
        match (self.bigrams.get(&key), self.unigrams.contains_key(previous)) {
            (Some(b), true) => b / WS_TOTAL / self.unigram_score(previous),
            _ => self.unigram_score(word),
        }
    }

    fn search(&self, text: &str, previous: &str, memo: &mut HashMap<(String, String), (f64, Vec<String>)>) -> (f64, Vec<String>) {
        if text.is_empty() {
            return (0.0, vec![]);
        }
        let mut best: Option<(f64, Vec<String>)> = None;
        for pos in 1..=text.len().min(WS_LIMIT) {
            let (prefix, suffix) = text.split_at(pos);
            let ps = self.score(prefix, previous).log10();
            let key = (suffix.to_string(), prefix.to_string());
            if !memo.contains_key(&key) {
                let r = self.search(suffix, prefix, memo);
                memo.insert(key.clone(), r);
            }
            let (ss, sw) = &memo[&key];
            let score = ps + ss;
            let better = match &best {
                None => true,
                Some((bs, bw)) => {
                    score > *bs || (score == *bs && {
                        let mut cand = vec![prefix.to_string()];
                        cand.extend(sw.iter().cloned());
                        cand > *bw
                    })
                }
            };
            if better {
                let mut words = vec![prefix.to_string()];
                words.extend(sw.iter().cloned());
                best = Some((score, words));
            }
        }
        best.unwrap_or((0.0, vec![]))
    }

    /// `wordsegment.segment(text)`.
    pub fn segment(&self, text: &str) -> Vec<String> {
        let clean: String = text.to_lowercase().chars().filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit()).collect();
        let mut out = Vec::new();
        let mut prefix = String::new();
        let mut memo = HashMap::new();
        let mut off = 0;
        while off < clean.len() {
            let chunk = &clean[off..(off + 250).min(clean.len())];
            let (_, mut words) = self.search(&format!("{prefix}{chunk}"), "<s>", &mut memo);
            let k = words.len().saturating_sub(5);
            prefix = words[k..].concat();
            words.truncate(k);
            out.extend(words);
            off += 250;
        }
        let (_, words) = self.search(&prefix, "<s>", &mut memo);
        out.extend(words);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// g2p_en GRU (checkpoint20)

/// g2p_en 2.1.0's OOV model: GRU encoder over letters, GRU decoder, greedy, at most 20 phones.
pub struct G2pGru {
    enc_emb: Mat,
    enc_w_ih: Mat,
    enc_w_hh: Mat,
    enc_b_ih: Vec<f32>,
    enc_b_hh: Vec<f32>,
    dec_emb: Mat,
    dec_w_ih: Mat,
    dec_w_hh: Mat,
    dec_b_ih: Vec<f32>,
    dec_b_hh: Vec<f32>,
    fc_w: Mat,
    fc_b: Vec<f32>,
}

struct Mat {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Mat {
    fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
    /// W x + b
    fn affine(&self, x: &[f32], b: &[f32]) -> Vec<f32> {
        (0..self.rows).map(|r| self.row(r).iter().zip(x).fold(0f32, |a, (w, v)| a + w * v) + b[r]).collect()
    }
}

fn read_npy(path: &Path) -> Result<Mat, TextError> {
    let a = crate::npy::read(path).map_err(|e| match e {
        crate::npy::NpyError::Io { .. } => TextError::MissingData(e.to_string()),
        crate::npy::NpyError::Format { .. } => TextError::Data(e.to_string()),
    })?;
    let bad = || TextError::Data(format!("{}: not a 1-D or 2-D float .npy", path.display()));
    let (rows, cols) = match a.shape.as_slice() {
        [n] => (1, *n),
        [r, c] => (*r, *c),
        _ => return Err(bad()),
    };
    let crate::npy::NpyData::F32(data) = a.data else { return Err(bad()) };
    if data.len() != rows * cols {
        return Err(bad());
    }
    Ok(Mat { rows, cols, data })
}

const G2P_PHONEMES: [&str; 74] = [
    "<pad>", "<unk>", "<s>", "</s>", "AA0", "AA1", "AA2", "AE0", "AE1", "AE2", "AH0", "AH1", "AH2", "AO0", "AO1",
    "AO2", "AW0", "AW1", "AW2", "AY0", "AY1", "AY2", "B", "CH", "D", "DH", "EH0", "EH1", "EH2", "ER0", "ER1",
    "ER2", "EY0", "EY1", "EY2", "F", "G", "HH", "IH0", "IH1", "IH2", "IY0", "IY1", "IY2", "JH", "K", "L", "M",
    "N", "NG", "OW0", "OW1", "OW2", "OY0", "OY1", "OY2", "P", "R", "S", "SH", "T", "TH", "UH0", "UH1", "UH2",
    "UW", "UW0", "UW1", "UW2", "V", "W", "Y", "Z", "ZH",
];

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl G2pGru {
    fn load(dir: &Path) -> Result<Self, TextError> {
        let m = |n: &str| read_npy(&dir.join(format!("{n}.npy")));
        let v = |n: &str| read_npy(&dir.join(format!("{n}.npy"))).map(|m| m.data);
        let s = Self {
            enc_emb: m("enc_emb")?,
            enc_w_ih: m("enc_w_ih")?,
            enc_w_hh: m("enc_w_hh")?,
            enc_b_ih: v("enc_b_ih")?,
            enc_b_hh: v("enc_b_hh")?,
            dec_emb: m("dec_emb")?,
            dec_w_ih: m("dec_w_ih")?,
            dec_w_hh: m("dec_w_hh")?,
            dec_b_ih: v("dec_b_ih")?,
            dec_b_hh: v("dec_b_hh")?,
            fc_w: m("fc_w")?,
            fc_b: v("fc_b")?,
        };
        let h = s.enc_w_hh.cols;
        let ok = s.enc_emb.rows == 29
            && s.dec_emb.rows == G2P_PHONEMES.len()
            && s.fc_w.rows == G2P_PHONEMES.len()
            && s.fc_w.cols == h
            && [&s.enc_w_ih, &s.enc_w_hh, &s.dec_w_ih, &s.dec_w_hh].iter().all(|w| w.rows == 3 * h)
            && s.enc_w_ih.cols == s.enc_emb.cols
            && s.dec_w_ih.cols == s.dec_emb.cols
            && s.dec_w_hh.cols == h
            && [&s.enc_b_ih, &s.enc_b_hh, &s.dec_b_ih, &s.dec_b_hh].iter().all(|b| b.len() == 3 * h)
            && s.fc_b.len() == G2P_PHONEMES.len();
        if !ok {
            return Err(TextError::Data("g2p_en weights: unexpected shapes".into()));
        }
        Ok(s)
    }

    #[allow(clippy::too_many_arguments)]
    fn cell(x: &[f32], h: &[f32], w_ih: &Mat, w_hh: &Mat, b_ih: &[f32], b_hh: &[f32]) -> Vec<f32> {
        let n = h.len();
        let gi = w_ih.affine(x, b_ih);
        let gh = w_hh.affine(h, b_hh);
        (0..n)
            .map(|k| {
                let r = sigmoid(gi[k] + gh[k]);
                let z = sigmoid(gi[n + k] + gh[n + k]);
                let nn = (gi[2 * n + k] + r * gh[2 * n + k]).tanh();
                (1.0 - z) * nn + z * h[k]
            })
            .collect()
    }

    /// `G2p.predict(word)`.
    pub fn predict(&self, word: &str) -> Vec<String> {
        let hsz = self.enc_w_hh.cols;
        let mut h = vec![0f32; hsz];
        let ids = word
            .chars()
            .map(|c| if c.is_ascii_lowercase() { 3 + (c as usize - 'a' as usize) } else { 1 })
            .chain(std::iter::once(2));
        for id in ids {
            h = Self::cell(self.enc_emb.row(id), &h, &self.enc_w_ih, &self.enc_w_hh, &self.enc_b_ih, &self.enc_b_hh);
        }
        let mut x = self.dec_emb.row(2).to_vec();
        let mut out = Vec::new();
        for _ in 0..20 {
            h = Self::cell(&x, &h, &self.dec_w_ih, &self.dec_w_hh, &self.dec_b_ih, &self.dec_b_hh);
            let logits = self.fc_w.affine(&h, &self.fc_b);
            let mut best = 0;
            for (k, v) in logits.iter().enumerate() {
                if *v > logits[best] {
                    best = k;
                }
            }
            if best == 3 {
                break;
            }
            out.push(G2P_PHONEMES[best].to_string());
            x = self.dec_emb.row(best).to_vec();
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// g2p

/// Python `str.istitle()`.
fn is_title(s: &str) -> bool {
    let (mut prev_cased, mut any) = (false, false);
    for c in s.chars() {
        if c.is_uppercase() {
            if prev_cased {
                return false;
            }
            prev_cased = true;
            any = true;
        } else if c.is_lowercase() {
            if !prev_cased {
                return false;
            }
            any = true;
        } else {
            prev_cased = false;
        }
    }
    any
}

impl EnDict {
    fn letter(&self, c: &str) -> Vec<String> {
        self.words.get(c).cloned().unwrap_or_else(|| vec![c.to_string()])
    }

    fn predict(&self, word: &str) -> Vec<String> {
        match &self.gru {
            Some(g) => g.predict(word),
            None => vec!["<unk>".to_string()],
        }
    }

    /// english.py `en_G2p.qryword`.
    fn qryword(&self, o_word: &str, depth: usize) -> Vec<String> {
        let word = o_word.to_lowercase();
        let n = word.chars().count();
        if n > 1 {
            if let Some(p) = self.words.get(&word) {
                return p.clone();
            }
        }
        if is_title(o_word) {
            if let Some(p) = self.names.get(&word) {
                return p.clone();
            }
        }
        if n <= 3 {
            let mut ph = Vec::new();
            for c in word.chars() {
                if c == 'a' {
                    ph.push("EY1".to_string());
                } else if !c.is_alphabetic() {
                    ph.push(c.to_string());
                } else {
                    ph.extend(self.letter(&c.to_string()));
                }
            }
            return ph;
        }
        if let Some(stem) = word.strip_suffix("'s") {
            if !stem.is_empty() && stem.chars().all(|c| c.is_ascii_lowercase()) {
                let mut ph = self.qryword(stem, depth + 1);
                match ph.last().map(String::as_str) {
                    Some("P" | "T" | "K" | "F" | "TH" | "HH") => ph.push("S".into()),
                    Some("S" | "Z" | "SH" | "ZH" | "CH" | "JH") => ph.extend(["AH0".to_string(), "Z".to_string()]),
                    _ => ph.push("Z".into()),
                }
                return ph;
            }
        }
        let comps = self.seg.segment(&word);
        if comps.len() == 1 || depth > 8 {
            return self.predict(&word);
        }
        comps.iter().flat_map(|c| self.qryword(c, depth + 1)).collect()
    }

    /// english.py `en_G2p.__call__` (POS tags fixed to "NN", see the module docs).
    fn call(&self, text: &str) -> Vec<String> {
        let mut prons: Vec<String> = Vec::new();
        for o_word in tokenize(text) {
            let word = o_word.to_lowercase();
            let pron = if !word.chars().any(|c| c.is_ascii_lowercase()) {
                vec![word.clone()]
            } else if word.chars().count() == 1 {
                if o_word == "A" { vec!["EY1".to_string()] } else { self.letter(&word) }
            } else if let Some((p1, p2, pos1)) = self.homographs.get(&word) {
                let pos = "NN";
                if pos.starts_with(pos1.as_str()) || (pos.len() < pos1.len() && pos1.starts_with(pos)) {
                    p1.clone()
                } else {
                    p2.clone()
                }
            } else {
                self.qryword(&o_word, 0)
            };
            prons.extend(pron);
            prons.push(" ".into());
        }
        prons.pop();
        prons
    }

    /// english.py `g2p(text)` (on normalised text): filtering + `replace_phs`.
    pub fn g2p(&self, norm: &str) -> Vec<String> {
        let sym = SymbolTable::builtin(SymbolVersion::V2);
        self.call(norm)
            .into_iter()
            .filter(|p| !matches!(p.as_str(), " " | "<pad>" | "UW" | "</s>" | "<s>"))
            .map(|p| if p == "<unk>" { "UNK".to_string() } else { p })
            .filter_map(|p| if sym.contains(&p) { Some(p) } else if p == "'" { Some("-".to_string()) } else { None })
            .collect()
    }
}

/// `clean_text(text, "en", ..)` before the version's UNK mapping: normalisation, g2p, and the "," prefix
/// for fewer than 4 phones.
pub fn clean(data: &super::FrontendData, text: &str) -> Result<Cleaned, TextError> {
    let norm = text_normalize(text);
    let mut phones = data.en.g2p(&norm);
    if phones.len() < 4 {
        phones.insert(0, ",".to_string());
    }
    Ok(Cleaned { phones, word2ph: None, norm_text: norm })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(expand_number("25"), "twenty-five");
        assert_eq!(expand_number("555"), "five hundred fifty-five");
        assert_eq!(expand_number("1234"), "twelve thirty-four");
        assert_eq!(expand_number("2024"), "twenty twenty-four");
        assert_eq!(expand_number("1905"), "nineteen oh five");
        assert_eq!(expand_number("1005"), "ten oh five");
        assert_eq!(expand_number("3005"), "three thousand five");
        assert_eq!(expand_number("1000000"), "one million");
        assert_eq!(number_to_words("101st", "and"), "one hundred and first");
        assert_eq!(tokenize("a.m. It's fifty-five-twelve, ok"), ["a", ".", "m", ".", "It's", "fifty-five-twelve", ",", "ok"]);
    }
}
