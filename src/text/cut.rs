//! Text cutting: the segmentation methods of GPT-SoVITS.
//!
//! In: a paragraph. Out: text with `\n` between pieces (`cut0`..`cut5`), or a list of segments
//! (`pre_seg_text`, `api2_segments`).
//! Two families:
//! * [`cut`] / [`pre_seg_text`]: `TTS_infer_pack` (api_v2, webui) behaviour, checked against the goldens;
//! * [`api2_cut`] / [`api2_segments`]: the older api2 behaviour described in the api2 contract §2.6
//!   (no decimal protection in cut4, cut5 drops anything after the last mark, no punctuation filter).
//!
//! All functions work on Unicode scalar values (Python `len` semantics) and never panic.

use super::TextError;

/// api_v2 / webui sentence splitters (`splits`).
pub const SPLITS: &[char] = &['，', '。', '？', '！', ',', '.', '?', '!', '~', ':', '：', '—', '…'];
/// `punctuation` of text_segmentation_method (used by the "only punctuation" filters).
const SEG_PUNCT: &[char] = &['!', '?', '…', ',', '.', '-', ' '];
/// `punctuation` of TextPreprocessor (consecutive-punctuation collapse).
const PRE_PUNCT: &[char] = &['!', '?', '…', ',', '.', '-'];
/// cut5's marks.
const CUT5_PUNDS: &[char] = &[',', '.', ';', '?', '!', '、', '，', '。', '？', '！', '：', '…'];
/// api2's cut5 marks (`[,.;?!、，。？！;：]`).
const API2_CUT5: &[char] = &[',', '.', ';', '?', '!', '、', '，', '。', '？', '！', '：'];

fn is_split(c: char) -> bool {
    SPLITS.contains(&c)
}

fn only_punct(s: &str, set: &[char]) -> bool {
    s.chars().all(|c| set.contains(&c))
}

fn strip_char(s: &str, c: char) -> &str {
    s.trim_matches(c)
}

/// Python `str.strip()` (Unicode whitespace).
fn py_strip(s: &str) -> &str {
    s.trim()
}

