//! The supervised worker pool: N threads, each owning an [`Engine`] per model, fed from one [`JobQueue`].
//!
//! * Admission: a semaphore of `workers + max_queue` permits; [`Pool::submit`] takes one without waiting, so a full
//!   server refuses at once with [`EngineError::Overloaded`] instead of queueing forever. The permit travels with
//!   the [`Job`] and is released just before its final event.
//! * A job's results go back over its own channel: [`Event::Segment`] pieces (PCM16) as soon as they are decoded,
//!   then one [`Event::Done`]. The job, not the thread, carries everything about the request ([`Job::is_cancelled`],
//!   [`Job::expired`], [`Job::segment`], [`Job::finish`]), so another consumer of the same queue — a batched GPT
//!   scheduler that steps many jobs together — can take jobs from it and answer them the same way.
//! * Cancellation and deadlines: the worker's cancel probe (polled between GPT steps) is true when the client is
//!   gone (the [`CancelGuard`] of the HTTP side was dropped, or the event receiver was) or the deadline passed; a
//!   job that outlived its deadline ends with [`EngineError::Timeout`]. A job whose client left while it waited is
//!   dropped without running.
//! * Supervision: every job runs under `catch_unwind`. A panicking job is answered with
//!   [`EngineError::Panicked`] (a 500 carrying the request id), its engine is dropped and rebuilt from the bundle,
//!   and `gsv_worker_restarts_total` counts it. A worker whose engine cannot be (re)built is broken: it answers
//!   its jobs with the load error and tries again with the next one.
//! * Health: [`Pool::health`] asks every worker that is not busy over the queue it reads (a ping answered between
//!   jobs, with a short timeout); busy workers count as serving unless they are past their job's deadline. Each
//!   worker publishes its [`WorkerState`] (a busy worker's job start and deadline included).
//! * Wedged workers: a supervisor thread looks at the published states every [`SUPERVISE_EVERY`]. A worker still busy
//!   `wedge_margin` after its job's deadline (stuck in a call that never returns: the cancel probe is only polled
//!   between stages) is **abandoned and replaced**: its job's admission permit is released, a new worker thread takes
//!   its place in the pool (loading its engine on its first job), `gsv_workers_wedged_total` counts it, and the old
//!   thread, if its call ever returns, drops its engine and exits instead of taking more work.
//! * Start-up: every worker loads the model and runs the warm-up request (when there is one); a load or warm-up
//!   failure is an error of [`Pool::start`], so a server whose default reference, tokenizer or graphs cannot
//!   synthesise does not start (unless it runs without warm-up).
//! * Model generations: a job names an `Arc<ModelGen>`; a worker keeps one engine per model name and reloads it
//!   when a job carries a newer generation, so a request finishes on the generation it was admitted with and
//!   `/set_model` never waits for running requests. All engines of one generation share its [`FeatureCache`]:
//!   a voice is encoded once per server, whichever worker sees it first.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::batch::BatchScheduler;
use super::faults;
use super::metrics::EngineMetrics;
use super::{Engine, EngineError, EngineOptions, FeatureCache, Result, TtsRequest, TtsStats};
use crate::bundle::{Bundle, BundleError};
use crate::gpt::batch::BatchGpt;
use crate::runtime::Runtime;
use crate::text::FrontendData;

/// One loaded-model generation: a bundle folder under a name, and the feature cache its engines share.
pub struct ModelGen {
    /// Name clients use (`default`, or the `--bundle NAME`).
    pub name: String,
    pub dir: PathBuf,
    pub generation: u64,
    pub sample_rate: u32,
    /// `model_version` of the manifest (v1, v2).
    pub version: String,
    /// The manifest's own name (e.g. `demo`).
    pub label: String,
    /// The precision each stage of its engines runs in (the server's flags against the bundle's preferred variants).
    pub precision: super::Chosen,
    pub features: Arc<FeatureCache>,
    /// `--scheduler batched`: the first engine loaded for this generation (its GPT the batched scheduler's);
    /// every worker gets an [`Engine::share`] of it, so the server holds one copy of each model.
    batch: Mutex<Option<Engine>>,
    /// ONNX Runtime's prepacked weights, shared by the sessions of every engine of this generation (created by the
    /// first [`Loader::load`], once ONNX Runtime is loaded).
    pub weights: std::sync::OnceLock<crate::runtime::SharedWeights>,
    /// BERT, HuBERT and g2pW, loaded by the first engine of this generation and shared by the others.
    pub shared: Mutex<Option<super::SharedModels>>,
}

