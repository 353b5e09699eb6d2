//! Engine workers: N threads, each owning its own [`Engine`] per model, fed from one job queue.
//!
//! * Admission: a semaphore of `workers + max_queue` permits; [`Pool::submit`] takes one without waiting, so a
//!   full server answers 429 at once instead of queueing forever. The permit travels with the job and is
//!   released when the worker is done with it.
//! * Results go back over a per-job unbounded channel: one [`Event::Segment`] per text segment as soon as it is
//!   decoded, then one [`Event::Done`].
//! * Cancellation: the worker's `cancel` probe (checked between GPT steps) is true when the client is gone
//!   (the job's flag was set by a drop guard in the HTTP layer, or the event receiver was dropped) or the
//!   deadline has passed. A job whose client left while it waited is dropped without running.
//! * Model generations: a job names an `Arc<ModelGen>`; a worker keeps one engine per model name and reloads
//!   it when a job carries a newer generation. A request therefore finishes on the generation it was admitted
//!   with, and `/set_model` never waits for running requests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::metrics::Metrics;
use crate::engine::pipeline::{TtsRequest, TtsStats};
use crate::engine::{Engine, EngineError};
use crate::runtime::{Runtime, SessionOptions};
use crate::text::FrontendData;

/// One loaded-model generation: a bundle folder under a name.
#[derive(Debug)]
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
}

/// Loads engines with the server's runtime options.
pub struct Loader {
    pub runtime: Runtime,
    pub opts: SessionOptions,
}

impl Loader {
    pub fn load(&self, dir: &Path) -> Result<Engine, EngineError> {
        Engine::load(&self.runtime, dir, &self.opts)
    }
}

pub enum Event {
    Segment(Vec<i16>),
    Done(Result<TtsStats, EngineError>),
}

pub struct Job {
    pub id: String,
    pub model: Arc<ModelGen>,
    pub req: TtsRequest,
    pub cancel: Arc<AtomicBool>,
    pub deadline: Option<Instant>,
    pub events: tokio::sync::mpsc::UnboundedSender<Event>,
    /// Released just before the final event, so a client that sends its next request as soon as it has the
    /// answer finds the place free again.
    permit: Option<OwnedSemaphorePermit>,
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
}

pub struct Pool {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    permits: Arc<Semaphore>,
    max_queue: usize,
    workers: usize,
    metrics: Arc<Metrics>,
    ready: AtomicUsize,
}

/// A warm-up request each worker runs once after loading.
pub type Warmup = Option<TtsRequest>;

impl Pool {
    /// Starts `workers` threads, each loading `model` and running `warmup`; returns once all are ready (or the
    /// first load error).
    pub fn start(
        workers: usize,
        max_queue: usize,
        loader: Arc<Loader>,
        data: &'static FrontendData,
        model: Arc<ModelGen>,
        warmup: Warmup,
        metrics: Arc<Metrics>,
    ) -> Result<Pool, String> {
        let workers = workers.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let mut threads = Vec::new();
        for w in 0..workers {
            let rx = rx.clone();
            let loader = loader.clone();
            let model = model.clone();
            let warmup = warmup.clone();
            let metrics = metrics.clone();
            let ready_tx = ready_tx.clone();
            let h = std::thread::Builder::new()
                .name(format!("gsv-worker-{w}"))
                .spawn(move || worker(w, rx, loader, data, model, warmup, metrics, ready_tx))
                .map_err(|e| format!("cannot start worker thread: {e}"))?;
            threads.push(h);
        }
        drop(ready_tx);
        let pool = Pool {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            permits: Arc::new(Semaphore::new(workers + max_queue)),
            max_queue,
            workers,
            metrics,
            ready: AtomicUsize::new(0),
        };
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(())) => {
                    pool.ready.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Err(e)) => {
                    pool.shutdown();
                    return Err(e);
                }
                Err(_) => {
                    pool.shutdown();
                    return Err("a worker thread stopped during start-up".into());
                }
            }
        }
        Ok(pool)
    }

    /// All workers loaded and warmed, and still accepting work.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) == self.workers && self.tx.lock().map(|t| t.is_some()).unwrap_or(false)
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Admits a job or refuses at once (429) when `workers + max_queue` jobs are already admitted.
    pub fn submit(&self, id: String, model: Arc<ModelGen>, req: TtsRequest, deadline: Option<Instant>) -> Result<Ticket, super::HttpError> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(super::HttpError::Overloaded(self.max_queue));
            }
        };
        let (etx, erx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job { id, model, req, cancel: cancel.clone(), deadline, events: etx, permit: Some(permit) };
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = tx.as_ref() else {
            return Err(super::HttpError::ShuttingDown);
        };
        self.metrics.queued.fetch_add(1, Ordering::SeqCst);
        if tx.send(job).is_err() {
            self.metrics.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(super::HttpError::ShuttingDown);
        }
        Ok(Ticket { events: erx, guard: CancelGuard { flag: cancel, armed: true } })
    }

    /// Stops taking jobs, lets the workers finish the queued and running ones, joins them.
    pub fn shutdown(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let threads: Vec<_> = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn worker(
    w: usize,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    loader: Arc<Loader>,
    data: &'static FrontendData,
    model: Arc<ModelGen>,
    warmup: Warmup,
    metrics: Arc<Metrics>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let mut engines: HashMap<String, (u64, Engine)> = HashMap::new();
    let t0 = Instant::now();
    match loader.load(&model.dir) {
        Ok(mut e) => {
            if let Some(req) = &warmup {
                match e.tts(data, req, &|| false, &mut |_| true) {
                    Ok(st) => tracing::info!(worker = w, ms = st.total_ms as u64, "warm-up synthesis done"),
                    Err(err) => tracing::warn!(worker = w, "warm-up synthesis failed (requests using the default reference will fail too): {err}"),
                }
            }
            tracing::info!(worker = w, model = %model.name, ms = t0.elapsed().as_millis() as u64, "worker ready");
            engines.insert(model.name.clone(), (model.generation, e));
            let _ = ready.send(Ok(()));
        }
        Err(e) => {
            let _ = ready.send(Err(format!("cannot load model {}: {e}", model.dir.display())));
            return;
        }
    }
    drop(ready);
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(j) => j,
                Err(_) => break,
            }
        };
        metrics.queued.fetch_sub(1, Ordering::SeqCst);
        run_job(w, job, &mut engines, &loader, data, &metrics);
    }
    tracing::debug!(worker = w, "worker stopped");
}

