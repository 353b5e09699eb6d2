//! The batched GPT scheduler (`--scheduler batched`, issue 16): one thread owns the server's one [`BatchGpt`]
//! and steps every running sequence together, continuously.
//!
//! In:  [`BatchScheduler::generate`] from any request thread (a pool worker, inside `Engine::generate_segment`): the
//!      segment's GPT input (phones, BERT `[1024, N]`, prompt codes) and its [`GenerateConfig`] (sampling, seed,
//!      early stop), plus the request's cancel probe and its token callback.
//! Out: the same tokens, in the same order and at the same moments (one per step), as [`crate::gpt::Gpt::generate`]
//!      would give, handed to the callback on the request's own thread, where its `SegmentSink` decodes them (the
//!      vocoder runs on the pool's workers, never on the scheduler thread); then the [`GenerateOutput`].
//!
//! The scheduler loop, one iteration per step boundary:
//! 1. take newcomers from the channel (block only when nothing runs);
//! 2. drop the sequences whose request is gone (cancelled, deadline passed, receiver dropped);
//! 3. admit **one** waiting sequence if the batch has room: its prefill runs alone (batch 1) and its K/V rows are
//!    written into its slot ([`BatchGpt::prefill`]); its first token is decided from the prefill's logits. So a
//!    newcomer stalls the running sequences by at most one prefill per step;
//! 4. one batched step for every running sequence ([`BatchGpt::step`]); each sequence decides its next token from
//!    its own row of logits with its own [`Sequence`] (its seeded sampler, history and stop rules), and the token goes
//!    back over its channel. Finished sequences leave at once; their slot is free at the next boundary.
//!
//! Per-request state never mixes: each [`Sequence`] is the same state machine `Gpt::generate` runs, and the batched
//! step is exact per sequence (`tests/python/test_batch_step.py`, `tests/batching.rs`). A panic inside an iteration
//! fails the sequences running then (their requests get an internal error), the batch is emptied and the loop goes on.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ndarray::Array2;

use super::metrics::EngineMetrics;
use crate::gpt::batch::BatchGpt;
use crate::gpt::{Decision, GenerateConfig, GenerateOutput, GptDims, GptError, GptInput, Sequence};
use crate::runtime::Device;

/// How the request side waits for tokens: it polls its cancel probe this often while no token comes.
const POLL: Duration = Duration::from_millis(50);

enum SeqEvent {
    Token(i64),
    Done(crate::gpt::Result<GenerateOutput>),
}

struct Join {
    phone_ids: Vec<i64>,
    bert: Array2<f32>,
    prompt: Vec<i64>,
    cfg: GenerateConfig,
    events: mpsc::Sender<SeqEvent>,
    cancel: Arc<AtomicBool>,
    arrived: Instant,
}

struct Running {
    slot: usize,
    seq: Sequence,
    feed: (i64, i64),
    events: mpsc::Sender<SeqEvent>,
    cancel: Arc<AtomicBool>,
}

/// The handle request threads share (one per model generation); the thread stops when the last handle is dropped.
pub struct BatchScheduler {
    tx: Mutex<mpsc::Sender<Join>>,
    dims: GptDims,
    device: Device,
    max_batch: usize,
    rows: usize,
}

impl std::fmt::Debug for BatchScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchScheduler").field("max_batch", &self.max_batch).field("rows", &self.rows).finish()
    }
}

fn batch_err(msg: impl Into<String>) -> GptError {
    GptError::Batch(msg.into())
}

impl BatchScheduler {
    /// Start the scheduler thread around `gpt`.
    pub fn start(gpt: BatchGpt, metrics: Arc<EngineMetrics>) -> std::io::Result<Arc<BatchScheduler>> {
        let (tx, rx) = mpsc::channel::<Join>();
        let s = BatchScheduler { tx: Mutex::new(tx), dims: gpt.dims(), device: gpt.device(), max_batch: gpt.max_batch(), rows: gpt.rows_per_sequence() };
        std::thread::Builder::new().name("gsv-gpt-batch".into()).spawn(move || Loop { gpt, rx, metrics, waiting: VecDeque::new(), running: Vec::new() }.run())?;
        Ok(Arc::new(s))
    }

