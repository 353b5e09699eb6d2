//! BERT: tokenizer ids for the normalised text, the `bert` graph, and the word2ph expansion of hidden states.
//!
//! In: tokenizer.json bytes + norm_text; or hidden states [L, 1024] (with CLS/SEP rows) + word2ph.
//! Out: (input_ids, attention_mask, token_type_ids) as i64; or phone-level features [1024, n_phones].
//!
//! [`Bert`] owns the bundle's `bert` graph (contract: `input_ids`, `attention_mask`, `token_type_ids` `[1, L]`
//! i64 -> `hidden` `[1, L, H]` f32, upstream's `hidden_states[-3]`) and its tokenizer, parsed once at load.

use ndarray::{Array2, ArrayView2};

use super::TextError;
use crate::bundle::{Bundle, BundleError, GraphContract, LoadError, Manifest, Precision};
use crate::runtime::{Device, Graph, Input, Runtime, RuntimeError, SessionOptions};

/// `(input_ids, attention_mask, token_type_ids)`, each `[L]` i64 with the special tokens.
pub type BertInputs = (Vec<i64>, Vec<i64>, Vec<i64>);

/// Token ids of `norm_text` (with special tokens), attention mask and token type ids.
pub fn bert_inputs(tokenizer_json: &[u8], norm_text: &str) -> Result<BertInputs, TextError> {
    bert_inputs_with(&load_tokenizer(tokenizer_json)?, norm_text)
}

/// Parse a `tokenizer.json` once (tens of milliseconds for chinese-roberta's vocabulary; callers keep it).
pub fn load_tokenizer(tokenizer_json: &[u8]) -> Result<tokenizers::Tokenizer, TextError> {
    tokenizers::Tokenizer::from_bytes(tokenizer_json).map_err(|e| TextError::Tokenizer(e.to_string()))
}

/// [`bert_inputs`] with an already parsed tokenizer.
pub fn bert_inputs_with(tok: &tokenizers::Tokenizer, norm_text: &str) -> Result<BertInputs, TextError> {
    let enc = tok.encode(norm_text, true).map_err(|e| TextError::Tokenizer(e.to_string()))?;
    let ids = enc.get_ids().iter().map(|&x| x as i64).collect();
    let mask = enc.get_attention_mask().iter().map(|&x| x as i64).collect();
    let types = enc.get_type_ids().iter().map(|&x| x as i64).collect();
    Ok((ids, mask, types))
}

/// Drops the CLS/SEP rows of `hidden` [L, D] and repeats row i `word2ph[i]` times; returns [D, sum(word2ph)].
pub fn expand_word2ph(hidden: ArrayView2<f32>, word2ph: &[usize]) -> Result<Array2<f32>, TextError> {
    let (l, d) = hidden.dim();
    if l != word2ph.len() + 2 {
        return Err(TextError::Shape(format!("hidden has {l} rows, expected word2ph.len() + 2 = {}", word2ph.len() + 2)));
    }
    let n: usize = word2ph.iter().sum();
    let mut out = Array2::<f32>::zeros((d, n));
    let mut col = 0;
    for (i, &k) in word2ph.iter().enumerate() {
        let row = hidden.row(i + 1);
        for _ in 0..k {
            out.column_mut(col).assign(&row);
            col += 1;
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum BertError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("bert: {0}")]
    Shape(String),
}

/// The BERT graph of a bundle with its tokenizer.
pub struct Bert {
    graph: Graph,
    tokenizer: std::sync::Arc<tokenizers::Tokenizer>,
    /// `H` (1024 for chinese-roberta-wwm-ext-large; the manifest's `bert.hidden`).
    hidden: usize,
}

impl Bert {
    /// The graph this struct runs (BUNDLE.md).
    pub fn contract(_m: &Manifest) -> GraphContract {
        GraphContract::new("bert")
            .input("input_ids", "int64", 2)
            .input("attention_mask", "int64", 2)
            .input("token_type_ids", "int64", 2)
            .output("hidden", "float32", 3)
    }

    /// Loads the graph in `precision` and parses the bundle's `tokenizer.json` (a bad one fails the load).
    pub fn load(rt: &Runtime, bundle: &Bundle, opts: &SessionOptions, precision: Precision) -> Result<Bert, LoadError> {
        let path = bundle.file("tokenizer.json")?;
        let bytes = std::fs::read(&path).map_err(|e| BundleError::Io { path: path.display().to_string(), msg: e.to_string() })?;
        let tokenizer = load_tokenizer(&bytes).map_err(|e| BundleError::Field { field: "tokenizer.json".into(), msg: e.to_string() })?;
        let graph = bundle.load_graph(rt, &Bert::contract(&bundle.manifest), precision, opts)?;
        Ok(Bert { graph, tokenizer: std::sync::Arc::new(tokenizer), hidden: bundle.manifest.bert_hidden() })
    }

    /// The bundle's tokenizer (g2pW's runner uses it too, as upstream does).
    pub fn tokenizer(&self) -> std::sync::Arc<tokenizers::Tokenizer> {
        self.tokenizer.clone()
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub fn device(&self) -> Device {
        self.graph.device
    }

    /// `hidden_states[-3]` `[L, H]` of token ids, mask and type ids (each `L`, CLS and SEP included).
    pub fn hidden_states(&mut self, input_ids: &[i64], attention_mask: &[i64], token_type_ids: &[i64]) -> Result<Array2<f32>, BertError> {
        let l = input_ids.len();
        if l == 0 || attention_mask.len() != l || token_type_ids.len() != l {
            return Err(BertError::Shape(format!("input lengths differ or are zero: {} {} {}", l, attention_mask.len(), token_type_ids.len())));
        }
        let outs = self.graph.run(&[
            Input::i64("input_ids", &[1, l], input_ids),
            Input::i64("attention_mask", &[1, l], attention_mask),
            Input::i64("token_type_ids", &[1, l], token_type_ids),
        ])?;
        let (shape, data) = outs.get::<f32>("hidden")?;
        match shape.as_slice() {
            [1, a, b] if a * b == data.len() => Array2::from_shape_vec((*a, *b), data.to_vec()).map_err(|e| BertError::Shape(e.to_string())),
            other => Err(BertError::Shape(format!("`hidden` has shape {other:?}, expected [1, L, H]"))),
        }
    }

    /// Phone-level features `[H, sum(word2ph)]` of a Chinese piece's normalised text.
    pub fn features(&mut self, norm_text: &str, word2ph: &[usize]) -> Result<Array2<f32>, BertError> {
        let (ids, mask, types) = bert_inputs_with(&self.tokenizer, norm_text)?;
        let hidden = self.hidden_states(&ids, &mask, &types)?;
        let feats = expand_word2ph(hidden.view(), word2ph)?;
        let n: usize = word2ph.iter().sum();
        if feats.dim() != (self.hidden, n) {
            return Err(BertError::Shape(format!("features {:?} do not match {n} phones of {norm_text:?}", feats.dim())));
        }
        Ok(feats)
    }
}
