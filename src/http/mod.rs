//! The HTTP server: api2.py's `/` (drop-in), api.py's and api_v2.py's routes, an OpenAI-style
//! `/v1/audio/speech`, `/health` and `/metrics`.
//!
//! Shape: hyper 1 (HTTP/1.1) on a tokio runtime accepts connections; handlers parse parameters
//! ([`params`]) into a typed [`TtsRequest`] (languages, cut methods, numbers parsed here, once) and submit it to
//! the engine's supervised [`Pool`] (N threads, each owning an `Engine`). Audio comes back piece by piece over the
//! job's channel into the request's own encoder ([`audio`]: the route's format, WAV, raw, MP3, Ogg Vorbis/Opus, AAC,
//! FLAC); streaming responses send what each piece completes as a chunk (or as OpenAI SSE events), the others
//! collect the pieces and send one complete file. Every handler error is an [`HttpError`]; its kind decides the status in one `match`
//! ([`HttpError::status`]) and [`error::error_body`] writes the JSON body in the route's shape.
//! A client that disconnects drops the handler future or the response body, whose `CancelGuard` sets the job's
//! cancel flag; the worker sees it at the next stage boundary. `/health` (liveness) and `/ready` (can synthesise)
//! ask the workers. SIGINT/SIGTERM (or `/control?command=exit`) stop the accept loop, let running requests finish,
//! then stop the workers.
//!
//! Bounds (README "Reliability and security"): request bodies must arrive within `--body-timeout-s` (408) and fit
//! `--max-body` (413); reference files are opened once, confined to `--ref-root` in the same call, refused unless
//! regular and within `--max-ref-bytes`, and read off the async threads under the request's deadline before the job
//! is queued, so a worker never waits on a file; admin routes need `--admin-key` (or the API key); model folders
//! are confined to `--model-root`.

pub mod args;
mod audio;
pub mod error;
pub mod metrics;
pub mod params;
pub mod openapi;
mod page;
pub mod paths;
mod routes;
pub mod table;
mod voices;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use tracing::Instrument;

pub use args::ServeArgs;
pub use audio::AudioStream;
pub use error::{HttpError, Shape};

use crate::bundle::{parse_choice, Bundle};
use crate::codec::AudioFormat;
use crate::engine::pool::{Loader, ModelGen, Pool, PoolConfig, Scheduler};
use crate::engine::{Api2Cut, EngineOptions, Precisions, RefAudio, TtsRequest};
use crate::runtime::{Device, OptLevel, Runtime, SessionOptions};
use crate::text::{FrontendData, Language};
use metrics::Metrics;

/// A reference recording with its transcript and language (strings may be empty: "not configured").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RefSpec {
    pub path: String,
    pub text: String,
    pub lang: String,
    /// Set by a client (`/change_refer`, `/set_refer_audio`): confined to `--ref-root` again at every use. The
    /// operator's `-dr` and `--voice` files are not.
    pub confined: bool,
}

impl RefSpec {
    pub fn is_ready(&self) -> bool {
        !self.path.is_empty() && !self.text.is_empty() && !self.lang.is_empty()
    }
}

struct Models {
    default: Arc<ModelGen>,
    named: BTreeMap<String, Arc<ModelGen>>,
}