    pub fn dims(&self) -> GptDims {
        self.dims
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }
    pub fn rows_per_sequence(&self) -> usize {
        self.rows
    }

    /// Generate one segment through the shared batch: same contract as [`crate::gpt::Gpt::generate`], with
    /// `cancel` polled while waiting (a request waiting for a place, or between tokens).
    pub fn generate(&self, input: &GptInput<'_>, cfg: &GenerateConfig, cancel: &dyn Fn() -> bool, on_token: &mut dyn FnMut(i64) -> bool) -> crate::gpt::Result<GenerateOutput> {
        let n = input.phone_ids.len();
        if n == 0 {
            return Err(GptError::Input("no phones".into()));
        }
        if input.bert.ncols() != n {
            return Err(GptError::Input(format!("bert has {} columns for {} phones", input.bert.ncols(), n)));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (etx, erx) = mpsc::channel();
        let join = Join {
            phone_ids: input.phone_ids.to_vec(),
            bert: input.bert.to_owned(),
            prompt: input.prompt.to_vec(),
            cfg: cfg.clone(),
            events: etx,
            cancel: stop.clone(),
            arrived: Instant::now(),
        };
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).send(join).map_err(|_| batch_err("the batched GPT scheduler has stopped"))?;
        // the scheduler drops the sequence when `stop` is set or this receiver is gone
        let _stop_on_exit = StopOnDrop(stop);
        loop {
            match erx.recv_timeout(POLL) {
                Ok(SeqEvent::Token(t)) => {
                    if !on_token(t) {
                        return Err(GptError::Cancelled);
                    }
                }
                Ok(SeqEvent::Done(r)) => return r,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if cancel() {
                        return Err(GptError::Cancelled);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(batch_err("the batched GPT scheduler dropped the sequence (see the log)")),
            }
        }
    }
}

struct StopOnDrop(Arc<AtomicBool>);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct Loop {
    gpt: BatchGpt,
    rx: mpsc::Receiver<Join>,
    metrics: Arc<EngineMetrics>,
    waiting: VecDeque<Join>,
    running: Vec<Running>,
}

impl Loop {
    fn run(mut self) {
        loop {
            // 1. newcomers
            if self.running.is_empty() && self.waiting.is_empty() {
                match self.rx.recv() {
                    Ok(j) => self.waiting.push_back(j),
                    Err(_) => break, // every handle dropped
                }
            }
            while let Ok(j) = self.rx.try_recv() {
                self.waiting.push_back(j);
            }
            let r = catch_unwind(AssertUnwindSafe(|| self.iteration()));
            if let Err(p) = r {
                let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
                tracing::error!("batched GPT step panicked: {msg}; failing the running sequences");
                for r in self.running.drain(..) {
                    let _ = r.events.send(SeqEvent::Done(Err(batch_err(format!("the batched GPT step panicked: {msg}")))));
                }
                for slot in 0..self.gpt.max_batch() {
                    let _ = self.gpt.release(slot);
                }
            }
            self.metrics.batch_running.store(self.running.len() as u64, Ordering::Relaxed);
        }
        tracing::debug!("batched GPT scheduler stopped");
    }

