//! GPT (text2semantic) decoding: prefill + one-token steps over the `gpt_prefill` / `gpt_step` graphs.
//!
//! Inputs: phone ids `N` (prompt phones then target phones), BERT features `[1024, N]`, prompt semantic
//! codes `P` (25 Hz). Output: generated semantic tokens (25 Hz, ids < EOS), streamed through a callback
//! as they are decided, plus timings.
//!
//! Loop (upstream `infer_panel_naive`), step `idx` from 0: logits of the last position; for `idx < 11` the
//! EOS column is dropped (`logits[:, :-1]`); [`Sampler`] draws a token given all previous tokens (prompt
//! included). Stop when the argmax of the penalised logits or the sample is EOS (the EOS is dropped),
//! when more than `early_stop_num` tokens were generated (the last one is kept), or at step 1499.
//! The k-th generated token is fed back at audio position `P + k`.
//!
//! Deliberate departures from upstream: we return every generated token (upstream callers take
//! `y[:, -idx:]`, which drops the first token after an early stop), and an empty generation is an
//! error instead of upstream's single zero token.
//!
//! [`KvCache`]: per layer, K and V buffers of `capacity x D` allocated once per request; the valid prefix
//! is a contiguous slice handed to `gpt_step` without copying; each step appends one row.

pub mod sampler;

use std::time::Instant;

use ndarray::ArrayView2;

use crate::runtime::{Graph, RuntimeError};
pub use sampler::{Sampler, SamplingParams, Strategy};

/// Upstream's loop bound (`range(1500)`).
pub const MAX_STEPS: usize = 1500;
/// Steps during which the EOS column is dropped.
pub const NO_EOS_STEPS: usize = 11;

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("KV cache full: capacity {capacity} rows")]
    CacheFull { capacity: usize },
    #[error("graph returned {got} values for `{what}`, expected {expected}")]
    Shape { what: String, got: usize, expected: usize },
    #[error("the GPT generated no token")]
    EmptyGeneration,
    #[error("bad input: {0}")]
    Input(String),
    /// The token consumer asked to stop (client gone, request cancelled).
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T> = std::result::Result<T, GptError>;

/// Model dimensions needed by the loop.
#[derive(Debug, Clone, Copy)]
pub struct GptDims {
    pub n_layer: usize,
    pub hidden: usize,
    pub vocab: usize,
    pub eos: i64,
}