fn run_job(w: usize, mut job: Job, engines: &mut HashMap<String, (u64, Engine)>, loader: &Loader, data: &'static FrontendData, metrics: &Metrics) {
    let span = tracing::info_span!("job", id = %job.id, worker = w);
    let _e = span.enter();
    let expired = |d: Option<Instant>| d.is_some_and(|d| Instant::now() >= d);
    let permit = job.permit.take();
    let events = job.events.clone();
    let done = move |res: Result<TtsStats, EngineError>| {
        drop(permit);
        let _ = events.send(Event::Done(res));
    };
    if expired(job.deadline) {
        metrics.timeouts.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("request timed out while queued; dropped");
        done(Err(EngineError::Cancelled));
        return;
    }
    if job.cancel.load(Ordering::SeqCst) || job.events.is_closed() {
        metrics.cancelled.fetch_add(1, Ordering::Relaxed);
        tracing::info!("client left while the request was queued; dropped");
        return;
    }
    let fresh = match engines.get(&job.model.name) {
        Some((g, _)) => *g != job.model.generation,
        None => true,
    };
    if fresh {
        // free the old generation first (one model in memory per name and worker)
        engines.remove(&job.model.name);
        let t0 = Instant::now();
        match loader.load(&job.model.dir) {
            Ok(e) => {
                tracing::info!(model = %job.model.name, generation = job.model.generation, ms = t0.elapsed().as_millis() as u64, "model loaded on worker");
                engines.insert(job.model.name.clone(), (job.model.generation, e));
            }
            Err(e) => {
                done(Err(e));
                return;
            }
        }
    }
    let Some((_, engine)) = engines.get_mut(&job.model.name) else {
        return;
    };
    metrics.in_flight.fetch_add(1, Ordering::SeqCst);
    let cancel = || job.cancel.load(Ordering::SeqCst) || job.events.is_closed() || expired(job.deadline);
    let res = engine.tts(data, &job.req, &cancel, &mut |seg| job.events.send(Event::Segment(seg.pcm)).is_ok());
    metrics.in_flight.fetch_sub(1, Ordering::SeqCst);
    match &res {
        Ok(st) => {
            metrics.synthesis(st);
            tracing::info!(
                segments = st.segments,
                tokens = st.tokens,
                audio_s = format!("{:.2}", st.audio_seconds()),
                ttfa_ms = st.first_audio_ms as u64,
                total_ms = st.total_ms as u64,
                rtf = format!("{:.3}", st.rtf()),
                "synthesis done"
            );
        }
        Err(EngineError::Cancelled) if expired(job.deadline) => {
            metrics.timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("request timed out; stopped");
        }
        Err(EngineError::Cancelled) => {
            metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            tracing::info!("client disconnected; synthesis stopped");
        }
        Err(e) => tracing::info!("synthesis failed: {e}"),
    }
    done(res);
}
