//! The batched engine (issue 16): a sequence's logits in a batch equal its logits alone, and 8 concurrent seeded
//! requests with different voices and texts through the batched scheduler give the same audio as each run alone on
//! today's engine.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gsv::engine::batch::BatchScheduler;
use gsv::engine::metrics::EngineMetrics;
use gsv::engine::pool::{Event, Loader, ModelGen, Pool, PoolConfig, Scheduler};
use gsv::engine::{Engine, EngineError, ErrorKind, RefAudio, TextSplit, TtsRequest, V2Cut};
use gsv::gpt::batch::BatchGpt;
use gsv::gpt::{GenerateConfig, GenerateOutput, GptInput, SamplingParams};
use gsv::runtime::{Runtime, SessionOptions};
use gsv::text::{FrontendData, Language};

/// A fresh scratch folder (removed when dropped).
struct Scratch(PathBuf);
impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("gsv-batching-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn opts() -> SessionOptions {
    SessionOptions { intra_threads: 1, ..Default::default() }
}

/// Every stage in fp32, like `BatchGpt::load(.., Default::default(), ..)`: a golden bundle's preferred precisions
/// are whatever `convert` timed faster on the machine that regenerated it, so a comparison must not follow them.
fn fp32() -> gsv::engine::EngineOptions {
    gsv::engine::EngineOptions::fp32(opts())
}

/// The golden bundle (exported by the Python tests into onnx/golden; a missing one is a failure).
fn golden_bundle() -> PathBuf {
    let b = repo().join("onnx/golden");
    assert!(b.join("manifest.json").is_file(), "onnx/golden is missing: run `pytest tests/python/test_bundle_golden.py` (scripts/test does)");
    b
}

struct Case {
    ids: Vec<i64>,
    bert: ndarray::Array2<f32>,
    prompt: Vec<i64>,
    cfg: GenerateConfig,
}

fn cases(m: &gsv::bundle::Manifest) -> Vec<Case> {
    let pv = m.gpt.phoneme_vocab_size as i64;
    let cb = m.sovits.codebook_size as i64;
    (0..5usize)
        .map(|c| {
            let n = 6 + 7 * c;
            let p = [12, 3, 40, 25, 0][c];
            let ids: Vec<i64> = (0..n).map(|i| 1 + ((i * 37 + c * 11) as i64) % (pv - 1)).collect();
            let bert = ndarray::Array2::from_shape_fn((m.bert_hidden(), n), |(r, k)| (((r * 7 + k * 13 + c) % 17) as f32 - 8.0) * 0.05);
            let prompt: Vec<i64> = (0..p).map(|i| ((i * 131 + c * 17) as i64) % cb).collect();
            let cfg = GenerateConfig {
                params: SamplingParams { top_k: [1, 15, 5, 15, 3][c], top_p: [1.0, 0.9, 1.0, 0.8, 1.0][c], temperature: [1.0, 0.9, 1.2, 1.0, 0.7][c], repetition_penalty: 1.35 },
                seed: 100 + c as u64,
                early_stop_num: [20, 35, 12, 28, 40][c],
                record_logits: true,
                ignore_eos: true,
                ..Default::default()
            };
            Case { ids, bert, prompt, cfg }
        })
        .collect()
}

