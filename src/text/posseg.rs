//! jieba's POS segmenter (`jieba.posseg.cut(text, HMM=True)`, which upstream calls through `jieba_fast.posseg`).
//!
//! In: a clause. Out: `(word, POS flag)` pairs, the same cut and flags as Python's posseg.
//!
//! Why not `jieba_rs::Jieba::tag`: jieba-rs segments with its plain `cut` (the 4-state BMES HMM for runs the
//! dictionary leaves unjoined) and only guesses flags afterwards, while posseg segments those runs with its
//! own (position, POS) HMM, whose cuts differ (胡同儿里 → jieba-rs 胡同/儿里, posseg 胡同/儿/里). The block
//! regexes also differ (posseg's han class stops at U+9FD5 and has no `%`/`-`). So this module does what
//! posseg does, step by step:
//! - `__cut_internal`: runs of `[\u4E00-\u9FD5a-zA-Z0-9+#&._]` are cut by `__cut_DAG`; every other
//!   character is its own `x` token (`\r\n` together).
//! - `__cut_DAG`: dictionary DAG and best route (jieba's `get_DAG` / `calc`); single-character route
//!   steps are buffered; a buffer of one is a word, a buffer that is a dictionary word is split into its
//!   characters, any other buffer goes to `__cut_detail`.
//! - `__cut_detail`: runs of `[\u4E00-\u9FD5]` go through the POS HMM (`posseg.viterbi`); the rest is cut
//!   into `[.0-9]+` (`m`), `[a-zA-Z0-9]+` (`eng`) and the text between (`x`).
//!
//! Data (run time, from `scripts/setup`): `jieba_dict.txt` (jieba 0.42.1's dict.txt) and
//! `jieba_posseg.json` (its posseg HMM tables).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use super::TextError;

/// `posseg.viterbi.MIN_FLOAT`: the emission score of a character a state never emits.
const MIN_FLOAT: f64 = -3.14e100;

/// A small multiply-rotate hasher for the ~600k dictionary keys (std's SipHash makes loading noticeably
/// slower, and these keys come from a trusted file, so flooding resistance is not needed).
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.add(b as u64);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.add(b as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl WordHasher {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type WordMap<V> = HashMap<String, V, BuildHasherDefault<WordHasher>>;

/// One dictionary entry (or a prefix of one, which has `freq == 0` and no flag, as in `gen_pfdict`).
struct Entry {
    freq: u64,
    tag: Option<u16>,
}

/// The POS HMM. States are indices in Python's tuple order of `(position, tag)`, so comparing indices
/// breaks ties exactly like posseg's `max((prob, state), ...)`.
struct PosHmm {
    /// Position letter (B/M/E/S) of each state.
    pos: Vec<char>,
    /// POS flag of each state.
    flag: Vec<String>,
    start: Vec<f64>,
    /// Successors of each state with their log-probability (`trans_p[state]`).
    next: Vec<Vec<(usize, f64)>>,
    /// Predecessors of each state with the log-probability of moving on to it, by state.
    prev: Vec<Vec<(usize, f64)>>,
    /// `emit_p[state]`.
    emit: Vec<HashMap<char, f64>>,
    /// `char_state_tab`: the states a character may take (all states when absent).
    char_state: HashMap<char, Vec<usize>>,
}

/// The dictionary and HMM of jieba's POS segmenter.
pub struct PosSeg {
    words: WordMap<Entry>,
    tags: Vec<String>,
    ln_total: f64,
    hmm: PosHmm,
}

#[derive(serde::Deserialize)]
struct HmmJson {
    states: Vec<(String, String)>,
    start: Vec<String>,
    trans: Vec<Vec<(usize, String)>>,
    emit: Vec<HashMap<String, String>>,
    char_state: HashMap<String, Vec<usize>>,
}

fn num(s: &str) -> Result<f64, TextError> {
    s.parse::<f64>().map_err(|e| TextError::Data(format!("jieba_posseg.json: bad number {s:?}: {e}")))
}

fn one_char(s: &str) -> Result<char, TextError> {
    let mut it = s.chars();
    match (it.next(), it.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(TextError::Data(format!("jieba_posseg.json: {s:?} is not one character"))),
    }
}

fn is_han(c: char) -> bool {
    ('\u{4E00}'..='\u{9FD5}').contains(&c)
}

/// `re_han_internal`'s class.
fn is_han_internal(c: char) -> bool {
    is_han(c) || c.is_ascii_alphanumeric() || matches!(c, '+' | '#' | '&' | '.' | '_')
}

fn is_num(c: char) -> bool {
    c.is_ascii_digit() || c == '.'
}

/// Maximal runs of `chars` split by whether `class` holds: `(in_class, run)`.
fn runs(chars: &[char], class: impl Fn(char) -> bool) -> Vec<(bool, &[char])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let inside = class(chars[i]);
        let mut j = i + 1;
        while j < chars.len() && class(chars[j]) == inside {
            j += 1;
        }
        out.push((inside, &chars[i..j]));
        i = j;
    }
    out
}

