//! The engine: a bundle's models, the one request path through them, and the supervised worker pool.
//!
//! Who owns what:
//! * [`Engine`] owns one loaded bundle as four model structs, each owning its graphs and declaring their
//!   contracts: [`crate::reference::Hubert`] (hubert + vq_encode: 16 kHz reference -> prompt codes), [`crate::text::bert::Bert`]
//!   (bert + tokenizer), [`crate::gpt::Gpt`] (prefill + step + K/V cache) and [`crate::vocoder::Vocoder`] (ref_enc +
//!   sovits_decode); v2Pro/v2ProPlus bundles add [`crate::reference::SpeakerVerifier`] (sv: the reference's
//!   speaker-verification embedding, which `ref_enc` fuses into the speaker vector). No graph is reachable from
//!   outside the model structs.
//! * [`Engine::tts`] ([`pipeline`]) is the request path: planning (cut into segments, prompt preprocessing),
//!   features (text phones + BERT `[1024, N]`; the voice's prompt codes (25 Hz) and speaker vector (v2Pro: fused
//!   with the speaker-verification embedding, computed once per voice), from the shared
//!   [`FeatureCache`]), then per segment the GPT generates tokens into a [`SegmentSink`] ([`sink`]: whole segment, or
//!   token chunks decoded while generating) that turns them into PCM16 mono at the model rate (32 kHz), with
//!   0.3 s of silence after each segment. `gsv synth`, `gsv bench` and the server's workers all run it.
//! * [`pool::Pool`] runs engines on N supervised worker threads fed by one job queue: admission (a typed
//!   [`EngineError::Overloaded`]), cancellation, deadlines, `catch_unwind` around every job with the engine
//!   rebuilt after a panic, and health answered by the workers themselves.
//! * Errors: each layer has its own `thiserror` enum; [`EngineError`] wraps them and [`EngineError::kind`] collapses
//!   them into a few [`ErrorKind`]s, which `http/` maps to a status in one `match`.

pub mod batch;
pub mod faults;
pub mod features;
pub mod metrics;
pub mod parity;
pub mod pipeline;
pub mod pool;
pub mod request;
pub mod sink;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use ndarray::Array2;

use crate::bundle::{Bundle, BundleError, GraphContract, LoadError, Manifest, Precision, Stage};
use crate::gpt::{Gpt, GptError};
use crate::reference::{Hubert, HubertError, ReferenceError, SpeakerVerifier, SvError};
use crate::runtime::{Runtime, RuntimeError, SessionOptions};
use crate::text::bert::{Bert, BertError};
use crate::text::{SymbolTable, SymbolVersion, TextError};
use crate::vocoder::{Vocoder, VocoderError};

pub use features::{FeatureCache, TextFeatures, VoiceFeatures};
pub use request::{Api2Cut, RefAudio, SegmentAudio, TextSplit, TtsRequest, TtsStats, V2Cut};
pub use sink::{SegmentSink, TokenChunks, WholeSegment};

