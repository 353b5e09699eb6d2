//! g2pW's neural polyphone model as upstream runs it (`text/g2pw/onnx_api.py`, `dataset.py`, `utils.py`).
//! [`G2pw`] owns the bundle's optional `g2pw.onnx` graph (through `runtime/`'s generic session) with its tables;
//! [`G2pwModel`] is everything but the session ([`RunFn`] runs it), so it is testable without ONNX Runtime.
//!
//! In: the queries of [`super::g2pw::model_queries`]: per polyphonic character, the traditional text it is asked
//! in and its index there. Out: one TONE3 pinyin per query.
//!
//! Steps, each as upstream:
//! 1. `prepare_onnx_input`: the text is lower-cased and cut into words (`wordize_and_map`: runs of `[a-zA-Z0-9]`,
//!    single other characters, spaces dropped); each word goes through the BERT tokenizer (upstream:
//!    `AutoTokenizer` of chinese-roberta-wwm-ext-large = the bundle's `tokenizer.json`); a word with no token or
//!    only `[UNK]` becomes one `[UNK]`; `[CLS] tokens [SEP]` -> `input_ids`, zeros -> `token_type_ids`, ones ->
//!    `attention_masks`; texts over 510 tokens are cut around the query (`_truncate`). Per query: `phoneme_masks`
//!    (1 for the character's candidate labels, [`G2pwLabels`]), `char_ids` (index in the sorted polyphonic
//!    characters), `position_ids` (token of the character + 1). Rows are zero-padded to the longest of the batch.
//!    Shapes: ids/masks `[N, L]` int64, `phoneme_masks` `[N, C]` float32, `char_ids`/`position_ids` `[N]` int64.
//! 2. `_predict_with_sentence_dedup` (upstream's default): queries asked in the same text form a group, run
//!    separately, with the text's `input_ids`/`token_type_ids`/`attention_masks` given once (`[1, L]`) when the
//!    group has several queries; when every text is distinct the whole batch runs at once ([`run_plan`]).
//! 3. `predict`: argmax of the model's first output (`[N, C]` probabilities) -> label; with `use_char_phoneme`
//!    the label is `"char bopomofo"` and its second field is kept; bopomofo -> pinyin with g2pW's map.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use ndarray::{Array2, ArrayView2, Axis};

use super::g2pw::{G2pwTables, PolyphoneReader};
use super::TextError;

/// Upstream's `max_len`: [CLS] + 510 tokens + [SEP].
pub const MAX_LEN: usize = 512;

/// The model's label set (`get_phoneme_labels` / `get_char_phoneme_labels` over POLYPHONIC_CHARS.txt).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct G2pwLabels {
    /// Sorted distinct labels: bopomofo (`ㄏㄠ3`), or `"字 bopomofo"` with `use_char_phoneme`.
    pub labels: Vec<String>,
    /// Label indices of each polyphonic character, in file order.
    pub char2phonemes: HashMap<char, Vec<usize>>,
    /// `sorted(char2phonemes)`: a character's index here is its `char_id`.
    pub chars: Vec<char>,
    pub char2id: HashMap<char, usize>,
    pub use_mask: bool,
    pub use_char_phoneme: bool,
}