impl PosHmm {
    fn from_json(text: &str) -> Result<Self, TextError> {
        let j: HmmJson =
            serde_json::from_str(text).map_err(|e| TextError::Data(format!("jieba_posseg.json: {e}")))?;
        let n = j.states.len();
        if n == 0 || n >= u16::MAX as usize || j.start.len() != n || j.trans.len() != n || j.emit.len() != n {
            return Err(TextError::Data("jieba_posseg.json: tables of different sizes".into()));
        }
        let mut pos = Vec::with_capacity(n);
        let mut flag = Vec::with_capacity(n);
        for (p, f) in &j.states {
            pos.push(one_char(p)?);
            flag.push(f.clone());
        }
        let start = j.start.iter().map(|s| num(s)).collect::<Result<Vec<_>, _>>()?;
        let mut next = Vec::with_capacity(n);
        let mut prev = vec![Vec::new(); n];
        for (from, row) in j.trans.iter().enumerate() {
            let mut succ = Vec::with_capacity(row.len());
            for (to, p) in row {
                if *to >= n {
                    return Err(TextError::Data("jieba_posseg.json: state out of range".into()));
                }
                let p = num(p)?;
                prev[*to].push((from, p));
                succ.push((*to, p));
            }
            next.push(succ);
        }
        let mut emit = Vec::with_capacity(n);
        for row in &j.emit {
            let mut m = HashMap::with_capacity(row.len());
            for (c, p) in row {
                m.insert(one_char(c)?, num(p)?);
            }
            emit.push(m);
        }
        let mut char_state = HashMap::with_capacity(j.char_state.len());
        for (c, v) in &j.char_state {
            if v.iter().any(|&s| s >= n) {
                return Err(TextError::Data("jieba_posseg.json: state out of range".into()));
            }
            char_state.insert(one_char(c)?, v.clone());
        }
        Ok(Self { pos, flag, start, next, prev, emit, char_state })
    }

    fn emit(&self, state: usize, c: char) -> f64 {
        self.emit[state].get(&c).copied().unwrap_or(MIN_FLOAT)
    }

