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
//! [`KvCache`] (in `runtime`, since it lives in ONNX Runtime tensors): per layer, K and V `[H, C, Dh]` allocated
//! once (re-allocated only when a request needs more rows than any before) and bound in place to `gpt_step`,
//! which appends one row per step; nothing is copied or allocated per token.

pub mod sampler;

use std::time::Instant;

use ndarray::ArrayView2;

pub use crate::runtime::KvCache;
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
    pub n_head: usize,
    pub hidden: usize,
    /// head size of the step graph's K/V cache (`gpt.kv_head_dim`)
    pub kv_head_dim: usize,
    pub vocab: usize,
    pub eos: i64,
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
    cache: &mut Option<KvCache>,
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
    let need = n + p + max_steps + 1;
    if cache.as_ref().is_none_or(|c| c.capacity() < need || c.n_layer() != dims.n_layer || c.hidden() != dims.hidden) {
        *cache = None; // free the old buffers before allocating the new ones
        *cache = Some(step.new_kv_cache(dims.n_layer, dims.n_head, dims.hidden, dims.kv_head_dim, dims.vocab, need)?);
    }
    let Some(cache) = cache.as_mut() else {
        return Err(GptError::Input("no K/V cache".into()));
    };
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
            cache.write_rows(layer, is_v, 0, data)
        };
        prefill.gpt_prefill(dims.n_layer, input.phone_ids, input.bert, input.prompt, &mut sink)?
    };
    cache.set_len(rows)?;
    out.timings.prefill_ms = t0.elapsed().as_secs_f64() * 1e3;

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
        logits = step.gpt_step(cache, tok, (p + idx) as i64)?;
        steps_time += ts.elapsed().as_secs_f64() * 1e3;
        out.timings.steps += 1;
    }
    out.timings.steps_ms = steps_time;
    if out.tokens.is_empty() {
        return Err(GptError::EmptyGeneration);
    }
    Ok(out)
}