/// Per-layer K/V buffers, `capacity x D` each, contiguous.
#[derive(Debug)]
pub struct KvCache {
    d: usize,
    capacity: usize,
    len: usize,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvCache {
    pub fn new(n_layer: usize, d: usize, capacity: usize) -> KvCache {
        KvCache { d, capacity, len: 0, k: vec![vec![0.0; capacity * d]; n_layer], v: vec![vec![0.0; capacity * d]; n_layer] }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    pub fn n_layer(&self) -> usize {
        self.k.len()
    }
    /// Forget the content (keeps the allocation).
    pub fn reset(&mut self) {
        self.len = 0;
    }
    /// Grow the capacity if needed (only between requests; reallocates).
    pub fn ensure_capacity(&mut self, capacity: usize) {
        if capacity > self.capacity {
            for b in self.k.iter_mut().chain(self.v.iter_mut()) {
                b.resize(capacity * self.d, 0.0);
            }
            self.capacity = capacity;
        }
    }
    /// Write `rows.len()/D` rows at `start` into one layer's K (or V). Does not change `len`.
    pub fn write(&mut self, layer: usize, is_v: bool, start: usize, rows: &[f32]) -> Result<()> {
        let n = rows.len() / self.d;
        if !rows.len().is_multiple_of(self.d) {
            return Err(GptError::Shape { what: "K/V rows".into(), got: rows.len(), expected: self.d });
        }
        if start + n > self.capacity {
            return Err(GptError::CacheFull { capacity: self.capacity });
        }
        let buf = if is_v { &mut self.v[layer] } else { &mut self.k[layer] };
        buf[start * self.d..(start + n) * self.d].copy_from_slice(rows);
        Ok(())
    }
    /// Mark `len` rows valid.
    pub fn set_len(&mut self, len: usize) -> Result<()> {
        if len > self.capacity {
            return Err(GptError::CacheFull { capacity: self.capacity });
        }
        self.len = len;
        Ok(())
    }
    /// Append one row to every layer's K and V (`k_rows[l]`, `v_rows[l]` of `D` values each).
    pub fn append(&mut self, k_rows: &[&[f32]], v_rows: &[&[f32]]) -> Result<()> {
        let at = self.len;
        for l in 0..self.n_layer() {
            self.write(l, false, at, k_rows[l])?;
            self.write(l, true, at, v_rows[l])?;
        }
        self.set_len(at + 1)
    }
    /// The valid prefix of one layer, `[len, D]` row-major, no copy.
    pub fn k_prefix(&self, layer: usize) -> &[f32] {
        &self.k[layer][..self.len * self.d]
    }
    pub fn v_prefix(&self, layer: usize) -> &[f32] {
        &self.v[layer][..self.len * self.d]
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Eos,
    EarlyStop,
    MaxSteps,
}

#[derive(Debug, Clone)]
pub struct GenerateConfig {
    pub params: SamplingParams,
    pub seed: u64,
    /// `-1`: none (api2 uses `50 * max_sec`).
    pub early_stop_num: i64,
    pub max_steps: usize,
    /// Keep the raw logits of every step (parity checks).
    pub record_logits: bool,
    /// Never stop on EOS (benchmarks: exactly `early_stop_num + 1` tokens).
    pub ignore_eos: bool,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig { params: SamplingParams::default(), seed: 0, early_stop_num: -1, max_steps: MAX_STEPS, record_logits: false, ignore_eos: false }
    }
}

#[derive(Debug, Clone, Default)]
pub struct GptTimings {
    pub prefill_ms: f64,
    pub steps: usize,
    pub steps_ms: f64,
}

impl GptTimings {
    pub fn ms_per_step(&self) -> f64 {
        if self.steps == 0 {
            0.0
        } else {
            self.steps_ms / self.steps as f64
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenerateOutput {
    /// Every generated token (EOS excluded).
    pub tokens: Vec<i64>,
    pub stop: StopReason,
    /// Upstream's `idx` (the loop step at which it stopped).
    pub idx: usize,
    /// Raw logits of each step (`V` values), when `record_logits`.
    pub step_logits: Vec<Vec<f32>>,
    pub timings: GptTimings,
}

/// What the GPT consumes for one segment.
pub struct GptInput<'a> {
    pub phone_ids: &'a [i64],
    /// `[1024, N]`
    pub bert: ArrayView2<'a, f32>,
    pub prompt: &'a [i64],
}

/// Run the decoding loop. `on_token` receives each kept token as soon as it is decided.
pub fn generate(
    prefill: &mut Graph,
    step: &mut Graph,
    dims: GptDims,
    input: &GptInput<'_>,
    cfg: &GenerateConfig,
    cache: &mut KvCache,
    on_token: &mut dyn FnMut(i64) -> bool,
) -> Result<GenerateOutput> {
    let n = input.phone_ids.len();
    let p = input.prompt.len();
    if n == 0 {
        return Err(GptError::Input("no phones".into()));
    }
    if input.bert.ncols() != n {
        return Err(GptError::Input(format!("bert has {} columns for {} phones", input.bert.ncols(), n)));
    }
    let max_steps = cfg.max_steps.max(1);
    cache.ensure_capacity(n + p + max_steps);
    cache.reset();
    let d = dims.hidden;
    let mut sampler = Sampler::new(cfg.params, cfg.seed);
    let mut history: Vec<i64> = Vec::with_capacity(p + max_steps);
    history.extend_from_slice(input.prompt);
    let mut out = GenerateOutput { tokens: Vec::new(), stop: StopReason::MaxSteps, idx: 0, step_logits: Vec::new(), timings: GptTimings::default() };

    let t0 = Instant::now();
    let rows = n + p;
    let mut logits = {
        let mut sink = |layer: usize, is_v: bool, data: &[f32]| -> std::result::Result<(), RuntimeError> {
            if data.len() != rows * d {
                return Err(RuntimeError::Output { graph: "gpt_prefill".into(), output: if is_v { "v" } else { "k" }.into(), msg: format!("{} values, expected {}", data.len(), rows * d) });
            }
            cache.write(layer, is_v, 0, data).map_err(|e| RuntimeError::Output { graph: "gpt_prefill".into(), output: "kv".into(), msg: e.to_string() })
        };
        prefill.gpt_prefill(dims.n_layer, input.phone_ids, input.bert, input.prompt, &mut sink)?
    };
    cache.set_len(rows)?;
    out.timings.prefill_ms = t0.elapsed().as_secs_f64() * 1e3;

    // scratch for the new K/V rows of a step: [layer][k|v][D]
    let mut scratch = vec![0.0f32; dims.n_layer * 2 * d];
    let mut steps_time = 0.0;
    for idx in 0..max_steps {
        if logits.len() != dims.vocab {
            return Err(GptError::Shape { what: "logits".into(), got: logits.len(), expected: dims.vocab });
        }
        if cfg.record_logits {
            out.step_logits.push(logits.clone());
        }
        let width = if idx < NO_EOS_STEPS || cfg.ignore_eos { dims.vocab - 1 } else { dims.vocab };
        let row = &mut logits[..width];
        let tok = sampler.sample(row, &history) as i64;
        let top = sampler::argmax(row) as i64;
        out.idx = idx;
        let mut stop = None;
        if cfg.early_stop_num >= 0 && (out.tokens.len() + 1) as i64 > cfg.early_stop_num {
            stop = Some(StopReason::EarlyStop);
        }
        if top == dims.eos || tok == dims.eos {
            stop = Some(StopReason::Eos);
        } else {
            out.tokens.push(tok);
            history.push(tok);
            if !on_token(tok) {
                return Err(GptError::Cancelled);
            }
        }
        if stop.is_none() && idx + 1 == max_steps {
            stop = Some(StopReason::MaxSteps);
        }
        if let Some(s) = stop {
            out.stop = s;
            break;
        }
        // feed the token at audio position P + idx
        let ts = Instant::now();
        let t = cache.len();
        {
            let past_k: Vec<&[f32]> = (0..dims.n_layer).map(|l| cache.k_prefix(l)).collect();
            let past_v: Vec<&[f32]> = (0..dims.n_layer).map(|l| cache.v_prefix(l)).collect();
            let mut sink = |layer: usize, is_v: bool, data: &[f32]| -> std::result::Result<(), RuntimeError> {
                if data.len() != d {
                    return Err(RuntimeError::Output { graph: "gpt_step".into(), output: "new_kv".into(), msg: format!("{} values, expected {d}", data.len()) });
                }
                let off = (layer * 2 + is_v as usize) * d;
                scratch[off..off + d].copy_from_slice(data);
                Ok(())
            };
            logits = step.gpt_step(tok, (p + idx) as i64, t, d, &past_k, &past_v, &mut sink)?;
        }
        for l in 0..dims.n_layer {
            let (k_off, v_off) = (l * 2 * d, (l * 2 + 1) * d);
            cache.write(l, false, t, &scratch[k_off..k_off + d])?;
            cache.write(l, true, t, &scratch[v_off..v_off + d])?;
        }
        cache.set_len(t + 1)?;
        steps_time += ts.elapsed().as_secs_f64() * 1e3;
        out.timings.steps += 1;
    }
    out.timings.steps_ms = steps_time;
    if out.tokens.is_empty() {
        return Err(GptError::EmptyGeneration);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_cache_prefix_and_append() {
        let mut c = KvCache::new(2, 3, 4);
        c.write(0, false, 0, &[1., 2., 3., 4., 5., 6.]).unwrap();
        c.write(1, true, 0, &[9.; 6]).unwrap();
        c.set_len(2).unwrap();
        assert_eq!(c.k_prefix(0), &[1., 2., 3., 4., 5., 6.]);
        assert_eq!(c.v_prefix(1).len(), 6);
        let p0 = c.k_prefix(0).as_ptr();
        c.append(&[&[7., 8., 9.], &[0.; 3]], &[&[0.; 3], &[1.; 3]]).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(&c.k_prefix(0)[6..], &[7., 8., 9.]);
        assert_eq!(c.k_prefix(0).as_ptr(), p0, "no reallocation");
        c.append(&[&[0.; 3], &[0.; 3]], &[&[0.; 3], &[0.; 3]]).unwrap();
        assert!(matches!(c.append(&[&[0.; 3], &[0.; 3]], &[&[0.; 3], &[0.; 3]]), Err(GptError::CacheFull { .. })));
        c.reset();
        assert!(c.is_empty());
        assert!(c.write(0, false, 0, &[1.0; 4]).is_err());
    }
}
