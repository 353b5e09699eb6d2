//! Prometheus text metrics (`GET /metrics`): the per-route counters kept here, then the engine's
//! ([`EngineMetrics`]: queue, workers, cache, synthesis histograms).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use crate::engine::metrics::EngineMetrics;

#[derive(Default)]
struct Labelled {
    requests: BTreeMap<(String, u16), u64>,
    failures: BTreeMap<String, u64>,
}

#[derive(Default)]
pub struct Metrics {
    labelled: Mutex<Labelled>,
    pub engine: Arc<EngineMetrics>,
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

    pub fn render(&self) -> String {
        let mut o = String::new();
        {
            let l = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
            o.push_str("# HELP gsv_requests_total HTTP requests by route and status.\n# TYPE gsv_requests_total counter\n");
            for ((route, status), n) in &l.requests {
                let _ = writeln!(o, "gsv_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
            o.push_str("# HELP gsv_failures_total Failed requests by kind.\n# TYPE gsv_failures_total counter\n");
            for (kind, n) in &l.failures {
                let _ = writeln!(o, "gsv_failures_total{{kind=\"{kind}\"}} {n}");
            }
        }
        self.engine.render(&mut o);
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
        m.failure("validation");
        let st = crate::engine::TtsStats { first_audio_ms: 300.0, total_ms: 1000.0, samples: 32000, sample_rate: 32000, steps: 10, steps_ms: 100.0, ..Default::default() };
        m.engine.synthesis(&st);
        m.engine.reference(true);
        let t = m.render();
        assert!(t.contains("gsv_requests_total{route=\"/\",status=\"200\"} 2"), "{t}");
        assert!(t.contains("gsv_failures_total{kind=\"validation\"} 1"));
        assert!(t.contains("gsv_time_to_first_audio_seconds_bucket{le=\"0.5\"} 1"));
        assert!(t.contains("gsv_time_to_first_audio_seconds_bucket{le=\"0.25\"} 0"));
        assert!(t.contains("gsv_gpt_tokens_per_second 100"));
        assert!(t.contains("gsv_reference_cache_hits_total 1"));
        assert!(t.contains("gsv_worker_restarts_total 0"));
    }
}
