//! `gsv` command line.
//!
//! * `gsv synth --bundle DIR (--ref WAV | --ref-arrays DIR) --phone-ids "1,2,3" --prompt-phone-ids "4,5" --out out.wav`
//!   BERT features are zeros until text/ is wired in (upstream does the same for non-Chinese text).
//!   `--ref-arrays DIR` reads `wav16k_padded.npy` and `refer_spec.npy` (golden layout) until reference/ is merged.
//! * `gsv parity --bundle DIR --golden DIR`: one `PASS|FAIL name max_err=.. tol=..` line per check, then
//!   `N passed, M failed`; exit code 1 on any failure.
//! * `gsv bench --bundle DIR [--tokens N] [--json]`: prefill ms, ms/step, tokens/s, vocoder ms per audio
//!   second, RTF, peak RSS.
//!
//! Common options: `--ort-lib PATH`, `--device cpu|cuda|coreml|mps|tensorrt`, `--strict-device`,
//! `--intra-threads N`, `--inter-threads N`, `--opt-level disable|basic|extended|all`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ndarray::Array2;

use gsv::engine::{npy, parity, zero_bert, Engine, ReferenceInput, Segment, SynthRequest};
use gsv::gpt::{GenerateConfig, SamplingParams};
use gsv::runtime::{Device, OptLevel, Runtime, SessionOptions};
use gsv::vocoder::{self, DecodeParams, Int16Scale};

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
}

#[derive(Subcommand)]
enum Cmd {
    /// Synthesize one utterance to a WAV file
    Synth {
        #[arg(long)]
        bundle: PathBuf,
        /// Reference recording (needs reference/, not wired yet)
        #[arg(long)]
        r#ref: Option<PathBuf>,
        /// Folder with wav16k_padded.npy and refer_spec.npy (precomputed reference)
        #[arg(long)]
        ref_arrays: Option<PathBuf>,
        /// Target phone ids, comma separated
        #[arg(long)]
        phone_ids: String,
        /// Prompt (reference text) phone ids, comma separated
        #[arg(long)]
        prompt_phone_ids: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 15)]
        top_k: usize,
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
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        rt: RtArgs,
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
    /// Measure speed
    Bench {
        #[arg(long)]
        bundle: PathBuf,
        /// Tokens to generate (EOS ignored)
        #[arg(long, default_value_t = 100)]
        tokens: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        rt: RtArgs,
    },
}

fn session_options(rt: &RtArgs) -> Result<SessionOptions> {
    Ok(SessionOptions {
        device: Device::parse(&rt.device)?,
        strict: rt.strict_device,
        intra_threads: rt.intra_threads,
        inter_threads: rt.inter_threads,
        opt_level: OptLevel::parse(&rt.opt_level)?,
    })
}

fn load_engine(bundle: &Path, rt: &RtArgs) -> Result<Engine> {
    let opts = session_options(rt)?;
    let runtime = Runtime::init(rt.ort_lib.as_deref())?;
    Ok(Engine::load(&runtime, bundle, &opts)?)
}

fn parse_ids(s: &str, what: &str) -> Result<Vec<i64>> {
    let v: Vec<i64> = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<i64>().with_context(|| format!("{what}: `{x}` is not an integer")))
        .collect::<Result<_>>()?;
    if v.is_empty() {
        bail!("{what}: no ids given");
    }
    Ok(v)
}

/// Decode a reference recording into (16 kHz padded samples, spectrogram). The reference/ module
/// (another branch) provides this; until it is merged this reports that it is not wired.
fn load_reference(path: &Path) -> Result<ReferenceInput> {
    bail!("reference decoding is not wired yet ({}): use --ref-arrays DIR with wav16k_padded.npy and refer_spec.npy", path.display())
}

fn load_reference_arrays(dir: &Path) -> Result<ReferenceInput> {
    let w = npy::read(&dir.join("wav16k_padded.npy"))?;
    let s = npy::read(&dir.join("refer_spec.npy"))?;
    let f = *s.shape.last().context("refer_spec.npy has no dimensions")?;
    let spec = Array2::from_shape_vec((1025, f), s.f32()).context("refer_spec.npy must be [1, 1025, F]")?;
    Ok(ReferenceInput { wav16k_padded: w.f32(), spec })
}

fn write_wav(path: &Path, pcm: &[i16], sr: u32) -> Result<()> {
    let spec = hound::WavSpec { channels: 1, sample_rate: sr, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).with_context(|| format!("cannot write {}", path.display()))?;
    for &s in pcm {
        w.write_sample(s)?;
    }
    w.finalize()?;
    Ok(())
}

fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Synth { bundle, r#ref, ref_arrays, phone_ids, prompt_phone_ids, out, top_k, top_p, temperature, repetition_penalty, speed, noise_scale, seed, rt } => {
            let reference = match (&r#ref, &ref_arrays) {
                (_, Some(d)) => load_reference_arrays(d)?,
                (Some(p), None) => load_reference(p)?,
                (None, None) => bail!("give --ref WAV or --ref-arrays DIR"),
            };
            let ids = parse_ids(&phone_ids, "--phone-ids")?;
            let pids = parse_ids(&prompt_phone_ids, "--prompt-phone-ids")?;
            let mut engine = load_engine(&bundle, &rt)?;
            let early = 50 * engine.bundle.manifest.gpt.max_sec as i64;
            let req = SynthRequest {
                reference,
                prompt: Segment { bert: zero_bert(engine.bundle.manifest.bert_hidden(), pids.len()), phone_ids: pids },
                segments: vec![Segment { bert: zero_bert(engine.bundle.manifest.bert_hidden(), ids.len()), phone_ids: ids }],
                gen: GenerateConfig {
                    params: SamplingParams { top_k, top_p, temperature, repetition_penalty },
                    seed,
                    early_stop_num: early,
                    ..Default::default()
                },
                decode: DecodeParams { noise_scale, speed, seed },
                int16: Int16Scale::Api2,
            };
            let o = engine.synthesize(&req)?;
            write_wav(&out, &o.audio_i16, o.sample_rate)?;
            let t = &o.timings;
            eprintln!(
                "wrote {} ({:.2} s at {} Hz): {} tokens, reference {:.0} ms, prefill {:.0} ms, {:.1} ms/step, decode {:.0} ms, total {:.0} ms",
                out.display(),
                o.audio_i16.len() as f64 / o.sample_rate as f64,
                o.sample_rate,
                t.tokens,
                t.reference_ms,
                t.prefill_ms,
                if t.steps > 0 { t.steps_ms / t.steps as f64 } else { 0.0 },
                t.decode_ms,
                t.total_ms
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Parity { bundle, golden, rt } => {
            let g = parity::Golden::open(&golden)?;
            let mut engine = load_engine(&bundle, &rt)?;
            let checks = parity::run(&mut engine, &g, &mut |c| println!("{c}"));
            let passed = checks.iter().filter(|c| c.pass).count();
            let failed = checks.len() - passed;
            println!("{passed} passed, {failed} failed");
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::Bench { bundle, tokens, json, rt } => {
            if tokens == 0 {
                bail!("--tokens must be at least 1");
            }
            let mut engine = load_engine(&bundle, &rt)?;
            let m = engine.bundle.manifest.clone();
            // Synthetic inputs: 40 phones (zero BERT), 100 prompt codes, deterministic values.
            let n = 40usize;
            let ids: Vec<i64> = (0..n).map(|i| 1 + (i as i64 * 37) % (m.gpt.phoneme_vocab_size as i64 - 1)).collect();
            let prompt: Vec<i64> = (0..100).map(|i| (i as i64 * 131) % m.sovits.codebook_size as i64).collect();
            let bert = zero_bert(engine.bundle.manifest.bert_hidden(), n);
            let cfg = GenerateConfig {
                params: SamplingParams { top_k: 15, top_p: 1.0, temperature: 1.0, repetition_penalty: 1.35 },
                seed: 0,
                early_stop_num: tokens as i64 - 1,
                ignore_eos: true,
                ..Default::default()
            };
            // warm-up
            let _ = engine.generate(&ids, bert.view(), &prompt, &GenerateConfig { early_stop_num: 2, ..cfg.clone() }, &mut |_| {})?;
            let t0 = Instant::now();
            let g = engine.generate(&ids, bert.view(), &prompt, &cfg, &mut |_| {})?;
            let gpt_ms = t0.elapsed().as_secs_f64() * 1e3;
            let ge = vec![0.1f32; m.sovits.gin_channels];
            let text: Vec<i64> = ids[..n / 2].to_vec();
            let dp = DecodeParams { noise_scale: 0.5, speed: 1.0, seed: 0 };
            let _ = vocoder::decode(&mut engine.sovits_decode, m.sovits.inter_channels, &g.tokens[..g.tokens.len().min(10)], &text, &ge, dp, None, false)?;
            let t1 = Instant::now();
            let d = vocoder::decode(&mut engine.sovits_decode, m.sovits.inter_channels, &g.tokens, &text, &ge, dp, None, false)?;
            let voc_ms = t1.elapsed().as_secs_f64() * 1e3;
            let audio_s = d.audio.len() as f64 / m.sample_rate as f64;
            let tps = g.tokens.len() as f64 / (gpt_ms / 1e3);
            let rtf = (gpt_ms + voc_ms) / 1e3 / audio_s;
            let rss = peak_rss_kib().unwrap_or(0);
            let ms_step = g.timings.ms_per_step();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "tokens": g.tokens.len(), "prefill_ms": g.timings.prefill_ms, "ms_per_step": ms_step,
                        "tokens_per_s": tps, "vocoder_ms": voc_ms, "audio_s": audio_s,
                        "vocoder_ms_per_audio_s": voc_ms / audio_s, "rtf": rtf, "peak_rss_kib": rss,
                        "device": engine.gpt_step.device.name()
                    })
                );
            } else {
                println!("tokens              {}", g.tokens.len());
                println!("prefill             {:.2} ms", g.timings.prefill_ms);
                println!("step                {:.3} ms/step", ms_step);
                println!("tokens/s            {:.1}", tps);
                println!("vocoder             {:.1} ms for {:.2} s audio = {:.1} ms per audio s", voc_ms, audio_s, voc_ms / audio_s);
                println!("RTF (gpt+vocoder)   {:.4}", rtf);
                println!("peak RSS            {:.1} MiB", rss as f64 / 1024.0);
                println!("device              {}", engine.gpt_step.device.name());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("GSV_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(c) => c,
        Err(e) => {
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", msg.join(": "));
            ExitCode::from(2)
        }
    }
}