impl std::fmt::Debug for ModelGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelGen").field("name", &self.name).field("dir", &self.dir).field("generation", &self.generation).finish()
    }
}

impl ModelGen {
    /// Reads the bundle's manifest and resolves the precision per stage (the engines are loaded by the workers).
    pub fn open(name: &str, dir: &Path, generation: u64, precision: &super::Precisions) -> std::result::Result<ModelGen, BundleError> {
        let b = Bundle::open(dir)?;
        let precision = precision.resolve(&b.manifest)?;
        tracing::info!(model = name, "precision: {}", precision.describe(&b.manifest).join("; "));
        Ok(ModelGen {
            precision,
            name: name.to_string(),
            dir: dir.to_path_buf(),
            generation,
            sample_rate: b.manifest.sample_rate,
            version: b.manifest.model_version.clone(),
            label: b.manifest.name.clone().unwrap_or_else(|| dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()),
            features: Arc::new(FeatureCache::default()),
            batch: Mutex::new(None),
            weights: std::sync::OnceLock::new(),
            shared: Mutex::new(None),
        })
    }
}

/// Which engine runs the GPT of the server's requests (`--scheduler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// Each worker runs its own copy of the GPT, one request at a time (`--workers` copies).
    Pool,
    /// One GPT for the server, stepping every running request's sequence together (`engine::batch`); the workers
    /// (one per batch place) run the frontend and the vocoder of their request.
    Batched { max_batch: usize, kv_rows: usize },
}

impl Scheduler {
    pub fn parse(name: &str, max_batch: usize, kv_rows: usize) -> std::result::Result<Scheduler, String> {
        match name {
            "pool" => Ok(Scheduler::Pool),
            "batched" => {
                if max_batch == 0 || kv_rows < 16 {
                    return Err(format!("--max-batch must be at least 1 and --batch-kv-rows at least 16 (got {max_batch}, {kv_rows})"));
                }
                Ok(Scheduler::Batched { max_batch, kv_rows })
            }
            other => Err(format!("unknown scheduler `{other}` (expected pool or batched)")),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Scheduler::Pool => "pool",
            Scheduler::Batched { .. } => "batched",
        }
    }
}

/// Loads engines with the server's runtime options.
pub struct Loader {
    pub runtime: Runtime,
    pub opts: EngineOptions,
    pub scheduler: Scheduler,
    /// Where the batched scheduler reports batch sizes, step times and queue waits.
    pub metrics: Arc<EngineMetrics>,
}

impl Loader {
    /// An engine for `model`, sharing the generation's feature cache. A panic while loading is an error.
    pub fn load(&self, model: &ModelGen) -> Result<Engine> {
        if faults::load_refused() {
            return Err(EngineError::Internal("engine load refused by GSV_TEST_FAIL_REBUILD".into()));
        }
        let e = catch_unwind(AssertUnwindSafe(|| {
            let mut opts = self.opts.clone();
            opts.session.prepacked = Some(model.weights.get_or_init(crate::runtime::SharedWeights::new).clone());
            if let Some(e) = self.batched_engine(model, &opts)? {
                return Ok(e);
            }
            // the first engine loads the shared models, the others (and rebuilt ones) take them; the lock is held while
            // loading so that workers starting together do not each load a copy
            let mut shared = model.shared.lock().unwrap_or_else(|e| e.into_inner());
            let engine = Engine::load_sharing(&self.runtime, &model.dir, &opts, shared.clone())?;
            shared.get_or_insert_with(|| engine.shared_models());
            Ok::<Engine, EngineError>(engine)
        }))
        .map_err(|p| EngineError::Panicked(panic_message(p.as_ref())))??;
        Ok(e.with_features(model.features.clone()))
    }

    /// `--scheduler batched`: a share of the generation's engine, loaded (with the batched GPT and its scheduler
    /// thread) on first use. `None` with the pool scheduler.
    fn batched_engine(&self, model: &ModelGen, opts: &super::EngineOptions) -> Result<Option<Engine>> {
        let Scheduler::Batched { max_batch, kv_rows } = self.scheduler else { return Ok(None) };
        let mut slot = model.batch.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = slot.as_ref() {
            return Ok(e.share());
        }
        let bundle = Bundle::open(&model.dir)?;
        let precision = opts.precision.resolve(&bundle.manifest)?;
        let gpt = BatchGpt::load(&self.runtime, &bundle, &opts.session, precision.gpt, max_batch, kv_rows)?;
        tracing::info!(model = %model.name, max_batch, kv_rows, device = gpt.device().name(), "batched GPT loaded");
        let s = BatchScheduler::start(gpt, self.metrics.clone()).map_err(|e| EngineError::Internal(format!("cannot start the batched GPT thread: {e}")))?;
        let shared = model.shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let e = Engine::load_with(&self.runtime, &model.dir, opts, Some(s), shared)?.with_features(model.features.clone());
        let shared = e.share();
        *slot = Some(e);
        Ok(shared)
    }