/// Server-wide settings that do not change while it runs.
pub struct Limits {
    pub max_body: usize,
    pub max_text: usize,
    /// api2 `-c`.
    pub cut: Api2Cut,
    /// api.py `-sm normal`: `/` streams by default.
    pub stream_default: bool,
    /// api.py `-mt` (with api.py's rule for `-sm normal`): the format of `/`.
    pub api_py_format: AudioFormat,
    /// `--api-py-speed`: `speed` on `/` changes the audio (api.py); off: ignored, as api2.py does.
    pub api_py_speed: bool,
    /// `--strict-voices`: an OpenAI voice name that is not configured is a 400 instead of the default voice.
    pub strict_voices: bool,
    pub timeout: Option<Duration>,
    pub api_key: Option<String>,
    /// Key of the admin routes (falls back to `api_key`).
    pub admin_key: Option<String>,
    /// `--ref-root`, canonical (and as written): see [`crate::reference::canonical_roots`].
    pub ref_roots: Vec<PathBuf>,
    /// `--model-root` (default: the start-up bundle folders and `onnx/`).
    pub model_roots: Vec<PathBuf>,
    /// `--max-ref-bytes`.
    pub max_ref_bytes: u64,
    /// `--body-timeout-s`.
    pub body_timeout: Duration,
    /// api.py `-cp`, as an api2 cut method.
    pub default_cut_punc: Option<Api2Cut>,
    pub hubert_path: Option<String>,
    pub bert_path: Option<String>,
    /// Largest `POST /voices` body (`--max-upload`).
    pub max_upload: usize,
}

pub struct State {
    pub limits: Limits,
    models: RwLock<Models>,
    default_ref: RwLock<RefSpec>,
    voices: RwLock<BTreeMap<String, RefSpec>>,
    /// `--voices DIR`.
    library: Option<Arc<crate::voices::Library>>,
    pool: Pool,
    pub metrics: Arc<Metrics>,
    loader: Arc<Loader>,
    generation: AtomicU64,
    next_id: AtomicU64,
    id_prefix: String,
    swap: tokio::sync::Mutex<()>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The start-up warm-up ran and passed (false: `--no-warmup` or no default reference to warm up with).
    warmed_up: bool,
}

impl State {
    fn default_model(&self) -> Arc<ModelGen> {
        self.models.read().unwrap_or_else(|e| e.into_inner()).default.clone()
    }

    fn named_model(&self, name: &str) -> Option<Arc<ModelGen>> {
        let m = self.models.read().unwrap_or_else(|e| e.into_inner());
        if name == "default" || name == m.default.label {
            return Some(m.default.clone());
        }
        m.named.get(name).cloned()
    }

    fn model_names(&self) -> Vec<String> {
        let m = self.models.read().unwrap_or_else(|e| e.into_inner());
        std::iter::once("default".to_string()).chain(m.named.keys().cloned()).collect()
    }