impl G2pwLabels {
    /// Parses POLYPHONIC_CHARS.txt (`char<TAB>bopomofo` lines, as `text.strip().split("\n")` then `split("\t")`).
    pub fn from_polyphonic(text: &str, use_mask: bool, use_char_phoneme: bool) -> Result<Self, TextError> {
        let mut pairs: Vec<(char, String)> = Vec::new();
        for (n, line) in text.trim().split('\n').enumerate() {
            let mut it = line.split('\t');
            let (Some(c), Some(p), None) = (it.next(), it.next(), it.next()) else {
                return Err(TextError::Data(format!("POLYPHONIC_CHARS.txt line {}: expected `char<TAB>bopomofo`", n + 1)));
            };
            let mut cs = c.chars();
            let (Some(ch), None) = (cs.next(), cs.next()) else {
                return Err(TextError::Data(format!("POLYPHONIC_CHARS.txt line {}: {c:?} is not one character", n + 1)));
            };
            pairs.push((ch, p.to_string()));
        }
        let key = |c: char, p: &str| if use_char_phoneme { format!("{c} {p}") } else { p.to_string() };
        let mut labels: Vec<String> = pairs.iter().map(|(c, p)| key(*c, p)).collect();
        labels.sort();
        labels.dedup();
        let index: HashMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
        let mut char2phonemes: HashMap<char, Vec<usize>> = HashMap::new();
        for (c, p) in &pairs {
            let i = index[key(*c, p).as_str()];
            char2phonemes.entry(*c).or_default().push(i);
        }
        let mut chars: Vec<char> = char2phonemes.keys().copied().collect();
        chars.sort();
        let char2id = chars.iter().enumerate().map(|(i, c)| (*c, i)).collect();
        Ok(G2pwLabels { labels, char2phonemes, chars, char2id, use_mask, use_char_phoneme })
    }

    /// `char_phoneme_masks[c]` (all ones without `use_mask`).
    pub fn phoneme_mask(&self, c: char) -> Option<Vec<f32>> {
        if !self.use_mask {
            return Some(vec![1.0; self.labels.len()]);
        }
        let idx = self.char2phonemes.get(&c)?;
        let mut m = vec![0.0; self.labels.len()];
        for &i in idx {
            m[i] = 1.0;
        }
        Some(m)
    }
}

/// The six model inputs (names as the graph's: `attention_mask` and `phoneme_mask` are fed from these
/// `attention_masks` / `phoneme_masks`).
#[derive(Debug, Clone, PartialEq)]
pub struct G2pwOnnxInput {
    pub input_ids: Array2<i64>,
    pub token_type_ids: Array2<i64>,
    pub attention_masks: Array2<i64>,
    pub phoneme_masks: Array2<f32>,
    pub char_ids: Vec<i64>,
    pub position_ids: Vec<i64>,
}

impl G2pwOnnxInput {
    /// Rows `rows` of every input (`value[indices]`); with `shared_text` only the first row of the three text
    /// inputs (`[:1]`), as the sentence dedup sends them.
    pub fn select(&self, rows: &[usize], shared_text: bool) -> G2pwOnnxInput {
        let text_rows: &[usize] = if shared_text { &rows[..rows.len().min(1)] } else { rows };
        G2pwOnnxInput {
            input_ids: self.input_ids.select(Axis(0), text_rows),
            token_type_ids: self.token_type_ids.select(Axis(0), text_rows),
            attention_masks: self.attention_masks.select(Axis(0), text_rows),
            phoneme_masks: self.phoneme_masks.select(Axis(0), rows),
            char_ids: rows.iter().map(|&i| self.char_ids[i]).collect(),
            position_ids: rows.iter().map(|&i| self.position_ids[i]).collect(),
        }
    }

    pub fn queries(&self) -> usize {
        self.char_ids.len()
    }
}

/// `wordize_and_map`: words, text index -> word index (None for spaces), word -> (start, end) in the text.
#[allow(clippy::type_complexity)]
pub fn wordize_and_map(text: &[char]) -> (Vec<String>, Vec<Option<usize>>, Vec<(usize, usize)>) {
    let mut words = Vec::new();
    let mut text2word = Vec::with_capacity(text.len());
    let mut word2text = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i] == ' ' {
            text2word.push(None);
            i += 1;
            continue;
        }
        let mut j = i;
        while j < text.len() && text[j].is_ascii_alphanumeric() {
            j += 1;
        }
        if j == i {
            j = i + 1;
        }
        word2text.push((i, j));
        text2word.extend(std::iter::repeat_n(Some(words.len()), j - i));
        words.push(text[i..j].iter().collect());
        i = j;
    }
    (words, text2word, word2text)
}