/// Every case through `sched` on its own thread at once (they join and leave at different steps); each checks that
/// the tokens it was sent one by one are the ones the scheduler decided.
fn run_together(sched: &Arc<BatchScheduler>, cases: &[Case]) -> Vec<GenerateOutput> {
    std::thread::scope(|s| {
        let hs: Vec<_> = cases
            .iter()
            .map(|c| {
                let sched = sched.clone();
                s.spawn(move || {
                    let mut streamed = Vec::new();
                    let out = sched
                        .generate(&GptInput { phone_ids: &c.ids, bert: c.bert.view(), prompt: &c.prompt }, &c.cfg, &|| false, &mut |t| {
                            streamed.push(t);
                            true
                        })
                        .unwrap();
                    assert_eq!(streamed, out.tokens, "tokens streamed as decided");
                    out
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn batched_logits_equal_each_sequence_alone() {
    let rt = Runtime::init(None).unwrap();
    let dir = golden_bundle();
    let bundle = gsv::bundle::Bundle::open(&dir).unwrap();
    let m = bundle.manifest.clone();
    assert!(m.gpt.batched_step, "the golden bundle must have the batched step graph");
    let cases = cases(&m);

    // alone: the pool's engine (its own Gpt)
    let mut engine = Engine::load(&rt, &dir, &fp32()).unwrap();
    let alone: Vec<GenerateOutput> = cases
        .iter()
        .map(|c| engine.gpt_mut().unwrap().generate(&GptInput { phone_ids: &c.ids, bert: c.bert.view(), prompt: &c.prompt }, &c.cfg, &mut |_| true).unwrap())
        .collect();

    // together: the batched scheduler, every case on its own thread at once (they join and leave at different steps)
    let gpt = BatchGpt::load(&rt, &bundle, &opts(), Default::default(), 8, 256).unwrap();
    let sched = BatchScheduler::start(gpt, Arc::new(EngineMetrics::default())).unwrap();
    let batched = run_together(&sched, &cases);
    let mut worst = 0f32;
    for (i, (a, b)) in alone.iter().zip(&batched).enumerate() {
        assert_eq!(a.tokens, b.tokens, "case {i}: tokens");
        assert_eq!(a.stop, b.stop, "case {i}: stop reason");
        assert_eq!(a.step_logits.len(), b.step_logits.len());
        for (la, lb) in a.step_logits.iter().zip(&b.step_logits) {
            for (x, y) in la.iter().zip(lb) {
                worst = worst.max((x - y).abs());
            }
        }
    }
    eprintln!("largest |batched - alone| logit difference: {worst:e}");
    assert!(worst <= 1e-4, "batched logits differ from alone by {worst}");
}

/// Write `src` (16-bit mono WAV) changed so it is another voice: resampled by `rate` (pitch and formants move) and
/// scaled by `gain`, trimmed to `secs`.
fn variant_voice(src: &Path, dst: &Path, rate: f64, gain: f64, secs: f64) {
    let bytes = std::fs::read(src).unwrap();
    let data = &bytes[44..];
    let x: Vec<f64> = data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f64).collect();
    let sr = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    let n = ((secs * sr as f64) as usize).min(((x.len() - 1) as f64 / rate) as usize);
    let y: Vec<i16> = (0..n)
        .map(|i| {
            let t = i as f64 * rate;
            let (k, f) = (t as usize, t.fract());
            ((x[k] * (1.0 - f) + x[(k + 1).min(x.len() - 1)] * f) * gain).clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    let mut out = bytes[..44].to_vec();
    let len = (y.len() * 2) as u32;
    out[40..44].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&(36 + len).to_le_bytes());
    out.extend(y.iter().flat_map(|s| s.to_le_bytes()));
    std::fs::write(dst, out).unwrap();
}

fn requests(tmp: &Path) -> Vec<TtsRequest> {
    let demo_ref = repo().join("onnx/demo/ref.wav");
    let ref_text = "今天天气很好，我们去公园散步。";
    let texts = [
        "你好，世界。",
        "今天天气很好，我们去公园散步吧。",
        "明天见，再见。",
        "Hello world, this is a test.",
        "我们一起去看电影，好不好？",
        "春天来了，花都开了。",
        "Good morning, how are you today?",
        "这是第八个请求，声音不一样。",
    ];
    let langs = [Language::Zh, Language::Zh, Language::Zh, Language::En, Language::Zh, Language::Zh, Language::En, Language::Zh];
    (0..8)
        .map(|i| {
            let voice = if i == 0 {
                demo_ref.clone()
            } else {
                let p = tmp.join(format!("voice{i}.wav"));
                variant_voice(&demo_ref, &p, 0.8 + 0.06 * i as f64, 0.5 + 0.08 * i as f64, 3.2 + 0.1 * i as f64);
                p
            };
            let mut r = TtsRequest::new(texts[i], langs[i], RefAudio::Path(voice), ref_text, Language::Zh);
            r.seed = Some(7 + i as u64);
            r.top_k = [0, 5, 15, 10, 0, 3, 20, 8][i];
            r.temperature = [1.0, 0.8, 1.1, 1.0, 0.9, 1.0, 1.2, 1.0][i];
            if i % 2 == 1 {
                // streamed by token chunks (decoded while the batch runs), api_v2 cutting
                r.split = TextSplit::V2(V2Cut::Cut5);
                r.stream = Some(gsv::vocoder::stream::StreamParams { chunk: 8, ..Default::default() });
            }
            r
        })
        .collect()
}

fn collect(ticket: gsv::engine::pool::Ticket) -> Result<Vec<i16>, EngineError> {
    let mut t = ticket;
    let mut pcm = Vec::new();
    while let Some(ev) = t.events.blocking_recv() {
        match ev {
            Event::Segment(p) => pcm.extend(p),
            Event::Done(r) => {
                r?;
                return Ok(pcm);
            }
        }
    }
    Err(EngineError::Internal("no answer".into()))
}

#[test]
fn eight_concurrent_requests_same_audio_as_alone() {
    let rt = Runtime::init(None).unwrap();
    let data = FrontendData::global().unwrap();
    let dir = repo().join("onnx/demo");
    let tmp = Scratch::new("voices");
    let reqs = requests(tmp.path());

    // each alone, on today's engine (its own GPT)
    let mut engine = Engine::load(&rt, &dir, &opts().into()).unwrap();
    let alone: Vec<Vec<i16>> = reqs
        .iter()
        .map(|r| {
            let mut pcm = Vec::new();
            engine
                .tts(data, r, &|| false, &mut |s| {
                    pcm.extend(s.pcm);
                    true
                })
                .unwrap();
            pcm
        })
        .collect();

    // all 8 at once through the batched scheduler (8 places, one GPT)
    let metrics = Arc::new(EngineMetrics::default());
    let loader = Arc::new(Loader { runtime: rt.clone(), opts: opts().into(), scheduler: Scheduler::Batched { max_batch: 8, kv_rows: 1024 }, metrics: metrics.clone() });
    let model = Arc::new(ModelGen::open("default", &dir, 1, &gsv::engine::Precisions::AUTO).unwrap());
    let pool = Pool::start(PoolConfig { workers: 8, max_queue: 0, warmup: None, wedge_margin: Duration::from_secs(30) }, loader, data, model.clone(), metrics.clone()).unwrap();
    let tickets: Vec<_> = reqs.iter().enumerate().map(|(i, r)| pool.submit(format!("r{i}"), model.clone(), r.clone(), None).unwrap()).collect();
    // 8 places and no queue: a ninth is refused at once (429)
    let refused = pool.submit("r9".into(), model.clone(), reqs[0].clone(), None).err().expect("a ninth request must be refused");
    assert_eq!(refused.kind(), ErrorKind::Overloaded);
    let batched: Vec<Vec<i16>> = tickets.into_iter().map(|t| collect(t).unwrap()).collect();
    pool.shutdown();

    let mut prom = String::new();
    metrics.render(&mut prom);
    let steps_line = prom.lines().find(|l| l.starts_with("gsv_batch_size_count")).unwrap_or("").to_string();
    let batched_steps: u64 = steps_line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    // more than one sequence per step at some point: the requests really shared steps
    let single = prom.lines().find(|l| l.starts_with("gsv_batch_size_bucket{le=\"1\"}")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    assert!(batched_steps > 0 && single < batched_steps, "no step ran more than one sequence ({single} of {batched_steps})");

    for (i, (a, b)) in alone.iter().zip(&batched).enumerate() {
        assert!(!a.is_empty(), "request {i} produced audio");
        assert_eq!(a.len(), b.len(), "request {i}: length");
        assert!(a == b, "request {i}: batched audio differs from alone");
    }
}

#[test]
fn bundles_without_the_batched_step_are_refused_with_a_reexport_message() {
    let rt = Runtime::init(None).unwrap();
    let tmp = Scratch::new("old-bundle");
    for f in std::fs::read_dir(repo().join("onnx/demo")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), tmp.path().join(f.file_name())).unwrap();
    }
    let mpath = tmp.path().join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m["gpt"].as_object_mut().unwrap().remove("batched_step");
    std::fs::write(&mpath, serde_json::to_string(&m).unwrap()).unwrap();
    let bundle = gsv::bundle::Bundle::open(tmp.path()).unwrap();
    let err = BatchGpt::load(&rt, &bundle, &opts(), Default::default(), 4, 256).err().expect("refused");
    assert!(err.to_string().contains("re-export"), "{err}");
    // the pool engine still runs it
    Engine::load(&rt, tmp.path(), &opts().into()).unwrap();
}

/// The server with `--scheduler batched`: concurrent seeded requests answer the same WAV bytes as the pool server,
/// the batch metrics count the steps, and an unknown scheduler name is refused at start-up.
#[test]
fn server_batched_scheduler_answers_as_the_pool() {
    let body = |i: u64| support::api2_json(["你好，世界。", "今天天气很好。", "明天见。"][i as usize % 3], None, Some(40 + i));
    let pool = support::Server::start(&["--scheduler", "pool"]);
    let want: Vec<Vec<u8>> = (0..3).map(|i| pool.post("/", &body(i)).body).collect();
    drop(pool);
    let batched = support::Server::start(&["--scheduler", "batched", "--max-batch", "3"]);
    let port = batched.port;
    let got: Vec<support::Resp> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|i| s.spawn(move || support::request(port, "POST", "/", &[], Some(body(i).as_bytes())))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.status, 200, "request {i}: {}", g.text());
        assert!(g.body.len() > 44 && &g.body == w, "request {i}: batched WAV differs from the pool's");
    }
    assert!(batched.metric("gsv_batch_size_count") > 0.0);
    assert!(batched.metric("gsv_batch_queue_wait_seconds_count") >= 3.0);
    drop(batched);
    let bad = support::Server::try_start(&["--scheduler", "fifo"], &[]).err().expect("an unknown scheduler is refused");
    assert!(bad.stderr.contains("unknown scheduler"), "{}", bad.stderr);
}

/// A request that leaves mid-generation (its consumer stops, as a client that hangs up) ends with Cancelled and
/// frees its place; the sequences sharing its steps go on exactly as alone.
#[test]
fn a_cancelled_sequence_leaves_the_batch_without_disturbing_the_others() {
    let rt = Runtime::init(None).unwrap();
    let dir = golden_bundle();
    let bundle = gsv::bundle::Bundle::open(&dir).unwrap();
    let cases = cases(&bundle.manifest);
    let mut engine = Engine::load(&rt, &dir, &fp32()).unwrap();
    let alone: Vec<Vec<i64>> = cases[..3]
        .iter()
        .map(|c| engine.gpt_mut().unwrap().generate(&GptInput { phone_ids: &c.ids, bert: c.bert.view(), prompt: &c.prompt }, &c.cfg, &mut |_| true).unwrap().tokens)
        .collect();
    let gpt = BatchGpt::load(&rt, &bundle, &opts(), Default::default(), 2, 256).unwrap();
    let metrics = Arc::new(EngineMetrics::default());
    let sched = BatchScheduler::start(gpt, metrics.clone()).unwrap();
    let results: Vec<Result<Vec<i64>, gsv::gpt::GptError>> = std::thread::scope(|s| {
        let hs: Vec<_> = cases[..3]
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let sched = sched.clone();
                s.spawn(move || {
                    let mut n = 0;
                    sched
                        .generate(&GptInput { phone_ids: &c.ids, bert: c.bert.view(), prompt: &c.prompt }, &c.cfg, &|| false, &mut |_| {
                            n += 1;
                            !(i == 1 && n == 5)
                        })
                        .map(|o| o.tokens)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(matches!(results[1], Err(gsv::gpt::GptError::Cancelled)), "{:?}", results[1]);
    // max batch 2: the third waited for a place, which the cancelled one (or the first) freed
    assert_eq!(results[0].as_ref().unwrap(), &alone[0]);
    assert_eq!(results[2].as_ref().unwrap(), &alone[2]);
}

/// Append a `metadata_props` entry (ModelProto field 14: StringStringEntryProto {key = 1, value = 2}) to a serialized
/// ONNX model. Protobuf merges a message with what is appended to it, so the result is the same model with one more
/// metadata key, which is what `export/quantize.py` stamps with onnx's own writer.
fn stamp_metadata(model: &[u8], key: &str, value: &str) -> Vec<u8> {
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut entry = vec![0x0a];
    varint(key.len(), &mut entry);
    entry.extend(key.as_bytes());
    entry.push(0x12);
    varint(value.len(), &mut entry);
    entry.extend(value.as_bytes());
    let mut out = model.to_vec();
    out.push((14 << 3) | 2);
    varint(entry.len(), &mut out);
    out.extend(entry);
    out
}

/// A step graph stamped `gsv.step_min_batch = 2` (what the exporter writes on a quantised step whose one-row
/// MatMulNBits takes another ONNX Runtime kernel than a batch) runs a single sequence with a padding row, on the
/// pool's engine and in the batched scheduler's smallest bucket: the sequence's logits are those of the unstamped
/// graph (the padding row changes nothing), and batched equals alone.
#[test]
fn a_step_graph_with_a_minimum_batch_runs_one_sequence_with_a_padding_row() {
    use sha2::Digest;
    let rt = Runtime::init(None).unwrap();
    let src = golden_bundle();
    let tmp = Scratch::new("min-batch");
    let dir = tmp.path().join("bundle");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap();
        if std::fs::hard_link(&p, dir.join(name)).is_err() {
            std::fs::copy(&p, dir.join(name)).unwrap();
        }
    }
    let step = dir.join("gpt_step.onnx");
    let stamped = stamp_metadata(&std::fs::read(&step).unwrap(), "gsv.step_min_batch", "2");
    std::fs::remove_file(&step).unwrap(); // a hard link: do not write through it into onnx/golden
    std::fs::write(&step, &stamped).unwrap();
    let mut man: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    man["graphs"]["gpt_step"]["sha256"] = serde_json::Value::String(format!("{:x}", sha2::Sha256::digest(&stamped)));
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    std::fs::write(dir.join("manifest.json"), serde_json::to_string_pretty(&man).unwrap()).unwrap();

    let fp32 = fp32();
    let bundle = gsv::bundle::Bundle::open(&dir).unwrap();
    let cases = cases(&bundle.manifest);
    let gen = |e: &mut Engine, c: &Case| e.gpt_mut().unwrap().generate(&GptInput { phone_ids: &c.ids, bert: c.bert.view(), prompt: &c.prompt }, &c.cfg, &mut |_| true).unwrap();
    let mut plain = Engine::load(&rt, &src, &fp32).unwrap();
    let mut padded = Engine::load(&rt, &dir, &fp32).unwrap();
    let mut worst = 0f32;
    let mut alone = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let (a, b) = (gen(&mut plain, c), gen(&mut padded, c));
        assert_eq!(a.tokens, b.tokens, "case {i}: a padding row changed the tokens");
        for (la, lb) in a.step_logits.iter().zip(&b.step_logits) {
            worst = la.iter().zip(lb).fold(worst, |w, (x, y)| w.max((x - y).abs()));
        }
        alone.push(b);
    }
    eprintln!("largest |padded - one row| logit difference: {worst:e}");
    assert!(worst <= 1e-4, "a padding row moved the logits by {worst}");

    // the batched scheduler never runs this graph with fewer than two rows
    let mut gpt = BatchGpt::load(&rt, &bundle, &opts(), Default::default(), 4, 256).unwrap();
    let slot = gpt.admit(10).unwrap();
    assert_eq!(gpt.bucket(), 2, "the smallest bucket is the graph's minimum batch");
    gpt.release(slot).unwrap();
    // a burst grows the bucket; once it is over, only the smallest bucket stays allocated
    let mut slots: Vec<usize> = (0..3).map(|_| gpt.admit(10).unwrap()).collect();
    assert_eq!(gpt.bucket(), 4);
    while let Some(s) = slots.pop() {
        if let Some(map) = gpt.release(s).unwrap() {
            slots = slots.iter().map(|&o| map[o].expect("a running sequence keeps a slot")).collect();
        }
    }
    assert_eq!((gpt.running(), gpt.bucket()), (0, 2), "an idle batch keeps the smallest bucket only");
    assert_eq!(gpt.cache_bytes(), 2 * gpt.rows_per_sequence() * {
        let d = gpt.dims();
        d.n_head * d.kv_head_dim * 4 * 2 * d.n_layer
    });
    let mut one = BatchGpt::load(&rt, &bundle, &opts(), Default::default(), 1, 256).unwrap();
    one.admit(10).unwrap();
    assert_eq!(one.bucket(), 2);
    assert!(one.admit(10).is_err(), "--max-batch 1 admits one sequence, even in a bucket of two");
    let sched = BatchScheduler::start(gpt, Arc::new(EngineMetrics::default())).unwrap();
    for (i, (a, b)) in alone.iter().zip(&run_together(&sched, &cases)).enumerate() {
        assert_eq!(a.tokens, b.tokens, "case {i}: batched tokens differ from the padded single sequence");
    }
}