    fn default_ref(&self) -> RefSpec {
        self.default_ref.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn request_id(&self, given: Option<&str>) -> String {
        if let Some(g) = given.filter(|g| !g.is_empty() && g.len() <= 64 && g.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))) {
            return g.to_string();
        }
        format!("{}-{:06x}", self.id_prefix, self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Loads `dir` once to check it (off the async threads), then makes it the new generation of `name`
    /// (`default` or a `--bundle` name). Running requests finish on the generation they started with.
    async fn swap_model(&self, name: &str, dir: PathBuf) -> Result<Arc<ModelGen>, String> {
        let _one_at_a_time = self.swap.lock().await;
        let loader = self.loader.clone();
        let d = dir.clone();
        let checked = tokio::task::spawn_blocking(move || loader.check(&d)).await.map_err(|e| {
            tracing::error!("model check of {} panicked: {e}", dir.display());
            "模型加载失败 / the model could not be loaded (details in the server log)".to_string()
        })?;
        // the detail (file paths, ONNX Runtime's text) goes to the log; the client gets what kind of problem it is
        checked.map_err(|e| {
            tracing::warn!("cannot load {}: {e}", dir.display());
            public_load_error(&e)
        })?;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let gen = Arc::new(ModelGen::open(name, &dir, generation, &self.loader.opts.precision).map_err(|e| {
            tracing::warn!("cannot open {}: {e}", dir.display());
            public_load_error(&e.into())
        })?);
        voices::attach(&self.library, &gen);
        let mut m = self.models.write().unwrap_or_else(|e| e.into_inner());
        if name == "default" {
            m.default = gen.clone();
        } else {
            m.named.insert(name.to_string(), gen.clone());
        }
        self.metrics.engine.model_swaps.fetch_add(1, Ordering::Relaxed);
        tracing::info!(model = name, dir = %dir.display(), generation, "model changed");
        Ok(gen)
    }

    pub fn trigger_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// What a client may read about a bundle that failed to load: the kind of problem and the manifest field or graph
/// name, never a file path or ONNX Runtime's message (those are logged).
fn public_load_error(e: &crate::engine::EngineError) -> String {
    use crate::bundle::BundleError as B;
    use crate::engine::EngineError as E;
    let why = match e {
        E::Bundle(B::Io { .. }) => "a file of the bundle cannot be read".to_string(),
        E::Bundle(B::Parse { .. }) => "manifest.json is not a valid gsv manifest".to_string(),
        E::Bundle(B::Field { field, .. }) => format!("manifest field `{field}` is invalid"),
        E::Bundle(B::MissingFile { graph, .. }) => format!("the file of `{graph}` is missing"),
        E::Bundle(B::GraphIo { graph, what, .. }) => format!("graph `{graph}` does not match its contract ({what})"),
        E::Bundle(B::Integrity { graph, .. }) => format!("graph `{graph}` does not match the sha256 in manifest.json (corrupt or modified)"),
        E::Runtime(_) => "ONNX Runtime could not load a graph of the bundle".to_string(),
        E::Text(_) | E::Bert(_) => "the bundle's tokenizer or text data could not be loaded".to_string(),
        E::Panicked(_) => "loading the bundle failed unexpectedly".to_string(),
        _ => "the bundle could not be loaded".to_string(),
    };
    format!("模型加载失败 / cannot load the model: {why} (details in the server log)")
}

/// `NAME=VALUE` of `--bundle` / `--voice`.
fn split_named<'a>(flag: &str, s: &'a str) -> Result<(&'a str, &'a str)> {
    match s.split_once('=') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n, v)),
        _ => bail!("{flag} expects NAME=VALUE, got {s:?}"),
    }
}

// ---------------------------------------------------------------- response bodies

/// A response body: a complete buffer, or audio forwarded from a worker as it is produced.
pub enum Body {
    Full(Option<Bytes>),
    Audio(AudioStream),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Audio(s) => Pin::new(s).poll(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_none(),
            Body::Audio(_) => false,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Full(Some(b)) => hyper::body::SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => hyper::body::SizeHint::with_exact(0),
            Body::Audio(_) => hyper::body::SizeHint::default(),
        }
    }
}

fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let body: Bytes = body.into();
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(Body::Full(Some(body)))
        .unwrap_or_else(|_| Response::new(Body::Full(None)))
}

fn json(status: u16, v: &serde_json::Value) -> Response<Body> {
    full(status, "application/json", serde_json::to_string(v).unwrap_or_default())
}

// ---------------------------------------------------------------- start-up

/// Everything `serve` needs, resolved from the flags (no engine loaded yet).
struct Plan {
    addr: SocketAddr,
    model_dir: PathBuf,
    named: Vec<(String, PathBuf)>,
    default_ref: RefSpec,
    voices: BTreeMap<String, RefSpec>,
    library: Option<Arc<crate::voices::Library>>,
    limits: Limits,
    opts: EngineOptions,
    workers: usize,
    scheduler: Scheduler,
    max_queue: usize,
    warmup: bool,
    wedge_margin: Duration,
}