/// The small set of failure kinds everything collapses into (the HTTP layer maps each to one status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is wrong (parameters, text, reference audio): 400.
    Validation,
    /// A valid request for something this build or bundle cannot do yet (e.g. Cantonese): 400.
    Unsupported,
    /// Something named by the request does not exist (a model name): 404.
    NotFound,
    /// A path outside what the server may read: 403.
    Forbidden,
    /// Admission refused: 429.
    Overloaded,
    /// The client went away; nobody reads the answer.
    Cancelled,
    /// The request's deadline passed: 504.
    Timeout,
    /// The server cannot take work now (shutting down): 503.
    Unavailable,
    /// A fault of the server or the bundle: 500 with the request id, details only in the log.
    Internal,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Validation => "validation",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

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
    #[error("hubert: {0}")]
    Hubert(#[from] HubertError),
    #[error("bert: {0}")]
    Bert(#[from] BertError),
    #[error("speaker verification: {0}")]
    Sv(#[from] SvError),
    /// A request parameter out of range; the message is safe to show.
    #[error("bad request: {0}")]
    Invalid(String),
    #[error("text: {0}")]
    Text(#[from] TextError),
    #[error("reference: {0}")]
    Reference(#[from] ReferenceError),
    #[error("cancelled")]
    Cancelled,
    /// The request ran past its deadline (`--timeout-s`, in seconds).
    #[error("request took longer than {0} s")]
    Timeout(u64),
    /// Admission refused: every worker busy and `max_queue` requests already waiting.
    #[error("server busy: {0} requests already waiting")]
    Overloaded(usize),
    #[error("server is shutting down")]
    ShuttingDown,
    /// The job panicked; the worker's engine was rebuilt.
    #[error("the synthesis job panicked: {0}")]
    Panicked(String),
    /// A fault of ours that is not a panic (array shapes that cannot happen, a worker that vanished).
    #[error("internal error: {0}")]
    Internal(String),
    /// The warm-up synthesis at start-up failed (the default reference, the tokenizer, a graph...).
    #[error("warm-up synthesis with the default reference failed: {0}")]
    Warmup(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl From<LoadError> for EngineError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Bundle(b) => EngineError::Bundle(b),
            LoadError::Runtime(r) => EngineError::Runtime(r),
        }
    }
}

fn text_kind(t: &TextError) -> ErrorKind {
    match t {
        TextError::MissingData(_) | TextError::Data(_) | TextError::Tokenizer(_) | TextError::Shape(_) | TextError::UnknownVersion(_) => {
            ErrorKind::Internal
        }
        TextError::Unsupported(_) => ErrorKind::Unsupported,
        _ => ErrorKind::Validation,
    }
}

impl EngineError {
    /// Which kind of failure this is (the one place that decides it; never from message text).
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Reference(ReferenceError::Forbidden) => ErrorKind::Forbidden,
            EngineError::Reference(ReferenceError::Interrupted) => ErrorKind::Cancelled,
            EngineError::Invalid(_) | EngineError::Reference(_) | EngineError::Sv(SvError::TooShort { .. }) => ErrorKind::Validation,
            EngineError::Text(t) | EngineError::Bert(BertError::Text(t)) => text_kind(t),
            // an empty generation is the model's answer to this text (Decision 3: an error, not the reference)
            EngineError::Gpt(GptError::EmptyGeneration) => ErrorKind::Validation,
            EngineError::Gpt(GptError::Cancelled) | EngineError::Cancelled => ErrorKind::Cancelled,
            EngineError::Timeout(_) => ErrorKind::Timeout,
            EngineError::Overloaded(_) => ErrorKind::Overloaded,
            EngineError::ShuttingDown => ErrorKind::Unavailable,
            EngineError::Bundle(_)
            | EngineError::Runtime(_)
            | EngineError::Gpt(_)
            | EngineError::Vocoder(_)
            | EngineError::Hubert(_)
            | EngineError::Bert(_)
            | EngineError::Sv(_)
            | EngineError::Panicked(_)
            | EngineError::Warmup(_)
            | EngineError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Everything that decides how a bundle is loaded: session options and the precision variant per stage.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    pub session: SessionOptions,
    pub precision: Precisions,
}

impl EngineOptions {
    /// Every stage in fp32, whatever the bundle prefers: what parity against golden values needs.
    pub fn fp32(session: SessionOptions) -> EngineOptions {
        EngineOptions { session, precision: Precisions::FP32 }
    }
}

/// Precision choice per stage (`--gpt-precision`, `--bert-precision`, `--vocoder-precision`): `None` = `auto`, the
/// bundle's `quantization.preferred` (the fastest variant that passed its gate; fp32 in bundles without one).
/// The default is `auto` for every stage: what `gsv` runs when no flag is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Precisions {
    pub gpt: Option<Precision>,
    pub bert: Option<Precision>,
    pub vocoder: Option<Precision>,
}

impl Precisions {
    pub const AUTO: Precisions = Precisions { gpt: None, bert: None, vocoder: None };
    pub const FP32: Precisions = Precisions { gpt: Some(Precision::Fp32), bert: Some(Precision::Fp32), vocoder: Some(Precision::Fp32) };

    pub fn get(&self, stage: Stage) -> Option<Precision> {
        match stage {
            Stage::Gpt => self.gpt,
            Stage::Bert => self.bert,
            Stage::Vocoder => self.vocoder,
        }
    }

    /// What each stage runs in for this bundle ([`Manifest::resolve_precision`]); an explicit variant the bundle
    /// lacks, or one that failed its gate, is an error.
    pub fn resolve(&self, m: &Manifest) -> std::result::Result<Chosen, BundleError> {
        Ok(Chosen {
            gpt: m.resolve_precision(Stage::Gpt, self.gpt)?,
            bert: m.resolve_precision(Stage::Bert, self.bert)?,
            vocoder: m.resolve_precision(Stage::Vocoder, self.vocoder)?,
        })
    }
}

/// The precision each stage of a loaded bundle runs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Chosen {
    pub gpt: Precision,
    pub bert: Precision,
    pub vocoder: Precision,
}

impl Chosen {
    pub fn get(&self, stage: Stage) -> Precision {
        match stage {
            Stage::Gpt => self.gpt,
            Stage::Bert => self.bert,
            Stage::Vocoder => self.vocoder,
        }
    }

    /// `{"gpt": "int8", "bert": "int8", "vocoder": "fp32"}` (for /health and `gsv bench --json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"gpt": self.gpt.name(), "bert": self.bert.name(), "vocoder": self.vocoder.name()})
    }

    /// One line per stage with the measured error the manifest records for its variant (start-up log).
    pub fn describe(&self, m: &Manifest) -> Vec<String> {
        Stage::ALL
            .iter()
            .map(|&s| {
                let p = self.get(s);
                match m.precision_error(s, p) {
                    Some(e) => format!("{} {} ({e})", s.name(), p.name()),
                    None => format!("{} {}", s.name(), p.name()),
                }
            })
            .collect()
    }
}

