//! Korean g2p (upstream v2 `text/korean.py` over g2pk2 0.0.3).
//!
//! In: raw Korean text. Out: [`Cleaned`] whose phones are v2 symbols: Hangul compatibility jamo (`ㄱ`, `ㅏ`, ...;
//! diphthongs split as korean.py does), punctuation, `空` for a space and `停` for anything else.
//! Pipeline, as upstream: Latin letters spelled in Hangul (`latin_to_hangul`) -> g2pk2: idioms.txt, numbers,
//! decomposition into conjoining jamo, the special rules, table.csv (coda + onset rules), linking rules,
//! recomposition -> `divide_hangul`, `fix_g2pk2_error`, a final jamo gets ".", `post_replace_ph` per character.
//! g2pk2's data (table.csv, idioms.txt) comes from its PyPI wheel at set-up.
//!
//! What is not exact: g2pk2 tags morphemes with MeCab-ko and four of its rules look at the tags (verb stems
//! ending in ㄴ/ㅁ and ㄼ/ㄾ/ㄺ tensing the next consonant, a modifying ㄹ ending tensing the next word, and
//! numbers before a bound noun read as native numerals). No MeCab-ko dictionary is used here: the tag-dependent
//! rules are not applied, except the number one, approximated (a number directly followed by a Hangul
//! syllable is a number before a bound noun; native numerals before g2pk2's BOUND_NOUNS, Sino-Korean otherwise).

use std::path::Path;

use fancy_regex::Regex;

use super::{Cleaned, FrontendData, SymbolTable, SymbolVersion, TextError};

/// g2pk2's rule tables.
pub struct KoData {
    /// table.csv: (pattern, replacement) in file order.
    table: Vec<(Regex, String)>,
    /// idioms.txt: (pattern, replacement).
    idioms: Vec<(Regex, String)>,
}

/// Python `re.sub` replacement syntax (`\1`) to fancy_regex's (`${1}`).
fn py_repl(r: &str) -> String {
    let mut out = String::with_capacity(r.len() + 4);
    let mut it = r.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(d) = it.peek().copied().filter(char::is_ascii_digit) {
                it.next();
                out.push_str(&format!("${{{d}}}"));
                continue;
            }
        }
        if c == '$' {
            out.push_str("$$");
        } else {
            out.push(c);
        }
    }
    out
}

impl KoData {
    pub fn load(dir: &Path) -> Result<Self, TextError> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| TextError::MissingData(format!("{}: {e}", p.display())))
        };
        Self::parse(&read("g2pk2_table.csv")?, &read("g2pk2_idioms.txt")?)
    }

    /// g2pk2 `parse_table` and `idioms`.
    pub fn parse(table_csv: &str, idioms_txt: &str) -> Result<Self, TextError> {
        let re = |s: &str| Regex::new(s).map_err(|e| TextError::Data(format!("g2pk2 pattern {s:?}: {e}")));
        let mut lines = table_csv.lines();
        let onsets: Vec<String> = lines.next().unwrap_or("").trim_start_matches('\u{feff}').split(',').map(str::to_string).collect();
        let mut table = Vec::new();
        for line in lines {
            let cols: Vec<&str> = line.split(',').collect();
            let Some(coda) = cols.first() else { continue };
            for (i, onset) in onsets.iter().enumerate().skip(1) {
                let Some(cell) = cols.get(i).filter(|c| !c.is_empty()) else { continue };
                let repl = cell.split('(').next().unwrap_or("");
                table.push((re(&format!("{coda}{onset}"))?, py_repl(repl)));
            }
        }
        let mut idioms = Vec::new();
        for line in idioms_txt.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some((a, b)) = line.split_once("===") {
                if !b.contains("===") {
                    idioms.push((re(a)?, py_repl(b)));
                }
            }
        }
        Ok(KoData { table, idioms })
    }
}

const LATIN: [&str; 26] = [
    "에이", "비", "시", "디", "이", "에프", "지", "에이치", "아이", "제이", "케이", "엘", "엠", "엔", "오", "피", "큐", "아르", "에스",
    "티", "유", "브이", "더블유", "엑스", "와이", "제트",
];

/// korean.py `latin_to_hangul` (letter by letter, case-insensitive).
fn latin_to_hangul(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            out.push_str(LATIN[(c.to_ascii_lowercase() as u8 - b'a') as usize]);
        } else {
            out.push(c);
        }
    }
    out
}