fn plan(a: &ServeArgs) -> Result<Plan> {
    let explicit = paths::bundle_from_models(a.sovits_path.as_deref(), a.gpt_path.as_deref(), a.hubert_path.as_deref(), a.bert_path.as_deref())
        .map_err(|e| anyhow!(e))?;
    let implicit = explicit.is_none();
    let model_dir = match explicit {
        Some(d) => d,
        None => paths::find_demo_bundle().context("no -s/-g given and the demo bundle onnx/demo was not found (run from the repository, or pass -s DIR)")?,
    };
    let bundle = Bundle::open(&model_dir)?;
    let flags_ref = RefSpec {
        path: a.default_refer_path.clone().unwrap_or_default(),
        text: a.default_refer_text.clone().unwrap_or_default(),
        lang: a.default_refer_language.clone().unwrap_or_default(),
        confined: false,
    };
    let any_flag = a.default_refer_path.is_some() || a.default_refer_text.is_some() || a.default_refer_language.is_some();
    // the demo bundle's reference is the default only when the bundle itself was chosen implicitly
    let default_ref = match (any_flag, implicit, crate::engine::pipeline::demo_reference(&model_dir, &bundle.manifest)) {
        (false, true, Some((p, t, l))) => RefSpec { path: p.display().to_string(), text: t, lang: l, confined: false },
        _ => flags_ref,
    };
    let mut named = Vec::new();
    for b in &a.bundle {
        let (n, d) = split_named("--bundle", b)?;
        if n == "default" {
            bail!("--bundle: the name `default` is reserved for the -s/-g model");
        }
        let d = PathBuf::from(d);
        Bundle::open(&d).with_context(|| format!("--bundle {n}"))?;
        named.push((n.to_string(), d));
    }
    // --scheduler auto (the default): the batched engine when every bundle given has the batched step graph and
    // nobody asked for a number of pool workers (README "Batching"), else the pool
    let all_batched = bundle.manifest.gpt.batched_step && named.iter().all(|(_, d)| Bundle::open(d).is_ok_and(|b| b.manifest.gpt.batched_step));
    let name = match a.scheduler.as_str() {
        "auto" if all_batched && a.workers.is_none() => "batched",
        "auto" => "pool",
        other => other,
    };
    let scheduler = Scheduler::parse(name, a.max_batch, a.batch_kv_rows).map_err(|e| anyhow!(e))?;
    tracing::info!(scheduler = scheduler.name(), "GPT engine");
    let mut voices = BTreeMap::new();
    for v in &a.voice {
        let (n, rest) = split_named("--voice", v)?;
        let parts: Vec<&str> = rest.splitn(3, '|').collect();
        // an empty TEXT (`NAME=WAV||LANG`) makes a reference-free voice
        if parts.len() != 3 || parts[0].is_empty() || parts[2].is_empty() {
            bail!("--voice expects NAME=WAV|TEXT|LANG (TEXT may be empty: reference-free), got {v:?}");
        }
        if Language::from_api(parts[2]).is_none() {
            bail!("--voice {n}: unknown language {:?}", parts[2]);
        }
        if !Path::new(parts[0]).is_file() {
            bail!("--voice {n}: {} is not a file", parts[0]);
        }
        voices.insert(n.to_string(), RefSpec { path: parts[0].into(), text: parts[1].into(), lang: parts[2].into(), confined: false });
    }
    let stream_default = match a.stream_mode.as_str() {
        "close" => false,
        "normal" => true,
        other => bail!("-sm/--stream_mode must be close or normal, got {other:?}"),
    };
    // api.py: `-mt aac|ogg` as given, otherwise wav with `-sm close` and ogg with `-sm normal`; gsv also takes
    // an explicit wav, mp3, flac or opus, and refuses a name it does not know instead of serving something else
    let api_py_format = match AudioFormat::from_api_py(a.media_type.as_deref().unwrap_or(""), stream_default) {
        Some(f) if f.available() => f,
        Some(f) => bail!("-mt/--media_type {}: {}", f.name(), f.unavailable_message()),
        None => bail!("-mt/--media_type must be wav, ogg or aac (or mp3, flac, opus), got {:?}", a.media_type.as_deref().unwrap_or("")),
    };
    if a.sub_type != "int16" {
        bail!("-st/--sub_type: only int16 is produced");
    }
    let ip: std::net::IpAddr = a.bind_addr.parse().with_context(|| format!("-a {}: not an IP address", a.bind_addr))?;
    if !ip.is_loopback() && a.api_key.is_none() {
        tracing::warn!("listening on {ip} without --api-key: anyone who can reach this port can synthesise and read any reference path the server can (use --ref-root and --api-key)");
    }
    if !ip.is_loopback() && a.api_key.is_none() && a.admin_key.is_none() {
        tracing::warn!("listening on {ip} without --admin-key or --api-key: /set_model, /change_refer and /control are open to anyone who can reach this port");
    }
    if a.max_body < 1024 {
        bail!("--max-body must be at least 1024 bytes");
    }
    if a.max_ref_bytes < 1024 {
        bail!("--max-ref-bytes must be at least 1024 bytes");
    }
    if a.body_timeout_s == 0 {
        bail!("--body-timeout-s must be at least 1");
    }
    let mut start_bundles = vec![model_dir.clone()];
    start_bundles.extend(named.iter().map(|(_, d)| d.clone()));
    let library = match &a.voices {
        Some(d) => Some(Arc::new(crate::voices::Library::open(d)?)),
        None => None,
    };
    Ok(Plan {
        addr: SocketAddr::new(ip, a.port),
        model_dir,
        named,
        default_ref,
        voices,
        library,
        limits: Limits {
            max_body: a.max_body,
            max_text: a.max_text.max(1),
            cut: Api2Cut::from_number(a.cut),
            stream_default,
            api_py_format,
            api_py_speed: a.api_py_speed,
            strict_voices: a.strict_voices,
            timeout: if a.timeout_s == 0 { None } else { Some(Duration::from_secs(a.timeout_s)) },
            api_key: a.api_key.clone().filter(|k| !k.is_empty()),
            admin_key: a.admin_key.clone().filter(|k| !k.is_empty()),
            ref_roots: crate::reference::canonical_roots(&a.ref_root).map_err(|e| anyhow!("--ref-root {e}"))?,
            model_roots: paths::model_roots(&a.model_root, &start_bundles).map_err(|e| anyhow!(e))?,
            max_ref_bytes: a.max_ref_bytes,
            body_timeout: Duration::from_secs(a.body_timeout_s),
            default_cut_punc: a.cut_punc.as_deref().and_then(Api2Cut::from_punctuation),
            hubert_path: a.hubert_path.clone(),
            bert_path: a.bert_path.clone(),
            max_upload: a.max_upload.max(1024),
        },
        opts: EngineOptions {
            session: SessionOptions {
                device: Device::parse(match a.device.as_str() {
                    // api2's default: CUDA when this build has it (falls back to CPU), else CPU
                    "auto" if cfg!(feature = "cuda") => "cuda",
                    "auto" => "cpu",
                    d => d,
                })?,
                strict: a.strict_device,
                intra_threads: a.intra_threads,
                inter_threads: a.inter_threads,
                opt_level: OptLevel::parse(&a.opt_level)?,
                skip_integrity: a.skip_integrity,
                prepacked: None,
                spin: crate::runtime::Spin::parse(&a.ort_spin)?,
            },
            precision: Precisions {
                gpt: parse_choice(&a.gpt_precision)?,
                bert: parse_choice(&a.bert_precision)?,
                vocoder: parse_choice(&a.vocoder_precision)?,
            },
        },
        workers: match scheduler {
            // one worker thread per batch place: each runs its request's frontend and vocoder around the shared GPT
            Scheduler::Batched { max_batch, .. } => max_batch,
            Scheduler::Pool => a.workers.unwrap_or(1).max(1),
        },
        scheduler,
        max_queue: a.max_queue,
        warmup: !a.no_warmup,
        wedge_margin: Duration::from_secs(a.wedge_margin_s),
    })
}