/// The tokenizer side of `tokenize_and_map`: a word's tokens (`tokenizer.tokenize(word)`) and their ids.
pub trait WordTokenizer {
    fn tokenize(&self, word: &str) -> Result<Vec<(String, i64)>, TextError>;
    fn token_id(&self, token: &str) -> Option<i64>;
}

impl WordTokenizer for tokenizers::Tokenizer {
    fn tokenize(&self, word: &str) -> Result<Vec<(String, i64)>, TextError> {
        // PreTrainedTokenizerFast.tokenize = encode(add_special_tokens=False).tokens
        let enc = self.encode(word, false).map_err(|e| TextError::Tokenizer(e.to_string()))?;
        Ok(enc.get_tokens().iter().cloned().zip(enc.get_ids().iter().map(|&i| i as i64)).collect())
    }
    fn token_id(&self, token: &str) -> Option<i64> {
        self.token_to_id(token).map(|i| i as i64)
    }
}

/// One tokenised text: tokens with ids, text index -> token index, token -> (start, end) in the text.
#[derive(Debug, Clone)]
struct Tokenized {
    tokens: Vec<(String, i64)>,
    text2token: Vec<Option<usize>>,
    token2text: Vec<(usize, usize)>,
}

/// `tokenize_and_map`. Err where upstream raises (a token reaching past the text), which makes upstream's
/// `prepare_onnx_input` give up on the whole batch.
fn tokenize_and_map(tok: &dyn WordTokenizer, unk: (&str, i64), text: &[char]) -> Result<Tokenized, TextError> {
    let (words, text2word, word2text) = wordize_and_map(text);
    let mut tokens = Vec::new();
    let mut token2text = Vec::new();
    for (word, &(ws, we)) in words.iter().zip(word2text.iter()) {
        let wt = tok.tokenize(word)?;
        if wt.is_empty() || (wt.len() == 1 && wt[0].0 == unk.0) {
            token2text.push((ws, we));
            tokens.push((unk.0.to_string(), unk.1));
        } else {
            let mut cur = ws;
            for t in wt {
                let len = t.0.strip_prefix("##").unwrap_or(&t.0).chars().count();
                token2text.push((cur, cur + len));
                cur += len;
                tokens.push(t);
            }
        }
    }
    // upstream starts from the word map (word indices) and overwrites each position a token covers
    let mut text2token = text2word;
    for (i, &(s, e)) in token2text.iter().enumerate() {
        for p in s..e {
            match text2token.get_mut(p) {
                Some(x) => *x = Some(i),
                None => return Err(TextError::Tokenizer(format!("token {i} reaches past the text ({p} >= {})", text.len()))),
            }
        }
    }
    Ok(Tokenized { tokens, text2token, token2text })
}

/// `_truncate`: the window of at most 510 tokens around the query (text, query id, tokens, text2token).
fn truncate(text: &[char], query_id: usize, t: &Tokenized) -> Result<(Vec<char>, usize, Vec<(String, i64)>, Vec<Option<i64>>), TextError> {
    let bad = || TextError::Tokenizer("query outside the tokenised text".into());
    let truncate_len = (MAX_LEN - 2) as i64;
    let n = t.tokens.len() as i64;
    let pos = t.text2token.get(query_id).copied().flatten().ok_or_else(bad)? as i64;
    let mut start = pos - truncate_len / 2;
    let mut end = start + truncate_len;
    let front = -start;
    let back = end - n;
    if front > 0 {
        start += front;
        end += front;
    } else if back > 0 {
        start -= back;
        end -= back;
    }
    let (ts, te) = (start as usize, end as usize);
    let cs = t.token2text.get(ts).ok_or_else(bad)?.0;
    let ce = t.token2text.get(te - 1).ok_or_else(bad)?.1;
    let qid = query_id.checked_sub(cs).ok_or_else(bad)?;
    let t2t = t.text2token.get(cs..ce).ok_or_else(bad)?.iter().map(|x| x.map(|i| i as i64 - start)).collect();
    Ok((text.get(cs..ce).ok_or_else(bad)?.to_vec(), qid, t.tokens[ts..te].to_vec(), t2t))
}

