//! Chinese text normalisation (GPT-SoVITS `zh_normalization` + `chinese2.text_normalize`).
//!
//! In: raw Chinese text. Out: normalised text where numbers, dates, times, percentages, fractions,
//! phone numbers, temperatures and units are spelled out in Chinese characters, punctuation mapped to
//! `! ? … , . -`, everything else outside CJK U+4E00..U+9FA5 removed.

use fancy_regex::{Captures, Regex};
use std::sync::OnceLock;

use super::data::FrontendData;

const DIGITS: [char; 10] = ['零', '一', '二', '三', '四', '五', '六', '七', '八', '九'];

fn digit(c: char) -> char {
    c.to_digit(10).map(|d| DIGITS[d as usize]).unwrap_or('零')
}

/// `verbalize_digit`: digit by digit, optionally 一 -> 幺.
pub fn verbalize_digit(s: &str, alt_one: bool) -> String {
    s.chars().filter(|c| c.is_numeric()).map(|c| if alt_one && c.to_digit(10) == Some(1) { '幺' } else { digit(c) }).collect()
}

fn unit(power: usize) -> &'static str {
    match power {
        1 => "十",
        2 => "百",
        3 => "千",
        4 => "万",
        _ => "亿",
    }
}

fn get_value(v: &[char], use_zero: bool) -> Vec<String> {
    let stripped: &[char] = {
        let k = v.iter().take_while(|&&c| c == '0').count();
        &v[k..]
    };
    if stripped.is_empty() {
        return vec![];
    }
    if stripped.len() == 1 {
        return if use_zero && stripped.len() < v.len() {
            vec!["零".to_string(), digit(stripped[0]).to_string()]
        } else {
            vec![digit(stripped[0]).to_string()]
        };
    }
    let largest = [8usize, 4, 3, 2, 1].into_iter().find(|&p| p < stripped.len()).unwrap_or(1);
    let (first, second) = v.split_at(v.len() - largest);
    let mut out = get_value(first, true);
    out.push(unit(largest).to_string());
    out.extend(get_value(second, true));
    out
}

/// `verbalize_cardinal`.
pub fn verbalize_cardinal(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    let v: Vec<char> = s.trim_start_matches('0').chars().collect();
    if v.is_empty() {
        return "零".to_string();
    }
    let mut syms = get_value(&v, true);
    if syms.len() >= 2 && syms[0] == "一" && syms[1] == "十" {
        syms.remove(0);
    }
    syms.concat()
}

/// `num2str`: integer part as a cardinal, decimals digit by digit.
pub fn num2str(s: &str) -> String {
    let (int, dec) = match s.split_once('.') {
        Some((a, b)) => (a, b.replace('.', "")),
        None => (s, String::new()),
    };
    let mut result = verbalize_cardinal(int);
    let dec = if dec.ends_with('0') { format!("{}0", dec.trim_end_matches('0')) } else { dec.trim_end_matches('0').to_string() };
    if !dec.is_empty() {
        if result.is_empty() {
            result = "零".to_string();
        }
        result.push('点');
        result.push_str(&verbalize_digit(&dec, false));
    }
    result
}

fn g<'a>(c: &'a Captures, i: usize) -> &'a str {
    c.get(i).map(|m| m.as_str()).unwrap_or("")
}

fn sub(re: &Regex, s: &str, f: impl Fn(&Captures) -> String) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for cap in re.captures_iter(s) {
        let Ok(cap) = cap else { break };
        let Some(m) = cap.get(0) else { continue };
        out.push_str(&s[last..m.start()]);
        out.push_str(&f(&cap));
        last = m.end();
    }
    out.push_str(&s[last..]);
    out
}

struct Res {
    date: Regex,
    date2: Regex,
    time: Regex,
    time_range: Regex,
    to_range: Regex,
    temperature: Regex,
    asmd: Regex,
    power: Regex,
    frac: Regex,
    percentage: Regex,
    mobile: Regex,
    telephone: Regex,
    uniform: Regex,
    range: Regex,
    integer: Regex,
    version: Regex,
    decimal: Regex,
    quantifiers: Regex,
    default_num: Regex,
    number: Regex,
    splitor: Regex,
}

