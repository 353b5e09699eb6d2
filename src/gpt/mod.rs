//! GPT (text2semantic) decoding: prefill + one-token steps over the `gpt_prefill` / `gpt_step` graphs.
//!
//! Inputs: phone ids `N` (prompt phones then target phones), BERT features `[1024, N]`, prompt semantic
//! codes `P` (25 Hz). Output: generated semantic tokens (25 Hz, ids < EOS), streamed through a callback
//! as they are decided, plus timings.
//!
//! Loop ([`Gpt::generate`], upstream `infer_panel_naive`), step `idx` from 0: logits of the last position; for `idx < 11` the
//! EOS column is dropped (`logits[:, :-1]`); [`Sampler`] draws a token given all previous tokens (prompt
//! included). Stop when the argmax of the penalised logits or the sample is EOS (the EOS is dropped),
//! when more than `early_stop_num` tokens were generated (the last one is kept), or at step 1499.
//! The k-th generated token is fed back at audio position `P + k`.
//!
//! Deliberate departures from upstream: we return every generated token (upstream callers take
//! `y[:, -idx:]`, which drops the first token after an early stop), and an empty generation is an
//! error instead of upstream's single zero token.
//!
//! [`Gpt`] owns both graphs and their contracts ([`Gpt::contracts`]):
//! * `gpt_prefill`: `phone_ids` `[1,N]` i64, `bert` `[1,1024,N]` f32, `prompt` `[1,P]` i64 -> `logits` `[1,V]`
//!   (last position) and `k_i`/`v_i` `[1,N+P,D]` per layer;
//! * `gpt_step`: `token` `[1,1]`, `position` `[1]`, `seqlens_k` `[1]`, `total_len` `[]` and `past_k_i`/`past_v_i`
//!   `[1,H,C,Dk]` -> `logits` `[1,V]`, `present_k_i`/`present_v_i` (the same buffers, written in place).
//!
//! and the [`KvCache`] ([`kv`]): per layer, K and V `[1, H, C, Dk]` allocated once (re-allocated only when a
//! request needs more rows than any before) and bound in place to `gpt_step`, which appends one row per step;
//! nothing is copied or allocated per token.

pub mod batch;
pub mod kv;
pub mod sampler;

use std::time::Instant;

use ndarray::ArrayView2;

use crate::bundle::{Bundle, GraphContract, LoadError, Manifest, Precision};
use crate::runtime::{Device, Graph, Input, Runtime, RuntimeError, SessionOptions};
pub use kv::KvCache;
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
    /// The batched scheduler failed this sequence (its step failed or panicked, or it stopped).
    #[error("batched GPT: {0}")]
    Batch(String),
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

/// Receives `(layer, is_v, rows)` for each K/V output of the prefill (`rows`: `[N+P, D]` row-major).
pub type RowSink<'a> = dyn FnMut(usize, bool, &[f32]) -> Result<()> + 'a;

/// A prefill graph that several [`Gpt`]s of one bundle share: it runs once per segment, so workers take turns
/// (`ort` runs a session through `&mut`), while each keeps its own step graph and K/V cache for the per-token loop.
pub type SharedPrefill = std::sync::Arc<std::sync::Mutex<Graph>>;

/// The text2semantic model: prefill and step graphs, dimensions, and the K/V cache of the last generation.
pub struct Gpt {
    prefill: SharedPrefill,
    step: Graph,
    dims: GptDims,
    /// Allocated by the first generation, grown when a longer one needs more rows.
    cache: Option<KvCache>,
}

impl Gpt {
    /// The graphs this struct runs, for a bundle of `n_layer` layers (BUNDLE.md, format 2).
    pub fn contracts(m: &Manifest) -> [GraphContract; 2] {
        let n = m.gpt.n_layer;
        let mut prefill = GraphContract::new("gpt_prefill").input("phone_ids", "int64", 2).input("bert", "float32", 3).input("prompt", "int64", 2);
        prefill = prefill.output("logits", "float32", 2);
        for i in 0..n {
            prefill = prefill.output(format!("k_{i}"), "float32", 3);
        }
        for i in 0..n {
            prefill = prefill.output(format!("v_{i}"), "float32", 3);
        }
        // head-major cache [1, H, C, Dk], updated in place
        let mut step = GraphContract::new("gpt_step").input("token", "int64", 2).input("position", "int64", 1).input("seqlens_k", "int32", 1).input("total_len", "int32", 0);
        for i in 0..n {
            step = step.input(format!("past_k_{i}"), "float32", 4);
        }
        for i in 0..n {
            step = step.input(format!("past_v_{i}"), "float32", 4);
        }
        step = step.output("logits", "float32", 2);
        for i in 0..n {
            step = step.output(format!("present_k_{i}"), "float32", 4);
        }
        for i in 0..n {
            step = step.output(format!("present_v_{i}"), "float32", 4);
        }
        [prefill, step]
    }

    pub fn load(rt: &Runtime, bundle: &Bundle, opts: &SessionOptions, precision: Precision) -> std::result::Result<Gpt, LoadError> {
        Gpt::load_sharing(rt, bundle, opts, precision, None)
    }

