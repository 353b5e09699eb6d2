//! Prometheus text metrics (`GET /metrics`), kept by hand: counters and gauges in atomics, labelled counters
//! and histograms behind a mutex (a few updates per request).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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
struct Labelled {
    requests: BTreeMap<(String, u16), u64>,
    failures: BTreeMap<String, u64>,
    ttfa: Histogram,
    rtf: Histogram,
}

#[derive(Default)]
pub struct Metrics {
    labelled: Mutex<Labelled>,
    /// Admitted, waiting for a worker.
    pub queued: AtomicU64,
    /// Running on a worker.
    pub in_flight: AtomicU64,
    /// Stopped because the client went away (while waiting or while running).
    pub cancelled: AtomicU64,
    /// Refused with 429.
    pub rejected: AtomicU64,
    pub timeouts: AtomicU64,
    pub tokens: AtomicU64,
    /// GPT step time, microseconds.
    pub step_us: AtomicU64,
    pub audio_samples: AtomicU64,
    pub model_swaps: AtomicU64,
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16) {
        let mut l = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        *l.requests.entry((route.to_string(), status)).or_default() += 1;
    }

    pub fn failure(&self, kind: &str) {
        let mut l = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        *l.failures.entry(kind.to_string()).or_default() += 1;
    }

    pub fn synthesis(&self, st: &crate::engine::pipeline::TtsStats) {
        self.tokens.fetch_add(st.steps as u64, Ordering::Relaxed);
        self.step_us.fetch_add((st.steps_ms * 1e3) as u64, Ordering::Relaxed);
        self.audio_samples.fetch_add(st.samples as u64, Ordering::Relaxed);
        let mut l = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        l.ttfa.observe(TTFA_BUCKETS, st.first_audio_ms / 1e3);
        l.rtf.observe(RTF_BUCKETS, st.rtf());
    }

    pub fn render(&self) -> String {
        let mut o = String::new();
        let l = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        o.push_str("# HELP gsv_requests_total HTTP requests by route and status.\n# TYPE gsv_requests_total counter\n");
        for ((route, status), n) in &l.requests {
            let _ = writeln!(o, "gsv_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        o.push_str("# HELP gsv_failures_total Failed requests by kind.\n# TYPE gsv_failures_total counter\n");
        for (kind, n) in &l.failures {
            let _ = writeln!(o, "gsv_failures_total{{kind=\"{kind}\"}} {n}");
        }
        let g = |o: &mut String, name: &str, typ: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {typ}\n{name} {v}");
        };
        g(&mut o, "gsv_queue_size", "gauge", "Admitted requests waiting for a worker.", self.queued.load(Ordering::Relaxed));
        g(&mut o, "gsv_in_flight", "gauge", "Requests running on a worker.", self.in_flight.load(Ordering::Relaxed));
        g(&mut o, "gsv_cancelled_total", "counter", "Requests stopped because the client disconnected.", self.cancelled.load(Ordering::Relaxed));
        g(&mut o, "gsv_rejected_total", "counter", "Requests refused with 429 (queue full).", self.rejected.load(Ordering::Relaxed));
        g(&mut o, "gsv_timeouts_total", "counter", "Requests stopped by the per-request timeout.", self.timeouts.load(Ordering::Relaxed));
        g(&mut o, "gsv_model_swaps_total", "counter", "Successful model changes.", self.model_swaps.load(Ordering::Relaxed));
        let tokens = self.tokens.load(Ordering::Relaxed);
        let step_s = self.step_us.load(Ordering::Relaxed) as f64 / 1e6;
        g(&mut o, "gsv_gpt_tokens_total", "counter", "GPT decoding steps run.", tokens);
        let _ = writeln!(o, "# HELP gsv_gpt_step_seconds_total Time spent in GPT decoding steps.\n# TYPE gsv_gpt_step_seconds_total counter\ngsv_gpt_step_seconds_total {step_s}");
        let tps = if step_s > 0.0 { tokens as f64 / step_s } else { 0.0 };
        let _ = writeln!(o, "# HELP gsv_gpt_tokens_per_second GPT tokens per second over the server's life.\n# TYPE gsv_gpt_tokens_per_second gauge\ngsv_gpt_tokens_per_second {tps}");
        let audio_s = self.audio_samples.load(Ordering::Relaxed) as f64 / 32000.0;
        let _ = writeln!(o, "# HELP gsv_audio_seconds_total Audio produced (at 32 kHz).\n# TYPE gsv_audio_seconds_total counter\ngsv_audio_seconds_total {audio_s}");
        o.push_str("# HELP gsv_time_to_first_audio_seconds From the start of synthesis to the first segment.\n# TYPE gsv_time_to_first_audio_seconds histogram\n");
        l.ttfa.render(&mut o, "gsv_time_to_first_audio_seconds", TTFA_BUCKETS);
        o.push_str("# HELP gsv_rtf Real-time factor (synthesis time / audio time) per request.\n# TYPE gsv_rtf histogram\n");
        l.rtf.render(&mut o, "gsv_rtf", RTF_BUCKETS);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.request("/", 200);
        m.request("/", 200);
        m.failure("bad_request");
        let st = crate::engine::pipeline::TtsStats { first_audio_ms: 300.0, total_ms: 1000.0, samples: 32000, sample_rate: 32000, steps: 10, steps_ms: 100.0, ..Default::default() };
        m.synthesis(&st);
        let t = m.render();
        assert!(t.contains("gsv_requests_total{route=\"/\",status=\"200\"} 2"), "{t}");
        assert!(t.contains("gsv_failures_total{kind=\"bad_request\"} 1"));
        assert!(t.contains("gsv_time_to_first_audio_seconds_bucket{le=\"0.5\"} 1"));
        assert!(t.contains("gsv_time_to_first_audio_seconds_bucket{le=\"0.25\"} 0"));
        assert!(t.contains("gsv_gpt_tokens_per_second 100"));
    }
}
