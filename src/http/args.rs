//! Command-line flags of `gsv serve` (also what a bare `gsv -dr ... -p ...` runs).
//!
//! api2.py takes single-dash, multi-letter options (`-dr`, `-dt`, `-dl`, `-fp`, `-hp`, `-hb`); clap only knows
//! one-letter short options, so [`normalize_argv`] rewrites those words to their long forms before clap sees
//! them (`-dr x` -> `--default_refer_path x`, `-dr=x` too). One-letter flags (`-s -g -d -a -p -b -c`) are
//! ordinary clap shorts. [`route_argv`] inserts the `serve` subcommand when the first argument is not a
//! subcommand, so `gsv -dr ref.wav -dt "..." -dl zh` and a bare `gsv` start the server as `python api2.py` does.

use std::path::PathBuf;

use clap::Args;

/// api2.py's multi-letter single-dash options and their long forms (api.py's `-sm`/`-mt`/`-st`/`-cp` too).
pub const SINGLE_DASH: &[(&str, &str)] = &[
    ("-dr", "--default_refer_path"),
    ("-dt", "--default_refer_text"),
    ("-dl", "--default_refer_language"),
    ("-fp", "--full_precision"),
    ("-hp", "--half_precision"),
    ("-hb", "--hubert_path"),
    ("-sm", "--stream_mode"),
    ("-mt", "--media_type"),
    ("-st", "--sub_type"),
    ("-cp", "--cut_punc"),
];

/// The subcommands `gsv` knows; anything else in first position means "serve".
pub const SUBCOMMANDS: &[&str] = &["serve", "bench-streams", "synth", "phonemize", "parity", "bench", "voices", "help"];

/// Rewrites api2's single-dash multi-letter options to their long forms. Words after `--` are left alone.
pub fn normalize_argv(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut rest = false;
    for a in args {
        if rest {
            out.push(a);
            continue;
        }
        if a == "--" {
            rest = true;
            out.push(a);
            continue;
        }
        let (head, tail) = match a.split_once('=') {
            Some((h, t)) => (h.to_string(), Some(t.to_string())),
            None => (a.clone(), None),
        };
        match SINGLE_DASH.iter().find(|(s, _)| *s == head) {
            Some((_, long)) => match tail {
                Some(t) => out.push(format!("{long}={t}")),
                None => out.push(long.to_string()),
            },
            None => out.push(a),
        }
    }
    out
}

/// `argv` (program name first) as clap should see it: api2 options normalised, and `serve` inserted when the
/// first argument is not a subcommand or a top-level `--help`/`--version`.
pub fn route_argv(argv: Vec<String>) -> Vec<String> {
    let mut it = argv.into_iter();
    let prog = it.next().unwrap_or_else(|| "gsv".into());
    let args: Vec<String> = it.collect();
    let first = args.first().map(String::as_str);
    let needs_serve = match first {
        None => true,
        Some(f) => !(SUBCOMMANDS.contains(&f) || matches!(f, "-h" | "--help" | "-V" | "--version")),
    };
    let mut out = vec![prog];
    if needs_serve {
        out.push("serve".into());
    }
    out.extend(normalize_argv(args));
    out
}

