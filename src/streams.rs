//! `gsv bench-streams`: N concurrent requests through the server's engine (the pool or the batched scheduler),
//! in-process, as `scripts/bench --concurrency` runs it for each level.
//!
//! Each stream is one real request (text frontend, BERT, GPT, token-chunk streaming decode) with its own text and
//! seed, at most `--tokens` GPT tokens (early stop), submitted at the same instant as the others after a warm-up
//! round (graphs, the voice's features, the K/V buffers). Reported per level: aggregate GPT tokens/s (every stream's
//! tokens / wall time from the submissions to the last answer), per-request RTF (request wall time / its audio
//! seconds) and time to first audio (submission to the first audio piece) p50/p99.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use gsv::engine::metrics::EngineMetrics;
use gsv::engine::pool::{Event, Loader, ModelGen, Pool, PoolConfig, Scheduler};
use gsv::engine::{EngineOptions, RefAudio, TtsRequest};
use gsv::text::{FrontendData, Language};
use gsv::vocoder::stream::StreamParams;

const TEXTS: &[&str] = &[
    "今天的天气真的很好。",
    "我们一起去公园散步吧。",
    "明天早上八点开会。",
    "这本书非常有意思。",
    "请把窗户打开一下。",
    "晚上我们吃火锅吧。",
    "春天来了，花都开了。",
    "谢谢你的帮助，再见。",
];

pub struct StreamsArgs {
    pub scheduler: Scheduler,
    pub workers: usize,
    pub streams: usize,
    pub tokens: usize,
    pub reference: (std::path::PathBuf, String, Language),
}

struct One {
    ttfa_ms: f64,
    total_ms: f64,
    tokens: usize,
    audio_s: f64,
    /// the request's own stage times (ms): frontend (BERT included), BERT, prefill, decode (vocoder, waits for its lock included)
    stages: [f64; 4],
}

fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    // nearest rank
    let k = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[k - 1]
}

fn request(a: &StreamsArgs, i: usize, tokens: usize) -> TtsRequest {
    let (p, t, l) = &a.reference;
    let mut r = TtsRequest::new(TEXTS[i % TEXTS.len()], Language::Zh, RefAudio::Path(p.clone()), t, *l);
    r.seed = Some(1000 + i as u64);
    r.early_stop_num = Some(tokens as i64);
    r.stream = Some(StreamParams::default());
    r
}

fn round(pool: &Pool, model: &Arc<ModelGen>, a: &StreamsArgs, tokens: usize, sr: u32) -> Result<(f64, Vec<One>)> {
    let t0 = Instant::now();
    let mut tickets = Vec::new();
    for i in 0..a.streams {
        tickets.push(pool.submit(format!("s{i}"), model.clone(), request(a, i, tokens), None).map_err(|e| anyhow::anyhow!("submit: {e}"))?);
    }
    let outs: Vec<Result<One>> = std::thread::scope(|s| {
        let hs: Vec<_> = tickets
            .into_iter()
            .map(|t| {
                s.spawn(move || -> Result<One> {
                    // the whole ticket moves in (its guard cancels the request when dropped)
                    let mut t = t;
                    let mut first = None;
                    while let Some(ev) = t.events.blocking_recv() {
                        match ev {
                            Event::Segment(_) => {
                                first.get_or_insert_with(|| t0.elapsed().as_secs_f64() * 1e3);
                            }
                            Event::Done(r) => {
                                let st = r.map_err(|e| anyhow::anyhow!("request failed: {e}"))?;
                                let total_ms = t0.elapsed().as_secs_f64() * 1e3;
                                let stages = [st.frontend_ms, st.bert_ms, st.prefill_ms, st.decode_ms];
                                return Ok(One { ttfa_ms: first.unwrap_or(total_ms), total_ms, tokens: st.tokens, audio_s: st.samples as f64 / sr as f64, stages });
                            }
                        }
                    }
                    anyhow::bail!("no answer")
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("stream thread panicked")))).collect()
    });
    let wall = t0.elapsed().as_secs_f64();
    Ok((wall, outs.into_iter().collect::<Result<Vec<_>>>()?))
}

pub fn run(rt: gsv::runtime::Runtime, opts: EngineOptions, bundle: &std::path::Path, a: &StreamsArgs) -> Result<serde_json::Value> {
    let data = FrontendData::global()?;
    let metrics = Arc::new(EngineMetrics::default());
    let workers = match a.scheduler {
        Scheduler::Batched { max_batch, .. } => max_batch,
        Scheduler::Pool => a.workers.max(1),
    };
    let precision = opts.precision;
    let loader = Arc::new(Loader { runtime: rt, opts, scheduler: a.scheduler, metrics: metrics.clone() });
    let model = Arc::new(ModelGen::open("default", bundle, 1, &precision)?);
    let sr = model.sample_rate;
    let t_load = Instant::now();
    let cfg = PoolConfig { workers, max_queue: a.streams + 1, warmup: None, wedge_margin: Duration::from_secs(600) };
    let pool = Pool::start(cfg, loader, data, model.clone(), metrics.clone()).context("starting the engine")?;
    let load_s = t_load.elapsed().as_secs_f64();
    // warm-up: every stream once, a few tokens (graphs, voice features, K/V buffers of this batch size)
    round(&pool, &model, a, 6, sr)?;
    let (wall, outs) = round(&pool, &model, a, a.tokens, sr)?;
    pool.shutdown();
    let tokens: usize = outs.iter().map(|o| o.tokens).sum();
    let ttfa: Vec<f64> = outs.iter().map(|o| o.ttfa_ms).collect();
    let rtf: Vec<f64> = outs.iter().map(|o| o.total_ms / 1e3 / o.audio_s.max(1e-9)).collect();
    Ok(serde_json::json!({
        "streams": a.streams,
        "engine": a.scheduler.name(),
        "workers": workers,
        "aggregate_tokens_per_s": tokens as f64 / wall,
        "rtf_p50": percentile(&rtf, 0.5),
        "rtf_max": rtf.iter().copied().fold(0.0, f64::max),
        "ttfa_p50_ms": percentile(&ttfa, 0.5),
        "ttfa_p99_ms": percentile(&ttfa, 0.99),
        "tokens": tokens,
        "wall_s": wall,
        "audio_s": outs.iter().map(|o| o.audio_s).sum::<f64>(),
        "load_s": load_s,
        // summed over the streams (wall time inside each request, so a stage waiting for a shared model counts)
        "stage_ms": {
            "frontend": outs.iter().map(|o| o.stages[0]).sum::<f64>(),
            "bert": outs.iter().map(|o| o.stages[1]).sum::<f64>(),
            "prefill": outs.iter().map(|o| o.stages[2]).sum::<f64>(),
            "decode": outs.iter().map(|o| o.stages[3]).sum::<f64>(),
        },
        "peak_rss_kib": crate::peak_rss_kib().unwrap_or(0),
    }))
}
