//! The engine: a bundle's models, the one request path through them, and the supervised worker pool.
//!
//! Who owns what:
//! * [`Engine`] owns one loaded bundle as four model structs, each owning its graphs and declaring their
//!   contracts: [`crate::reference::Hubert`] (hubert + vq_encode: 16 kHz reference -> prompt codes), [`crate::text::bert::Bert`]
//!   (bert + tokenizer), [`crate::gpt::Gpt`] (prefill + step + K/V cache) and [`crate::vocoder::Vocoder`] (ref_enc +
//!   sovits_decode). No graph is reachable from outside the model structs.
//! * [`Engine::tts`] ([`pipeline`]) is the request path: planning (cut into segments, prompt preprocessing),
//!   features (text phones + BERT `[1024, N]`; the voice's prompt codes (25 Hz) and speaker vector, from the shared
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
use std::sync::Arc;

use ndarray::Array2;

use crate::bundle::{Bundle, BundleError, GraphContract, LoadError, Manifest, Precision};
use crate::gpt::{Gpt, GptError};
use crate::reference::{Hubert, HubertError, ReferenceError};
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
            EngineError::Invalid(_) | EngineError::Reference(_) => ErrorKind::Validation,
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

/// Precision variant per stage (`--gpt-precision`, `--bert-precision`, `--vocoder-precision`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Precisions {
    pub gpt: Precision,
    pub bert: Precision,
    pub vocoder: Precision,
}

impl From<SessionOptions> for EngineOptions {
    fn from(session: SessionOptions) -> Self {
        EngineOptions { session, precision: Precisions::default() }
    }
}

/// Every graph a bundle of this model family must declare, from the model structs that run them.
pub fn graph_contracts(m: &Manifest) -> Vec<GraphContract> {
    let mut v: Vec<GraphContract> = Hubert::contracts(m).into();
    v.push(Bert::contract(m));
    v.extend(Gpt::contracts(m));
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

/// One loaded bundle.
pub struct Engine {
    bundle: Bundle,
    symbols: SymbolVersion,
    hubert: Shared<Hubert>,
    bert: Shared<Bert>,
    gpt: GptRunner,
    vocoder: Shared<Vocoder>,
    /// The bundle's optional g2pW polyphone model (`g2pw.onnx`, added by `python -m export convert --g2pw`).
    g2pw: Option<Shared<crate::text::g2pw_onnx::G2pw>>,
    /// Voice and prompt-text features; shared by every engine of the same model generation in a server.
    features: Arc<FeatureCache>,
}

impl Engine {
    /// Open and validate the bundle, load every graph and check it against its contract, parse the tokenizer.
    /// Everything a bundle declares is checked here, so a bad bundle fails the load, not every request.
    pub fn load(rt: &Runtime, dir: &Path, opts: &EngineOptions) -> Result<Engine> {
        Engine::load_with(rt, dir, opts, None)
    }

    /// [`Engine::load`], with the GPT run by `batched` (loaded once for the server) instead of a copy of its own.
    pub fn load_with(rt: &Runtime, dir: &Path, opts: &EngineOptions, batched: Option<Arc<batch::BatchScheduler>>) -> Result<Engine> {
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
        let s = &opts.session;
        let hubert = Hubert::load(rt, &bundle, s)?;
        let bert = Bert::load(rt, &bundle, s, opts.precision.bert)?;
        let gpt = match batched {
            Some(b) => GptRunner::Batched(b),
            None => GptRunner::Own(Box::new(Gpt::load(rt, &bundle, s, opts.precision.gpt)?)),
        };
        let vocoder = Vocoder::load(rt, &bundle, s, opts.precision.vocoder)?;
        let g2pw = match &bundle.manifest.g2pw {
            Some(info) => Some(crate::text::g2pw_onnx::G2pw::load(rt, &bundle, info, s, bert.tokenizer())?),
            None => None,
        };
        Ok(Engine {
            bundle,
            symbols,
            hubert: Shared::new(hubert),
            bert: Shared::new(bert),
            gpt,
            vocoder: Shared::new(vocoder),
            g2pw: g2pw.map(Shared::new),
            features: Arc::new(FeatureCache::default()),
        })
    }

    /// Another engine over the same models (batched scheduler only: its GPT is already shared; `None` for an
    /// engine with its own GPT, which cannot be shared).
    pub fn share(&self) -> Option<Engine> {
        let GptRunner::Batched(b) = &self.gpt else { return None };
        Some(Engine {
            bundle: self.bundle.clone(),
            symbols: self.symbols,
            hubert: self.hubert.share(),
            bert: self.bert.share(),
            gpt: GptRunner::Batched(b.clone()),
            vocoder: self.vocoder.share(),
            g2pw: self.g2pw.as_ref().map(Shared::share),
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
        self.g2pw.is_some()
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
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
    pub fn hubert_mut(&mut self) -> std::sync::MutexGuard<'_, Hubert> {
        self.hubert.lock()
    }
    pub fn bert_mut(&mut self) -> std::sync::MutexGuard<'_, Bert> {
        self.bert.lock()
    }
}

/// Zero BERT features `[hidden, n]` (what upstream uses for non-Chinese text; hidden is 1024 for real models,
/// the manifest's `bert.hidden` in general).
pub fn zero_bert(hidden: usize, n: usize) -> Array2<f32> {
    Array2::zeros((hidden, n))
}
