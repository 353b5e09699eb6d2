//! `gsv` command line.
//!
//! * `gsv synth [--bundle DIR] [--ref WAV --ref-text T --ref-lang L] --text T [--lang L] --out out.wav`: text to
//!   a WAV file (PCM16 mono, 32 kHz); without `--ref` the demo bundle's reference is used. `--batch jobs.jsonl
//!   --out-dir DIR` runs one job per line, prints one line per job and `N passed, M failed`, exits 1 if any failed.
//! * `gsv phonemize --lang L [--version v1|v2] TEXT`: the frontend's result as JSON.
//! * `gsv parity --bundle DIR --golden DIR`: one `PASS|FAIL name max_err=.. tol=..` line per check, then
//!   `N passed, M failed`; exit code 1 on any failure.
//! * `gsv bench --bundle DIR [--tokens N] [--json]`: prefill ms, ms/step, tokens/s, vocoder ms per audio
//!   second, RTF, peak RSS.
//!
//! * `gsv serve [api2 flags]` (also a bare `gsv -dr ... -dt ... -dl ...`, or `gsv` alone): the HTTP server,
//!   see [`gsv::http`] and the README's "Server" section. api2's single-dash options (`-dr`, `-hp`, ...) are
//!   rewritten to long options before clap parses them ([`gsv::http::args::route_argv`]).
//!
//! Common options: `--ort-lib PATH`, `--device cpu|cuda|coreml|mps|tensorrt`, `--strict-device`,
//! `--intra-threads N`, `--inter-threads N`, `--opt-level disable|basic|extended|all`.

mod streams;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use gsv::bundle::parse_choice;
use gsv::engine::pipeline;
use gsv::engine::sink::{TokenChunks, WholeSegment};
use gsv::engine::{parity, zero_bert, Api2Cut, Engine, EngineOptions, Precisions, RefAudio, TextSplit, TtsRequest, TtsStats};
use gsv::gpt::{GenerateConfig, GptInput, SamplingParams};
use gsv::runtime::{Device, OptLevel, Runtime, SessionOptions, Spin};
use gsv::text::{FrontendData, Language, SymbolVersion};
use gsv::vocoder::stream::StreamParams;
use gsv::vocoder::{DecodeParams, Int16Scale, Speaker};

#[derive(Parser)]
#[command(name = "gsv", version, about = "GPT-SoVITS inference on ONNX Runtime")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct RtArgs {
    /// Path of libonnxruntime (default: ORT_DYLIB_PATH, then .ort/lib near the executable or the cwd)
    #[arg(long, global = true)]
    ort_lib: Option<PathBuf>,
    /// Execution provider: cpu, cuda[:N], coreml (alias mps), tensorrt[:N]
    #[arg(long, default_value = "cpu", global = true)]
    device: String,
    /// Fail instead of falling back to CPU when the provider cannot start
    #[arg(long, global = true)]
    strict_device: bool,
    #[arg(long, default_value_t = 0, global = true)]
    intra_threads: usize,
    #[arg(long, default_value_t = 0, global = true)]
    inter_threads: usize,
    /// Graph optimisation: disable, basic, extended, all
    #[arg(long, default_value = "all", global = true)]
    opt_level: String,
    /// GPT precision: auto (default: the bundle's fastest variant that passed its gate, quantization.preferred),
    /// fp32, int8, int4 (a variant the bundle has and that passed its gate). `parity` defaults to fp32
    #[arg(long, global = true)]
    gpt_precision: Option<String>,
    /// BERT precision: auto (default), fp32, int8 (see --gpt-precision)
    #[arg(long, global = true)]
    bert_precision: Option<String>,
    /// SoVITS decoder precision: auto (default), fp32, int8 (see --gpt-precision)
    #[arg(long, global = true)]
    vocoder_precision: Option<String>,
    /// Load graphs without checking their sha256 against manifest.json
    #[arg(long, global = true)]
    skip_integrity: bool,
    /// ONNX Runtime intra-op thread spinning: on or off (default off; README, "Thread spinning")
    #[arg(long, global = true, default_value = Spin::DEFAULT.as_str())]
    ort_spin: String,
}

/// The reference voice of `synth` and `bench --text`.
#[derive(Args, Clone, Default)]
struct RefArgs {
    /// Reference recording (WAV/MP3/FLAC/OGG, 3-10 s); default: the bundle's demo reference
    #[arg(long = "ref")]
    reference: Option<PathBuf>,
    /// Transcript of the reference recording
    #[arg(long)]
    ref_text: Option<String>,
    /// Language of the reference transcript
    #[arg(long)]
    ref_lang: Option<String>,
}