/// Runs the server until SIGINT/SIGTERM or `/control?command=exit`.
pub fn run(a: ServeArgs) -> Result<()> {
    if a.full_precision || a.half_precision {
        tracing::info!("-fp/-hp accepted for compatibility: precision is fixed when a bundle is exported (--fp16)");
    }
    let p = plan(&a)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().thread_name("gsv-http").build()?;
    let runtime = Runtime::init(a.ort_lib.as_deref())?;
    rt.block_on(serve(p, runtime))
}

/// Raises the soft limit of open files to the hard limit: every connection, reference and graph is a descriptor.
fn raise_fd_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

async fn serve(p: Plan, runtime: Runtime) -> Result<()> {
    raise_fd_limit();
    // bind first, so a taken port fails before the models load
    let listener = std::net::TcpListener::bind(p.addr).with_context(|| format!("cannot listen on {}", p.addr))?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let local = listener.local_addr()?;

    let data = FrontendData::global()?;
    let metrics = Arc::new(Metrics::default());
    let loader = Arc::new(Loader { runtime, opts: p.opts.clone(), scheduler: p.scheduler, metrics: metrics.engine.clone() });
    let default = Arc::new(ModelGen::open("default", &p.model_dir, 1, &p.opts.precision)?);
    let mut named = BTreeMap::new();
    for (i, (n, d)) in p.named.iter().enumerate() {
        named.insert(n.clone(), Arc::new(ModelGen::open(n, d, 2 + i as u64, &p.opts.precision)?));
    }
    // the warm-up synthesises with the default reference: a server that cannot (unreadable reference, broken
    // tokenizer or graph) stops here with the reason, unless started with --no-warmup
    voices::attach(&p.library, &default);
    named.values().for_each(|g| voices::attach(&p.library, g));
    let warmup = match (p.warmup, p.default_ref.is_ready(), Language::from_api(&p.default_ref.lang)) {
        (true, true, Some(lang)) => {
            let f = crate::reference::open_reference(Path::new(&p.default_ref.path), &[], p.limits.max_ref_bytes)
                .map_err(|e| anyhow!("default reference (-dr) {}: {e} (or start with --no-warmup)", p.default_ref.path))?;
            let mut r = TtsRequest::new("你好，世界。", Language::Zh, RefAudio::File(Arc::new(f)), &p.default_ref.text, lang);
            r.seed = Some(0);
            r.early_stop_num = Some(20);
            Some(r)
        }
        (true, true, None) => bail!("default reference language (-dl) {:?} is not a known language", p.default_ref.lang),
        _ => None,
    };
    let warmed_up = warmup.is_some();
    let cfg = PoolConfig { workers: p.workers, max_queue: p.max_queue, warmup, wedge_margin: p.wedge_margin };
    let workers = cfg.workers;
    let (m2, l2, d2) = (metrics.engine.clone(), loader.clone(), default.clone());
    let dir = p.model_dir.clone();
    let pool = tokio::task::spawn_blocking(move || Pool::start(cfg, l2, data, d2, m2))
        .await?
        .with_context(|| format!("cannot start the workers for model {}", dir.display()))?;
    let (shutdown_tx, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let first_free = 2 + p.named.len() as u64;
    let id_prefix = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() & 0xffffff).unwrap_or(0));
    let state = Arc::new(State {
        limits: p.limits,
        models: RwLock::new(Models { default, named }),
        default_ref: RwLock::new(p.default_ref),
        voices: RwLock::new(p.voices),
        library: p.library,
        pool,
        metrics,
        loader,
        generation: AtomicU64::new(first_free),
        next_id: AtomicU64::new(1),
        id_prefix,
        swap: tokio::sync::Mutex::new(()),
        shutdown: shutdown_tx,
        warmed_up,
    });

    println!("gsv: listening on http://{local}");
    let _ = std::io::stdout().flush();
    tracing::info!(addr = %local, workers, "listening");

    {
        let st = state.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received; finishing running requests");
            st.trigger_shutdown();
        });
    }

    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, peer) = match r {
                    Ok(x) => x,
                    Err(e) => { tracing::warn!("accept failed: {e}"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
                };
                let _ = stream.set_nodelay(true);
                let st = state.clone();
                let mut sd = state.shutdown.subscribe();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(st, req, peer).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(30))
                        .keep_alive(true)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        r = conn.as_mut() => { if let Err(e) = r { tracing::debug!("connection from {peer}: {e}"); } }
                        _ = async { let _ = sd.wait_for(|v| *v).await; } => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            _ = async { let _ = shutdown_rx.wait_for(|v| *v).await; } => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let grace = state.limits.timeout.unwrap_or(Duration::from_secs(600)) + Duration::from_secs(5);
    let _ = tokio::time::timeout(grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.pool.shutdown()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Route label for metrics (fixed set, so unknown paths do not grow the label space).
fn route_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/tts" => "/tts",
        "/v1/audio/speech" => "/v1/audio/speech",
        "/v1/models" => "/v1/models",
        "/change_refer" => "/change_refer",
        "/set_model" => "/set_model",
        "/control" => "/control",
        "/set_gpt_weights" => "/set_gpt_weights",
        "/set_sovits_weights" => "/set_sovits_weights",
        "/set_refer_audio" => "/set_refer_audio",
        "/health" => "/health",
        "/ready" => "/ready",
        "/metrics" => "/metrics",
        _ => table::label(path),
    }
}