    /// `posseg.viterbi.viterbi`: the best state of every character of `obs` (non-empty).
    ///
    /// Same choices as the Python: a state is only scored from predecessors that have a transition to
    /// it (posseg also scores the others, with `-inf`, which can never win since every state it scores
    /// has at least one real predecessor), and ties go to the larger `(position, tag)` as in `max`.
    fn viterbi(&self, obs: &[char]) -> Vec<usize> {
        let n = self.pos.len();
        let all: Vec<usize> = (0..n).collect();
        // score[y] is meaningful where present[y]; back[t][y] is the predecessor of y at t.
        let mut score = vec![0.0f64; n];
        let mut present = vec![false; n];
        let mut back: Vec<Vec<u16>> = Vec::with_capacity(obs.len());
        for &y in self.char_state.get(&obs[0]).unwrap_or(&all) {
            score[y] = self.start[y] + self.emit(y, obs[0]);
            present[y] = true;
        }
        back.push(vec![u16::MAX; n]);
        let mut new_score = vec![0.0f64; n];
        let mut new_present = vec![false; n];
        let mut expect = vec![false; n];
        for &c in &obs[1..] {
            expect.iter_mut().for_each(|e| *e = false);
            for y0 in (0..n).filter(|&y0| present[y0]) {
                for &(y, _) in &self.next[y0] {
                    expect[y] = true;
                }
            }
            let mut targets: Vec<usize> =
                self.char_state.get(&c).unwrap_or(&all).iter().copied().filter(|&y| expect[y]).collect();
            if targets.is_empty() {
                targets = (0..n).filter(|&y| expect[y]).collect();
            }
            new_present.iter_mut().for_each(|p| *p = false);
            let mut bp = vec![u16::MAX; n];
            if targets.is_empty() {
                // No predecessor can move on: posseg's `max` of nothing would raise; never happens with
                // its tables. Keep every state reachable so the cut still completes.
                for y in 0..n {
                    new_score[y] = MIN_FLOAT;
                    new_present[y] = true;
                    bp[y] = (0..n).find(|&y0| present[y0]).unwrap_or(0) as u16;
                }
            }
            for y in targets {
                let e = self.emit(y, c);
                let mut best: Option<(f64, usize)> = None;
                for &(y0, p) in &self.prev[y] {
                    if !present[y0] {
                        continue;
                    }
                    let v = score[y0] + p + e;
                    if best.is_none_or(|(b, s)| v > b || (v == b && y0 > s)) {
                        best = Some((v, y0));
                    }
                }
                let (v, y0) = best.expect("a state in expect has a predecessor");
                new_score[y] = v;
                new_present[y] = true;
                bp[y] = y0 as u16;
            }
            std::mem::swap(&mut score, &mut new_score);
            std::mem::swap(&mut present, &mut new_present);
            back.push(bp);
        }
        let mut state = 0;
        let mut best: Option<f64> = None;
        for y in (0..n).filter(|&y| present[y]) {
            if best.is_none_or(|b| score[y] >= b) {
                best = Some(score[y]);
                state = y;
            }
        }
        let mut route = vec![0; obs.len()];
        for i in (0..obs.len()).rev() {
            route[i] = state;
            state = back[i][state] as usize;
        }
        route
    }
}