fn res(com_quantifiers: &str) -> &'static Res {
    static R: OnceLock<Res> = OnceLock::new();
    R.get_or_init(|| {
        let r = |s: &str| Regex::new(s).unwrap_or_else(|_| Regex::new("$^").expect("trivial regex"));
        let num = r"((-?)((\d+)(\.\d+)?)|(\.(\d+)))";
        let units = r"(%|°C|℃|度|摄氏度|cm2|cm²|cm3|cm³|cm|db|ds|kg|km|m2|m²|m³|m3|ml|m|mm|s)";
        let sup = "[⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ]";
        let operand = format!(r"((-?)((\d+)(\.\d+)?{sup}*)|(\.\d+{sup}*)|([A-Za-z]{sup}*))");
        Res {
            date: r(r"(\d{4}|\d{2})年((0?[1-9]|1[0-2])月)?(((0?[1-9])|((1|2)[0-9])|30|31)([日号]))?"),
            date2: r(r"(\d{4})([- /.])(0[1-9]|1[012])\2(0[1-9]|[12][0-9]|3[01])"),
            time: r(r"([0-1]?[0-9]|2[0-3]):([0-5][0-9])(:([0-5][0-9]))?"),
            time_range: r(r"([0-1]?[0-9]|2[0-3]):([0-5][0-9])(:([0-5][0-9]))?(~|-)([0-1]?[0-9]|2[0-3]):([0-5][0-9])(:([0-5][0-9]))?"),
            to_range: r(&format!("{num}{units}[~]{num}{units}")),
            temperature: r(r"(-?)(\d+(\.\d+)?)(°C|℃|度|摄氏度)"),
            asmd: r(&format!(r"{operand}([\+\-\×÷=]){operand}")),
            power: r(&format!("{sup}+")),
            frac: r(r"(-?)(\d+)/(\d+)"),
            percentage: r(r"(-?)(\d+(\.\d+)?)%"),
            mobile: r(r"(?<!\d)((\+?86 ?)?1([38]\d|5[0-35-9]|7[678]|9[89])\d{8})(?!\d)"),
            telephone: r(r"(?<!\d)((0(10|2[1-3]|[3-9]\d{2})-?)?[1-9]\d{6,7})(?!\d)"),
            uniform: r(r"(400)(-)?\d{3}(-)?\d{4}"),
            range: r(r"(?<![\d\+\-\×÷=])((-?)((\d+)(\.\d+)?))[-~]((-?)((\d+)(\.\d+)?))(?![\d\+\-\×÷=])"),
            integer: r(r"(-)(\d+)"),
            version: r(r"((\d+)(\.\d+)(\.\d+)?(\.\d+)+)"),
            decimal: r(r"(-?)((\d+)(\.\d+))|(\.(\d+))"),
            quantifiers: r(&format!(r"(\d+)([多余几\+])?{com_quantifiers}")),
            default_num: r(r"\d{3}\d*"),
            number: r(r"(-?)((\d+)(\.\d+)?)|(\.(\d+))"),
            splitor: r(r"([：、，；。？！,;?!][”’]?)"),
        }
    })
}

fn time_num2str(s: &str) -> String {
    let mut r = num2str(s.trim_start_matches('0'));
    if s.starts_with('0') {
        r.insert(0, '零');
    }
    r
}

fn replace_time(c: &Captures, is_range: bool) -> String {
    let (hour, minute, second) = (g(c, 1), g(c, 2), g(c, 4));
    let mut r = format!("{}点", num2str(hour));
    let min_is_30 = minute.parse::<u32>().ok() == Some(30);
    if !minute.trim_start_matches('0').is_empty() {
        if min_is_30 {
            r.push('半');
        } else {
            r += &format!("{}分", time_num2str(minute));
        }
    }
    if !second.trim_start_matches('0').is_empty() {
        r += &format!("{}秒", time_num2str(second));
    }
    if is_range {
        let (h2, m2, s2) = (g(c, 6), g(c, 7), g(c, 9));
        r.push('至');
        r += &format!("{}点", num2str(h2));
        if !m2.trim_start_matches('0').is_empty() {
            // upstream tests the first minute here
            if min_is_30 {
                r.push('半');
            } else {
                r += &format!("{}分", time_num2str(m2));
            }
        }
        if !s2.trim_start_matches('0').is_empty() {
            r += &format!("{}秒", time_num2str(s2));
        }
    }
    r
}

fn replace_number(c: &Captures) -> String {
    let pure = g(c, 5);
    if !pure.is_empty() {
        return num2str(pure);
    }
    let sign = if g(c, 1).is_empty() { "" } else { "负" };
    format!("{sign}{}", num2str(g(c, 2)))
}