/// `prepare_onnx_input(tokenizer, labels, char2phonemes, chars, texts, query_ids, use_mask, window_size=None)`.
pub fn prepare_onnx_input(
    tok: &dyn WordTokenizer,
    labels: &G2pwLabels,
    texts: &[String],
    query_ids: &[usize],
) -> Result<G2pwOnnxInput, TextError> {
    if texts.len() != query_ids.len() || texts.is_empty() {
        return Err(TextError::Shape(format!("{} texts for {} queries", texts.len(), query_ids.len())));
    }
    let id = |t: &str| tok.token_id(t).ok_or_else(|| TextError::Tokenizer(format!("the vocabulary has no {t}")));
    let (cls, sep, unk) = (id("[CLS]")?, id("[SEP]")?, id("[UNK]")?);
    let mut cache: HashMap<String, Tokenized> = HashMap::new();
    let mut rows: Vec<Vec<i64>> = Vec::with_capacity(texts.len());
    let mut phoneme_masks = Vec::with_capacity(texts.len() * labels.labels.len());
    let mut char_ids = Vec::with_capacity(texts.len());
    let mut position_ids = Vec::with_capacity(texts.len());
    for (text, &query_id) in texts.iter().zip(query_ids) {
        let lower = text.to_lowercase();
        let chars: Vec<char> = lower.chars().collect();
        if !cache.contains_key(&lower) {
            let t = tokenize_and_map(tok, ("[UNK]", unk), &chars)?;
            cache.insert(lower.clone(), t);
        }
        let t = &cache[&lower];
        let (query_char, position, ids): (char, i64, Vec<i64>) = if t.tokens.len() <= MAX_LEN - 2 {
            let c = *chars.get(query_id).ok_or_else(|| TextError::Shape(format!("query {query_id} outside {text:?}")))?;
            let p = t.text2token[query_id].ok_or_else(|| TextError::Tokenizer(format!("query {query_id} of {text:?} is a space")))?;
            (c, p as i64, t.tokens.iter().map(|x| x.1).collect())
        } else {
            let (wtext, qid, wtokens, t2t) = truncate(&chars, query_id, t)?;
            let c = *wtext.get(qid).ok_or_else(|| TextError::Shape("query outside the window".into()))?;
            let p = t2t.get(qid).copied().flatten().ok_or_else(|| TextError::Tokenizer("query is a space".into()))?;
            (c, p, wtokens.iter().map(|x| x.1).collect())
        };
        let mut row = Vec::with_capacity(ids.len() + 2);
        row.push(cls);
        row.extend(ids);
        row.push(sep);
        rows.push(row);
        let mask = labels.phoneme_mask(query_char).ok_or_else(|| TextError::Data(format!("{query_char:?} is not a polyphonic character of the model")))?;
        phoneme_masks.extend(mask);
        char_ids.push(*labels.char2id.get(&query_char).ok_or_else(|| TextError::Data(format!("{query_char:?} has no char id")))? as i64);
        position_ids.push(position + 1);
    }
    let n = rows.len();
    let l = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut input_ids = Array2::<i64>::zeros((n, l));
    let mut attention_masks = Array2::<i64>::zeros((n, l));
    for (i, r) in rows.iter().enumerate() {
        for (j, &v) in r.iter().enumerate() {
            input_ids[[i, j]] = v;
            attention_masks[[i, j]] = 1;
        }
    }
    let phoneme_masks = Array2::from_shape_vec((n, labels.labels.len()), phoneme_masks).map_err(|e| TextError::Shape(e.to_string()))?;
    Ok(G2pwOnnxInput { input_ids, token_type_ids: Array2::zeros((n, l)), attention_masks, phoneme_masks, char_ids, position_ids })
}

