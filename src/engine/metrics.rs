//! Counters of the engine side of a server (queue, workers, synthesis), kept in atomics and rendered as
//! Prometheus text by `http::metrics` together with the per-route counters.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::TtsStats;

/// Upper bounds (seconds) of the time-to-first-audio histogram.
const TTFA_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];
/// Upper bounds of the real-time-factor histogram.
const RTF_BUCKETS: &[f64] = &[0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(bounds) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, bounds: &[f64]) {
        for (i, b) in bounds.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", self.counts.get(i).copied().unwrap_or(0));
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Default)]
struct Histograms {
    ttfa: Histogram,
    rtf: Histogram,
}

#[derive(Default)]
pub struct EngineMetrics {
    histograms: Mutex<Histograms>,
    /// Admitted, waiting for a worker.
    pub queued: AtomicU64,
    /// Running on a worker.
    pub in_flight: AtomicU64,
    /// Stopped because the client went away (while waiting or while running).
    pub cancelled: AtomicU64,
    /// Refused with 429.
    pub rejected: AtomicU64,
    pub timeouts: AtomicU64,
    /// Jobs that panicked: each one's worker engine was rebuilt.
    pub worker_restarts: AtomicU64,
    /// Workers abandoned as wedged (busy far past their job's deadline) and replaced.
    pub workers_wedged: AtomicU64,
    /// Abandoned worker threads still stuck in their call.
    pub workers_abandoned: AtomicU64,
    /// Requests whose voice features came from the shared cache / had to be computed.
    pub reference_cache_hits: AtomicU64,
    pub reference_cache_misses: AtomicU64,
    pub tokens: AtomicU64,
    /// GPT step time, microseconds.
    pub step_us: AtomicU64,
    pub audio_samples: AtomicU64,
    pub model_swaps: AtomicU64,
}

impl EngineMetrics {
    /// Record a finished synthesis.
    pub fn synthesis(&self, st: &TtsStats) {
        self.tokens.fetch_add(st.steps as u64, Ordering::Relaxed);
        self.step_us.fetch_add((st.steps_ms * 1e3) as u64, Ordering::Relaxed);
        self.audio_samples.fetch_add(st.samples as u64, Ordering::Relaxed);
        let mut h = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        h.ttfa.observe(TTFA_BUCKETS, st.first_audio_ms / 1e3);
        h.rtf.observe(RTF_BUCKETS, st.rtf());
    }

    /// Whether a request found its voice in the cache.
    pub fn reference(&self, cached: bool) {
        let c = if cached { &self.reference_cache_hits } else { &self.reference_cache_misses };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, o: &mut String) {
        let g = |o: &mut String, name: &str, typ: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {typ}\n{name} {v}");
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        g(o, "gsv_queue_size", "gauge", "Admitted requests waiting for a worker.", get(&self.queued));
        g(o, "gsv_in_flight", "gauge", "Requests running on a worker.", get(&self.in_flight));
        g(o, "gsv_cancelled_total", "counter", "Requests stopped because the client disconnected.", get(&self.cancelled));
        g(o, "gsv_rejected_total", "counter", "Requests refused with 429 (queue full).", get(&self.rejected));
        g(o, "gsv_timeouts_total", "counter", "Requests answered 504 (the per-request timeout passed).", get(&self.timeouts));
        g(o, "gsv_worker_restarts_total", "counter", "Jobs that panicked; the worker's engine was rebuilt after each.", get(&self.worker_restarts));
        g(o, "gsv_workers_wedged_total", "counter", "Workers found busy far past their job's deadline; each was abandoned and replaced.", get(&self.workers_wedged));
        g(o, "gsv_workers_abandoned", "gauge", "Abandoned (wedged) worker threads still stuck in their call.", get(&self.workers_abandoned));
        g(o, "gsv_reference_cache_hits_total", "counter", "Requests whose voice features were already cached (by any worker).", get(&self.reference_cache_hits));
        g(o, "gsv_reference_cache_misses_total", "counter", "Requests whose voice features had to be computed.", get(&self.reference_cache_misses));
        g(o, "gsv_model_swaps_total", "counter", "Successful model changes.", get(&self.model_swaps));
        let tokens = get(&self.tokens);
        let step_s = get(&self.step_us) as f64 / 1e6;
        g(o, "gsv_gpt_tokens_total", "counter", "GPT decoding steps run.", tokens);
        let _ = writeln!(o, "# HELP gsv_gpt_step_seconds_total Time spent in GPT decoding steps.\n# TYPE gsv_gpt_step_seconds_total counter\ngsv_gpt_step_seconds_total {step_s}");
        let tps = if step_s > 0.0 { tokens as f64 / step_s } else { 0.0 };
        let _ = writeln!(o, "# HELP gsv_gpt_tokens_per_second GPT tokens per second over the server's life.\n# TYPE gsv_gpt_tokens_per_second gauge\ngsv_gpt_tokens_per_second {tps}");
        let audio_s = get(&self.audio_samples) as f64 / 32000.0;
        let _ = writeln!(o, "# HELP gsv_audio_seconds_total Audio produced (at 32 kHz).\n# TYPE gsv_audio_seconds_total counter\ngsv_audio_seconds_total {audio_s}");
        let h = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        o.push_str("# HELP gsv_time_to_first_audio_seconds From the start of synthesis to the first segment.\n# TYPE gsv_time_to_first_audio_seconds histogram\n");
        h.ttfa.render(o, "gsv_time_to_first_audio_seconds", TTFA_BUCKETS);
        o.push_str("# HELP gsv_rtf Real-time factor (synthesis time / audio time) per request.\n# TYPE gsv_rtf histogram\n");
        h.rtf.render(o, "gsv_rtf", RTF_BUCKETS);
    }
}