/// Upstream `split()`: replace `……`→`。`, `——`→`，`, make sure it ends in a splitter, cut after every splitter.
fn split_sentences(text: &str) -> Vec<String> {
    let mut t = text.replace("……", "。").replace("——", "，");
    match t.chars().last() {
        Some(c) if is_split(c) => {}
        _ => t.push('。'),
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in t.chars() {
        cur.push(c);
        if is_split(c) {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// Group sentences four by four; the last group takes the remainder (api2/webui quirk: `split_idx[-1] = None`).
fn group_by_four(inp: &str, inps: &[String]) -> Vec<String> {
    let starts: Vec<usize> = (0..inps.len()).step_by(4).collect();
    if starts.len() > 1 {
        let mut opts = Vec::new();
        for k in 0..starts.len() - 1 {
            let end = if k + 1 == starts.len() - 1 { inps.len() } else { starts[k + 1] };
            opts.push(inps[starts[k]..end].concat());
        }
        opts
    } else {
        vec![inp.to_string()]
    }
}

fn group_by_fifty(inps: &[String]) -> Vec<String> {
    let mut opts: Vec<String> = Vec::new();
    let mut summ = 0usize;
    let mut tmp = String::new();
    for s in inps {
        summ += s.chars().count();
        tmp.push_str(s);
        if summ > 50 {
            summ = 0;
            opts.push(std::mem::take(&mut tmp));
        }
    }
    if !tmp.is_empty() {
        opts.push(tmp);
    }
    if opts.len() > 1 && opts[opts.len() - 1].chars().count() < 50 {
        let last = opts.pop().unwrap_or_default();
        if let Some(prev) = opts.last_mut() {
            prev.push_str(&last);
        }
    }
    opts
}

fn join_filtered(opts: Vec<String>) -> String {
    opts.into_iter().filter(|s| !only_punct(s, SEG_PUNCT)).collect::<Vec<_>>().join("\n")
}

/// api_v2 / webui cut methods by name (`cut0`..`cut5`).
pub fn cut(method: &str, inp: &str) -> Result<String, TextError> {
    Ok(match method {
        "cut0" => {
            if !only_punct(inp, SEG_PUNCT) {
                inp.to_string()
            } else {
                "\n".to_string()
            }
        }
        "cut1" => {
            let inp = strip_char(inp, '\n');
            let inps = split_sentences(inp);
            join_filtered(group_by_four(inp, &inps))
        }
        "cut2" => {
            let inp = strip_char(inp, '\n');
            let inps = split_sentences(inp);
            if inps.len() < 2 {
                return Ok(inp.to_string());
            }
            join_filtered(group_by_fifty(&inps))
        }
        "cut3" => {
            let inp = strip_char(inp, '\n');
            join_filtered(strip_char(inp, '。').split('。').map(str::to_string).collect())
        }
        "cut4" => {
            let inp = strip_char(inp, '\n');
            let s: Vec<char> = strip_char(inp, '.').chars().collect();
            // split on '.' unless it sits between two digits
            let mut opts = Vec::new();
            let mut cur = String::new();
            for (i, &c) in s.iter().enumerate() {
                let decimal = c == '.'
                    && i > 0
                    && i + 1 < s.len()
                    && s[i - 1].is_ascii_digit()
                    && s[i + 1].is_ascii_digit();
                if c == '.' && !decimal {
                    opts.push(std::mem::take(&mut cur));
                } else {
                    cur.push(c);
                }
            }
            opts.push(cur);
            join_filtered(opts)
        }
        "cut5" => {
            let chars: Vec<char> = strip_char(inp, '\n').chars().collect();
            let mut merged = Vec::new();
            let mut items = String::new();
            for (i, &c) in chars.iter().enumerate() {
                items.push(c);
                if CUT5_PUNDS.contains(&c) {
                    let decimal = c == '.'
                        && i > 0
                        && i + 1 < chars.len()
                        && chars[i - 1].is_numeric()
                        && chars[i + 1].is_numeric();
                    if !decimal {
                        merged.push(std::mem::take(&mut items));
                    }
                }
            }
            if !items.is_empty() {
                merged.push(items);
            }
            merged.into_iter().filter(|s| !only_punct(s, CUT5_PUNDS)).collect::<Vec<_>>().join("\n")
        }
        other => return Err(TextError::UnknownCutMethod(other.to_string())),
    })
}

/// `merge_short_text_in_array`: concatenate pieces until each is at least `threshold` characters.
pub fn merge_short_text_in_array(texts: Vec<String>, threshold: usize) -> Vec<String> {
    if texts.len() < 2 {
        return texts;
    }
    let mut result: Vec<String> = Vec::new();
    let mut text = String::new();
    for t in texts {
        text.push_str(&t);
        if text.chars().count() >= threshold {
            result.push(std::mem::take(&mut text));
        }
    }
    if !text.is_empty() {
        match result.last_mut() {
            Some(last) => last.push_str(&text),
            None => result.push(text),
        }
    }
    result
}

/// TextPreprocessor's `replace_consecutive_punctuation`: a run of `!?…,.-` keeps its first mark.
pub fn replace_consecutive_punctuation(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev_punct = false;
    for c in text.chars() {
        let p = PRE_PUNCT.contains(&c);
        if p && prev_punct {
            continue;
        }
        prev_punct = p;
        out.push(c);
    }
    out
}

/// `split_big_text`: cut a segment longer than `max_len` at splitters.
pub fn split_big_text(text: &str, max_len: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if is_split(c) {
            if !cur.is_empty() {
                pieces.push(std::mem::take(&mut cur));
            }
            pieces.push(c.to_string());
        } else {
            cur.push(c);
        }
    }
    pieces.push(cur);
    let mut result = Vec::new();
    let mut current = String::new();
    let mut current_len = 0usize;
    for seg in pieces {
        let l = seg.chars().count();
        if current_len + l > max_len {
            result.push(std::mem::take(&mut current));
            current = seg;
            current_len = l;
        } else {
            current.push_str(&seg);
            current_len += l;
        }
    }
    if !current.is_empty() {
        result.push(current);
    }
    result
}

fn first_clause_len(text: &str) -> usize {
    let first = text.split(is_split).next().unwrap_or("");
    py_strip(first).chars().count()
}

fn has_word_char(s: &str) -> bool {
    s.chars().any(|c| c.is_alphanumeric() || c == '_')
}

/// TextPreprocessor.pre_seg_text (api_v2): returns the segments that get synthesised one by one.
pub fn pre_seg_text(text: &str, lang: &str, method: &str) -> Result<Vec<String>, TextError> {
    let text = strip_char(text, '\n');
    let Some(first) = text.chars().next() else {
        return Ok(Vec::new());
    };
    let is_en = lang == "en";
    let mut text = text.to_string();
    if !is_split(first) && first_clause_len(&text) < 4 {
        text.insert(0, if is_en { '.' } else { '。' });
    }
    let mut cut_text = cut(method, &text)?;
    while cut_text.contains("\n\n") {
        cut_text = cut_text.replace("\n\n", "\n");
    }
    let pieces: Vec<String> = cut_text.split('\n').map(str::to_string).collect();
    if pieces.iter().all(|t| t.is_empty() || t == " " || t == "\n") {
        return Err(TextError::EmptyText);
    }
    let pieces: Vec<String> = pieces.into_iter().filter(|t| !(t.is_empty() || t == " ")).collect();
    let pieces = merge_short_text_in_array(pieces, 5);
    let mut out = Vec::new();
    for mut t in pieces {
        if py_strip(&t).is_empty() || !has_word_char(&t) {
            continue;
        }
        if !t.chars().last().is_some_and(is_split) {
            t.push(if is_en { '.' } else { '。' });
        }
        if t.chars().count() > 510 {
            out.extend(split_big_text(&t, 510));
        } else {
            out.push(t);
        }
    }
    Ok(out)
}

/// api2's cut methods (contract §2.6), by number 1..5 (0 = no cut).
pub fn api2_cut(method: u8, inp: &str) -> Result<String, TextError> {
    Ok(match method {
        0 => inp.to_string(),
        1 => {
            let inp = strip_char(inp, '\n');
            let inps = split_sentences(inp);
            group_by_four(inp, &inps).join("\n")
        }
        2 => {
            let inp = strip_char(inp, '\n');
            let inps = split_sentences(inp);
            if inps.len() < 2 {
                return Ok(inp.to_string());
            }
            group_by_fifty(&inps).join("\n")
        }
        3 => {
            let inp = strip_char(inp, '\n');
            strip_char(inp, '。').split('。').collect::<Vec<_>>().join("\n")
        }
        4 => {
            let inp = strip_char(inp, '\n');
            strip_char(inp, '.').split('.').collect::<Vec<_>>().join("\n")
        }
        5 => {
            // re.split keeps each mark at the end of its piece; the text after the last mark is dropped
            let mut out = Vec::new();
            let mut cur = String::new();
            for c in strip_char(inp, '\n').chars() {
                cur.push(c);
                if API2_CUT5.contains(&c) {
                    out.push(std::mem::take(&mut cur));
                }
            }
            out.join("\n")
        }
        other => return Err(TextError::UnknownCutMethod(format!("{other}"))),
    })
}

/// Collapse every run of the same splitter character to one (`。。。`→`。`, `……`→`…`).
fn collapse_same_splits(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev: Option<char> = None;
    for c in text.chars() {
        if is_split(c) && prev == Some(c) {
            continue;
        }
        prev = Some(c);
        out.push(c);
    }
    out
}

/// api2 target-text preprocessing + cutting (contract §2.6 steps 1, 3-7); returns the segments.
/// `text_language` decides the appended marks (`.` for "en", else `。`).
pub fn api2_segments(text: &str, text_language: &str, method: u8) -> Result<Vec<String>, TextError> {
    let is_en = text_language == "en";
    let mut text = text.to_string();
    text.push('.');
    let text = collapse_same_splits(strip_char(&text, '\n'));
    let mut text = text;
    if let Some(first) = text.chars().next() {
        if !is_split(first) && first_clause_len(&text) < 4 {
            text.insert(0, if is_en { '.' } else { '。' });
        }
    }
    if text.chars().count() < 4 {
        return Err(TextError::TextTooShort);
    }
    let mut cut_text = api2_cut(method, &text)?;
    while cut_text.contains("\n\n") {
        cut_text = cut_text.replace("\n\n", "\n");
    }
    let pieces: Vec<String> = cut_text.split('\n').map(str::to_string).collect();
    let pieces = merge_short_text_in_array(pieces, 5);
    let mut out = Vec::new();
    for mut t in pieces {
        if py_strip(&t).is_empty() {
            continue;
        }
        if !t.chars().last().is_some_and(is_split) {
            t.push(if is_en { '.' } else { '。' });
        }
        out.push(t);
    }
    Ok(out)
}

/// api2 prompt-text preprocessing (contract §2.6 step 2).
pub fn api2_prompt(prompt: &str, prompt_language: &str) -> String {
    let mut p = strip_char(prompt, '\n').to_string();
    if !p.chars().last().is_some_and(is_split) {
        p.push(if prompt_language == "en" { '.' } else { '。' });
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut1_groups() {
        let s = "一。".repeat(9);
        assert_eq!(api2_cut(1, &s).unwrap().split('\n').count(), 2);
        let s = "一。".repeat(8);
        assert_eq!(api2_cut(1, &s).unwrap().split('\n').count(), 1);
        let s = "一。".repeat(13);
        assert_eq!(api2_cut(1, &s).unwrap().split('\n').count(), 3);
    }

    #[test]
    fn never_panics() {
        for t in ["", "\n", "。", "...", "a", "\u{0}", "，，，，", "1.2.3"] {
            for m in ["cut0", "cut1", "cut2", "cut3", "cut4", "cut5"] {
                let _ = cut(m, t);
                let _ = pre_seg_text(t, "zh", m);
            }
            for m in 0..=6u8 {
                let _ = api2_cut(m, t);
                let _ = api2_segments(t, "zh", m);
            }
        }
    }
}
