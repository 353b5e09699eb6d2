//! The engine: owns a bundle's sessions and runs the stages in order for one request.
//!
//! [`Engine::load`] opens the bundle ([`crate::bundle`]), loads the seven graphs ([`crate::runtime`]) and
//! checks each graph's inputs/outputs against the manifest. [`Engine::synthesize`] runs, for one request:
//! reference 16 kHz samples -> hubert -> vq_encode -> prompt codes; reference spectrogram -> ref_enc -> ge;
//! then per text segment: GPT (prompt phones + segment phones, BERT features `[1024, N]`) -> semantic
//! tokens -> sovits_decode (segment phones only) -> audio; finally api2's post-processing to int16
//! at the model rate (32 kHz). [`EngineWorker`] moves an engine onto its own thread and serves requests
//! over a channel.

pub mod npy;
pub mod parity;
pub mod pipeline;

use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use ndarray::{concatenate, Array2, Axis};

use crate::bundle::{Bundle, BundleError, GRAPH_NAMES};
use crate::gpt::{self, GenerateConfig, GptDims, GptError, GptInput, KvCache};
use crate::runtime::{Graph, Runtime, RuntimeError, SessionOptions};
use crate::vocoder::{self, DecodeParams, Int16Scale, VocoderError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("gpt: {0}")]
    Gpt(#[from] GptError),
    #[error("vocoder: {0}")]
    Vocoder(#[from] VocoderError),
    #[error("bad request: {0}")]
    Request(String),
    #[error("text: {0}")]
    Text(#[from] crate::text::TextError),
    #[error("reference: {0}")]
    Reference(#[from] crate::reference::ReferenceError),
    #[error("cancelled")]
    Cancelled,
    #[error("engine worker stopped")]
    WorkerGone,
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// The reference recording, already decoded (reference/ produces this).
#[derive(Debug, Clone)]
pub struct ReferenceInput {
    /// 16 kHz mono with GPT-SoVITS's 9600 trailing zeros.
    pub wav16k_padded: Vec<f32>,
    /// Linear magnitude spectrogram of the 32 kHz reference, `[1025, F]`.
    pub spec: Array2<f32>,
}

/// One text segment: phone ids and their BERT features `[H, N]` (H = manifest `bert.hidden`, 1024).
#[derive(Debug, Clone)]
pub struct Segment {
    pub phone_ids: Vec<i64>,
    pub bert: Array2<f32>,
}

#[derive(Debug, Clone)]
pub struct SynthRequest {
    pub reference: ReferenceInput,
    pub prompt: Segment,
    pub segments: Vec<Segment>,
    pub gen: GenerateConfig,
    pub decode: DecodeParams,
    pub int16: Int16Scale,
}

#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub reference_ms: f64,
    pub prefill_ms: f64,
    pub steps: usize,
    pub steps_ms: f64,
    pub decode_ms: f64,
    pub total_ms: f64,
    pub tokens: usize,
}

#[derive(Debug, Clone)]
pub struct SynthOutput {
    pub audio_i16: Vec<i16>,
    pub sample_rate: u32,
    pub timings: Timings,
}

/// All graphs of a bundle.
pub struct Engine {
    pub bundle: Bundle,
    pub hubert: Graph,
    pub vq_encode: Graph,
    pub bert: Graph,
    pub gpt_prefill: Graph,
    pub gpt_step: Graph,
    pub ref_enc: Graph,
    pub sovits_decode: Graph,
    /// The GPT's K/V cache, allocated by the first request (see `gpt::generate`).
    pub cache: Option<KvCache>,
    /// Prompt codes and speaker vectors of the references seen, by content hash (LRU).
    pub voices: crate::reference::ReferenceCache<pipeline::VoiceFeatures>,
    /// Phones + BERT features of reference transcripts, keyed by (text, language): the same voice sends the same
    /// prompt text with every request, so its BERT runs once.
    pub prompt_features: crate::reference::ReferenceCache<pipeline::TextFeatures, (String, String)>,
    tokenizer: Option<std::sync::Arc<tokenizers::Tokenizer>>,
    /// The bundle's optional g2pW polyphone model (`g2pw.onnx`) and what its runner needs.
    pub g2pw: Option<(Graph, crate::text::g2pw_onnx::G2pwModel)>,
}

impl Engine {
    pub fn load(rt: &Runtime, dir: &Path, opts: &SessionOptions) -> Result<Engine> {
        let bundle = Bundle::open(dir)?;
        let mut gs = Vec::with_capacity(7);
        for name in GRAPH_NAMES {
            let variant = if name.starts_with("gpt_") {
                opts.gpt_variant.as_deref()
            } else if name == "bert" {
                opts.bert_variant.as_deref()
            } else if name == "sovits_decode" {
                opts.vocoder_variant.as_deref()
            } else {
                None
            };
            let g = rt.load(name, &bundle.graph_variant_path(name, variant)?, opts)?;
            bundle.check_graph(name, &g.inputs, &g.outputs, &g.metadata)?;
            gs.push(g);
        }
        let g2pw = match &bundle.manifest.g2pw {
            Some(info) => {
                let g = rt.load("g2pw", &bundle.dir.join(&info.file), opts)?;
                bundle.check_g2pw(&g.inputs, &g.outputs)?;
                Some((g, pipeline::load_g2pw(&bundle, info)?))
            }
            None => None,
        };
        let mut it = gs.into_iter();
        let mut next = || it.next().expect("7 graphs");
        Ok(Engine {
            hubert: next(),
            vq_encode: next(),
            bert: next(),
            gpt_prefill: next(),
            gpt_step: next(),
            ref_enc: next(),
            sovits_decode: next(),
            cache: None,
            voices: crate::reference::ReferenceCache::new(64),
            prompt_features: crate::reference::ReferenceCache::new(64),
            tokenizer: None,
            g2pw,
            bundle,
        })
    }

    pub fn gpt_dims(&self) -> GptDims {
        let g = &self.bundle.manifest.gpt;
        GptDims { n_layer: g.n_layer, n_head: g.n_head, hidden: g.hidden_dim, kv_head_dim: g.kv_head_dim, vocab: g.vocab_size, eos: g.eos }
    }

    pub fn sample_rate(&self) -> u32 {
        self.bundle.manifest.sample_rate
    }

    /// Prompt semantic codes from the padded 16 kHz reference.
    pub fn prompt_codes(&mut self, wav16k_padded: &[f32]) -> Result<Vec<i64>> {
        let ssl = self.hubert.hubert(wav16k_padded)?;
        let (codes, _) = self.vq_encode.vq_encode(ssl.view())?;
        Ok(codes)
    }

    /// Run the GPT for one segment.
    pub fn generate(&mut self, phone_ids: &[i64], bert: ndarray::ArrayView2<f32>, prompt: &[i64], cfg: &GenerateConfig, on_token: &mut dyn FnMut(i64) -> bool) -> Result<gpt::GenerateOutput> {
        let dims = self.gpt_dims();
        let input = GptInput { phone_ids, bert, prompt };
        Ok(gpt::generate(&mut self.gpt_prefill, &mut self.gpt_step, dims, &input, cfg, &mut self.cache, on_token)?)
    }

    pub fn synthesize(&mut self, req: &SynthRequest) -> Result<SynthOutput> {
        let t_all = Instant::now();
        let mut timings = Timings::default();
        if req.segments.is_empty() {
            return Err(EngineError::Request("no text segment".into()));
        }
        for (i, s) in std::iter::once(&req.prompt).chain(req.segments.iter()).enumerate() {
            let h = self.bundle.manifest.bert_hidden();
            if s.bert.dim() != (h, s.phone_ids.len()) {
                return Err(EngineError::Request(format!("segment {i}: bert must be [{h}, {}], got {:?}", s.phone_ids.len(), s.bert.dim())));
            }
        }
        let t0 = Instant::now();
        let prompt = self.prompt_codes(&req.reference.wav16k_padded)?;
        let ge = vocoder::reference_ge(&mut self.ref_enc, self.bundle.manifest.spec_bins(), req.reference.spec.view())?;
        timings.reference_ms = t0.elapsed().as_secs_f64() * 1e3;
        let c = self.bundle.manifest.sovits.inter_channels;
        let mut audio = Vec::with_capacity(req.segments.len());
        for (si, seg) in req.segments.iter().enumerate() {
            let ids: Vec<i64> = req.prompt.phone_ids.iter().chain(seg.phone_ids.iter()).copied().collect();
            let bert = concatenate(Axis(1), &[req.prompt.bert.view(), seg.bert.view()]).map_err(|e| EngineError::Request(e.to_string()))?;
            let out = self.generate(&ids, bert.view(), &prompt, &req.gen, &mut |_| true)?;
            timings.prefill_ms += out.timings.prefill_ms;
            timings.steps += out.timings.steps;
            timings.steps_ms += out.timings.steps_ms;
            timings.tokens += out.tokens.len();
            let t1 = Instant::now();
            let mut dp = req.decode;
            dp.seed = dp.seed.wrapping_add(si as u64);
            let dec = vocoder::decode(&mut self.sovits_decode, c, &out.tokens, &seg.phone_ids, &ge, dp, None, false)?;
            timings.decode_ms += t1.elapsed().as_secs_f64() * 1e3;
            audio.push(dec.audio);
        }
        let sr = self.sample_rate();
        let audio_i16 = vocoder::postprocess(&audio, sr, 0.3, req.int16);
        timings.total_ms = t_all.elapsed().as_secs_f64() * 1e3;
        Ok(SynthOutput { audio_i16, sample_rate: sr, timings })
    }
}

/// An engine on its own thread; requests go over a channel, one at a time.
pub struct EngineWorker {
    tx: mpsc::Sender<(SynthRequest, mpsc::Sender<Result<SynthOutput>>)>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl EngineWorker {
    pub fn spawn(mut engine: Engine) -> EngineWorker {
        let (tx, rx) = mpsc::channel::<(SynthRequest, mpsc::Sender<Result<SynthOutput>>)>();
        let handle = std::thread::Builder::new()
            .name("gsv-engine".into())
            .spawn(move || {
                for (req, reply) in rx {
                    let _ = reply.send(engine.synthesize(&req));
                }
            })
            .expect("spawn engine thread");
        EngineWorker { tx, handle: Some(handle) }
    }

    /// Submit a request; the receiver yields the result.
    pub fn submit(&self, req: SynthRequest) -> Result<mpsc::Receiver<Result<SynthOutput>>> {
        let (rtx, rrx) = mpsc::channel();
        self.tx.send((req, rtx)).map_err(|_| EngineError::WorkerGone)?;
        Ok(rrx)
    }

    pub fn synthesize(&self, req: SynthRequest) -> Result<SynthOutput> {
        self.submit(req)?.recv().map_err(|_| EngineError::WorkerGone)?
    }
}

impl Drop for EngineWorker {
    fn drop(&mut self) {
        let (dead_tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, dead_tx));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Zero BERT features `[hidden, n]` (what upstream uses for non-Chinese text; hidden is 1024 for real models,
/// the manifest's `bert.hidden` in general).
pub fn zero_bert(hidden: usize, n: usize) -> Array2<f32> {
    Array2::zeros((hidden, n))
}