#[derive(Args)]
struct SynthArgs {
    #[arg(long, default_value = "onnx/demo")]
    bundle: PathBuf,
    #[command(flatten)]
    voice: RefArgs,
    /// Text to speak
    #[arg(long)]
    text: Option<String>,
    /// Language of the text: zh, ja, en, all_zh, all_ja, auto
    #[arg(long, default_value = "zh")]
    lang: String,
    /// Output WAV file
    #[arg(long)]
    out: Option<PathBuf>,
    /// Jobs, one JSON object per line: {"text", "lang"?, "ref"?, "ref_text"?, "ref_lang"?, "out"?, "seed"?, ...}
    #[arg(long)]
    batch: Option<PathBuf>,
    /// Folder for the batch outputs (job N without "out" writes NNNN.wav)
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Batch: write a JUnit XML report (one test case per job) to this file
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Batch: rewrite expect_sha256 (and expect_bundle) of every seeded job that produced audio, in the batch file
    #[arg(long)]
    update_fixtures: bool,
    /// api2 cut method 0..5 (0 = no cut)
    #[arg(long, default_value_t = 5)]
    cut: u8,
    /// Top-k (default: the GPT checkpoint's, 15 for v2)
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.35)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    #[arg(long, default_value_t = 0.5)]
    noise_scale: f32,
    /// Seed for reproducible output (default: random)
    #[arg(long)]
    seed: Option<u64>,
    /// Decode while generating, by chunks of N tokens (0: whole segments)
    #[arg(long, default_value_t = 0)]
    stream_chunk: usize,
    #[command(flatten)]
    rt: RtArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the api2.py-compatible HTTP API (the default when no subcommand is given)
    Serve(gsv::http::ServeArgs),
    /// Synthesize text to a WAV file, or a batch of jobs (JSON lines) to a folder
    Synth(SynthArgs),
    /// Print the text frontend's result as JSON: normalised text, segments, phones, phone ids, word2ph
    Phonemize {
        /// Language: zh, ja, en, all_zh, all_ja, auto
        #[arg(long, default_value = "zh")]
        lang: String,
        /// Symbol table: v1 or v2
        #[arg(long, default_value = "v2")]
        version: String,
        text: String,
    },
    /// Compare every stage with the golden data
    Parity {
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long)]
        golden: PathBuf,
        #[command(flatten)]
        rt: RtArgs,
    },
    /// Manage a voice library folder (what `gsv serve --voices DIR` serves and `/voices` edits)
    Voices {
        /// The library folder
        #[arg(long, default_value = "voices", global = true)]
        voices: PathBuf,
        #[command(subcommand)]
        cmd: VoicesCmd,
    },
    /// N concurrent requests through the pool or the batched engine, in-process (scripts/bench --concurrency)
    BenchStreams {
        #[arg(long)]
        bundle: PathBuf,
        /// pool or batched
        #[arg(long, default_value = "batched")]
        scheduler: String,
        /// Concurrent requests (the batched engine gets this many places)
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// --scheduler pool: worker threads, each with its own copy of the model
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// GPT tokens per request at most (early stop; 25 tokens = 1 s of audio)
        #[arg(long, default_value_t = 100)]
        tokens: usize,
        /// --scheduler batched: K/V rows per sequence
        #[arg(long = "batch-kv-rows", default_value_t = 1024)]
        batch_kv_rows: usize,
        #[command(flatten)]
        voice: RefArgs,
        #[command(flatten)]
        rt: RtArgs,
    },
    /// Measure speed
    Bench {
        #[arg(long)]
        bundle: PathBuf,
        /// Tokens to generate (EOS ignored)
        #[arg(long, default_value_t = 100)]
        tokens: usize,
        #[arg(long)]
        json: bool,
        /// Also time a real request for this text through the whole pipeline (frontend, BERT, GPT, streaming
        /// decode by the default chunks): `ttfa_text_stream_ms` is the time to its first audio, reference and
        /// prompt transcript already cached (as in a server after the voice's first request)
        #[arg(long)]
        text: Option<String>,
        #[arg(long, default_value = "zh")]
        lang: String,
        /// Time the --text request this many times (after one run that fills the caches); the JSON reports each
        /// field's median and every run's time to first audio
        #[arg(long, default_value_t = 1)]
        text_repeat: usize,
        /// Reference for --text (default: the bundle's, else onnx/demo's)
        #[command(flatten)]
        voice: RefArgs,
        #[command(flatten)]
        rt: RtArgs,
    },
}

#[derive(Subcommand)]
enum VoicesCmd {
    /// Add a voice (the audio is decoded and checked to be 3-10 s; the folder is written atomically)
    Add {
        /// Voice name: letters, digits, - _ . (at most 64)
        name: String,
        /// Reference recording
        #[arg(long)]
        audio: PathBuf,
        /// Transcript of the recording
        #[arg(long)]
        text: String,
        /// Language of the transcript (zh, en, ja, yue, ko, auto, all_zh, ...)
        #[arg(long)]
        lang: String,
        /// Model the voice is meant for (a name the server loads)
        #[arg(long)]
        model: Option<String>,
        /// Extra reference (repeatable)
        #[arg(long)]
        aux: Vec<PathBuf>,
        /// Also compute and store the voice's features for this bundle now
        #[arg(long)]
        bundle: Option<PathBuf>,
        #[command(flatten)]
        rt: RtArgs,
    },
    /// List the voices
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a voice
    Rm { name: String },
    /// Compute and store every voice's features for a bundle (a read-only library then costs nothing at start)
    Warm {
        #[arg(long)]
        bundle: PathBuf,
        #[command(flatten)]
        rt: RtArgs,
    },
}