    /// [`Gpt::load`] with the prefill graph of another `Gpt` of the same bundle, precision and options.
    pub fn load_sharing(rt: &Runtime, bundle: &Bundle, opts: &SessionOptions, precision: Precision, prefill: Option<SharedPrefill>) -> std::result::Result<Gpt, LoadError> {
        let [pc, sc] = Gpt::contracts(&bundle.manifest);
        let prefill = match prefill {
            Some(p) => p,
            None => std::sync::Arc::new(std::sync::Mutex::new(bundle.load_graph(rt, &pc, precision, opts)?)),
        };
        let step = bundle.load_graph(rt, &sc, precision, opts)?;
        let g = &bundle.manifest.gpt;
        let dims = GptDims { n_layer: g.n_layer, n_head: g.n_head, hidden: g.hidden_dim, kv_head_dim: g.kv_head_dim, vocab: g.vocab_size, eos: g.eos };
        Ok(Gpt { prefill, step, dims, cache: None })
    }

    pub fn dims(&self) -> GptDims {
        self.dims
    }

    /// This model's prefill graph, for [`Gpt::load_sharing`].
    pub fn shared_prefill(&self) -> SharedPrefill {
        self.prefill.clone()
    }

    /// Where the step runs (after any fallback to the CPU).
    pub fn device(&self) -> Device {
        self.step.device
    }