fn route_shape(path: &str) -> Shape {
    match path {
        "/tts" | "/set_gpt_weights" | "/set_sovits_weights" | "/set_refer_audio" | "/control" => Shape::V2,
        p if p.starts_with("/v1/") => Shape::OpenAi,
        _ => Shape::Api2,
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let t0 = std::time::Instant::now();
    let given = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let id = state.request_id(given.as_deref());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = route_label(&path);
    let shape = route_shape(&path);
    let span = tracing::info_span!("request", id = %id, method = %method, route, peer = %peer);
    let res = routes::dispatch(&state, req, &id).instrument(span.clone()).await;
    let mut resp = match res {
        Ok(r) => r,
        Err(e) => {
            state.metrics.failure(e.kind().name());
            let _g = span.enter();
            if e.status() >= 500 {
                tracing::error!("{e}");
            } else {
                tracing::info!("{e}");
            }
            let mut r = match (&e, shape) {
                // FastAPI's own answers for unknown paths and methods
                (HttpError::NotFound, Shape::Api2 | Shape::V2) => full(404, "application/json", r#"{"detail":"Not Found"}"#),
                (HttpError::MethodNotAllowed, Shape::Api2 | Shape::V2) => full(405, "application/json", r#"{"detail":"Method Not Allowed"}"#),
                _ => {
                    let (status, body) = error::error_body(&e, shape, &id);
                    full(status, "application/json", body)
                }
            };
            if let HttpError::Unauthorized = e {
                r.headers_mut().insert("www-authenticate", hyper::header::HeaderValue::from_static("Bearer"));
            }
            if r.status() == 429 {
                // a place frees up as soon as any running request ends
                r.headers_mut().insert("retry-after", hyper::header::HeaderValue::from_static("1"));
            }
            if let HttpError::BodyTimeout(_) = e {
                // the rest of the body may still come: do not read it as the next request
                r.headers_mut().insert("connection", hyper::header::HeaderValue::from_static("close"));
            }
            r
        }
    };
    if let Ok(v) = hyper::header::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    state.metrics.request(route, status);
    if status == 504 {
        // counted where it is answered: every 504, whichever timer (queue, worker, this handler) fired first
        state.metrics.engine.timeouts.fetch_add(1, Ordering::Relaxed);
    }
    let _g = span.enter();
    tracing::info!(status, ms = t0.elapsed().as_millis() as u64, path = %path, "request");
    resp
}

/// Common parts of a synthesis request the routes build.
pub(crate) struct Synth {
    pub model: Arc<ModelGen>,
    pub req: TtsRequest,
    /// Format, encoder options, streaming and framing of the response.
    pub out: audio::Output,
}