impl std::fmt::Display for Chosen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gpt {}, bert {}, vocoder {}", self.gpt, self.bert, self.vocoder)
    }
}

impl From<SessionOptions> for EngineOptions {
    fn from(session: SessionOptions) -> Self {
        EngineOptions { session, precision: Precisions::AUTO }
    }
}

/// Every graph a bundle of this model family must declare, from the model structs that run them, in pipeline
/// order. The family is the manifest's `model_version`: v1/v2 have seven graphs; v2Pro/v2ProPlus add `sv`, and
/// their `ref_enc`/`sovits_decode` contracts differ ([`Vocoder::contracts`]).
pub fn graph_contracts(m: &Manifest) -> Vec<GraphContract> {
    let mut v: Vec<GraphContract> = Hubert::contracts(m).into();
    v.push(Bert::contract(m));
    v.extend(Gpt::contracts(m));
    v.extend(SpeakerVerifier::contract(m));
    v.extend(Vocoder::contracts(m));
    v
}

/// Who runs this engine's GPT: its own [`Gpt`] (the pool: one model copy per worker), or the server's
/// [`batch::BatchScheduler`] (`--scheduler batched`: one model copy, every request's sequence in one batch).
pub enum GptRunner {
    Own(Box<Gpt>),
    Batched(Arc<batch::BatchScheduler>),
}

/// A model of an engine behind a mutex, so that the engines of a batched server share one copy (each request
/// thread locks it for one call: a BERT pass, one chunk's decode). In the pool every engine has its own and the
/// lock is never contended.
pub struct Shared<T>(Arc<std::sync::Mutex<T>>);

impl<T> Shared<T> {
    fn new(t: T) -> Shared<T> {
        Shared(Arc::new(std::sync::Mutex::new(t)))
    }
    /// The model, for one call. A panic in another thread's call does not make it unusable (the pool rebuilds the
    /// engine after a panic; the graphs themselves hold no state between calls).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn share(&self) -> Shared<T> {
        Shared(self.0.clone())
    }
}