/// `TextNormalizer._post_replace`, in upstream's order: `/` is read 每 ("per": `km/h`, `次/秒`), circled digits,
/// Greek letters, then the arithmetic signs left over after `RE_ASMD`.
const POST_REPLACE: &[(&str, &str)] = &[
    ("/", "每"),
    ("①", "一"), ("②", "二"), ("③", "三"), ("④", "四"), ("⑤", "五"), ("⑥", "六"), ("⑦", "七"), ("⑧", "八"), ("⑨", "九"), ("⑩", "十"),
    ("α", "阿尔法"), ("β", "贝塔"), ("γ", "伽玛"), ("Γ", "伽玛"), ("δ", "德尔塔"), ("Δ", "德尔塔"), ("ε", "艾普西龙"),
    ("ζ", "捷塔"), ("η", "依塔"), ("θ", "西塔"), ("Θ", "西塔"), ("ι", "艾欧塔"), ("κ", "喀帕"), ("λ", "拉姆达"), ("Λ", "拉姆达"),
    ("μ", "缪"), ("ν", "拗"), ("ξ", "克西"), ("Ξ", "克西"), ("ο", "欧米克伦"), ("π", "派"), ("Π", "派"), ("ρ", "肉"),
    ("ς", "西格玛"), ("Σ", "西格玛"), ("σ", "西格玛"), ("τ", "套"), ("υ", "宇普西龙"), ("φ", "服艾"), ("Φ", "服艾"),
    ("χ", "器"), ("ψ", "普赛"), ("Ψ", "普赛"), ("ω", "欧米伽"), ("Ω", "欧米伽"),
    ("+", "加"), ("-", "减"), ("×", "乘"), ("÷", "除"), ("=", "等"),
];

/// `TextNormalizer.normalize_sentence`.
pub fn normalize_sentence(data: &FrontendData, s: &str) -> String {
    let re = res(&data.lists.com_quantifiers);
    // traditional -> simplified, full-width -> half-width letters/digits/space
    let mut s: String = s
        .chars()
        .map(|c| {
            let c = *data.t2s.get(&c).unwrap_or(&c);
            match c {
                '\u{FF10}'..='\u{FF19}' | '\u{FF21}'..='\u{FF3A}' | '\u{FF41}'..='\u{FF5A}' => {
                    char::from_u32(c as u32 - 65248).unwrap_or(c)
                }
                '\u{3000}' => ' ',
                _ => c,
            }
        })
        .collect();
    s = sub(&re.date, &s, |c| {
        let mut r = String::new();
        let (y, m, d) = (g(c, 1), g(c, 3), g(c, 5));
        if !y.is_empty() {
            r += &format!("{}年", verbalize_digit(y, false));
        }
        if !m.is_empty() {
            r += &format!("{}月", verbalize_cardinal(m));
        }
        if !d.is_empty() {
            r += &format!("{}{}", verbalize_cardinal(d), g(c, 9));
        }
        r
    });
    s = sub(&re.date2, &s, |c| {
        format!("{}年{}月{}日", verbalize_digit(g(c, 1), false), verbalize_cardinal(g(c, 3)), verbalize_cardinal(g(c, 4)))
    });
    s = sub(&re.time_range, &s, |c| replace_time(c, true));
    s = sub(&re.time, &s, |c| replace_time(c, false));
    s = sub(&re.to_range, &s, |c| g(c, 0).replace('~', "至"));
    s = sub(&re.temperature, &s, |c| {
        // Upstream's `replace_temperature` reads the unit from group 3, which is the decimal part, so the
        // 摄氏度 branch never fires: every unit (°C, ℃, 度, 摄氏度) is read 度.
        let sign = if g(c, 1).is_empty() { "" } else { "零下" };
        let unit = if g(c, 3) == "摄氏度" { "摄氏度" } else { "度" };
        format!("{sign}{}{unit}", num2str(g(c, 2)))
    });
    for (k, v) in &data.lists.measure_units {
        if s.contains(k.as_str()) {
            s = s.replace(k.as_str(), v);
        }
    }
    let mut guard = 0;
    while re.asmd.is_match(&s).unwrap_or(false) && guard < 10_000 {
        guard += 1;
        s = sub(&re.asmd, &s, |c| {
            let op = match g(c, 8) {
                "+" => "加",
                "-" => "减",
                "×" => "乘",
                "÷" => "除",
                _ => "等于",
            };
            format!("{}{op}{}", g(c, 1), g(c, 9))
        });
    }
    s = sub(&re.power, &s, |c| {
        let p: String = g(c, 0)
            .chars()
            .map(|ch| match ch {
                '⁰' => '0', '¹' => '1', '²' => '2', '³' => '3', '⁴' => '4', '⁵' => '5', '⁶' => '6', '⁷' => '7', '⁸' => '8',
                '⁹' => '9', 'ˣ' => 'x', 'ʸ' => 'y', _ => 'n',
            })
            .collect();
        format!("的{p}次方")
    });
    s = sub(&re.frac, &s, |c| {
        let sign = if g(c, 1).is_empty() { "" } else { "负" };
        format!("{sign}{}分之{}", num2str(g(c, 3)), num2str(g(c, 2)))
    });
    s = sub(&re.percentage, &s, |c| {
        let sign = if g(c, 1).is_empty() { "" } else { "负" };
        format!("{sign}百分之{}", num2str(g(c, 2)))
    });
    s = sub(&re.mobile, &s, |c| {
        g(c, 0).trim_matches('+').split_whitespace().map(|p| verbalize_digit(p, true)).collect::<Vec<_>>().join("，")
    });
    let phone = |c: &Captures| g(c, 0).split('-').map(|p| verbalize_digit(p, true)).collect::<Vec<_>>().join("，");
    s = sub(&re.telephone, &s, phone);
    s = sub(&re.uniform, &s, phone);
    s = sub(&re.range, &s, |c| {
        let first = sub(&re.number, g(c, 1), replace_number);
        let second = sub(&re.number, g(c, 6), replace_number);
        format!("{first}到{second}")
    });
    s = sub(&re.integer, &s, |c| format!("负{}", num2str(g(c, 2))));
    s = sub(&re.version, &s, |c| g(c, 1).chars().map(|ch| if ch == '.' { "点".to_string() } else { num2str(&ch.to_string()) }).collect());
    s = sub(&re.decimal, &s, replace_number);
    s = sub(&re.quantifiers, &s, |c| {
        let m2 = match g(c, 2) {
            "+" => "多",
            x => x,
        };
        let mut n = num2str(g(c, 1));
        if n == "二" {
            n = "两".to_string();
        }
        format!("{n}{m2}{}", g(c, 3))
    });
    s = sub(&re.default_num, &s, |c| verbalize_digit(g(c, 0), true));
    s = sub(&re.number, &s, replace_number);
    for (k, v) in POST_REPLACE {
        s = s.replace(k, v);
    }
    s.chars().filter(|c| !"-—《》【】<=>{}()（）#&@“”^_|\\".contains(*c)).collect()
}