/// How `_predict_with_sentence_dedup` runs a batch: a list of (rows, shared_text) runs.
pub fn run_plan(texts: &[String]) -> Vec<(Vec<usize>, bool)> {
    let all: Vec<usize> = (0..texts.len()).collect();
    if texts.len() <= 1 {
        return vec![(all, false)];
    }
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in texts.iter().enumerate() {
        let g = groups.entry(t.as_str()).or_default();
        if g.is_empty() {
            order.push(t.as_str());
        }
        g.push(i);
    }
    if groups.values().all(|g| g.len() == 1) {
        return vec![(all, false)];
    }
    order
        .into_iter()
        .map(|t| {
            let g = groups.remove(t).unwrap_or_default();
            let shared = g.len() > 1;
            (g, shared)
        })
        .collect()
}

/// `predict`'s argmax per row (first maximum, as numpy).
pub fn argmax_rows(probs: ArrayView2<f32>) -> Vec<usize> {
    probs
        .rows()
        .into_iter()
        .map(|r| {
            // numpy: the first maximum, or the first NaN if there is one
            let mut best = 0;
            for (i, &v) in r.iter().enumerate() {
                if v.is_nan() {
                    return i;
                }
                if v > r[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

/// Runs one model input; returns the first output, `[N, C]`.
pub type RunFn<'a> = dyn FnMut(&G2pwOnnxInput) -> Result<Array2<f32>, String> + 'a;

/// A bundle's g2pW: its tables, labels and the BERT tokenizer upstream uses with it.
pub struct G2pwModel {
    pub tables: G2pwTables,
    pub labels: G2pwLabels,
    pub tokenizer: Arc<tokenizers::Tokenizer>,
}

impl G2pwModel {
    /// From the bundle's copies of the model folder's POLYPHONIC_CHARS.txt, MONOPHONIC_CHARS.txt and
    /// bopomofo_to_pinyin_wo_tune_dict.json, and its config flags.
    pub fn load(
        polyphonic: &Path,
        monophonic: &Path,
        bopomofo: &Path,
        use_mask: bool,
        use_char_phoneme: bool,
        tokenizer: Arc<tokenizers::Tokenizer>,
    ) -> Result<Self, TextError> {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| TextError::MissingData(format!("{}: {e}", p.display())));
        let poly = read(polyphonic)?;
        let map: HashMap<String, String> =
            serde_json::from_str(&read(bopomofo)?).map_err(|e| TextError::Data(format!("{}: {e}", bopomofo.display())))?;
        let tables = G2pwTables::from_texts(&read(monophonic)?, &poly, map);
        let labels = G2pwLabels::from_polyphonic(&poly, use_mask, use_char_phoneme)?;
        Ok(G2pwModel { tables, labels, tokenizer })
    }

    /// The readings of argmax labels (`None` where the bopomofo has no pinyin).
    pub fn readings(&self, label_ids: &[usize]) -> Vec<Option<String>> {
        label_ids
            .iter()
            .map(|&i| {
                let l = self.labels.labels.get(i)?;
                let b = if self.labels.use_char_phoneme { l.split(' ').nth(1)? } else { l.as_str() };
                self.tables.to_pinyin(b)
            })
            .collect()
    }

    /// Prepares, runs (per [`run_plan`]) and decodes one batch of queries.
    pub fn predict_with(&self, run: &mut RunFn<'_>, texts: &[String], query_ids: &[usize]) -> Result<Vec<Option<String>>, TextError> {
        let input = match prepare_onnx_input(self.tokenizer.as_ref(), &self.labels, texts, query_ids) {
            Ok(x) => x,
            // upstream: a text the tokenizer maps badly makes prepare_onnx_input return {} -> no prediction
            Err(TextError::Tokenizer(e)) => {
                tracing::warn!("g2pw: {e}; polyphonic characters keep their contextual reading");
                return Ok(vec![None; texts.len()]);
            }
            Err(e) => return Err(e),
        };
        let c = self.labels.labels.len();
        let mut label_ids = vec![0usize; texts.len()];
        for (rows, shared) in run_plan(texts) {
            let part = input.select(&rows, shared);
            let probs = run(&part).map_err(|e| TextError::Data(format!("g2pw.onnx: {e}")))?;
            if probs.dim() != (rows.len(), c) {
                return Err(TextError::Shape(format!("g2pw.onnx returned {:?}, expected [{}, {c}]", probs.dim(), rows.len())));
            }
            for (r, a) in rows.iter().zip(argmax_rows(probs.view())) {
                label_ids[*r] = a;
            }
        }
        Ok(self.readings(&label_ids))
    }

    /// A [`PolyphoneReader`] running the model through `run`.
    pub fn reader<'a>(&'a self, run: &'a mut RunFn<'a>) -> G2pwReader<'a> {
        G2pwReader { model: self, run: RefCell::new(run) }
    }
}

/// [`G2pwModel`] bound to a way of running its graph.
pub struct G2pwReader<'a> {
    model: &'a G2pwModel,
    run: RefCell<&'a mut RunFn<'a>>,
}

impl PolyphoneReader for G2pwReader<'_> {
    fn tables(&self) -> &G2pwTables {
        &self.model.tables
    }
    fn predict(&self, texts: &[String], query_ids: &[usize]) -> Result<Vec<Option<String>>, TextError> {
        let mut run = self.run.try_borrow_mut().map_err(|_| TextError::Data("g2pw.onnx: re-entrant call".into()))?;
        self.model.predict_with(&mut **run, texts, query_ids)
    }
}