/// The models that every engine of one bundle generation shares: those run once per text segment (BERT, g2pW, the
/// GPT prefill) or once per new voice (HuBERT + vq_encode), never per token. Each sits behind a mutex (a session runs one call at a
/// time through `ort`), so N workers hold one copy of their weights instead of N (issue 15, item 4; README "Memory").
/// The GPT step and the vocoder, which run per token and per chunk, stay per engine so that workers never wait for each
/// other on the hot path. Only engines of the same bundle loaded with the same options may share them.
#[derive(Clone)]
pub struct SharedModels {
    hubert: Arc<Mutex<Hubert>>,
    bert: Arc<Mutex<Bert>>,
    /// v2Pro/v2ProPlus: the speaker-verification model (once per new voice, like HuBERT).
    sv: Option<Arc<Mutex<SpeakerVerifier>>>,
    /// The bundle's optional g2pW polyphone model (`g2pw.onnx`, added by `python -m export convert --g2pw`).
    g2pw: Option<Arc<Mutex<crate::text::g2pw_onnx::G2pw>>>,
    /// The GPT's prefill (once per segment; the step graph and K/V cache stay per engine).
    gpt_prefill: Option<crate::gpt::SharedPrefill>,
}

/// Locks a shared model; a panic of another worker while it held the lock does not make the model unusable (a
/// session keeps no state between runs), so the poison is cleared.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One loaded bundle.
pub struct Engine {
    bundle: Bundle,
    symbols: SymbolVersion,
    shared: SharedModels,
    gpt: GptRunner,
    vocoder: Shared<Vocoder>,
    /// The precision each stage was loaded in.
    precision: Chosen,
    /// Voice and prompt-text features; shared by every engine of the same model generation in a server.
    features: Arc<FeatureCache>,
}

impl Engine {
    /// Open and validate the bundle, load every graph and check it against its contract, parse the tokenizer.
    /// Everything a bundle declares is checked here, so a bad bundle fails the load, not every request.
    pub fn load(rt: &Runtime, dir: &Path, opts: &EngineOptions) -> Result<Engine> {
        Engine::load_with(rt, dir, opts, None, None)
    }

    /// [`Engine::load`], taking BERT, HuBERT, g2pW and the GPT prefill from `shared` (the [`Engine::shared_models`]
    /// of an engine of the same bundle and options) instead of loading them again.
    pub fn load_sharing(rt: &Runtime, dir: &Path, opts: &EngineOptions, shared: Option<SharedModels>) -> Result<Engine> {
        Engine::load_with(rt, dir, opts, None, shared)
    }

    /// [`Engine::load_sharing`], with the GPT run by `batched` (loaded once for the server) instead of a copy of its own.
    pub fn load_with(rt: &Runtime, dir: &Path, opts: &EngineOptions, batched: Option<Arc<batch::BatchScheduler>>, shared: Option<SharedModels>) -> Result<Engine> {
        let bundle = Bundle::open(dir)?;
        let m = &bundle.manifest;
        let symbols = SymbolVersion::parse(&m.symbols.version).map_err(|e| BundleError::Field { field: "symbols.version".into(), msg: e.to_string() })?;
        // the text frontend writes ids of its built-in table: the model's must be the same list
        if SymbolTable::builtin(symbols).symbols() != m.symbols.list.as_slice() {
            return Err(BundleError::Field {
                field: "symbols.list".into(),
                msg: format!("differs from gsv's built-in {} symbol table (the text frontend's phone ids would not match the model)", m.symbols.version),
            }
            .into());
        }
        if let Some(d) = &m.demo {
            bundle.file(&d.reference.file)?;
        }
        let precision = opts.precision.resolve(m)?;
        // the GPT's prefill and step graphs hold the same weights: one prepacked copy for both (and, when the
        // caller passes a container, for every engine of the bundle)
        let mut session = opts.session.clone();
        session.prepacked.get_or_insert_with(crate::runtime::SharedWeights::new);
        let s = &session;
        let shared = match shared {
            Some(sh) => sh,
            None => {
                let hubert = Hubert::load(rt, &bundle, s)?;
                let bert = Bert::load(rt, &bundle, s, precision.bert)?;
                let g2pw = match &bundle.manifest.g2pw {
                    Some(info) => Some(Arc::new(Mutex::new(crate::text::g2pw_onnx::G2pw::load(rt, &bundle, info, s, bert.tokenizer())?))),
                    None => None,
                };
                let sv = SpeakerVerifier::load(rt, &bundle, s)?.map(|v| Arc::new(Mutex::new(v)));
                SharedModels { hubert: Arc::new(Mutex::new(hubert)), bert: Arc::new(Mutex::new(bert)), sv, g2pw, gpt_prefill: None }
            }
        };
        let (gpt, shared) = match batched {
            Some(b) => (GptRunner::Batched(b), shared),
            None => {
                let gpt = Gpt::load_sharing(rt, &bundle, s, precision.gpt, shared.gpt_prefill.clone())?;
                let shared = SharedModels { gpt_prefill: Some(gpt.shared_prefill()), ..shared };
                (GptRunner::Own(Box::new(gpt)), shared)
            }
        };
        let vocoder = Vocoder::load(rt, &bundle, s, precision.vocoder)?;
        Ok(Engine { bundle, symbols, shared, gpt, vocoder: Shared::new(vocoder), precision, features: Arc::new(FeatureCache::default()) })
    }

