//! Korean g2p (upstream v2 `text/korean.py` over g2pk2 0.0.3).
//!
//! In: raw Korean text. Out: [`Cleaned`] whose phones are v2 symbols: Hangul compatibility jamo (`ㄱ`, `ㅏ`, ...;
//! diphthongs split as korean.py does), punctuation, `空` for a space and `停` for anything else.
//! Pipeline, as upstream: Latin letters spelled in Hangul (`latin_to_hangul`) -> g2pk2: idioms.txt, MeCab tags,
//! numbers, decomposition into conjoining jamo, the special rules, table.csv (coda + onset rules), linking rules,
//! recomposition -> `divide_hangul`, `fix_g2pk2_error`, a final jamo gets ".", `post_replace_ph` per character.
//! g2pk2's data (table.csv, idioms.txt) comes from its PyPI wheel at set-up.
//!
//! Morpheme tags: g2pk2 tags with MeCab-ko (python-mecab-ko) on mecab-ko-dic 2.1.1; here Debian's libmecab2 opens
//! the same dictionary (from the `python-mecab-ko-dic` wheel at set-up) and [`annotate`] marks the text as
//! g2pk2 does, so its tag rules (verb stems in ㄴ/ㅁ/ㄼ/ㄾ/ㄺ, a modifying ㄹ ending, numbers before a counting
//! bound noun) run as upstream. One difference remains: MeCab-ko adds a cost to a particle right after a space
//! (`left-space-penalty-factor` in the dicrc), which libmecab2 ignores; on badly spaced text the tags can differ
//! (2 of 94 test sentences; neither changed g2pk2's output: `tests/fixtures/frontend/ko_g2pk2/`).

use std::path::Path;
use std::sync::OnceLock;

use fancy_regex::Regex;

use super::{Cleaned, FrontendData, SymbolTable, SymbolVersion, TextError};