/// g2pW's graph inputs as upstream feeds them: (name, element type, rank). Its first output is `[N, C]` float32.
pub const G2PW_INPUTS: [(&str, &str, usize); 6] = [
    ("input_ids", "int64", 2),
    ("token_type_ids", "int64", 2),
    ("attention_mask", "int64", 2),
    ("phoneme_mask", "float32", 2),
    ("char_ids", "int64", 1),
    ("position_ids", "int64", 1),
];

/// A bundle's `g2pw.onnx` (upstream's `g2pW.onnx`, copied unchanged: no `gsv.*` metadata, so its contract is
/// checked here against [`G2PW_INPUTS`] rather than through [`crate::bundle::GraphContract`]) with its tables.
pub struct G2pw {
    graph: crate::runtime::Graph,
    output: String,
    model: G2pwModel,
}

impl G2pw {
    /// Loads the graph named by the manifest's `g2pw` entry, checks its interface, reads its tables; the tokenizer
    /// is the bundle's BERT tokenizer (the one upstream hands g2pW).
    pub fn load(
        rt: &crate::runtime::Runtime,
        bundle: &crate::bundle::Bundle,
        info: &crate::bundle::G2pwInfo,
        opts: &crate::runtime::SessionOptions,
        tokenizer: Arc<tokenizers::Tokenizer>,
    ) -> Result<G2pw, crate::bundle::LoadError> {
        use crate::bundle::BundleError;
        let d = &bundle.dir;
        bundle.verify("g2pw", &d.join(&info.file), info.sha256.as_deref(), opts)?;
        let graph = rt.load("g2pw", &d.join(&info.file), opts)?;
        let io = |what: &str, expected: String, actual: String| BundleError::GraphIo { graph: "g2pw".into(), what: what.into(), expected, actual };
        let names: Vec<&str> = graph.inputs.iter().map(|s| s.name.as_str()).collect();
        for (n, t, r) in G2PW_INPUTS {
            let a = graph.inputs.iter().find(|s| s.name == n).ok_or_else(|| io("inputs", n.into(), format!("{names:?}")))?;
            if a.dtype != t || a.rank != Some(r) {
                return Err(io(&format!("input `{n}`"), format!("{t} rank {r}"), format!("{} rank {:?}", a.dtype, a.rank)).into());
            }
        }
        if graph.inputs.len() != G2PW_INPUTS.len() {
            return Err(io("inputs", format!("{:?}", G2PW_INPUTS.map(|x| x.0)), format!("{names:?}")).into());
        }
        let output = match graph.outputs.first() {
            Some(o) if o.dtype == "float32" && o.rank == Some(2) => o.name.clone(),
            Some(o) => return Err(io("first output", "float32 rank 2".into(), format!("{} rank {:?}", o.dtype, o.rank)).into()),
            None => return Err(io("outputs", "one".into(), "none".into()).into()),
        };
        let field = |f: &str, e: TextError| BundleError::Field { field: f.into(), msg: e.to_string() };
        let model = G2pwModel::load(
            &d.join(&info.polyphonic_chars),
            &d.join(&info.monophonic_chars),
            &d.join(&info.bopomofo_to_pinyin),
            info.use_mask,
            info.use_char_phoneme,
            tokenizer,
        )
        .map_err(|e| field("g2pw", e))?;
        if model.labels.labels.len() != info.labels {
            return Err(BundleError::Field {
                field: "g2pw.labels".into(),
                msg: format!("manifest says {} labels, POLYPHONIC_CHARS.txt gives {}", info.labels, model.labels.labels.len()),
            }
            .into());
        }
        Ok(G2pw { graph, output, model })
    }