    /// Load a bundle folder once to check it (`/set_model`).
    pub fn check(&self, dir: &Path) -> Result<()> {
        if let Scheduler::Batched { max_batch, kv_rows } = self.scheduler {
            // the batched engine needs the batched step graph: refuse an older bundle here, with the re-export message
            let bundle = Bundle::open(dir)?;
            let precision = self.opts.precision.resolve(&bundle.manifest)?;
            BatchGpt::load(&self.runtime, &bundle, &self.opts.session, precision.gpt, max_batch, kv_rows).map(drop)?;
        }
        Engine::load(&self.runtime, dir, &self.opts).map(drop)
    }
}

pub enum Event {
    Segment(Vec<i16>),
    Done(Result<TtsStats>),
}

/// An admission permit of the pool, shared with the supervisor (which releases it when the job's worker is abandoned).
type SharedPermit = Arc<Mutex<Option<OwnedSemaphorePermit>>>;

/// A place taken in the pool ([`Pool::admit`]), before the job is built and queued ([`Pool::submit_admitted`]).
pub struct Admission {
    permit: OwnedSemaphorePermit,
}

/// One admitted request.
pub struct Job {
    pub id: String,
    pub model: Arc<ModelGen>,
    pub req: TtsRequest,
    cancel: Arc<AtomicBool>,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    /// Released just before the final event, so a client that sends its next request as soon as it has the
    /// answer finds the place free again (or by the supervisor, when the job's worker is abandoned).
    permit: SharedPermit,
}

impl Job {
    /// The client has gone (its guard was dropped or it stopped listening).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst) || self.events.is_closed()
    }

    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The timeout as the client sees it in a 504's message.
    pub fn timeout_error(&self) -> EngineError {
        EngineError::Timeout(self.timeout.map(|d| d.as_secs()).unwrap_or(0))
    }

    /// Hand a piece of audio to the client; false when it is gone.
    pub fn segment(&self, pcm: Vec<i16>) -> bool {
        self.events.send(Event::Segment(pcm)).is_ok()
    }

    /// The final answer.
    pub fn finish(self, res: Result<TtsStats>) {
        drop(self.permit.lock().unwrap_or_else(|e| e.into_inner()).take());
        let _ = self.events.send(Event::Done(res));
    }
}

/// Sets the job's cancel flag when dropped (the HTTP future or the response body went away), unless
/// [`CancelGuard::disarm`]ed.
pub struct CancelGuard {
    flag: Arc<AtomicBool>,
    armed: bool,
}

impl CancelGuard {
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

/// What [`Pool::submit`] hands back.
pub struct Ticket {
    pub events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    pub guard: CancelGuard,
    pub deadline: Option<Instant>,
}

/// A worker's answer to a health ping.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    pub worker: usize,
    /// It has (or can build) an engine.
    pub ok: bool,
    pub detail: Option<String>,
}

/// What each worker is doing, as it publishes it.
#[derive(Debug, Clone)]
pub enum WorkerState {
    Starting,
    Idle,
    /// Running a job since `since`; a job far past its `deadline` would be a wedged worker.
    Busy { job: String, since: Instant, deadline: Option<Instant> },
    /// Dropping a panicked job's engine and loading a fresh one.
    Rebuilding,
    /// The last engine load failed; the next job tries again.
    Broken(String),
    Stopped,
}

impl WorkerState {
    pub fn name(&self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Idle => "idle",
            WorkerState::Busy { .. } => "busy",
            WorkerState::Rebuilding => "rebuilding",
            WorkerState::Broken(_) => "broken",
            WorkerState::Stopped => "stopped",
        }
    }
}

/// The pool's answer to `/health` and `/ready`.
#[derive(Debug, Clone)]
pub struct PoolHealth {
    /// Workers that answered their ping with a working engine, plus busy ones within their job's deadline.
    pub serving: usize,
    pub states: Vec<&'static str>,
    /// Busy workers past their job's deadline (not yet abandoned).
    pub overrunning: usize,
    /// Workers abandoned as wedged so far (each one was replaced).
    pub wedged_total: u64,
    /// Abandoned worker threads whose stuck call has not returned yet.
    pub abandoned_running: u64,
}