/// g2pk2's rule tables.
pub struct KoData {
    /// table.csv: (pattern, replacement) in file order.
    table: Vec<(Regex, String)>,
    /// idioms.txt: (pattern, replacement).
    idioms: Vec<(Regex, String)>,
    /// MeCab (Debian libmecab2) on mecab-ko-dic 2.1.1, the dictionary upstream's tagger (python-mecab-ko) uses.
    mecab: Option<super::ja::Mecab>,
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
        let mut d = Self::parse(&read("g2pk2_table.csv")?, &read("g2pk2_idioms.txt")?)?;
        d.mecab = Some(super::ja::Mecab::open(&dir.join("mecab-ko-dic"), None)?);
        Ok(d)
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
        Ok(KoData { table, idioms, mecab: None })
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
            if i.is_multiple_of(4) {
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

/// g2pk2 `annotate`: MeCab-ko's tags, as markers after the last character of a morpheme: `의/J` (particle 의),
/// `/E` (an ending whose last jamo is ㄹ), `/P` (a verb or adjective stem ending in ㄴ ㄵ ㅁ ㄻ ㄺ ㄼ ㄾ),
/// `/B` (a counting bound noun, NNBC). Text whose morphemes do not spell it (spaces aside) is left as it is.
pub fn annotate(mecab: &super::ja::Mecab, text: &str) -> Result<String, TextError> {
    let tokens = mecab.parse(text)?;
    let joined: String = tokens.iter().map(|(surface, _)| surface.as_str()).collect();
    if text.replace(' ', "") != joined {
        return Ok(text.to_string());
    }
    let mut tags: Vec<char> = Vec::with_capacity(text.len());
    for (surface, features) in &tokens {
        let pos = features.split(',').next().unwrap_or("");
        let last = pos.rsplit('+').next().unwrap_or("");
        let tag = if last == "NNBC" { 'B' } else { last.chars().next().unwrap_or('_') };
        let n = surface.chars().count();
        tags.extend(std::iter::repeat_n('_', n.saturating_sub(1)));
        tags.push(tag);
    }
    let mut tag_it = tags.into_iter();
    let mut out = String::with_capacity(text.len() + 16);
    for ch in text.chars() {
        let tag = if ch == ' ' { ' ' } else { tag_it.next().unwrap_or('_') };
        out.push(ch);
        let last_jamo = h2j(&ch.to_string()).chars().last().unwrap_or(ch);
        match tag {
            'J' if ch == '의' => out.push_str("/J"),
            'E' if last_jamo == 'ᆯ' => out.push_str("/E"),
            'V' if "ᆫᆬᆷᆱᆰᆲᆴ".contains(last_jamo) => out.push_str("/P"),
            'B' => out.push_str("/B"),
            _ => {}
        }
    }
    Ok(out)
}

/// g2pk2 `convert_num` on annotated text: a number before a bound noun (`3개/B`) is spelled out, in native numerals
/// before g2pk2's BOUND_NOUNS and Sino-Korean otherwise; every other digit is read one by one. (Upstream replaces
/// the matches in the order of a Python set; here longer numbers go first, so `11개/B` is not read as `1` + `1개/B`.)
pub fn convert_num(text: &str) -> String {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let mut s = text.to_string();
    if let Some(re) = RE.get_or_init(|| Regex::new(r"([\d][\d,]*)([ㄱ-힣]+)/B").ok()) {
        let mut found: Vec<(String, String)> = Vec::new();
        for c in re.captures_iter(text).flatten() {
            let t = (c.get(1).map(|m| m.as_str().to_string()).unwrap_or_default(), c.get(2).map(|m| m.as_str().to_string()).unwrap_or_default());
            if !found.contains(&t) {
                found.push(t);
            }
        }
        found.sort_by_key(|t| std::cmp::Reverse(t.0.len() + t.1.len()));
        for (num, bn) in found {
            let spelled = process_num(&num, !BOUND_NOUNS.contains(&bn.as_str()));
            s = s.replace(&format!("{num}{bn}/B"), &format!("{spelled}{bn}/B"));
        }
    }
    const NAMES: [&str; 10] = ["영", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"];
    s.chars().map(|ch| if ch.is_ascii_digit() { NAMES[(ch as u8 - b'0') as usize].to_string() } else { ch.to_string() }).collect()
}

fn sub_all(re: &Regex, s: &str, repl: &str) -> String {
    match re.try_replacen(s, 0, repl) {
        Ok(r) => r.into_owned(),
        Err(_) => s.to_string(),
    }
}

/// g2pk2's special rules on decomposed, annotated text, in its order (descriptive=False: `ye` and `vowel_ui` do
/// nothing), then the markers are dropped. Every pattern is upstream's, in conjoining jamo as upstream writes them
/// (`[그]` is a class of the two jamo ᄀ and ᅳ, as in upstream's regex).
fn special(inp: &str) -> String {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        let mut v: Vec<(&str, &'static str)> = vec![
            ("([ᄌᄍᄎ])ᅧ", "${1}ᅥ"),                                 // jyeo
            ("([ᄀᄁᄂᄃᄄᄅᄆᄇᄈᄉᄊᄌᄍᄎᄏᄐᄑᄒ])ᅴ", "${1}ᅵ"),               // consonant_ui
            ("/J", ""),                                              // josa_ui
            // jamo: `[그]`, `[으]` are classes of two conjoining jamo, as upstream's regex has them
            ("([\u{1100}\u{1173}])\u{11AE}\u{110B}", "${1}\u{1109}"),
            ("([\u{110B}\u{1173}])[\u{11BD}\u{11BE}\u{11C0}\u{11C2}]\u{110B}", "${1}\u{1109}"),
            ("([\u{110B}\u{1173}])[\u{11BF}]\u{110B}", "${1}\u{1100}"),
            ("([\u{110B}\u{1173}])[\u{11C1}]\u{110B}", "${1}\u{1107}"),
            ("ᆰ/P([ᄀᄁ])", "ᆯᄁ"),                                   // rieulgiyeok
            ("([ᆲᆴ])/Pᄀ", "${1}ᄁ"), ("([ᆲᆴ])/Pᄃ", "${1}ᄄ"),       // rieulbieub
            ("([ᆲᆴ])/Pᄉ", "${1}ᄊ"), ("([ᆲᆴ])/Pᄌ", "${1}ᄍ"),
            ("([ᆫᆷ])/Pᄀ", "${1}ᄁ"), ("([ᆫᆷ])/Pᄃ", "${1}ᄄ"),       // verb_nieun
            ("([ᆫᆷ])/Pᄉ", "${1}ᄊ"), ("([ᆫᆷ])/Pᄌ", "${1}ᄍ"),
            ("ᆬ/Pᄀ", "ᆫᄁ"), ("ᆬ/Pᄃ", "ᆫᄄ"), ("ᆬ/Pᄉ", "ᆫᄊ"), ("ᆬ/Pᄌ", "ᆫᄍ"),
            ("ᆱ/Pᄀ", "ᆷᄁ"), ("ᆱ/Pᄃ", "ᆷᄄ"), ("ᆱ/Pᄉ", "ᆷᄊ"), ("ᆱ/Pᄌ", "ᆷᄍ"),
            // balb (바, 너 decomposed)
            ("(\u{1107}\u{1161})\u{11B2}($|[^\u{110B}\u{1112}])", "${1}\u{11B8}${2}"),
            ("(\u{1102}\u{1165})\u{11B2}([\u{110C}\u{110D}]\u{116E}|[\u{1103}\u{1104}]\u{116E})", "${1}\u{11B8}${2}"),
            ("ᆮᄋ([ᅵᅧ])", "ᄌ${1}"), ("ᇀᄋ([ᅵᅧ])", "ᄎ${1}"),     // palatalize
            ("ᆴᄋ([ᅵᅧ])", "ᆯᄎ${1}"), ("ᆮᄒ([ᅵ])", "ᄎ${1}"),
            ("ᆯ/E ᄀ", "ᆯ ᄁ"), ("ᆯ/E ᄃ", "ᆯ ᄄ"), ("ᆯ/E ᄇ", "ᆯ ᄈ"), // modifying_rieul
            ("ᆯ/E ᄉ", "ᆯ ᄊ"), ("ᆯ/E ᄌ", "ᆯ ᄍ"),
            // modifying_rieul's fixed words (decomposed)
            ("\u{11AF}\u{1100}\u{1165}\u{11AF}", "\u{11AF}\u{1101}\u{1165}\u{11AF}"),
            ("\u{11AF}\u{1107}\u{1161}\u{11A9}\u{110B}\u{1166}", "\u{11AF}\u{1108}\u{1161}\u{1101}\u{1166}"),
            ("\u{11AF}\u{1109}\u{1166}\u{1105}\u{1161}", "\u{11AF}\u{110A}\u{1166}\u{1105}\u{1161}"),
            ("\u{11AF}\u{1109}\u{116E}\u{1105}\u{1169}\u{11A8}", "\u{11AF}\u{110A}\u{116E}\u{1105}\u{1169}\u{11A8}"),
            ("\u{11AF}\u{110C}\u{1175}\u{1105}\u{1161}\u{1103}\u{1169}", "\u{11AF}\u{110D}\u{1175}\u{1105}\u{1161}\u{1103}\u{1169}"),
            ("\u{11AF}\u{110C}\u{1175}\u{110B}\u{1165}\u{11AB}\u{110C}\u{1165}\u{11BC}", "\u{11AF}\u{110D}\u{1175}\u{110B}\u{1165}\u{11AB}\u{110C}\u{1165}\u{11BC}"),
            ("\u{11AF}\u{110C}\u{1175}\u{11AB}\u{1103}\u{1162}", "\u{11AF}\u{110D}\u{1175}\u{11AB}\u{1103}\u{1162}"),
            ("/[PJEB]", ""),
        ];
        v.drain(..).filter_map(|(p, r)| Regex::new(p).ok().map(|re| (re, r))).collect()
    });
    let mut out = inp.to_string();
    for (re, r) in rules {
        out = sub_all(re, &out, r);
    }
    out
}

/// g2pk2 `G2p.__call__` (descriptive=False, group_vowels=False, to_syl=True) on Latin-free text.
pub fn g2pk2(data: &KoData, text: &str) -> Result<String, TextError> {
    let mut s = text.to_string();
    for (re, r) in &data.idioms {
        s = sub_all(re, &s, r);
    }
    let mecab = data.mecab.as_ref().ok_or_else(|| TextError::MissingData("Korean MeCab dictionary (mecab-ko-dic) not loaded".into()))?;
    let s = annotate(mecab, &s)?;
    let s = convert_num(&s);
    let mut out = special(&h2j(&s));
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
    Ok(compose(&out))
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
    let s = g2pk2(ko, &s)?;
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
        assert_eq!(convert_num("3개/B 10분/B 2024"), "세개/B 십분/B 이영이사");
        assert_eq!(convert_num("11개/B와 1개/B"), "열한개/B와 한개/B");
        assert_eq!(convert_num("3개 10"), "삼개 일영", "no bound-noun tag: digit by digit");
    }

    #[test]
    fn special_rules() {
        let r = |s: &str| compose(&special(&h2j(s)));
        assert_eq!(r("밟/P고"), "밥꼬", "rieulbieub, then balb");
        assert_eq!(r("신/P고"), "신꼬", "verb_nieun");
        assert_eq!(r("할/E 수"), "할 쑤", "modifying_rieul");
        assert_eq!(r("끝이"), "끄시", "jamo: ([으])[ᆽᆾᇀᇂ]ᄋ -> ᄉ, before palatalize");
        assert_eq!(r("나의/J"), "나의", "josa_ui drops the marker");
        assert_eq!(r("닫이"), "다지", "palatalize");
    }

    #[test]
    fn fix_error() {
        assert_eq!(fix_g2pk2_error("ㅇㅡㄹ ㄹㅏ"), "ㅇㅡㄹ ㄴㅏ");
    }
}
