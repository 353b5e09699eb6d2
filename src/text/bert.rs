//! BERT input side: tokenizer ids for the normalised text and the word2ph expansion of hidden states.
//!
//! In: tokenizer.json bytes + norm_text; or hidden states [L, 1024] (with CLS/SEP rows) + word2ph.
//! Out: (input_ids, attention_mask, token_type_ids) as i64; or phone-level features [1024, n_phones].

use ndarray::{Array2, ArrayView2};

use super::TextError;

/// Token ids of `norm_text` (with special tokens), attention mask and token type ids.
pub fn bert_inputs(tokenizer_json: &[u8], norm_text: &str) -> Result<(Vec<i64>, Vec<i64>, Vec<i64>), TextError> {
    bert_inputs_with(&load_tokenizer(tokenizer_json)?, norm_text)
}

/// Parse a `tokenizer.json` once (tens of milliseconds for chinese-roberta's vocabulary; callers keep it).
pub fn load_tokenizer(tokenizer_json: &[u8]) -> Result<tokenizers::Tokenizer, TextError> {
    tokenizers::Tokenizer::from_bytes(tokenizer_json).map_err(|e| TextError::Tokenizer(e.to_string()))
}

/// [`bert_inputs`] with an already parsed tokenizer.
pub fn bert_inputs_with(tok: &tokenizers::Tokenizer, norm_text: &str) -> Result<(Vec<i64>, Vec<i64>, Vec<i64>), TextError> {
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