/// Computes (or finds stored) features of every given voice for `bundle`; prints one line per voice.
fn warm_voices(lib: &std::sync::Arc<gsv::voices::Library>, voices: &[std::sync::Arc<gsv::voices::Voice>], bundle: &Path, rt: &RtArgs) -> Result<()> {
    let mut engine = load_engine(bundle, rt, "auto")?;
    let sha = gsv::voices::bundle_sha256(bundle)?;
    engine.features().set_store(lib.clone(), sha.clone());
    for v in voices {
        let t0 = Instant::now();
        let already = v.has_features(&sha);
        engine.voice(&RefAudio::Path(v.audio_path()), &|| false).with_context(|| format!("voice {}", v.name()))?;
        for aux in v.aux_paths() {
            engine.voice(&RefAudio::Path(aux), &|| false).with_context(|| format!("voice {}", v.name()))?;
        }
        let what = if already { "features already stored" } else { "features computed and stored" };
        println!("{}: {what} for {} ({:.0} ms)", v.name(), bundle.display(), t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(())
}

fn voices_cmd(dir: &Path, cmd: VoicesCmd) -> Result<ExitCode> {
    let lib = std::sync::Arc::new(gsv::voices::Library::open(dir)?);
    match cmd {
        VoicesCmd::Add { name, audio, text, lang, model, aux, bundle, rt } => {
            let read = |p: &Path| -> Result<(Vec<u8>, Option<String>)> {
                Ok((std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?, p.file_name().map(|f| f.to_string_lossy().into_owned())))
            };
            let aux = aux.iter().map(|p| read(p)).collect::<Result<Vec<_>>>()?;
            let v = lib.add(gsv::voices::NewVoice { name, text, language: lang, model, audio: read(&audio)?, aux })?;
            println!("added {} in {}", v.name(), v.dir.display());
            if let Some(b) = bundle {
                warm_voices(&lib, &[v], &b, &rt)?;
            }
        }
        VoicesCmd::List { json } => {
            let list = lib.list();
            if json {
                println!("{}", serde_json::to_string_pretty(&list.iter().map(|v| v.to_json()).collect::<Vec<_>>())?);
            } else {
                for v in &list {
                    let model = v.meta.model.as_deref().map(|m| format!(" model={m}")).unwrap_or_default();
                    println!("{}\t{}\t{}{model}\t{}", v.name(), v.meta.language, v.meta.created_at, v.meta.text);
                }
                eprintln!("{} voice(s) in {}", list.len(), dir.display());
            }
        }
        VoicesCmd::Rm { name } => {
            lib.remove(&name)?;
            println!("removed {name}");
        }
        VoicesCmd::Warm { bundle, rt } => warm_voices(&lib, &lib.list(), &bundle, &rt)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Session options and precision choices from the flags; a precision flag not given is `fallback`
/// (`auto` for synth and bench, `fp32` for parity, which compares with golden fp32 values).
fn engine_options(rt: &RtArgs, fallback: &str) -> Result<EngineOptions> {
    let choice = |flag: &Option<String>| parse_choice(flag.as_deref().unwrap_or(fallback));
    Ok(EngineOptions {
        session: SessionOptions {
            device: Device::parse(&rt.device)?,
            strict: rt.strict_device,
            intra_threads: rt.intra_threads,
            inter_threads: rt.inter_threads,
            opt_level: OptLevel::parse(&rt.opt_level)?,
            skip_integrity: rt.skip_integrity,
            prepacked: None,
            spin: Spin::parse(&rt.ort_spin)?,
        },
        precision: Precisions { gpt: choice(&rt.gpt_precision)?, bert: choice(&rt.bert_precision)?, vocoder: choice(&rt.vocoder_precision)? },
    })
}

/// A language flag or batch field, parsed once.
fn language(code: &str) -> Result<Language> {
    Language::from_api(code).with_context(|| format!("unknown language {code:?} (expected zh, ja, en, all_zh, all_ja, auto)"))
}

fn load_engine(bundle: &Path, rt: &RtArgs, fallback: &str) -> Result<Engine> {
    let opts = engine_options(rt, fallback)?;
    let runtime = Runtime::init(rt.ort_lib.as_deref())?;
    Ok(Engine::load(&runtime, bundle, &opts)?)
}

/// One synthesis job (a CLI call, or one line of a batch file).
#[derive(serde::Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Job {
    text: String,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default, rename = "ref")]
    reference: Option<PathBuf>,
    #[serde(default)]
    ref_text: Option<String>,
    #[serde(default)]
    ref_lang: Option<String>,
    #[serde(default)]
    out: Option<PathBuf>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    speed: Option<f64>,
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default)]
    cut: Option<u8>,
    /// Test case name in reports (default: the line number and the start of the text).
    #[serde(default)]
    name: Option<String>,
    // expectations (CI smoke tests): read by gsv::batch::Expect from the same line; declared so that
    // deny_unknown_fields accepts them
    #[allow(dead_code)]
    #[serde(default)]
    expect_sha256: Option<serde_json::Value>,
    #[allow(dead_code)]
    #[serde(default)]
    expect_bundle: Option<serde_json::Value>,
    #[allow(dead_code)]
    #[serde(default)]
    min_s: Option<serde_json::Value>,
    #[allow(dead_code)]
    #[serde(default)]
    max_s: Option<serde_json::Value>,
    #[allow(dead_code)]
    #[serde(default)]
    expect_error: Option<serde_json::Value>,
}