    /// Runs one prepared input on `graph`: its first output `output`, probabilities `[N, C]`.
    fn run_graph(graph: &mut crate::runtime::Graph, output: &str, x: &G2pwOnnxInput) -> Result<Array2<f32>, String> {
        use crate::runtime::Input;
        let n = x.char_ids.len();
        if n == 0 || x.position_ids.len() != n || x.phoneme_masks.nrows() != n || x.input_ids.dim() != x.attention_masks.dim() || x.input_ids.dim() != x.token_type_ids.dim() {
            return Err("inconsistent g2pw input shapes".into());
        }
        let (a, b, c, d) = (x.input_ids.as_standard_layout(), x.token_type_ids.as_standard_layout(), x.attention_masks.as_standard_layout(), x.phoneme_masks.as_standard_layout());
        let (sa, sd) = (a.shape().to_vec(), d.shape().to_vec());
        let slice_err = || "non-contiguous g2pw input".to_string();
        let outs = graph
            .run(&[
                Input::i64("input_ids", &sa, a.as_slice().ok_or_else(slice_err)?),
                Input::i64("token_type_ids", &sa, b.as_slice().ok_or_else(slice_err)?),
                Input::i64("attention_mask", &sa, c.as_slice().ok_or_else(slice_err)?),
                Input::f32("phoneme_mask", &sd, d.as_slice().ok_or_else(slice_err)?),
                Input::i64("char_ids", &[n], &x.char_ids),
                Input::i64("position_ids", &[n], &x.position_ids),
            ])
            .map_err(|e| e.to_string())?;
        let (shape, data) = outs.get::<f32>(output).map_err(|e| e.to_string())?;
        match shape.as_slice() {
            [r, c] => Array2::from_shape_vec((*r, *c), data.to_vec()).map_err(|e| e.to_string()),
            other => Err(format!("output `{output}` has shape {other:?}, expected rank 2")),
        }
    }

    /// Calls `f` with a [`PolyphoneReader`] that asks this model.
    pub fn with_reader<R>(&mut self, f: impl FnOnce(&dyn PolyphoneReader) -> R) -> R {
        let G2pw { graph, output, model } = self;
        let output: &str = output;
        let mut run = |x: &G2pwOnnxInput| G2pw::run_graph(graph, output, x);
        let reader = model.reader(&mut run);
        f(&reader)
    }