    /// A fresh K/V cache of `capacity` rows bound to the step graph (tests; [`Gpt::generate`] keeps its own).
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        KvCache::new(&self.step, self.dims, capacity)
    }

    /// The prefill: returns the last position's logits (`V` values); `sink(layer, is_v, rows)` receives each
    /// layer's K and V (`(N+P)*D` values, row-major `[N+P, D]`).
    pub fn prefill_rows(&mut self, input: &GptInput<'_>, sink: &mut RowSink<'_>) -> Result<Vec<f32>> {
        let n = input.phone_ids.len();
        if n == 0 {
            return Err(GptError::Input("no phones".into()));
        }
        if input.bert.ncols() != n {
            return Err(GptError::Input(format!("bert has {} columns for {} phones", input.bert.ncols(), n)));
        }
        let h = input.bert.nrows();
        let bert = input.bert.as_standard_layout();
        let bert = bert.as_slice().ok_or_else(|| GptError::Input("bert features are not contiguous".into()))?;
        let p = input.prompt.len();
        // a panic of another worker while it ran the prefill leaves nothing half-done in the session: clear the poison
        let mut prefill = self.prefill.lock().unwrap_or_else(|e| e.into_inner());
        let outs = prefill.run(&[
            Input::i64("phone_ids", &[1, n], input.phone_ids),
            Input::f32("bert", &[1, h, n], bert),
            Input::i64("prompt", &[1, p], input.prompt),
        ])?;
        let rows = (n + p) * self.dims.hidden;
        for i in 0..self.dims.n_layer {
            for (is_v, name) in [(false, format!("k_{i}")), (true, format!("v_{i}"))] {
                let (_, d) = outs.get::<f32>(&name)?;
                if d.len() != rows {
                    return Err(GptError::Shape { what: name, got: d.len(), expected: rows });
                }
                sink(i, is_v, d)?;
            }
        }
        Ok(outs.get::<f32>("logits")?.1.to_vec())
    }

    /// One step on `cache` (after a prefill wrote its rows and [`KvCache::set_len`]): token at audio `position`.
    pub fn step(&mut self, cache: &mut KvCache, token: i64, position: i64) -> Result<Vec<f32>> {
        cache.step(&mut self.step, token, position)
    }

    /// Run the decoding loop. `on_token` receives each kept token as soon as it is decided; returning false
    /// stops the loop with [`GptError::Cancelled`].
    pub fn generate(&mut self, input: &GptInput<'_>, cfg: &GenerateConfig, on_token: &mut dyn FnMut(i64) -> bool) -> Result<GenerateOutput> {
        let dims = self.dims;
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
        if self.cache.as_ref().is_none_or(|c| c.capacity() < need || c.n_layer() != dims.n_layer || c.hidden() != dims.hidden) {
            self.cache = None; // free the old buffers before allocating the new ones
            self.cache = Some(KvCache::new(&self.step, dims, need)?);
        }
        let Some(mut cache) = self.cache.take() else {
            return Err(GptError::Input("no K/V cache".into()));
        };
        let res = self.run_loop(&mut cache, input, cfg, on_token);
        self.cache = Some(cache);
        res
    }

    fn run_loop(&mut self, cache: &mut KvCache, input: &GptInput<'_>, cfg: &GenerateConfig, on_token: &mut dyn FnMut(i64) -> bool) -> Result<GenerateOutput> {
        let (n, p) = (input.phone_ids.len(), input.prompt.len());
        cache.reset();
        let mut seq = Sequence::new(self.dims, input.prompt, cfg);
        let t0 = Instant::now();
        let mut logits = self.prefill_rows(input, &mut |layer, is_v, data| cache.write_rows(layer, is_v, 0, data))?;
        cache.set_len(n + p)?;
        seq.out.timings.prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
        loop {
            match seq.decide(&mut logits)? {
                Decision::Stop => return seq.finish(),
                Decision::Emit { token, feed } => {
                    if !on_token(token) {
                        return Err(GptError::Cancelled);
                    }
                    let Some(position) = feed else { return seq.finish() };
                    let ts = Instant::now();
                    logits = cache.step(&mut self.step, token, position)?;
                    seq.stepped(ts.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
    }
}

/// What [`Sequence::decide`] made of one step's logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Generation is over (EOS); no token to hand out.
    Stop,
    /// Hand `token` to the consumer; then feed it at audio position `feed` (or stop there when `None`).
    Emit { token: i64, feed: Option<i64> },
}

/// The decoding loop of one sequence as a state machine over logits: sampling (its own seeded [`Sampler`] and
/// token history), the EOS rules and the stop conditions of [`Gpt::generate`]. The single-request loop and the
/// batched scheduler (`engine::batch`) both drive it, so a sequence decides the same tokens from the same logits
/// whichever runs it.
pub struct Sequence {
    dims: GptDims,
    cfg: GenerateConfig,
    prompt_len: usize,
    sampler: Sampler,
    history: Vec<i64>,
    idx: usize,
    pub out: GenerateOutput,
}

impl Sequence {
    pub fn new(dims: GptDims, prompt: &[i64], cfg: &GenerateConfig) -> Sequence {
        let max_steps = cfg.max_steps.max(1);
        let mut history = Vec::with_capacity(prompt.len() + max_steps);
        history.extend_from_slice(prompt);
        Sequence {
            dims,
            cfg: cfg.clone(),
            prompt_len: prompt.len(),
            sampler: Sampler::new(cfg.params, cfg.seed),
            history,
            idx: 0,
            out: GenerateOutput { tokens: Vec::new(), stop: StopReason::MaxSteps, idx: 0, step_logits: Vec::new(), timings: GptTimings::default() },
        }
    }

    /// Decide step `idx` from its logits (`V` values; modified in place by the sampler's penalties).
    pub fn decide(&mut self, logits: &mut [f32]) -> Result<Decision> {
        let dims = self.dims;
        let cfg = &self.cfg;
        let idx = self.idx;
        if logits.len() != dims.vocab {
            return Err(GptError::Shape { what: "logits".into(), got: logits.len(), expected: dims.vocab });
        }
        if cfg.record_logits {
            self.out.step_logits.push(logits.to_vec());
        }
        let width = if idx < NO_EOS_STEPS || cfg.ignore_eos { dims.vocab - 1 } else { dims.vocab };
        let row = &mut logits[..width];
        let tok = self.sampler.sample(row, &self.history) as i64;
        let top = sampler::argmax(row) as i64;
        self.out.idx = idx;
        let mut stop = None;
        if cfg.early_stop_num >= 0 && (self.out.tokens.len() + 1) as i64 > cfg.early_stop_num {
            stop = Some(StopReason::EarlyStop);
        }
        if top == dims.eos || tok == dims.eos {
            self.out.stop = StopReason::Eos;
            return Ok(Decision::Stop);
        }
        self.out.tokens.push(tok);
        self.history.push(tok);
        if stop.is_none() && idx + 1 == cfg.max_steps.max(1) {
            stop = Some(StopReason::MaxSteps);
        }
        if let Some(s) = stop {
            self.out.stop = s;
            return Ok(Decision::Emit { token: tok, feed: None });
        }
        // the token is fed back at audio position P + idx
        self.idx += 1;
        Ok(Decision::Emit { token: tok, feed: Some((self.prompt_len + idx) as i64) })
    }

    pub fn dims(&self) -> GptDims {
        self.dims
    }

    /// Account one step of `ms` milliseconds (its share of a batched step).
    pub fn stepped(&mut self, ms: f64) {
        self.out.timings.steps += 1;
        self.out.timings.steps_ms += ms;
    }

    /// Rows of K/V this sequence can still need: its prefill's plus one per remaining step.
    pub fn max_rows(phones: usize, prompt: usize, cfg: &GenerateConfig) -> usize {
        let mut steps = cfg.max_steps.max(1);
        if cfg.early_stop_num >= 0 {
            // the early stop keeps at most early_stop_num + 1 tokens
            steps = steps.min(cfg.early_stop_num as usize + 1);
        }
        phones + prompt + steps + 1
    }

    /// [`Sequence::finish`] for a sequence held in place (its output is moved out).
    pub fn take_result(&mut self) -> Result<GenerateOutput> {
        let empty = GenerateOutput { tokens: Vec::new(), stop: self.out.stop, idx: self.out.idx, step_logits: Vec::new(), timings: GptTimings::default() };
        let out = std::mem::replace(&mut self.out, empty);
        if out.tokens.is_empty() {
            return Err(GptError::EmptyGeneration);
        }
        Ok(out)
    }

    pub fn finish(self) -> Result<GenerateOutput> {
        if self.out.tokens.is_empty() {
            return Err(GptError::EmptyGeneration);
        }
        Ok(self.out)
    }
}