fn job_request(a: &SynthArgs, engine: &Engine, job: &Job) -> Result<TtsRequest> {
    let demo = pipeline::demo_reference(&engine.bundle().dir, engine.manifest());
    let (rpath, rtext, rlang) = match (&job.reference, &demo) {
        (Some(p), _) => (
            p.clone(),
            job.ref_text.clone().context("--ref-text is required with --ref")?,
            job.ref_lang.clone().context("--ref-lang is required with --ref")?,
        ),
        (None, Some((p, t, l))) => (p.clone(), job.ref_text.clone().unwrap_or_else(|| t.clone()), job.ref_lang.clone().unwrap_or_else(|| l.clone())),
        (None, None) => bail!("--ref is required (this bundle has no default reference)"),
    };
    let lang = language(job.lang.as_deref().unwrap_or(&a.lang))?;
    let mut r = TtsRequest::new(&job.text, lang, RefAudio::Path(rpath), &rtext, language(&rlang)?);
    let cut = job.cut.unwrap_or(a.cut);
    if cut > 5 {
        bail!("cut must be 0..5 (api2's methods; 0 = no cut), got {cut}");
    }
    r.split = TextSplit::Api2(Api2Cut::from_number(cut as i64));
    r.top_k = job.top_k.or(a.top_k).unwrap_or(0);
    r.top_p = a.top_p;
    r.temperature = a.temperature;
    r.repetition_penalty = a.repetition_penalty;
    r.speed = job.speed.unwrap_or(a.speed);
    r.noise_scale = a.noise_scale;
    r.seed = job.seed.or(a.seed);
    if a.stream_chunk > 0 {
        r.stream = Some(StreamParams { chunk: a.stream_chunk, ..Default::default() });
    }
    Ok(r)
}

/// Runs one job and writes its WAV; returns its statistics and the sha256 of the file's bytes.
fn run_job(engine: &mut Engine, data: &FrontendData, req: &TtsRequest, out: &Path) -> Result<(TtsStats, String)> {
    let mut pcm: Vec<i16> = Vec::new();
    let st = engine.tts(data, req, &|| false, &mut |seg| {
        pcm.extend_from_slice(&seg.pcm);
        true
    })?;
    let bytes = gsv::wav::encode_pcm16(st.sample_rate, &pcm)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    Ok((st, gsv::reference::content_hash(&bytes).to_string()))
}

fn describe(st: &TtsStats) -> String {
    format!(
        "{:.2} s of audio, {} segment(s), {} tokens; frontend {:.0} ms, reference {:.0} ms{}, prefill {:.0} ms, {:.1} tokens/s, decode {:.0} ms, total {:.0} ms, RTF {:.3}, seed {}",
        st.audio_seconds(),
        st.segments,
        st.tokens,
        st.frontend_ms,
        st.reference_ms,
        if st.reference_cached { " (cached)" } else { "" },
        st.prefill_ms,
        st.tokens_per_s(),
        st.decode_ms,
        st.total_ms,
        st.rtf(),
        st.seed
    )
}

fn synth(a: SynthArgs) -> Result<ExitCode> {
    let data = FrontendData::global()?;
    match (&a.batch, &a.text) {
        (Some(_), Some(_)) => bail!("give either --text or --batch, not both"),
        (None, None) => bail!("give --text (or --batch jobs.jsonl)"),
        _ => {}
    }
    let mut engine = load_engine(&a.bundle, &a.rt, "auto")?;
    if let Some(text) = &a.text {
        let out = a.out.clone().context("--out is required")?;
        let job = Job { text: text.clone(), reference: a.voice.reference.clone(), ref_text: a.voice.ref_text.clone(), ref_lang: a.voice.ref_lang.clone(), ..Default::default() };
        let req = job_request(&a, &engine, &job)?;
        let (st, _) = run_job(&mut engine, data, &req, &out)?;
        eprintln!("wrote {}: {}", out.display(), describe(&st));
        return Ok(ExitCode::SUCCESS);
    }
    let batch = a.batch.clone().unwrap_or_default();
    let out_dir = a.out_dir.clone().context("--out-dir is required with --batch")?;
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let text = std::fs::read_to_string(&batch).with_context(|| format!("cannot read {}", batch.display()))?;
    run_batch(&a, &mut engine, data, &batch, &text, &out_dir)
}