impl PosSeg {
    /// Reads `jieba_dict.txt` and `jieba_posseg.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, TextError> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| {
                TextError::MissingData(format!("{}: {e} (run scripts/setup)", p.display()))
            })
        };
        let hmm = PosHmm::from_json(&read("jieba_posseg.json")?)?;
        let dict = read("jieba_dict.txt")?;
        Self::from_parts(&dict, hmm)
    }

    fn from_parts(dict: &str, hmm: PosHmm) -> Result<Self, TextError> {
        let mut words: WordMap<Entry> = WordMap::with_capacity_and_hasher(600_000, Default::default());
        let mut tags: Vec<String> = Vec::new();
        let mut tag_ids: HashMap<String, u16> = HashMap::new();
        let mut total: u64 = 0;
        for (lineno, line) in dict.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut it = line.split(' ');
            let (Some(word), Some(freq)) = (it.next(), it.next()) else {
                return Err(TextError::Data(format!("jieba_dict.txt:{}: {line:?}", lineno + 1)));
            };
            let freq: u64 =
                freq.parse().map_err(|_| TextError::Data(format!("jieba_dict.txt:{}: {line:?}", lineno + 1)))?;
            let tag = match it.next() {
                Some(t) => {
                    let next_id = tags.len() as u16;
                    let id = *tag_ids.entry(t.to_string()).or_insert(next_id);
                    if id == next_id {
                        tags.push(t.to_string());
                    }
                    Some(id)
                }
                None => None,
            };
            total += freq;
            // gen_pfdict: every proper prefix is a key too (frequency 0 unless it is a word itself).
            for (end, _) in word.char_indices().skip(1) {
                if !words.contains_key(&word[..end]) {
                    words.insert(word[..end].to_string(), Entry { freq: 0, tag: None });
                }
            }
            match words.get_mut(word) {
                Some(e) => {
                    e.freq = freq;
                    if tag.is_some() {
                        e.tag = tag;
                    }
                }
                None => {
                    words.insert(word.to_string(), Entry { freq, tag });
                }
            }
        }
        if total == 0 {
            return Err(TextError::Data("jieba_dict.txt: empty".into()));
        }
        Ok(Self { words, tags, ln_total: (total as f64).ln(), hmm })
    }

    fn freq(&self, w: &str) -> u64 {
        self.words.get(w).map_or(0, |e| e.freq)
    }

    /// `word_tag_tab.get(w, 'x')`.
    fn flag(&self, w: &str) -> String {
        self.words.get(w).and_then(|e| e.tag).map_or_else(|| "x".to_string(), |t| self.tags[t as usize].clone())
    }

    /// `jieba.posseg.lcut(sentence)` (HMM on).
    pub fn cut(&self, sentence: &str) -> Vec<(String, String)> {
        let chars: Vec<char> = sentence.chars().collect();
        let mut out = Vec::new();
        for (han, blk) in runs(&chars, is_han_internal) {
            if han {
                self.cut_dag(blk, &mut out);
            } else {
                let mut i = 0;
                while i < blk.len() {
                    let n = if blk[i] == '\r' && blk.get(i + 1) == Some(&'\n') { 2 } else { 1 };
                    out.push((blk[i..i + n].iter().collect(), "x".to_string()));
                    i += n;
                }
            }
        }
        out
    }

    /// `Tokenizer.get_DAG` + `calc`: the end (exclusive) of the best first word at each position.
    fn route(&self, s: &[char]) -> Vec<usize> {
        let n = s.len();
        let mut dag: Vec<Vec<usize>> = Vec::with_capacity(n);
        for k in 0..n {
            let mut ends = Vec::new();
            let mut frag = String::new();
            let mut i = k;
            while i < n {
                frag.push(s[i]);
                match self.words.get(&frag) {
                    Some(e) => {
                        if e.freq > 0 {
                            ends.push(i);
                        }
                    }
                    None => break,
                }
                i += 1;
            }
            if ends.is_empty() {
                ends.push(k);
            }
            dag.push(ends);
        }
        let mut best = vec![(0.0f64, 0usize); n + 1];
        for idx in (0..n).rev() {
            let mut pick: Option<(f64, usize)> = None;
            for &x in &dag[idx] {
                let w: String = s[idx..=x].iter().collect();
                let f = self.freq(&w).max(1);
                let score = (f as f64).ln() - self.ln_total + best[x + 1].0;
                if pick.is_none_or(|(b, bx)| score > b || (score == b && x > bx)) {
                    pick = Some((score, x));
                }
            }
            best[idx] = pick.expect("dag entry");
        }
        best[..n].iter().map(|&(_, x)| x + 1).collect()
    }

    /// `POSTokenizer.__cut_DAG`.
    fn cut_dag(&self, s: &[char], out: &mut Vec<(String, String)>) {
        let route = self.route(s);
        let mut buf: Vec<char> = Vec::new();
        let mut x = 0;
        while x < s.len() {
            let y = route[x];
            if y - x == 1 {
                buf.push(s[x]);
            } else {
                self.flush(&mut buf, out);
                let w: String = s[x..y].iter().collect();
                let f = self.flag(&w);
                out.push((w, f));
            }
            x = y;
        }
        self.flush(&mut buf, out);
    }

    /// A buffer of single-character route steps, as `__cut_DAG` emits it.
    fn flush(&self, buf: &mut Vec<char>, out: &mut Vec<(String, String)>) {
        if buf.is_empty() {
            return;
        }
        let w: String = buf.iter().collect();
        if buf.len() == 1 {
            let f = self.flag(&w);
            out.push((w, f));
        } else if self.freq(&w) == 0 {
            self.cut_detail(buf, out);
        } else {
            for c in buf.iter() {
                let w = c.to_string();
                let f = self.flag(&w);
                out.push((w, f));
            }
        }
        buf.clear();
    }

    /// `POSTokenizer.__cut_detail`.
    fn cut_detail(&self, s: &[char], out: &mut Vec<(String, String)>) {
        for (han, blk) in runs(s, is_han) {
            if han {
                self.cut_hmm(blk, out);
                continue;
            }
            // re_skip_detail.split: `[.0-9]+` first, else `[a-zA-Z0-9]+`, else the text up to the next match.
            let mut i = 0;
            while i < blk.len() {
                let c = blk[i];
                let mut j = i + 1;
                let flag = if is_num(c) {
                    while j < blk.len() && is_num(blk[j]) {
                        j += 1;
                    }
                    "m"
                } else if c.is_ascii_alphanumeric() {
                    while j < blk.len() && blk[j].is_ascii_alphanumeric() {
                        j += 1;
                    }
                    "eng"
                } else {
                    while j < blk.len() && !(is_num(blk[j]) || blk[j].is_ascii_alphanumeric()) {
                        j += 1;
                    }
                    "x"
                };
                out.push((blk[i..j].iter().collect(), flag.to_string()));
                i = j;
            }
        }
    }

    /// `POSTokenizer.__cut`: words from the POS HMM's B/M/E/S positions.
    fn cut_hmm(&self, s: &[char], out: &mut Vec<(String, String)>) {
        let route = self.hmm.viterbi(s);
        let (mut begin, mut next) = (0, 0);
        for (i, &st) in route.iter().enumerate() {
            match self.hmm.pos[st] {
                'B' => begin = i,
                'E' => {
                    out.push((s[begin..=i].iter().collect(), self.hmm.flag[st].clone()));
                    next = i + 1;
                }
                'S' => {
                    out.push((s[i].to_string(), self.hmm.flag[st].clone()));
                    next = i + 1;
                }
                _ => {}
            }
        }
        if next < s.len() {
            out.push((s[next..].iter().collect(), self.hmm.flag[route[next]].clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> PosSeg {
        // Two states per tag is enough to exercise the plumbing; real tables come from scripts/setup.
        let hmm = r#"{"states":[["B","n"],["E","n"],["S","v"]],
            "start":["-1.0","-3.14e+100","-1.0"],
            "trans":[[[1,"0.0"]],[[0,"-0.7"],[2,"-0.7"]],[[0,"-0.7"],[2,"-0.7"]]],
            "emit":[{"甲":"-1.0"},{"乙":"-1.0"},{"丙":"-1.0"}],
            "char_state":{}}"#;
        PosSeg::from_parts("中国 100 ns\n人 50 n\nab 3 eng\n", PosHmm::from_json(hmm).unwrap()).unwrap()
    }

    #[test]
    fn blocks_dictionary_and_hmm() {
        let p = tiny();
        let got = p.cut("中国人 甲乙丙，x1.5+");
        let want: Vec<(String, String)> = [
            ("中国", "ns"),
            ("人", "n"),
            (" ", "x"),
            ("甲乙", "n"),
            ("丙", "v"),
            ("，", "x"),
            ("x1", "eng"),
            (".5", "m"),
            ("+", "x"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn crlf_is_one_token() {
        let p = tiny();
        let got: Vec<String> = p.cut("人\r\n人").into_iter().map(|t| t.0).collect();
        assert_eq!(got, ["人", "\r\n", "人"]);
    }
}