impl PoolHealth {
    /// At least one worker can take a job.
    pub fn can_serve(&self) -> bool {
        self.serving > 0
    }

    /// Every worker can take a job (`/ready`).
    pub fn all_serving(&self) -> bool {
        self.serving == self.states.len() && self.overrunning == 0
    }
}

/// How often the supervisor looks for wedged workers.
pub const SUPERVISE_EVERY: Duration = Duration::from_millis(250);

/// A busy worker this far past its job's deadline no longer counts as serving (a last GPT step or decode may end a
/// little after the deadline; a stuck one does not end).
const OVERRUN_GRACE: Duration = Duration::from_secs(1);

enum Work {
    Job(Box<Job>),
    Ping(oneshot::Sender<WorkerReport>),
    Closed,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    /// Pings per worker, answered by that worker between jobs.
    pings: Vec<Vec<oneshot::Sender<WorkerReport>>>,
    closed: bool,
}

/// The one queue every worker reads: admitted jobs (first come, first served, any worker) and per-worker pings.
pub struct JobQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

/// Pings a worker may have waiting; more are dropped (their askers time out).
const MAX_PINGS: usize = 8;

impl JobQueue {
    fn new(workers: usize) -> JobQueue {
        JobQueue { state: Mutex::new(QueueState { pings: (0..workers).map(|_| Vec::new()).collect(), ..Default::default() }), ready: Condvar::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enqueue a job; gives it back when the queue is closed.
    pub fn push(&self, job: Job) -> std::result::Result<(), Box<Job>> {
        let mut s = self.lock();
        if s.closed {
            return Err(Box::new(job));
        }
        s.jobs.push_back(job);
        drop(s);
        self.ready.notify_all();
        Ok(())
    }

    /// Take the oldest job without waiting (a scheduler that fills a batch).
    pub fn try_pop(&self) -> Option<Job> {
        self.lock().jobs.pop_front()
    }

    fn ping(&self, worker: usize, reply: oneshot::Sender<WorkerReport>) -> bool {
        let mut s = self.lock();
        let Some(p) = s.pings.get_mut(worker) else { return false };
        p.retain(|r| !r.is_closed());
        if p.len() >= MAX_PINGS {
            return false;
        }
        p.push(reply);
        drop(s);
        self.ready.notify_all();
        true
    }

    /// Next thing for `worker` to do: its pings first, then a job; `Closed` once closed and drained.
    fn next(&self, worker: usize) -> Work {
        let mut s = self.lock();
        loop {
            if let Some(r) = s.pings.get_mut(worker).and_then(|p| p.pop()) {
                return Work::Ping(r);
            }
            if let Some(j) = s.jobs.pop_front() {
                return Work::Job(Box::new(j));
            }
            if s.closed {
                return Work::Closed;
            }
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

struct SlotInner {
    state: WorkerState,
    /// Set by the supervisor: this worker was replaced; its thread must exit when its current call returns.
    abandoned: bool,
    /// The running job's admission permit (released by the supervisor when it abandons the worker).
    permit: Option<SharedPermit>,
}

struct WorkerSlot {
    inner: Mutex<SlotInner>,
}

impl WorkerSlot {
    fn new() -> WorkerSlot {
        WorkerSlot { inner: Mutex::new(SlotInner { state: WorkerState::Starting, abandoned: false, permit: None }) }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn set(&self, s: WorkerState) {
        self.lock().state = s;
    }
    fn get(&self) -> WorkerState {
        self.lock().state.clone()
    }
    /// Publish that a job started (with its permit, for the supervisor).
    fn busy(&self, job: &Job) {
        let mut g = self.lock();
        g.state = WorkerState::Busy { job: job.id.clone(), since: Instant::now(), deadline: job.deadline() };
        g.permit = Some(job.permit.clone());
    }
    /// After a job: publish `next` and return true, or false when the supervisor abandoned this worker meanwhile.
    fn job_done(&self, next: WorkerState) -> bool {
        let mut g = self.lock();
        g.permit = None;
        if g.abandoned {
            return false;
        }
        g.state = next;
        true
    }
}

/// Marks the worker stopped however its thread ends.
struct StoppedOnExit(Arc<WorkerSlot>);

impl Drop for StoppedOnExit {
    fn drop(&mut self) {
        self.0.set(WorkerState::Stopped);
    }
}

/// How many workers, how much queue, a warm-up request each worker runs once after loading, and how far past its
/// job's deadline a busy worker is taken for wedged.
#[derive(Clone)]
pub struct PoolConfig {
    pub workers: usize,
    pub max_queue: usize,
    pub warmup: Option<TtsRequest>,
    pub wedge_margin: Duration,
}

/// What the pool and its supervisor share.
struct Shared {
    queue: Arc<JobQueue>,
    slots: std::sync::RwLock<Vec<Arc<WorkerSlot>>>,
    threads: Mutex<Vec<Option<std::thread::JoinHandle<()>>>>,
    permits: Arc<Semaphore>,
    max_queue: usize,
    metrics: Arc<EngineMetrics>,
    loader: Arc<Loader>,
    data: &'static FrontendData,
    wedge_margin: Duration,
    stop: Mutex<bool>,
    stop_cv: Condvar,
}

pub struct Pool {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Shared {
    fn slots(&self) -> Vec<Arc<WorkerSlot>> {
        self.slots.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn worker(&self, w: usize, slot: Arc<WorkerSlot>) -> Worker {
        Worker {
            w,
            slot,
            queue: self.queue.clone(),
            loader: self.loader.clone(),
            data: self.data,
            metrics: self.metrics.clone(),
            engines: HashMap::new(),
            broken: None,
        }
    }

    /// One pass of the supervisor: abandon and replace every worker stuck `wedge_margin` past its job's deadline.
    fn supervise(&self) {
        let now = Instant::now();
        for (w, slot) in self.slots().into_iter().enumerate() {
            let job = {
                let mut g = slot.lock();
                let wedged = match &g.state {
                    WorkerState::Busy { job, deadline: Some(d), .. } if !g.abandoned && now > *d + self.wedge_margin => Some(job.clone()),
                    _ => None,
                };
                let Some(job) = wedged else { continue };
                g.abandoned = true;
                // its client has had its 504; give the place back to new requests
                if let Some(p) = g.permit.take() {
                    drop(p.lock().unwrap_or_else(|e| e.into_inner()).take());
                }
                job
            };
            self.metrics.workers_wedged.fetch_add(1, Ordering::Relaxed);
            self.metrics.workers_abandoned.fetch_add(1, Ordering::Relaxed);
            tracing::error!(worker = w, job = %job, margin_s = self.wedge_margin.as_secs_f64(), "worker wedged (busy past its job's deadline): abandoned, starting a replacement");
            let fresh = Arc::new(WorkerSlot::new());
            let worker = self.worker(w, fresh.clone());
            match std::thread::Builder::new().name(format!("gsv-worker-{w}")).spawn(move || worker.serve()) {
                Ok(h) => {
                    if let Some(s) = self.slots.write().unwrap_or_else(|e| e.into_inner()).get_mut(w) {
                        *s = fresh;
                    }
                    // the old handle is dropped: the stuck thread is detached, never joined
                    if let Some(t) = self.threads.lock().unwrap_or_else(|e| e.into_inner()).get_mut(w) {
                        *t = Some(h);
                    }
                }
                Err(e) => tracing::error!(worker = w, "cannot start a replacement worker thread: {e}"),
            }
        }
    }

    fn supervisor_loop(&self) {
        let mut stop = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        while !*stop {
            let (g, _) = self.stop_cv.wait_timeout(stop, SUPERVISE_EVERY).unwrap_or_else(|e| e.into_inner());
            stop = g;
            if *stop {
                break;
            }
            drop(stop);
            self.supervise();
            stop = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Pool {
    /// Starts the workers, each loading `model` and running the warm-up; returns once all are ready (or with the
    /// first load or warm-up error). Also starts the supervisor that replaces wedged workers.
    pub fn start(cfg: PoolConfig, loader: Arc<Loader>, data: &'static FrontendData, model: Arc<ModelGen>, metrics: Arc<EngineMetrics>) -> Result<Pool> {
        let workers = cfg.workers.max(1);
        let shared = Arc::new(Shared {
            queue: Arc::new(JobQueue::new(workers)),
            slots: std::sync::RwLock::new((0..workers).map(|_| Arc::new(WorkerSlot::new())).collect()),
            threads: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(workers + cfg.max_queue)),
            max_queue: cfg.max_queue,
            metrics,
            loader,
            data,
            wedge_margin: cfg.wedge_margin,
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
        });
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let pool = Pool { shared: shared.clone(), supervisor: Mutex::new(None) };
        for (w, slot) in shared.slots().into_iter().enumerate() {
            let worker = shared.worker(w, slot);
            // the batched engine's workers share every model, the voice cache and the one GPT: one warm-up warms them
            // all (eight at once would also grow the K/V cache to the largest bucket before the first request)
            let warm = w == 0 || matches!(shared.loader.scheduler, Scheduler::Pool);
            let (model, warmup, ready_tx) = (model.clone(), cfg.warmup.clone().filter(|_| warm), ready_tx.clone());
            let h = std::thread::Builder::new()
                .name(format!("gsv-worker-{w}"))
                .spawn(move || worker.run(model, warmup, ready_tx))
                .map_err(|e| EngineError::Internal(format!("cannot start worker thread: {e}")))?;
            shared.threads.lock().unwrap_or_else(|e| e.into_inner()).push(Some(h));
        }
        drop(ready_tx);
        for _ in 0..workers {
            let r = ready_rx.recv().unwrap_or_else(|_| Err(EngineError::Internal("a worker thread stopped during start-up".into())));
            if let Err(e) = r {
                pool.shutdown();
                return Err(e);
            }
        }
        let sup = shared.clone();
        let h = std::thread::Builder::new()
            .name("gsv-supervisor".into())
            .spawn(move || sup.supervisor_loop())
            .map_err(|e| EngineError::Internal(format!("cannot start the supervisor thread: {e}")))?;
        *pool.supervisor.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
        Ok(pool)
    }

    pub fn workers(&self) -> usize {
        self.shared.slots.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Takes a place in the pool, or refuses at once with [`EngineError::Overloaded`] when `workers + max_queue`
    /// jobs are already admitted. The place is kept until the job built with it ends (or is dropped unused).
    pub fn admit(&self) -> Result<Admission> {
        match self.shared.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(Admission { permit }),
            Err(_) => {
                self.shared.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                Err(EngineError::Overloaded(self.shared.max_queue))
            }
        }
    }

    /// Admits a job or refuses at once with [`EngineError::Overloaded`] ([`Pool::admit`] + [`Pool::submit_admitted`]).
    /// `timeout` starts now.
    pub fn submit(&self, id: String, model: Arc<ModelGen>, req: TtsRequest, timeout: Option<Duration>) -> Result<Ticket> {
        let a = self.admit()?;
        self.submit_admitted(a, id, model, req, timeout.map(|t| Instant::now() + t), timeout)
    }

    /// Queues a job on a place taken with [`Pool::admit`]. `deadline` ends it (504); `timeout` is what its message
    /// says the limit was.
    pub fn submit_admitted(&self, a: Admission, id: String, model: Arc<ModelGen>, req: TtsRequest, deadline: Option<Instant>, timeout: Option<Duration>) -> Result<Ticket> {
        let (etx, erx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job { id, model, req, cancel: cancel.clone(), deadline, timeout, events: etx, permit: Arc::new(Mutex::new(Some(a.permit))) };
        let m = &self.shared.metrics;
        m.queued.fetch_add(1, Ordering::SeqCst);
        if self.shared.queue.push(job).is_err() {
            m.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::ShuttingDown);
        }
        Ok(Ticket { events: erx, guard: CancelGuard { flag: cancel, armed: true }, deadline })
    }

    /// Asks the workers whether they can serve: idle and broken ones answer a ping (within `timeout`), busy ones
    /// count as serving unless they are past their job's deadline.
    pub async fn health(&self, timeout: Duration) -> PoolHealth {
        let until = tokio::time::Instant::now() + timeout;
        let now = Instant::now();
        let slots = self.shared.slots();
        let busy_ok = |s: &WorkerState| match s {
            WorkerState::Busy { deadline: Some(d), .. } => now <= *d + OVERRUN_GRACE,
            WorkerState::Busy { .. } => true,
            _ => false,
        };
        let mut serving = 0;
        let mut overrunning = 0;
        let mut asked = Vec::new();
        for (w, slot) in slots.iter().enumerate() {
            match slot.get() {
                b @ WorkerState::Busy { .. } => {
                    if busy_ok(&b) {
                        serving += 1;
                    } else {
                        overrunning += 1;
                    }
                }
                WorkerState::Idle | WorkerState::Broken(_) => {
                    let (tx, rx) = oneshot::channel();
                    if self.shared.queue.ping(w, tx) {
                        asked.push((w, rx));
                    }
                }
                WorkerState::Starting | WorkerState::Rebuilding | WorkerState::Stopped => {}
            }
        }
        for (w, rx) in asked {
            match tokio::time::timeout_at(until, rx).await {
                Ok(Ok(r)) if r.ok => serving += 1,
                Ok(Ok(_)) => {}
                // no answer in time: it may have taken a job meanwhile
                _ => {
                    if busy_ok(&slots[w].get()) {
                        serving += 1;
                    }
                }
            }
        }
        self.report(serving, overrunning)
    }

    fn report(&self, serving: usize, overrunning: usize) -> PoolHealth {
        let m = &self.shared.metrics;
        PoolHealth {
            serving,
            states: self.shared.slots().iter().map(|s| s.get().name()).collect(),
            overrunning,
            wedged_total: m.workers_wedged.load(Ordering::Relaxed),
            abandoned_running: m.workers_abandoned.load(Ordering::Relaxed),
        }
    }

    /// The workers' published states, without asking them (nothing counted as serving).
    pub fn states(&self) -> PoolHealth {
        self.report(0, 0)
    }

    /// Stops taking jobs, lets the workers finish the queued and running ones, joins them (a worker still running
    /// after [`SHUTDOWN_JOIN_LIMIT`] is left behind: the process is ending).
    pub fn shutdown(&self) {
        {
            *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.shared.stop_cv.notify_all();
        }
        if let Some(h) = self.supervisor.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        self.shared.queue.close();
        let threads: Vec<_> = std::mem::take(&mut *self.shared.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let until = Instant::now() + SHUTDOWN_JOIN_LIMIT;
        for t in threads.into_iter().flatten() {
            while !t.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// How long [`Pool::shutdown`] waits for the worker threads.
pub const SHUTDOWN_JOIN_LIMIT: Duration = Duration::from_secs(30);

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".into()
    }
}

struct Worker {
    w: usize,
    slot: Arc<WorkerSlot>,
    queue: Arc<JobQueue>,
    loader: Arc<Loader>,
    data: &'static FrontendData,
    metrics: Arc<EngineMetrics>,
    /// One engine per model name, with the generation it was loaded for.
    engines: HashMap<String, (u64, Engine)>,
    /// Why the last engine load failed (cleared by the next successful one).
    broken: Option<String>,
}

impl Worker {
    fn run(mut self, model: Arc<ModelGen>, warmup: Option<TtsRequest>, ready: mpsc::Sender<Result<()>>) {
        let t0 = Instant::now();
        let mut engine = match self.loader.load(&model) {
            Ok(e) => e,
            Err(e) => {
                self.slot.set(WorkerState::Stopped);
                let _ = ready.send(Err(e));
                return;
            }
        };
        if let Some(req) = &warmup {
            let w = self.w;
            let res = catch_unwind(AssertUnwindSafe(|| {
                faults::before_job(&req.text);
                engine.tts(self.data, req, &|| false, &mut |_| true)
            }));
            match res {
                Ok(Ok(st)) => tracing::info!(worker = w, ms = st.total_ms as u64, "warm-up synthesis done"),
                // a server that cannot synthesise with its own default reference does not start (--no-warmup skips this)
                Ok(Err(err)) => {
                    self.slot.set(WorkerState::Stopped);
                    let _ = ready.send(Err(EngineError::Warmup(err.to_string())));
                    return;
                }
                Err(p) => {
                    self.slot.set(WorkerState::Stopped);
                    let _ = ready.send(Err(EngineError::Warmup(format!("panicked: {}", panic_message(p.as_ref())))));
                    return;
                }
            }
        }
        tracing::info!(worker = self.w, model = %model.name, ms = t0.elapsed().as_millis() as u64, "worker ready");
        self.engines.insert(model.name.clone(), (model.generation, engine));
        self.slot.set(WorkerState::Idle);
        let _ = ready.send(Ok(()));
        drop(ready);
        self.serve();
    }

    /// The worker's loop: pings and jobs until the queue closes, or until the supervisor abandons this worker.
    fn serve(mut self) {
        let _stopped = StoppedOnExit(self.slot.clone());
        if matches!(self.slot.get(), WorkerState::Starting) {
            self.slot.set(WorkerState::Idle);
        }
        loop {
            match self.queue.next(self.w) {
                Work::Closed => break,
                Work::Ping(reply) => {
                    let _ = reply.send(WorkerReport { worker: self.w, ok: self.broken.is_none(), detail: self.broken.clone() });
                }
                Work::Job(job) => {
                    self.metrics.queued.fetch_sub(1, Ordering::SeqCst);
                    self.run_job(*job);
                    if !self.slot.job_done(self.idle_state()) {
                        // replaced while stuck in that job: drop the engine and leave the queue to the replacement
                        self.metrics.workers_abandoned.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!(worker = self.w, "an abandoned worker's call returned; its thread exits");
                        return;
                    }
                }
            }
        }
        tracing::debug!(worker = self.w, "worker stopped");
    }

    fn idle_state(&self) -> WorkerState {
        match &self.broken {
            Some(why) => WorkerState::Broken(why.clone()),
            None => WorkerState::Idle,
        }
    }

    /// Between jobs: idle, or broken when the last engine load failed (unless abandoned meanwhile).
    fn publish_idle_state(&self) {
        let _ = self.slot.job_done(self.idle_state());
    }

    /// Load `model` into this worker (dropping the old engine of that name first: one model in memory per name).
    fn load(&mut self, model: &ModelGen) -> Result<()> {
        self.engines.remove(&model.name);
        let t0 = Instant::now();
        match self.loader.load(model) {
            Ok(e) => {
                tracing::info!(model = %model.name, generation = model.generation, ms = t0.elapsed().as_millis() as u64, "model loaded on worker");
                self.engines.insert(model.name.clone(), (model.generation, e));
                self.broken = None;
                Ok(())
            }
            Err(e) => {
                tracing::error!(model = %model.name, "cannot load the model on this worker: {e}");
                self.broken = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn run_job(&mut self, job: Job) {
        let span = tracing::info_span!("job", id = %job.id, worker = self.w);
        let _e = span.enter();
        // (504s are counted where they are answered, in the HTTP layer: gsv_timeouts_total = 504 responses)
        if job.expired() {
            tracing::warn!("request timed out while queued; dropped");
            let e = job.timeout_error();
            job.finish(Err(e));
            return;
        }
        if job.is_cancelled() {
            self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            tracing::info!("client left while the request was queued; dropped");
            return;
        }
        self.slot.busy(&job);
        let fresh = self.engines.get(&job.model.name).is_none_or(|(g, _)| *g != job.model.generation);
        if fresh {
            if let Err(e) = self.load(&job.model) {
                self.publish_idle_state();
                job.finish(Err(e));
                return;
            }
        }
        let Some((_, engine)) = self.engines.get_mut(&job.model.name) else {
            job.finish(Err(EngineError::Internal("no engine for the model".into())));
            return;
        };
        self.metrics.in_flight.fetch_add(1, Ordering::SeqCst);
        let data = self.data;
        let res = catch_unwind(AssertUnwindSafe(|| {
            faults::before_job(&job.req.text);
            let cancel = || job.is_cancelled() || job.expired();
            engine.tts(data, &job.req, &cancel, &mut |seg| job.segment(seg.pcm))
        }));
        self.metrics.in_flight.fetch_sub(1, Ordering::SeqCst);
        let res = match res {
            Ok(r) => r,
            Err(p) => {
                let msg = panic_message(p.as_ref());
                tracing::error!("job panicked: {msg}; rebuilding this worker's engine");
                self.metrics.worker_restarts.fetch_add(1, Ordering::Relaxed);
                let model = job.model.clone();
                // the engine may be half-way through anything: drop it and load a fresh one now (the state is
                // published before the answer, so a client that asks /health right after it sees the truth)
                self.engines.remove(&model.name);
                self.slot.set(WorkerState::Rebuilding);
                job.finish(Err(EngineError::Panicked(msg)));
                if self.load(&model).is_ok() {
                    tracing::info!("engine rebuilt after the panic");
                }
                return;
            }
        };
        let res = match res {
            Ok(st) => {
                self.metrics.synthesis(&st);
                self.metrics.reference(st.reference_cached);
                tracing::info!(
                    segments = st.segments,
                    tokens = st.tokens,
                    audio_s = format!("{:.2}", st.audio_seconds()),
                    ttfa_ms = st.first_audio_ms as u64,
                    total_ms = st.total_ms as u64,
                    rtf = format!("{:.3}", st.rtf()),
                    reference_cached = st.reference_cached,
                    "synthesis done"
                );
                Ok(st)
            }
            Err(EngineError::Cancelled) if job.expired() => {
                tracing::warn!("request timed out; stopped");
                Err(job.timeout_error())
            }
            Err(EngineError::Cancelled) => {
                self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                tracing::info!("client disconnected; synthesis stopped");
                Err(EngineError::Cancelled)
            }
            Err(e) => {
                tracing::info!("synthesis failed: {e}");
                Err(e)
            }
        };
        job.finish(res);
    }
}