    /// Phonemize with this model reading the polyphonic characters upstream asks it about.
    pub fn phonemize(&mut self, data: &super::FrontendData, text: &str, lang: &str, version: super::SymbolVersion) -> Result<super::Phonemized, TextError> {
        self.with_reader(|reader| super::phonemize_with_polyphones(data, text, lang, version, Some(reader)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Characters are their own tokens; `ab`-style words split into `a`, `##b`; `?` is unknown.
    struct Toy;
    impl WordTokenizer for Toy {
        fn tokenize(&self, word: &str) -> Result<Vec<(String, i64)>, TextError> {
            if word == "?" {
                return Ok(vec![("[UNK]".into(), 100)]);
            }
            Ok(word.chars().enumerate().map(|(i, c)| (if i == 0 { c.to_string() } else { format!("##{c}") }, 1000 + c as i64)).collect())
        }
        fn token_id(&self, t: &str) -> Option<i64> {
            Some(match t {
                "[CLS]" => 101,
                "[SEP]" => 102,
                "[UNK]" => 100,
                _ => return None,
            })
        }
    }

    fn labels() -> G2pwLabels {
        G2pwLabels::from_polyphonic("行\tㄒㄧㄥ2\n行\tㄏㄤ2\n長\tㄔㄤ2\n長\tㄓㄤ3\n", true, false).unwrap()
    }

    #[test]
    fn labels_sorted_and_masks() {
        let l = labels();
        assert_eq!(l.labels, ["ㄏㄤ2", "ㄒㄧㄥ2", "ㄓㄤ3", "ㄔㄤ2"]);
        assert_eq!(l.chars, ['行', '長']);
        assert_eq!(l.char2phonemes[&'行'], [1, 0]);
        assert_eq!(l.phoneme_mask('長').unwrap(), [0.0, 0.0, 1.0, 1.0]);
        let c = G2pwLabels::from_polyphonic("行\tㄒㄧㄥ2\n長\tㄔㄤ2\n", false, true).unwrap();
        assert_eq!(c.labels, ["行 ㄒㄧㄥ2", "長 ㄔㄤ2"]);
        assert_eq!(c.phoneme_mask('長').unwrap(), [1.0, 1.0]);
        assert!(G2pwLabels::from_polyphonic("行ㄒ\n", true, false).is_err());
    }

    #[test]
    fn wordize() {
        let t: Vec<char> = "ab1 行,長".chars().collect();
        let (w, t2w, w2t) = wordize_and_map(&t);
        assert_eq!(w, ["ab1", "行", ",", "長"]);
        assert_eq!(t2w, [Some(0), Some(0), Some(0), None, Some(1), Some(2), Some(3)]);
        assert_eq!(w2t, [(0, 3), (4, 5), (5, 6), (6, 7)]);
    }

    #[test]
    fn prepare_and_plan() {
        let l = labels();
        let texts = vec!["AB 行?長".to_string(), "AB 行?長".to_string(), "長".to_string()];
        let x = prepare_onnx_input(&Toy, &l, &texts, &[3, 5, 0]).unwrap();
        // [CLS] a ##b 行 [UNK] 長 [SEP]; the short text is padded
        assert_eq!(x.input_ids.row(0).to_vec(), [101, 1000 + 'a' as i64, 1000 + 'b' as i64, 1000 + '行' as i64, 100, 1000 + '長' as i64, 102]);
        assert_eq!(x.input_ids.row(2).to_vec(), [101, 1000 + '長' as i64, 102, 0, 0, 0, 0]);
        assert_eq!(x.attention_masks.row(2).to_vec(), [1, 1, 1, 0, 0, 0, 0]);
        assert_eq!(x.position_ids, [3, 5, 1]);
        assert_eq!(x.char_ids, [0, 1, 1]);
        assert_eq!(run_plan(&texts), vec![(vec![0, 1], true), (vec![2], false)]);
        let g = x.select(&[0, 1], true);
        assert_eq!(g.input_ids.dim(), (1, 7));
        assert_eq!(g.phoneme_masks.dim(), (2, 4));
        assert_eq!(run_plan(&texts[1..]), vec![(vec![0, 1], false)]);
    }

    #[test]
    fn truncates_long_texts_around_the_query() {
        let l = labels();
        let text: String = std::iter::repeat_n('行', 600).collect();
        let x = prepare_onnx_input(&Toy, &l, &[text.clone(), text], &[0, 599]).unwrap();
        assert_eq!(x.input_ids.dim(), (2, MAX_LEN));
        assert_eq!(x.position_ids, [1, 510]);
    }
}