/// `synth --batch`: one job per line, expectations checked ([`gsv::batch`]), a progress bar on a terminal, an
/// optional JUnit report and fixture rewrite.
fn run_batch(a: &SynthArgs, engine: &mut Engine, data: &FrontendData, batch: &Path, text: &str, out_dir: &Path) -> Result<ExitCode> {
    use gsv::batch::{check, Case, Expect, Outcome, Verdict};
    let bundle_sha = gsv::voices::bundle_sha256(&engine.bundle().dir).with_context(|| format!("cannot read {}/manifest.json", engine.bundle().dir.display()))?;
    let jobs: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#')).map(|(i, l)| (i + 1, l)).collect();
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(jobs.len() as u64),
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) { indicatif::ProgressDrawTarget::stderr() } else { indicatif::ProgressDrawTarget::hidden() },
    );
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} jobs, {elapsed} elapsed, ~{eta} left {msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut rewritten = 0usize;
    let mut cases = Vec::new();
    for (n, line) in jobs {
        let t0 = Instant::now();
        bar.set_message(format!("line {n}"));
        let parsed = serde_json::from_str::<serde_json::Value>(line)
            .map_err(|e| anyhow::anyhow!("line {n}: not a job object: {e}"))
            .and_then(|v| Ok((serde_json::from_value::<Job>(v.clone()).with_context(|| format!("line {n}: not a job object"))?, Expect::from_json(&v).map_err(|e| anyhow::anyhow!("line {n}: {e}"))?)));
        let (job, expect) = match parsed {
            Ok(x) => x,
            Err(e) => {
                let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
                let msg = msg.join(": ");
                bar.suspend(|| println!("FAIL line {n}: {msg}"));
                cases.push(Case { name: format!("line {n}"), line: n, seconds: 0.0, verdict: Verdict::Error(msg.clone()), output: msg });
                bar.inc(1);
                continue;
            }
        };
        let name = job.name.clone().unwrap_or_else(|| format!("line {n}: {}", job.text.chars().take(24).collect::<String>()));
        let seeded = job.seed.or(a.seed).is_some();
        let res = (|| -> Result<(PathBuf, TtsStats, String)> {
            if expect.sha256.is_some() && !seeded {
                bail!("expect_sha256 needs a seeded job (\"seed\" or --seed): unseeded audio differs on every run");
            }
            let out = out_dir.join(job.out.clone().unwrap_or_else(|| PathBuf::from(format!("{n:04}.wav"))));
            let req = job_request(a, engine, &job)?;
            let (st, sha) = run_job(engine, data, &req, &out)?;
            Ok((out, st, sha))
        })();
        let (verdict, output) = match &res {
            Ok((out, st, sha)) => {
                let v = check(&expect, &Outcome::Audio { sha256: sha, seconds: st.audio_seconds(), bundle: &bundle_sha }, a.update_fixtures);
                if a.update_fixtures && seeded && expect.error.is_none() && v == Verdict::Pass && (expect.sha256.as_deref() != Some(sha.as_str()) || expect.bundle.as_deref() != Some(bundle_sha.as_str())) {
                    lines[n - 1] = gsv::batch::rewrite_line(&lines[n - 1], sha, &bundle_sha);
                    rewritten += 1;
                }
                (v, format!("{}: {} sha256 {sha}", out.display(), describe(st)))
            }
            Err(e) => {
                let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
                let msg = msg.join(": ");
                (check(&expect, &Outcome::Error(&msg), a.update_fixtures), msg)
            }
        };
        bar.suspend(|| match &verdict {
            Verdict::Pass if res.is_ok() => println!("ok   line {n}: {output}"),
            Verdict::Pass => println!("ok   line {n}: failed as expected: {output}"),
            Verdict::Failure(m) => println!("FAIL line {n}: {m}"),
            Verdict::Error(m) => println!("FAIL line {n}: {m}"),
        });
        cases.push(Case { name, line: n, seconds: t0.elapsed().as_secs_f64(), verdict, output });
        bar.inc(1);
    }
    bar.finish_and_clear();
    if a.update_fixtures && rewritten > 0 {
        let mut body = lines.join("\n");
        if text.ends_with('\n') {
            body.push('\n');
        }
        let tmp = batch.with_extension("jsonl.tmp");
        std::fs::write(&tmp, body).and_then(|_| std::fs::rename(&tmp, batch)).with_context(|| format!("cannot rewrite {}", batch.display()))?;
        eprintln!("updated {rewritten} expectation(s) in {}", batch.display());
    }
    if let Some(path) = &a.junit {
        let suite = batch.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "batch".into());
        let props = [
            ("bundle", engine.bundle().dir.display().to_string()),
            ("bundle_sha256", bundle_sha.clone()),
            ("intra_threads", a.rt.intra_threads.to_string()),
            ("gsv_version", env!("CARGO_PKG_VERSION").to_string()),
        ];
        let xml = gsv::batch::junit(&suite, &batch.display().to_string(), &props, &cases, &gsv::voices::rfc3339(std::time::SystemTime::now()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, xml).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let ok = cases.iter().filter(|c| c.verdict == Verdict::Pass).count();
    let failed = cases.len() - ok;
    println!("{ok} passed, {failed} failed");
    Ok(if failed == 0 && ok > 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Serve(a) => {
            gsv::http::run(a)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Synth(a) => synth(a),
        Cmd::Voices { voices, cmd } => voices_cmd(&voices, cmd),
        Cmd::Phonemize { lang, version, text } => {
            let v = match version.as_str() {
                "v1" => SymbolVersion::V1,
                "v2" => SymbolVersion::V2,
                other => bail!("--version must be v1 or v2, not {other:?}"),
            };
            let p = gsv::text::phonemize(&text, &lang, v)?;
            println!("{}", serde_json::to_string_pretty(&p)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::BenchStreams { bundle, scheduler, streams, workers, tokens, batch_kv_rows, voice, rt } => {
            if streams == 0 || tokens == 0 {
                bail!("--streams and --tokens must be at least 1");
            }
            let sched = gsv::engine::pool::Scheduler::parse(&scheduler, streams, batch_kv_rows).map_err(|e| anyhow::anyhow!(e))?;
            let opts = engine_options(&rt, "auto")?;
            let runtime = Runtime::init(rt.ort_lib.as_deref())?;
            let m = gsv::bundle::Bundle::open(&bundle)?;
            let demo = pipeline::demo_reference(&m.dir, &m.manifest)
                .or_else(|| gsv::bundle::Bundle::open(Path::new("onnx/demo")).ok().and_then(|b| pipeline::demo_reference(&b.dir, &b.manifest)));
            let reference = match (voice.reference, demo) {
                (Some(p), _) => (p, voice.ref_text.context("--ref-text is required with --ref")?, language(&voice.ref_lang.context("--ref-lang is required with --ref")?)?),
                (None, Some((p, t, l))) => (p, voice.ref_text.unwrap_or(t), language(&voice.ref_lang.unwrap_or(l))?),
                (None, None) => bail!("--ref is required (no default reference found)"),
            };
            let a = streams::StreamsArgs { scheduler: sched, workers, streams, tokens, reference };
            println!("{}", streams::run(runtime, opts, &bundle, &a)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Parity { bundle, golden, rt } => {
            let g = parity::Golden::open(&golden)?;
            let mut engine = load_engine(&bundle, &rt, "fp32")?;
            let mut checks = parity::run(&mut engine, &g, &mut |c| println!("{c}"));
            // the text frontend: the set's own text arrays (every set), and its text_frontend cases where it has them
            // (the v2Pro set has none: the v2 set's apply unchanged, its README says)
            let text_checks = match gsv::text::FrontendData::global() {
                Ok(data) => {
                    checks.extend(parity::run_text(&mut engine, &g, data, &mut |c| println!("{c}")));
                    if golden.join("text_frontend").is_dir() {
                        gsv::text::golden::check(data, &golden)
                    } else {
                        vec![]
                    }
                }
                Err(e) => vec![gsv::text::golden::TextCheck { name: "frontend data".into(), pass: false, detail: e.to_string() }],
            };
            text_checks.iter().for_each(|c| println!("{c}"));
            let passed = checks.iter().filter(|c| c.pass).count() + text_checks.iter().filter(|c| c.pass).count();
            let failed = checks.len() + text_checks.len() - passed;
            println!("{passed} passed, {failed} failed");
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::Bench { bundle, tokens, json, text: req_text, lang, text_repeat, voice, rt } => {
            if tokens == 0 {
                bail!("--tokens must be at least 1");
            }
            let lang = language(&lang)?;
            let mut engine = load_engine(&bundle, &rt, "auto")?;
            let m = engine.manifest().clone();
            // Synthetic inputs: 40 phones (zero BERT), 100 prompt codes, deterministic values; the first 20 phones
            // are the segment the decoder speaks, the speaker vector a constant.
            let n = 40usize;
            let ids: Vec<i64> = (0..n).map(|i| 1 + (i as i64 * 37) % (m.gpt.phoneme_vocab_size as i64 - 1)).collect();
            let prompt: Vec<i64> = (0..100).map(|i| (i as i64 * 131) % m.sovits.codebook_size as i64).collect();
            let bert = zero_bert(m.bert_hidden(), n);
            let input = GptInput { phone_ids: &ids, bert: bert.view(), prompt: &prompt };
            let speaker = Speaker { ge: vec![0.1f32; m.sovits.gin_channels] };
            let text: Vec<i64> = ids[..n / 2].to_vec();
            let dp = DecodeParams { noise_scale: 0.5, speed: 1.0, seed: 0 };
            let cfg = GenerateConfig {
                params: SamplingParams { top_k: 15, top_p: 1.0, temperature: 1.0, repetition_penalty: 1.35 },
                seed: 0,
                early_stop_num: tokens as i64 - 1,
                ignore_eos: true,
                ..Default::default()
            };
            // the request path of one segment, decoded whole (what the server does without streaming);
            // a short run first warms both the GPT and the decoder
            let whole_run = |engine: &mut Engine, cfg: &GenerateConfig| {
                let mut sink = WholeSegment::new(&text, &speaker, dp, Int16Scale::Api2);
                engine.generate_segment(&input, cfg, &mut sink, &|| false, &mut |_, _, _| true)
            };
            whole_run(&mut engine, &GenerateConfig { early_stop_num: 9, ..cfg.clone() })?;
            let run = whole_run(&mut engine, &cfg)?;
            let (g, gpt_ms, voc_ms) = (&run.gen, run.gen_ms, run.decode_ms);
            let audio_s = run.speech_samples as f64 / m.sample_rate as f64;
            // time to first audio when streaming by token chunks (default StreamParams): prefill + the first
            // chunk's steps + its decode; reference features cached, text frontend excluded
            let ttfa_stream_ms = {
                let sp = StreamParams::default();
                let samples_per_token = engine.vocoder_mut().samples_per_token();
                let mut sink = TokenChunks::new(sp, samples_per_token, &text, &speaker, dp, Int16Scale::Api2);
                let cfg2 = GenerateConfig { early_stop_num: (sp.chunk + sp.lookahead) as i64 + 1, ..cfg.clone() };
                let mut first: Option<f64> = None;
                let t2 = Instant::now();
                engine.generate_segment(&input, &cfg2, &mut sink, &|| false, &mut |_, _, _| {
                    first.get_or_insert_with(|| t2.elapsed().as_secs_f64() * 1e3);
                    true
                })?;
                first.unwrap_or(f64::NAN)
            };
            let (voice_ms, text_run) = match &req_text {
                Some(t) => {
                    let (first, runs) = bench_text(&mut engine, t, lang, &voice, text_repeat.max(1))?;
                    (Some(first.reference_ms), Some(runs))
                }
                None => (None, None),
            };
            let ttfa_ms = gpt_ms + voc_ms;
            let tps = g.tokens.len() as f64 / (gpt_ms / 1e3);
            let rtf = (gpt_ms + voc_ms) / 1e3 / audio_s;
            let rss = peak_rss_kib().unwrap_or(0);
            let ms_step = g.timings.ms_per_step();
            let device = engine.gpt_device().name();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "tokens": g.tokens.len(), "prefill_ms": g.timings.prefill_ms, "ms_per_step": ms_step,
                        "tokens_per_s": tps, "vocoder_ms": voc_ms, "audio_s": audio_s,
                        "vocoder_ms_per_audio_s": voc_ms / audio_s, "rtf": rtf, "peak_rss_kib": rss,
                        "ttfa_ms": ttfa_ms, "ttfa_stream_ms": ttfa_stream_ms,
                        "voice_ms": voice_ms,
                        "text": text_run.as_ref().map(|runs| {
                            let med = |f: &dyn Fn(&TtsStats) -> f64| median(runs.iter().map(f).collect());
                            let ms_step = |r: &TtsStats| if r.steps > 0 { r.steps_ms / r.steps as f64 } else { 0.0 };
                            serde_json::json!({
                                "text": req_text, "lang": lang.code(), "chars": req_text.as_deref().map(|t| t.chars().count()),
                                "runs": runs.len(),
                                "ttfa_text_stream_ms": med(&|r| r.first_audio_ms),
                                "ttfa_all_ms": runs.iter().map(|r| r.first_audio_ms).collect::<Vec<_>>(),
                                "frontend_ms": med(&|r| r.frontend_ms), "bert_ms": med(&|r| r.bert_ms),
                                "g2p_ms": med(&|r| r.frontend_ms - r.bert_ms), "reference_ms": med(&|r| r.reference_ms),
                                "prefill_ms": med(&|r| r.first_prefill_ms), "first_audio_tokens": runs[0].first_audio_tokens,
                                "ms_per_step": med(&ms_step),
                                "steps_to_first_audio_ms": med(&|r| ms_step(r) * r.first_audio_tokens.saturating_sub(1) as f64),
                                "first_decode_ms": med(&|r| r.first_decode_ms),
                                "tokens": runs[0].tokens, "total_ms": med(&|r| r.total_ms),
                            })
                        }),
                        "device": device, "precision": engine.precision().to_json(),
                        "intra_op_spinning": rt.ort_spin.as_str(),
                    })
                );
            } else {
                println!("tokens              {}", g.tokens.len());
                println!("prefill             {:.2} ms", g.timings.prefill_ms);
                println!("step                {:.3} ms/step", ms_step);
                println!("tokens/s            {:.1}", tps);
                println!("vocoder             {:.1} ms for {:.2} s audio = {:.1} ms per audio s", voc_ms, audio_s, voc_ms / audio_s);
                println!("RTF (gpt+vocoder)   {:.4}", rtf);
                println!("first audio         {:.1} ms whole utterance, {:.1} ms streaming by {}-token chunks", ttfa_ms, ttfa_stream_ms, StreamParams::default().chunk);
                if let Some(v) = voice_ms {
                    println!("voice               {v:.1} ms to encode the reference once (then cached)");
                }
                if let Some(runs) = &text_run {
                    let med = |f: &dyn Fn(&TtsStats) -> f64| median(runs.iter().map(f).collect());
                    let r = &runs[0];
                    println!(
                        "text request        first audio {:.1} ms streaming, median of {} (frontend {:.1} ms of which BERT {:.1} ms, prefill {:.1} ms, {} tokens, first decode {:.1} ms)",
                        med(&|r| r.first_audio_ms),
                        runs.len(),
                        med(&|r| r.frontend_ms),
                        med(&|r| r.bert_ms),
                        med(&|r| r.first_prefill_ms),
                        r.first_audio_tokens,
                        med(&|r| r.first_decode_ms)
                    );
                }
                println!("peak RSS            {:.1} MiB", rss as f64 / 1024.0);
                println!("device              {device}");
                println!("precision           {}", engine.precision());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One real request through `Engine::tts` with streaming by the default chunks; the first run warms the
/// reference and prompt caches (its stats give the cost of encoding the voice once: decode, HuBERT, spectrogram,
/// for v2Pro the speaker-verification model, ref_enc), the next `repeat` runs are measured. Tokens are capped at 50
/// (the random benchmark models rarely stop by themselves); the time to first audio does not depend on the cap.
fn bench_text(engine: &mut Engine, text: &str, lang: Language, voice: &RefArgs, repeat: usize) -> Result<(TtsStats, Vec<TtsStats>)> {
    let (reference, ref_text, ref_lang) = (voice.reference.as_deref(), voice.ref_text.as_deref(), voice.ref_lang.as_deref());
    let data = FrontendData::global()?;
    let demo = pipeline::demo_reference(&engine.bundle().dir, engine.manifest())
        .or_else(|| gsv::bundle::Bundle::open(Path::new("onnx/demo")).ok().and_then(|b| pipeline::demo_reference(&b.dir, &b.manifest)));
    let (rpath, rtext, rlang) = match (reference, demo) {
        (Some(p), _) => (
            p.to_path_buf(),
            ref_text.context("--ref-text is required with --ref")?.to_string(),
            ref_lang.context("--ref-lang is required with --ref")?.to_string(),
        ),
        (None, Some((p, t, l))) => (p, ref_text.map(str::to_string).unwrap_or(t), ref_lang.map(str::to_string).unwrap_or(l)),
        (None, None) => bail!("--ref is required for --text (no default reference found)"),
    };
    let mut r = TtsRequest::new(text, lang, RefAudio::Path(rpath), &rtext, language(&rlang)?);
    r.stream = Some(StreamParams::default());
    r.seed = Some(0);
    r.early_stop_num = Some(50);
    let mut run = || engine.tts(data, &r, &|| false, &mut |_| true);
    let first = run()?;
    let runs = (0..repeat).map(|_| Ok(run()?)).collect::<Result<Vec<_>>>()?;
    Ok((first, runs))
}

/// The median (the lower middle of an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(gsv::http::args::route_argv(std::env::args().collect()));
    // Command-line tools die quietly on a closed stdout (`gsv phonemize ... | head`) instead of panicking inside
    // println!. Not the server: there a peer that hangs up must be an EPIPE error, never a signal.
    #[cfg(unix)]
    if !matches!(cli.cmd, Cmd::Serve(_)) {
        // SAFETY: called before any thread is spawned; SIG_DFL is a valid disposition for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // the server logs one line per request by default; the other commands only warnings
    // symphonia logs probe failures as errors; they become our own typed errors instead
    const QUIET: &str = "symphonia_core=off,symphonia=off,symphonia_bundle_mp3=off,symphonia_format_ogg=off";
    let default_filter = if matches!(cli.cmd, Cmd::Serve(_)) { format!("info,ort=warn,{QUIET}") } else { format!("warn,{QUIET}") };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GSV_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // log lines carry client text (paths, ids): control characters are escaped so that no request can forge a line
    // or send terminal escapes to the operator's console (hence no ANSI colours either); `--log-format json` writes
    // one JSON object per line with the request id of the span
    let json_logs = match &cli.cmd {
        Cmd::Serve(a) => match a.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                eprintln!("error: --log-format must be text or json, got {other:?}");
                return ExitCode::from(2);
            }
        },
        _ => false,
    };
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(gsv::logging::EscapingStderr).with_ansi(false);
    if json_logs {
        fmt.json().with_current_span(true).with_span_list(false).init();
    } else {
        fmt.init();
    }
    match run(cli) {
        Ok(c) => c,
        Err(e) => {
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", msg.join(": "));
            ExitCode::from(2)
        }
    }
}