/// jamo `h2j`: precomposed syllables -> conjoining jamo.
fn h2j(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for c in text.chars() {
        let u = c as u32;
        if (0xAC00..=0xD7A3).contains(&u) {
            let s = u - 0xAC00;
            let (l, v, t) = (s / 588, (s % 588) / 28, s % 28);
            out.extend(char::from_u32(0x1100 + l));
            out.extend(char::from_u32(0x1161 + v));
            if t > 0 {
                out.extend(char::from_u32(0x11A7 + t));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// jamo `j2hcj`: conjoining jamo -> Hangul compatibility jamo.
fn j2hcj(text: &str) -> String {
    const LEAD: &str = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ";
    const TAIL: &str = "ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ";
    text.chars()
        .map(|c| {
            let u = c as u32;
            match u {
                0x1100..=0x1112 => LEAD.chars().nth((u - 0x1100) as usize).unwrap_or(c),
                0x1161..=0x1175 => char::from_u32(0x314F + (u - 0x1161)).unwrap_or(c),
                0x11A8..=0x11C2 => TAIL.chars().nth((u - 0x11A8) as usize).unwrap_or(c),
                _ => c,
            }
        })
        .collect()
}

/// g2pk2 `compose`: conjoining jamo back to syllables (a vowel without onset gets ᄋ first).
fn compose(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let is_l = |x: char| ('\u{1100}'..='\u{1112}').contains(&x);
    let is_v = |x: char| ('\u{1161}'..='\u{1175}').contains(&x);
    let is_t = |x: char| ('\u{11A8}'..='\u{11C2}').contains(&x);
    let mut with_onset: Vec<char> = Vec::with_capacity(c.len());
    for (i, &x) in c.iter().enumerate() {
        if is_v(x) && (i == 0 || !is_l(c[i - 1])) {
            with_onset.push('\u{110B}');
        }
        with_onset.push(x);
    }
    let c = with_onset;
    let mut out = String::with_capacity(c.len() * 3);
    let mut i = 0;
    while i < c.len() {
        if i + 1 < c.len() && is_l(c[i]) && is_v(c[i + 1]) {
            let (l, v) = (c[i] as u32 - 0x1100, c[i + 1] as u32 - 0x1161);
            let (t, n) = if i + 2 < c.len() && is_t(c[i + 2]) { (c[i + 2] as u32 - 0x11A7, 3) } else { (0, 2) };
            out.extend(char::from_u32(0xAC00 + (l * 21 + v) * 28 + t));
            i += n;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

const BOUND_NOUNS: &[&str] = &[
    "군데", "권", "개", "그루", "닢", "대", "두", "마리", "모", "모금", "뭇", "발", "발짝", "방", "번", "벌", "보루", "살", "수", "술",
    "시", "쌈", "움큼", "정", "짝", "채", "척", "첩", "축", "켤레", "톨", "통",
];

/// g2pk2 `process_num`.
fn process_num(num: &str, sino: bool) -> String {
    let num: String = num.chars().filter(|&c| c != ',').collect();
    if num == "0" {
        return "영".to_string();
    }
    if !sino && num == "20" {
        return "스무".to_string();
    }
    const NAMES: [&str; 9] = ["일", "이", "삼", "사", "오", "육", "칠", "팔", "구"];
    const MODS: [&str; 9] = ["한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉"];
    const DECS: [&str; 9] = ["열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔"];
    let d: Vec<char> = num.chars().collect();
    let mut spelled: Vec<String> = Vec::new();
    for (k, &digit) in d.iter().enumerate() {
        let i = d.len() - k - 1;
        let idx = digit.to_digit(10).filter(|&x| x > 0).map(|x| x as usize - 1);
        let name_of = |t: &[&str; 9]| idx.map(|x| t[x].to_string()).unwrap_or_default();
        let mut name = String::new();
        if sino {
            if i == 0 {
                name = name_of(&NAMES);
            } else if i == 1 {
                name = format!("{}십", name_of(&NAMES)).replace("일십", "십");
            }
        } else if i == 0 {
            name = name_of(&MODS);
        } else if i == 1 {
            name = name_of(&DECS);
        }
        if digit == '0' {
            if i % 4 == 0 {
                let tail = &spelled[spelled.len().saturating_sub(3)..];
                if tail.concat().is_empty() {
                    spelled.push(String::new());
                    continue;
                }
            } else {
                spelled.push(String::new());
                continue;
            }
        }
        let unit = |u: &str, strip_one: bool| {
            let n = format!("{}{u}", name_of(&NAMES));
            if strip_one {
                n.replace(&format!("일{u}"), u)
            } else {
                n
            }
        };
        match i {
            2 | 6 => name = unit("백", true),
            3 | 7 => name = unit("천", true),
            4 => name = unit("만", true),
            5 => name = unit("십", true),
            8 => name = unit("억", false),
            9 | 13 => name = unit("십", false),
            10 | 14 => name = unit("백", false),
            11 | 15 => name = unit("천", false),
            12 => name = unit("조", false),
            _ => {}
        }
        spelled.push(name);
    }
    spelled.concat()
}

/// g2pk2 `convert_num`, with the bound-noun tag approximated (see the module doc).
fn convert_num(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let is_syl = |x: char| ('가'..='힣').contains(&x);
    let mut out = String::with_capacity(text.len() * 2);
    let mut i = 0;
    while i < c.len() {
        if c[i].is_ascii_digit() {
            let mut j = i;
            while j < c.len() && (c[j].is_ascii_digit() || c[j] == ',') {
                j += 1;
            }
            let num: String = c[i..j].iter().collect();
            if j < c.len() && is_syl(c[j]) {
                let two: String = c[j..(j + 2).min(c.len())].iter().collect();
                let one = c[j].to_string();
                let native = BOUND_NOUNS.contains(&two.as_str()) || BOUND_NOUNS.contains(&one.as_str());
                out.push_str(&process_num(&num, !native));
            } else {
                out.push_str(&num);
            }
            i = j;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    const NAMES: [&str; 10] = ["영", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"];
    out.chars().map(|ch| ch.to_digit(10).map(|d| NAMES[d as usize].to_string()).unwrap_or_else(|| ch.to_string())).collect()
}

fn sub_all(re: &Regex, s: &str, repl: &str) -> String {
    match re.try_replacen(s, 0, repl) {
        Ok(r) => r.into_owned(),
        Err(_) => s.to_string(),
    }
}

/// g2pk2 `G2p.__call__` (descriptive=False, group_vowels=False, to_syl=True) on Latin-free text.
fn g2pk2(data: &KoData, text: &str) -> String {
    let mut s = text.to_string();
    for (re, r) in &data.idioms {
        s = sub_all(re, &s, r);
    }
    let s = convert_num(&s);
    let mut inp: Vec<char> = h2j(&s).chars().collect();
    // special rules that need no morpheme tags: jyeo, consonant_ui, palatalize (ye / vowel_ui only act in
    // descriptive mode; jamo, balb and the fixed-word part of modifying_rieul match precomposed syllables that
    // h2j has already decomposed, so they never fire upstream either)
    for i in 1..inp.len() {
        if inp[i] == 'ᅧ' && "ᄌᄍᄎ".contains(inp[i - 1]) {
            inp[i] = 'ᅥ';
        }
        if inp[i] == 'ᅴ' && "ᄀᄁᄂᄃᄄᄅᄆᄇᄈᄉᄊᄌᄍᄎᄏᄐᄑᄒ".contains(inp[i - 1]) {
            inp[i] = 'ᅵ';
        }
    }
    let mut out: String = inp.into_iter().collect();
    // palatalize, in upstream's order (conjoining jamo: h2j has decomposed every syllable)
    for (from, to) in [
        ("ᆮ이", "지"),
        ("ᆮ여", "져"),
        ("ᇀ이", "치"),
        ("ᇀ여", "쳐"),
        ("ᆴ이", "ᆯ치"),
        ("ᆴ여", "ᆯ쳐"),
        ("ᆮ히", "치"),
    ] {
        out = out.replace(from, to);
    }
    for (re, r) in &data.table {
        out = sub_all(re, &out, r);
    }
    for (from, to) in [
        ("ᆨᄋ", "ᄀ"), ("ᆩᄋ", "ᄁ"), ("ᆫᄋ", "ᄂ"), ("ᆮᄋ", "ᄃ"), ("ᆯᄋ", "ᄅ"), ("ᆷᄋ", "ᄆ"), ("ᆸᄋ", "ᄇ"), ("ᆺᄋ", "ᄉ"), ("ᆻᄋ", "ᄊ"),
        ("ᆽᄋ", "ᄌ"), ("ᆾᄋ", "ᄎ"), ("ᆿᄋ", "ᄏ"), ("ᇀᄋ", "ᄐ"), ("ᇁᄋ", "ᄑ"),
        ("ᆪᄋ", "ᆨᄊ"), ("ᆬᄋ", "ᆫᄌ"), ("ᆰᄋ", "ᆯᄀ"), ("ᆱᄋ", "ᆯᄆ"), ("ᆲᄋ", "ᆯᄇ"), ("ᆳᄋ", "ᆯᄊ"), ("ᆴᄋ", "ᆯᄐ"), ("ᆵᄋ", "ᆯᄑ"), ("ᆹᄋ", "ᆸᄊ"),
        ("ᇂᄋ", "ᄋ"), ("ᆭᄋ", "ᄂ"), ("ᆶᄋ", "ᄅ"),
    ] {
        out = out.replace(from, to);
    }
    compose(&out)
}

/// korean.py `divide_hangul`.
fn divide_hangul(text: &str) -> String {
    let mut s = j2hcj(&h2j(text));
    for (a, b) in [
        ("ㅘ", "ㅗㅏ"), ("ㅙ", "ㅗㅐ"), ("ㅚ", "ㅗㅣ"), ("ㅝ", "ㅜㅓ"), ("ㅞ", "ㅜㅔ"), ("ㅟ", "ㅜㅣ"), ("ㅢ", "ㅡㅣ"), ("ㅑ", "ㅣㅏ"),
        ("ㅒ", "ㅣㅐ"), ("ㅕ", "ㅣㅓ"), ("ㅖ", "ㅣㅔ"), ("ㅛ", "ㅣㅗ"), ("ㅠ", "ㅣㅜ"),
    ] {
        s = s.replace(a, b);
    }
    s
}

/// korean.py `fix_g2pk2_error`: `ㅇㅡㄹ ㄹ` / `ㄹㅡㄹ ㄹ` -> the second ㄹ is read ㄴ.
fn fix_g2pk2_error(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i + 4 < c.len() {
        let three: String = c[i..i + 3].iter().collect();
        if (three == "ㅇㅡㄹ" || three == "ㄹㅡㄹ") && c[i + 3] == ' ' && c[i + 4] == 'ㄹ' {
            out.push_str(&three);
            out.push_str(" ㄴ");
            i += 5;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out.extend(&c[i..]);
    out
}

/// korean.py `post_replace_ph`.
fn post_replace_ph(ph: &str, table: &SymbolTable) -> String {
    let ph = match ph {
        "：" | "；" | "，" | "·" | "、" => ",",
        "。" | "\n" => ".",
        "！" => "!",
        "？" => "?",
        " " => "空",
        other => other,
    };
    if table.contains(ph) {
        ph.to_string()
    } else {
        "停".to_string()
    }
}

/// korean.py `g2p`.
pub fn g2p(data: &FrontendData, text: &str) -> Result<Vec<String>, TextError> {
    let ko = data.korean()?;
    let s = latin_to_hangul(text);
    let s = g2pk2(ko, &s);
    let s = divide_hangul(&s);
    let mut s = fix_g2pk2_error(&s);
    if s.chars().last().is_some_and(|c| ('\u{3131}'..='\u{3163}').contains(&c)) {
        s.push('.');
    }
    let table = SymbolTable::builtin(SymbolVersion::V2);
    Ok(s.chars().map(|c| post_replace_ph(&c.to_string(), table)).collect())
}

/// `clean_text(text, "ko", "v2")` before the UNK mapping (korean.py has no text_normalize: norm_text is the text).
pub fn clean(data: &FrontendData, text: &str) -> Result<Cleaned, TextError> {
    let phones = g2p(data, text)?;
    Ok(Cleaned { phones, word2ph: None, norm_text: text.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jamo_round_trip() {
        assert_eq!(h2j("한"), "\u{1112}\u{1161}\u{11AB}");
        assert_eq!(compose(&h2j("한국어 abc")), "한국어 abc");
        assert_eq!(j2hcj(&h2j("닭")), "ㄷㅏㄺ");
        assert_eq!(divide_hangul("과"), "ㄱㅗㅏ");
        assert_eq!(latin_to_hangul("Ab"), "에이비");
        assert_eq!(py_repl(r"ᆫ\1ᄂ"), "ᆫ${1}ᄂ");
    }

    #[test]
    fn numbers() {
        assert_eq!(process_num("123", true), "백이십삼");
        assert_eq!(process_num("20", false), "스무");
        assert_eq!(process_num("3", false), "세");
        assert_eq!(process_num("10000", true), "만");
        assert_eq!(convert_num("3개 10분 2024"), "세개 십분 이영이사");
    }

    #[test]
    fn fix_error() {
        assert_eq!(fix_g2pk2_error("ㅇㅡㄹ ㄹㅏ"), "ㅇㅡㄹ ㄴㅏ");
    }
}