    /// Another engine over the same models (batched scheduler only: its GPT is already shared; `None` for an
    /// engine with its own GPT step, which cannot be shared).
    pub fn share(&self) -> Option<Engine> {
        let GptRunner::Batched(b) = &self.gpt else { return None };
        Some(Engine {
            bundle: self.bundle.clone(),
            symbols: self.symbols,
            shared: self.shared.clone(),
            gpt: GptRunner::Batched(b.clone()),
            vocoder: self.vocoder.share(),
            precision: self.precision,
            features: self.features.clone(),
        })
    }

    /// Use `cache` (shared with other engines of the same bundle) instead of this engine's own.
    pub fn with_features(mut self, cache: Arc<FeatureCache>) -> Engine {
        self.features = cache;
        self
    }

    /// Whether the bundle's g2pW polyphone model is loaded (polyphonic characters are then read by it).
    pub fn has_g2pw(&self) -> bool {
        self.shared.g2pw.is_some()
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The precision each stage runs in (the flags, else the bundle's preferred variants).
    pub fn precision(&self) -> Chosen {
        self.precision
    }

    pub fn manifest(&self) -> &Manifest {
        &self.bundle.manifest
    }

    pub fn sample_rate(&self) -> u32 {
        self.bundle.manifest.sample_rate
    }

    pub fn features(&self) -> &Arc<FeatureCache> {
        &self.features
    }

    /// The engine's own GPT (`None` when the batched scheduler runs it).
    pub fn gpt(&self) -> Option<&Gpt> {
        match &self.gpt {
            GptRunner::Own(g) => Some(g),
            GptRunner::Batched(_) => None,
        }
    }
    pub fn gpt_mut(&mut self) -> Option<&mut Gpt> {
        match &mut self.gpt {
            GptRunner::Own(g) => Some(g),
            GptRunner::Batched(_) => None,
        }
    }
    /// Where the GPT runs (after any fallback to the CPU).
    pub fn gpt_device(&self) -> crate::runtime::Device {
        match &self.gpt {
            GptRunner::Own(g) => g.device(),
            GptRunner::Batched(b) => b.device(),
        }
    }
    /// Whether the GPT is the shared batched one.
    pub fn gpt_batched(&self) -> bool {
        matches!(self.gpt, GptRunner::Batched(_))
    }
    pub fn vocoder_mut(&mut self) -> std::sync::MutexGuard<'_, Vocoder> {
        self.vocoder.lock()
    }
    /// The models this engine shares with the other engines of its bundle (for [`Engine::load_sharing`]).
    pub fn shared_models(&self) -> SharedModels {
        self.shared.clone()
    }

    pub fn hubert_mut(&mut self) -> MutexGuard<'_, Hubert> {
        lock(&self.shared.hubert)
    }
    pub fn bert_mut(&mut self) -> MutexGuard<'_, Bert> {
        lock(&self.shared.bert)
    }
    /// The speaker-verification model (v2Pro/v2ProPlus bundles only).
    pub fn sv_mut(&mut self) -> Option<MutexGuard<'_, SpeakerVerifier>> {
        self.shared.sv.as_deref().map(lock)
    }
}

/// Zero BERT features `[hidden, n]` (what upstream uses for non-Chinese text; hidden is 1024 for real models,
/// the manifest's `bert.hidden` in general).
pub fn zero_bert(hidden: usize, n: usize) -> Array2<f32> {
    Array2::zeros((hidden, n))
}