/// Flags of the server. The first block is api2.py's, with the same letters and long names.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// SoVITS model: an exported bundle folder (a .pth prints the `python -m export convert` command to run)
    #[arg(short = 's', long = "sovits_path", alias = "sovits-path")]
    pub sovits_path: Option<PathBuf>,
    /// GPT model: an exported bundle folder (same bundle as -s; a .ckpt prints the convert command)
    #[arg(short = 'g', long = "gpt_path", alias = "gpt-path")]
    pub gpt_path: Option<PathBuf>,
    /// Default reference audio (-dr), used when a request does not give all of path, text and language
    #[arg(long = "default_refer_path", alias = "default-refer-path")]
    pub default_refer_path: Option<String>,
    /// Transcript of the default reference (-dt)
    #[arg(long = "default_refer_text", alias = "default-refer-text")]
    pub default_refer_text: Option<String>,
    /// Language of the default reference (-dl)
    #[arg(long = "default_refer_language", alias = "default-refer-language")]
    pub default_refer_language: Option<String>,
    /// Execution provider: auto (cuda when built with it, else cpu), cpu, cuda[:N], mps (= coreml), tensorrt[:N];
    /// falls back to CPU unless --strict-device
    #[arg(short = 'd', long = "device", default_value = "auto")]
    pub device: String,
    /// Bind address
    #[arg(short = 'a', long = "bind_addr", alias = "bind-addr", default_value = "127.0.0.1")]
    pub bind_addr: String,
    /// Port (0 = any free port; the bound address is printed on stdout)
    #[arg(short = 'p', long = "port", default_value_t = 9880)]
    pub port: u16,
    /// Accepted for compatibility: fp32 is the default (-fp)
    #[arg(long = "full_precision", alias = "full-precision")]
    pub full_precision: bool,
    /// Accepted for compatibility: precision is chosen when exporting (`python -m export convert --fp16`) (-hp)
    #[arg(long = "half_precision", alias = "half-precision")]
    pub half_precision: bool,
    /// Accepted for compatibility: HuBERT is inside the bundle; used only in the printed convert command (-hb)
    #[arg(long = "hubert_path", alias = "hubert-path")]
    pub hubert_path: Option<String>,
    /// Accepted for compatibility: BERT is inside the bundle; used only in the printed convert command
    #[arg(short = 'b', long = "bert_path", alias = "bert-path")]
    pub bert_path: Option<String>,
    /// api2 cut method for `/` (1-5; anything else = no cut)
    #[arg(short = 'c', long = "cut", default_value_t = 5)]
    pub cut: i64,
    /// api.py stream mode for `/`: close (complete WAV, default) or normal (audio sent segment by segment) (-sm)
    #[arg(long = "stream_mode", alias = "stream-mode", default_value = "close")]
    pub stream_mode: String,
    /// api.py media type of `/` (-mt): wav, ogg, aac (+ mp3, flac, opus). Not given: wav, or ogg with `-sm normal`
    /// (api.py's rule)
    #[arg(long = "media_type", alias = "media-type")]
    pub media_type: Option<String>,
    /// api.py sample type (-st): only int16 is produced; accepted for compatibility
    #[arg(long = "sub_type", alias = "sub-type", default_value = "int16")]
    pub sub_type: String,
    /// api.py default cut punctuation (-cp): see `cut_punc` in the README
    #[arg(long = "cut_punc", alias = "cut-punc")]
    pub cut_punc: Option<String>,

    // ---- gsv extensions ----
    /// Fail at start-up when the chosen execution provider cannot start (instead of falling back to CPU)
    #[arg(long)]
    pub strict_device: bool,
    /// Path of libonnxruntime (default: ORT_DYLIB_PATH, then .ort/lib near the executable or the cwd)
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// GPT precision: auto (the bundle's fastest variant that passed its gate, `quantization.preferred`; fp32 when
    /// it has none), fp32, int8, int4 (a variant the bundle has and that passed its gate, else start-up fails)
    #[arg(long, default_value = "auto")]
    pub gpt_precision: String,
    /// BERT precision: auto, fp32, int8 (see --gpt-precision)
    #[arg(long, default_value = "auto")]
    pub bert_precision: String,
    /// SoVITS decoder precision: auto, fp32, int8 (see --gpt-precision)
    #[arg(long, default_value = "auto")]
    pub vocoder_precision: String,
    /// ONNX Runtime intra-op thread spinning: on or off (README, "Thread spinning")
    #[arg(long, default_value = crate::runtime::Spin::DEFAULT.as_str())]
    pub ort_spin: String,
    #[arg(long, default_value_t = 0)]
    pub intra_threads: usize,
    #[arg(long, default_value_t = 0)]
    pub inter_threads: usize,
    /// Graph optimisation: disable, basic, extended, all
    #[arg(long, default_value = "all")]
    pub opt_level: String,
    /// Allowed folder for reference audio paths sent by clients (repeatable); without it any readable path is allowed
    #[arg(long = "ref-root")]
    pub ref_root: Vec<PathBuf>,
    /// Require `Authorization: Bearer KEY` on every route but /health and /ready
    #[arg(long = "api-key")]
    pub api_key: Option<String>,
    /// Key of the admin routes (/set_model, /set_*_weights, /change_refer, /set_refer_audio, /control, /metrics);
    /// without it they need the --api-key (when one is set)
    #[arg(long = "admin-key")]
    pub admin_key: Option<String>,
    /// Allowed folder for model bundles named by /set_model and /set_*_weights (repeatable); default: the bundle
    /// folders given at start-up and onnx/
    #[arg(long = "model-root")]
    pub model_root: Vec<PathBuf>,
    /// Largest reference audio file in bytes (refused before reading); default: 10 s of 48 kHz stereo float WAV + slack
    #[arg(long = "max-ref-bytes", default_value_t = crate::reference::DEFAULT_MAX_REF_BYTES)]
    pub max_ref_bytes: u64,
    /// Seconds a client has to send its whole request body (408 after that)
    #[arg(long = "body-timeout-s", default_value_t = 30)]
    pub body_timeout_s: u64,
    /// A worker still busy this many seconds after its job's deadline is wedged: abandoned and replaced
    #[arg(long = "wedge-margin-s", default_value_t = 30)]
    pub wedge_margin_s: u64,
    /// Load graphs without checking their sha256 against the bundle's manifest.json
    #[arg(long)]
    pub skip_integrity: bool,
    /// Log format on stderr: text (one line per record, control characters escaped) or json (JSON lines)
    #[arg(long = "log-format", default_value = "text")]
    pub log_format: String,
    /// Requests that may wait for a worker; more get 429
    #[arg(long = "max-queue", default_value_t = 32)]
    pub max_queue: usize,
    /// Engine threads (--scheduler pool; default 1), each with its own GPT step, vocoder and K/V cache (BERT,
    /// HuBERT and the GPT prefill are shared). Giving it selects the pool under --scheduler auto
    #[arg(long)]
    pub workers: Option<usize>,
    /// Who runs the GPT: batched (one copy stepping every running request together; README "Batching"), pool (each
    /// worker its own copy, one request at a time), or auto: batched when the bundle has the batched step graph and
    /// --workers is not given, else pool
    #[arg(long, default_value = "auto")]
    pub scheduler: String,
    /// --scheduler batched: requests in the running batch (also the number of worker threads, which run each
    /// request's frontend and vocoder); more wait in the queue (--max-queue), then 429
    #[arg(long = "max-batch", default_value_t = 8)]
    pub max_batch: usize,
    /// --scheduler batched: K/V cache rows per sequence (phones + prompt codes + generated tokens); memory is
    /// max-batch x rows x 96 KiB for a full-size model
    #[arg(long = "batch-kv-rows", default_value_t = 2048)]
    pub batch_kv_rows: usize,
    /// Per-request limit in seconds (queue wait + synthesis); 0 = none
    #[arg(long = "timeout-s", default_value_t = 300)]
    pub timeout_s: u64,
    /// More models, selectable by name (OpenAI `model`, /set_model): NAME=DIR (repeatable)
    #[arg(long = "bundle")]
    pub bundle: Vec<String>,
    /// A named voice for /v1/audio/speech: NAME=WAV|TEXT|LANG (repeatable; an empty TEXT is a reference-free voice); "default" is the default reference
    #[arg(long = "voice")]
    pub voice: Vec<String>,
    /// Largest request body in bytes
    #[arg(long = "max-body", default_value_t = 1 << 20)]
    pub max_body: usize,
    /// Longest text in characters
    #[arg(long = "max-text", default_value_t = 10_000)]
    pub max_text: usize,
    /// Honour api.py's `speed` on `/` (by default `/` ignores it, as api2.py does: pyvideotrans sends 2.0 by accident)
    #[arg(long = "api-py-speed")]
    pub api_py_speed: bool,
    /// OpenAI route: refuse voice names that are not configured (default: any other name, OpenAI's `alloy` ...
    /// included, is the default voice)
    #[arg(long = "strict-voices")]
    pub strict_voices: bool,
    /// Skip the warm-up synthesis at start-up (otherwise a failed warm-up stops the server at start)
    #[arg(long)]
    pub no_warmup: bool,
    /// Voice library folder (voices/NAME/ with voice.json and the reference; managed by /voices and `gsv voices`)
    #[arg(long)]
    pub voices: Option<PathBuf>,
    /// Largest POST /voices upload in bytes (reference audio and fields together)
    #[arg(long = "max-upload", default_value_t = 16 << 20)]
    pub max_upload: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn single_dash_options_become_long() {
        assert_eq!(
            normalize_argv(v(&["-dr", "a.wav", "-dt=hi", "-dl", "zh", "-hp", "-p", "1", "-s", "x"])),
            v(&["--default_refer_path", "a.wav", "--default_refer_text=hi", "--default_refer_language", "zh", "--half_precision", "-p", "1", "-s", "x"])
        );
        assert_eq!(normalize_argv(v(&["--", "-dr"])), v(&["--", "-dr"]));
    }

    #[test]
    fn serve_is_the_default_subcommand() {
        assert_eq!(route_argv(v(&["gsv"])), v(&["gsv", "serve"]));
        assert_eq!(route_argv(v(&["gsv", "-dr", "r.wav"])), v(&["gsv", "serve", "--default_refer_path", "r.wav"]));
        assert_eq!(route_argv(v(&["gsv", "synth", "--text", "x"])), v(&["gsv", "synth", "--text", "x"]));
        assert_eq!(route_argv(v(&["gsv", "--help"])), v(&["gsv", "--help"]));
    }
}