    fn release(&mut self, slot: usize) {
        match self.gpt.release(slot) {
            Ok(Some(map)) => {
                for r in &mut self.running {
                    if let Some(Some(new)) = map.get(r.slot) {
                        r.slot = *new;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                // the smaller bucket could not be allocated: nothing moved, the sequences keep their slots
                tracing::warn!("batched GPT: shrinking the batch failed: {e}");
            }
        }
    }

    fn iteration(&mut self) {
        // 2. requests that are gone leave the batch
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].cancel.load(Ordering::Relaxed) {
                let r = self.running.swap_remove(i);
                self.release(r.slot);
            } else {
                i += 1;
            }
        }
        self.waiting.retain(|j| !j.cancel.load(Ordering::Relaxed));

        // 3. one newcomer's prefill
        if self.running.len() < self.gpt.max_batch() {
            if let Some(j) = self.waiting.pop_front() {
                self.admit(j);
            }
        }

        // 4. one batched step
        if self.running.is_empty() {
            return;
        }
        let feeds: Vec<(usize, i64, i64)> = self.running.iter().map(|r| (r.slot, r.feed.0, r.feed.1)).collect();
        let t0 = Instant::now();
        let res = self.gpt.step(&feeds);
        let secs = t0.elapsed().as_secs_f64();
        self.metrics.batch_step(feeds.len(), secs);
        let logits = match res {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("batched GPT step failed: {e}");
                let msg = e.to_string();
                for r in std::mem::take(&mut self.running) {
                    let _ = r.events.send(SeqEvent::Done(Err(batch_err(format!("batched step: {msg}")))));
                    self.release(r.slot);
                }
                return;
            }
        };
        let mut done = Vec::new();
        for (i, mut l) in logits.into_iter().enumerate() {
            let r = &mut self.running[i];
            r.seq.stepped(secs * 1e3);
            if !Self::advance(r, &mut l) {
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            let r = self.running.swap_remove(i);
            self.release(r.slot);
        }
    }

    /// Decide the next token of `r` from `logits` and send it; false when the sequence is over (answered).
    fn advance(r: &mut Running, logits: &mut [f32]) -> bool {
        match r.seq.decide(logits) {
            Err(e) => {
                let _ = r.events.send(SeqEvent::Done(Err(e)));
                false
            }
            Ok(Decision::Stop) => {
                let _ = r.events.send(SeqEvent::Done(r.seq.take_result()));
                false
            }
            Ok(Decision::Emit { token, feed }) => {
                if r.events.send(SeqEvent::Token(token)).is_err() {
                    return false; // the request is gone
                }
                match feed {
                    Some(pos) => {
                        r.feed = (token, pos);
                        true
                    }
                    None => {
                        let _ = r.events.send(SeqEvent::Done(r.seq.take_result()));
                        false
                    }
                }
            }
        }
    }

    fn admit(&mut self, mut j: Join) {
        self.metrics.batch_wait(j.arrived.elapsed().as_secs_f64());
        let rows = self.gpt.rows_per_sequence();
        let prompt_rows = j.phone_ids.len() + j.prompt.len();
        if Sequence::max_rows(j.phone_ids.len(), j.prompt.len(), &j.cfg) > rows && prompt_rows + 2 <= rows {
            // a slot holds `rows` rows: a very long segment gets fewer steps (it stops as at MAX_STEPS)
            let steps = rows - prompt_rows - 1;
            tracing::warn!(prompt_rows, steps, "segment limited to {steps} GPT steps by --batch-kv-rows {rows}");
            j.cfg.max_steps = steps;
        }
        let need = Sequence::max_rows(j.phone_ids.len(), j.prompt.len(), &j.cfg);
        let slot = match self.gpt.admit(need) {
            Ok(s) => s,
            Err(e) => {
                let _ = j.events.send(SeqEvent::Done(Err(e)));
                return;
            }
        };
        let input = GptInput { phone_ids: &j.phone_ids, bert: j.bert.view(), prompt: &j.prompt };
        let mut seq = Sequence::new(self.gpt.dims(), &j.prompt, &j.cfg);
        let t0 = Instant::now();
        let mut logits = match self.gpt.prefill(slot, &input) {
            Ok(l) => l,
            Err(e) => {
                let _ = j.events.send(SeqEvent::Done(Err(e)));
                self.release(slot);
                return;
            }
        };
        seq.out.timings.prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut r = Running { slot, seq, feed: (0, 0), events: j.events, cancel: j.cancel };
        if Self::advance(&mut r, &mut logits) {
            self.running.push(r);
        } else {
            self.release(slot);
        }
    }
}