/// `TextNormalizer._split` (lang zh): sentences.
pub fn split_sentences(data: &FrontendData, text: &str) -> Vec<String> {
    let re = res(&data.lists.com_quantifiers);
    let t: String = text.chars().filter(|c| *c != ' ' && !"—《》【】<>{}()（）#&@“”^_|\\".contains(*c)).collect();
    let t = sub(&re.splitor, &t, |c| format!("{}\n", g(c, 0)));
    t.trim().split('\n').filter(|s| !s.is_empty()).map(|s| s.trim().to_string()).collect()
}

/// GPT-SoVITS's zh punctuation set.
pub const PUNCT: &[char] = &['!', '?', '…', ',', '.', '-'];

/// `replace_punctuation` (chinese2): map punctuation, drop everything else that is not CJK.
pub fn replace_punctuation(text: &str, keep_latin: bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mapped: Option<char> = if c == '.' && chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') {
            i += 2;
            Some('…')
        } else {
            match c {
                '嗯' => Some('恩'),
                '呣' => Some('母'),
                '：' | '；' | '，' | '·' | '、' | '/' => Some(','),
                '。' | '\n' | '$' => Some('.'),
                '！' => Some('!'),
                '？' => Some('?'),
                '—' => Some('-'),
                '~' | '～' => Some('…'),
                _ => None,
            }
        };
        let c = mapped.unwrap_or(c);
        i += 1;
        if ('\u{4e00}'..='\u{9fa5}').contains(&c) || PUNCT.contains(&c) || (keep_latin && c.is_ascii_alphabetic()) {
            out.push(c);
        }
    }
    out
}

/// `replace_consecutive_punctuation`: a run of punctuation keeps its first mark.
pub fn collapse_punct(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev = false;
    for c in text.chars() {
        let p = PUNCT.contains(&c);
        if !(p && prev) {
            out.push(c);
        }
        prev = p;
    }
    out
}

/// `chinese2.text_normalize` (v2).
pub fn text_normalize(data: &FrontendData, text: &str) -> String {
    let mut out = String::new();
    for s in split_sentences(data, text) {
        out.push_str(&replace_punctuation(&normalize_sentence(data, &s), false));
    }
    collapse_punct(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn numbers() {
        assert_eq!(num2str("1999.99"), "一千九百九十九点九九");
        assert_eq!(num2str("15"), "十五");
        assert_eq!(num2str("105"), "一百零五");
        assert_eq!(num2str("100000"), "十万");
        assert_eq!(num2str("0.5"), "零点五");
        assert_eq!(num2str(".5"), "零点五");
        assert_eq!(verbalize_cardinal("10010"), "一万零一十");
    }
}
