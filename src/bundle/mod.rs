//! Bundle reading and validation (format in `export/BUNDLE.md`).
//!
//! Input: a bundle folder with `manifest.json`, `tokenizer.json` and the `.onnx` graphs. [`Bundle::open`] parses
//! the manifest (serde) and checks everything it declares before any request can see it: format and version,
//! model version, the symbol table (its version must be one gsv knows, its count and sha256
//! `sha256("\n".join(symbols))` must match the list), EOS = vocab-1, the K/V head size, `prod(upsample_rates)` =
//! hop, every graph entry's file and every precision variant's file present, and each graph's declared
//! input/output names against the [`GraphContract`] of the model struct that runs it ([`crate::engine::graph_contracts`]:
//! the contracts live next to the code, e.g. `gpt::Gpt::contracts`). [`Bundle::load_graph`] then loads one graph
//! in a [`Precision`] and compares the names, ranks and element types the session reports, and its `gsv.*`
//! metadata, with the same contract. Every mismatch is a [`BundleError`] naming the field.
//!
//! v2Pro / v2ProPlus bundles (issue 12) have an eighth graph, `sv` (32 kHz reference -> speaker-verification
//! embedding, declared by [`crate::reference::SpeakerVerifier`]), a `ref_enc` that also takes that embedding and
//! a decoder with one more output (`ge512`) (both declared by [`crate::vocoder::Vocoder`]), and a manifest `sv`
//! section ([`SvInfo`]) that [`Manifest::validate`] checks against the model (input `wav32k` at `sample_rate`,
//! 16 kHz inside the graph, v2 symbols). A v1/v2 manifest with an `sv` section is refused.
//!
//! Integrity: before a graph file is loaded, its sha256 is compared with the one the manifest records for it (the
//! exporter writes one per graph, variant and g2pW model); a mismatch is [`BundleError::Integrity`]. Each file is
//! hashed once per process ([`verify_file`] remembers files by path, device, inode, size and mtime), not once per
//! worker or reload. `SessionOptions::skip_integrity` (`--skip-integrity`) turns the check off; graphs whose manifest
//! entry has no sha256 (hand-made bundles) are loaded unchecked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::runtime::{Graph, IoSpec, Runtime, RuntimeError, SessionOptions};

pub const FORMAT_VERSION: u32 = 2;

/// Model versions whose speaker vector fuses a speaker-verification embedding.
pub const V2PRO_VERSIONS: [&str; 2] = ["v2Pro", "v2ProPlus"];
/// Rate of the speaker-verification model's own signal (inside the `sv` graph).
pub const SV_RATE: u32 = 16_000;

/// `true` for v2Pro and v2ProPlus.
pub fn is_v2pro(model_version: &str) -> bool {
    V2PRO_VERSIONS.contains(&model_version)
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read {path}: {msg}")]
    Io { path: String, msg: String },
    #[error("{path}: invalid manifest: {msg}")]
    Parse { path: String, msg: String },
    #[error("manifest field `{field}`: {msg}")]
    Field { field: String, msg: String },
    #[error("graph {graph}: file {path} not found")]
    MissingFile { graph: String, path: String },
    #[error("graph {graph}: {what} mismatch: expected {expected}, got {actual}")]
    GraphIo { graph: String, what: String, expected: String, actual: String },
    /// The file's sha256 differs from the manifest's: a corrupt or modified graph.
    #[error("graph {graph}: {file} does not match the sha256 recorded in manifest.json (corrupt or modified file; --skip-integrity loads it anyway)")]
    Integrity { graph: String, file: String },
    /// The precision asked for a stage (a flag, or the manifest's `quantization.preferred`) cannot be used.
    #[error("{stage} precision {precision}: {msg}")]
    Precision { stage: &'static str, precision: String, msg: String },
}

pub type Result<T> = std::result::Result<T, BundleError>;

/// Loading a graph fails on the bundle (a contract or file problem) or on the runtime (session, provider).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A graph's precision variant (`graphs.<name>.variants` in the manifest), parsed once from the flags
/// (`--gpt-precision`, `--bert-precision`, `--vocoder-precision`). `Fp32` is the main file. An `auto` choice (the
/// fastest variant that passed its gate) resolves to one of these at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    Fp32,
    /// `python -m export quantize` (int8 weights and activations).
    Int8,
    /// 4-bit weight-only GPT (`MatMulNBits`).
    Int4,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("precision must be auto, fp32, int8 or int4, not {0:?}")]
pub struct PrecisionError(pub String);

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Int8, Precision::Int4];

    pub fn parse(s: &str) -> std::result::Result<Precision, PrecisionError> {
        Precision::ALL.into_iter().find(|p| p.name() == s.trim().to_ascii_lowercase()).ok_or_else(|| PrecisionError(s.to_string()))
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
            Precision::Int4 => "int4",
        }
    }

    /// The manifest's variant key (`None`: the main file).
    pub fn variant(self) -> Option<&'static str> {
        match self {
            Precision::Fp32 => None,
            other => Some(other.name()),
        }
    }
}

/// A flag's value: `auto` (`None`: the bundle's `quantization.preferred`) or one precision.
pub fn parse_choice(s: &str) -> std::result::Result<Option<Precision>, PrecisionError> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    Precision::parse(s).map(Some)
}

/// A stage that may run a precision variant: its key in `quantization` / `quantization.preferred`, the graphs the
/// variant replaces, and the flag that chooses it. HuBERT, vq_encode and ref_enc always run fp32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Gpt,
    Bert,
    Vocoder,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Gpt, Stage::Bert, Stage::Vocoder];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Gpt => "gpt",
            Stage::Bert => "bert",
            Stage::Vocoder => "vocoder",
        }
    }

    /// The manifest graphs whose variant the stage's precision selects (all of them, or none).
    pub fn graphs(self) -> &'static [&'static str] {
        match self {
            Stage::Gpt => &["gpt_prefill", "gpt_step"],
            Stage::Bert => &["bert"],
            Stage::Vocoder => &["sovits_decode"],
        }
    }

    pub fn flag(self) -> &'static str {
        match self {
            Stage::Gpt => "--gpt-precision",
            Stage::Bert => "--bert-precision",
            Stage::Vocoder => "--vocoder-precision",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = PrecisionError;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Precision::parse(s)
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One input or output a graph must have: name, ONNX element type (`float32`, `int64`, `int32`), rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: &'static str,
    pub rank: usize,
}

/// What a model struct expects of one bundle graph (BUNDLE.md's table, declared next to the code that runs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphContract {
    /// The manifest's graph key, also stamped in the graph as `gsv.graph`.
    pub graph: &'static str,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl GraphContract {
    pub fn new(graph: &'static str) -> GraphContract {
        GraphContract { graph, inputs: Vec::new(), outputs: Vec::new() }
    }
    pub fn input(mut self, name: impl Into<String>, dtype: &'static str, rank: usize) -> GraphContract {
        self.inputs.push(TensorSpec { name: name.into(), dtype, rank });
        self
    }
    pub fn output(mut self, name: impl Into<String>, dtype: &'static str, rank: usize) -> GraphContract {
        self.outputs.push(TensorSpec { name: name.into(), dtype, rank });
        self
    }
    fn names(v: &[TensorSpec]) -> Vec<String> {
        v.iter().map(|t| t.name.clone()).collect()
    }
}

fn field(f: &str, msg: impl Into<String>) -> BundleError {
    BundleError::Field { field: f.into(), msg: msg.into() }
}

#[derive(Debug, Clone, Deserialize)]
pub struct GptInfo {
    pub n_layer: usize,
    pub n_head: usize,
    pub hidden_dim: usize,
    /// Head size of the step graph's K/V cache: `hidden_dim / n_head` rounded up to a multiple of 8
    /// (ONNX Runtime's GroupQueryAttention needs one; the extra channels are zeros).
    pub kv_head_dim: usize,
    pub vocab_size: usize,
    pub eos: i64,
    pub phoneme_vocab_size: usize,
    #[serde(default = "default_max_sec")]
    pub max_sec: u32,
    #[serde(default = "default_top_k")]
    pub top_k: u32,
    /// `gpt_step` (and its precision variants) takes a batch of sequences (`[B,1]` tokens, `[B]` positions and
    /// `seqlens_k`, `[B,H,C,Dk]` caches): what the batched engine needs. Absent in bundles exported before it.
    #[serde(default)]
    pub batched_step: bool,
}
fn default_max_sec() -> u32 {
    54
}
fn default_top_k() -> u32 {
    15
}

#[derive(Debug, Clone, Deserialize)]
pub struct SovitsInfo {
    pub inter_channels: usize,
    pub hidden_channels: usize,
    pub gin_channels: usize,
    pub upsample_rates: Vec<usize>,
    pub samples_per_frame: usize,
    pub ref_enc_bins: usize,
    #[serde(default)]
    pub semantic_frame_rate: String,
    pub codebook_size: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SymbolsInfo {
    pub version: String,
    pub count: usize,
    pub sha256: String,
    pub list: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GraphEntry {
    pub file: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    /// Alternative files with the same interface, e.g. `int8` for the GPT (written by `python -m export quantize`).
    #[serde(default)]
    pub variants: BTreeMap<String, GraphVariant>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GraphVariant {
    pub file: String,
    #[serde(default)]
    pub sha256: Option<String>,
    /// Whether the variant passed its quantisation gate (`false`: built with `--force`; absent: a bundle exported
    /// before the gates were recorded). A variant with `passed: false` is never loaded.
    #[serde(default)]
    pub passed: Option<bool>,
}

/// `quantization` (written by `python -m export quantize` / `convert`; BUNDLE.md, "Precision variants"): per stage
/// the variants tried with their measured error, and `preferred`, per stage the fastest variant that passed its gate.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Quantization {
    /// stage (`gpt`, `bert`, `vocoder`) -> precision name (`fp32`, `int8`, `int4`).
    #[serde(default)]
    pub preferred: BTreeMap<String, String>,
    /// stage -> variant -> record (gate figures, thresholds, speed), kept as written.
    #[serde(flatten)]
    pub records: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    #[serde(default)]
    pub name: Option<String>,
    pub model_version: String,
    pub sample_rate: u32,
    pub hop_length: usize,
    pub filter_length: usize,
    pub win_length: usize,
    pub token_rate_hz: u32,
    pub ssl_rate_hz: u32,
    pub hubert_rate: u32,
    #[serde(default)]
    pub ssl_dim: Option<usize>,
    pub gpt: GptInfo,
    pub sovits: SovitsInfo,
    pub symbols: SymbolsInfo,
    pub graphs: BTreeMap<String, GraphEntry>,
    #[serde(default)]
    pub precision: Option<String>,
    /// Absent in bundles exported before issue 15: every stage then defaults to fp32.
    #[serde(default)]
    pub quantization: Option<Quantization>,
    #[serde(default)]
    pub bert: Option<BertInfo>,
    /// Present in the demo bundle only: its default reference.
    #[serde(default)]
    pub demo: Option<DemoInfo>,
    /// Optional: g2pW's polyphone model, added with `python -m export convert --g2pw DIR` (v2 bundles).
    #[serde(default)]
    pub g2pw: Option<G2pwInfo>,
    /// v2Pro/v2ProPlus only: the speaker-verification graph's input contract.
    #[serde(default)]
    pub sv: Option<SvInfo>,
}

/// The `sv` section of a v2Pro/v2ProPlus manifest: the speaker-verification graph's input contract.
#[derive(Debug, Clone, Deserialize)]
pub struct SvInfo {
    /// Graph name (`sv`).
    pub graph: String,
    /// Input name (`wav32k`): the normalised reference at `input_rate`, the same signal the spectrogram uses.
    pub input: String,
    /// Rate of the input (the model's `sample_rate`, 32000).
    pub input_rate: u32,
    /// Rate the graph resamples to before the fbank (16000).
    pub rate: u32,
    /// Length of the `sv_emb` output (20480).
    pub embedding_dim: usize,
    /// Shortest input that yields one fbank frame.
    pub min_input_samples: usize,
}

/// The `g2pw` entry: upstream's `G2PWModel` folder as the bundle carries it (files relative to the bundle).
#[derive(Debug, Clone, Deserialize)]
pub struct G2pwInfo {
    /// `g2pw.onnx` (upstream's `g2pW.onnx`, copied unchanged).
    pub file: String,
    #[serde(default)]
    pub sha256: Option<String>,
    /// Copies of the model folder's POLYPHONIC_CHARS.txt, MONOPHONIC_CHARS.txt, bopomofo_to_pinyin_wo_tune_dict.json.
    pub polyphonic_chars: String,
    pub monophonic_chars: String,
    pub bopomofo_to_pinyin: String,
    /// The model folder's `config.py` flags (upstream's defaults when absent).
    #[serde(default = "default_true")]
    pub use_mask: bool,
    #[serde(default)]
    pub use_char_phoneme: bool,
    /// Number of labels (the model's output width).
    pub labels: usize,
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct BertInfo {
    pub hidden: usize,
    #[serde(default)]
    pub layer: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemoInfo {
    pub reference: DemoReference,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemoReference {
    pub file: String,
    pub text: String,
    pub language: String,
}

impl Manifest {
    /// SSL (HuBERT) feature size: 768 for chinese-hubert-base; the demo bundle shrinks it.
    pub fn ssl_dim(&self) -> usize {
        self.ssl_dim.unwrap_or(768)
    }
    /// BERT hidden size: 1024 for chinese-roberta-wwm-ext-large; the demo bundle shrinks it.
    pub fn bert_hidden(&self) -> usize {
        self.bert.as_ref().map(|b| b.hidden).unwrap_or(1024)
    }
    /// Rows of the reference spectrogram: n_fft / 2 + 1 (1025).
    pub fn spec_bins(&self) -> usize {
        self.filter_length / 2 + 1
    }

    /// The precision `stage` runs in. `choice` (a flag) wins when given; `None` takes `quantization.preferred`
    /// (fp32 when the bundle has none, as bundles exported before issue 15). A precision other than fp32 must exist
    /// as a variant of every graph of the stage and must not have failed its gate (`passed: false`, a `--force`d
    /// build): otherwise this is an error naming the flag or the manifest field, at load, never a silent fallback.
    pub fn resolve_precision(&self, stage: Stage, choice: Option<Precision>) -> Result<Precision> {
        let (precision, from) = match choice {
            Some(p) => (p, stage.flag().to_string()),
            None => match self.quantization.as_ref().and_then(|q| q.preferred.get(stage.name())) {
                None => return Ok(Precision::Fp32),
                Some(name) => {
                    let p = Precision::parse(name).map_err(|e| field(&format!("quantization.preferred.{}", stage.name()), e.to_string()))?;
                    (p, format!("quantization.preferred.{} of the bundle", stage.name()))
                }
            },
        };
        let Some(v) = precision.variant() else { return Ok(Precision::Fp32) };
        let err = |msg: String| BundleError::Precision { stage: stage.name(), precision: precision.name().into(), msg: format!("{msg} (asked by {from})") };
        for g in stage.graphs() {
            let entry = self.graphs.get(*g).ok_or_else(|| field(&format!("graphs.{g}"), "missing"))?;
            match entry.variants.get(v) {
                None => {
                    let have: Vec<&str> = entry.variants.keys().map(String::as_str).collect();
                    let have = if have.is_empty() { "none".to_string() } else { have.join(", ") };
                    return Err(err(format!(
                        "graphs.{g}.variants.{v} is not in this bundle (variants of {g}: {have}; `python -m export quantize --all` builds the gated ones; fp32 always works)"
                    )));
                }
                Some(e) if e.passed == Some(false) => {
                    return Err(err(format!(
                        "the {v} variant of graph {g} did not pass its quantisation gate (forced build; see quantization.{}.{v} in manifest.json; fp32 always works)",
                        stage.name()
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(precision)
    }

    /// One line on the measured error of `stage` in `precision` from `quantization.<stage>.<precision>`
    /// (GPT: the distributional gate's figures; BERT: relative L2; vocoder: SNR), `None` for fp32 or no record.
    pub fn precision_error(&self, stage: Stage, precision: Precision) -> Option<String> {
        let rec = self.quantization.as_ref()?.records.get(stage.name())?.get(precision.variant()?)?;
        let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64());
        match stage {
            Stage::Gpt => {
                let gate = rec.get("gate")?;
                let parts: Vec<String> = ["bundle", "golden"]
                    .iter()
                    .filter_map(|set| {
                        let g = gate.get(*set)?;
                        Some(format!(
                            "{set}: mean TV {:.4}, p99 TV {:.4}, mean KL {:.2e}, greedy agreement {:.3}",
                            num(g, "mean_tv")?,
                            num(g, "p99_tv")?,
                            num(g, "mean_kl")?,
                            num(g, "greedy_agreement").unwrap_or(f64::NAN)
                        ))
                    })
                    .collect();
                (!parts.is_empty()).then(|| parts.join("; "))
            }
            Stage::Bert => Some(format!("rel L2 {:.2}%", num(rec, "rel_l2_error")? * 100.0)),
            Stage::Vocoder => Some(format!("SNR {:.1} dB", num(rec, "snr_db")?)),
        }
    }

    /// `true` for a v2Pro/v2ProPlus bundle (a speaker-verification graph feeds the reference encoder).
    pub fn is_v2pro(&self) -> bool {
        is_v2pro(&self.model_version)
    }
}

/// A parsed, self-consistent bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// Files whose sha256 was already checked in this process: (path, device, inode, size, mtime) -> hash.
type Verified = std::collections::HashMap<(PathBuf, u64, u64, u64, i64, i64), String>;
static VERIFIED: std::sync::OnceLock<std::sync::Mutex<Verified>> = std::sync::OnceLock::new();

/// Compares the sha256 of `file` with `expected` (hex, any case): [`BundleError::Integrity`] when they differ. A file
/// already found good in this process (same path, device, inode, size and mtime) is not hashed again.
pub fn verify_file(graph: &str, file: &Path, expected: &str) -> Result<()> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let io = |e: std::io::Error| BundleError::Io { path: file.display().to_string(), msg: e.to_string() };
    let mut f = std::fs::File::open(file).map_err(io)?;
    let md = f.metadata().map_err(io)?;
    let key = (file.to_path_buf(), md.dev(), md.ino(), md.len(), md.mtime(), md.mtime_nsec());
    let expected = expected.to_ascii_lowercase();
    let cache = VERIFIED.get_or_init(Default::default);
    if cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) == Some(&expected) {
        return Ok(());
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if got != expected {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Err(BundleError::Integrity { graph: graph.to_string(), file: name });
    }
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, got);
    Ok(())
}

/// sha256 of the symbol list as the exporter computes it: `"\n".join(list)` in UTF-8, hex.
pub fn symbols_hash(list: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(list.join("\n").as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

impl Manifest {
    pub fn from_json(text: &str, path: &str) -> Result<Manifest> {
        serde_json::from_str(text).map_err(|e| BundleError::Parse { path: path.into(), msg: e.to_string() })
    }

    /// Self-consistency checks (no file access).
    pub fn validate(&self) -> Result<()> {
        if self.format != "gsv-bundle" {
            return Err(field("format", format!("expected \"gsv-bundle\", got {:?}", self.format)));
        }
        if self.format_version != FORMAT_VERSION {
            let hint = if self.format_version < FORMAT_VERSION { "; re-export it with this version's `python -m export convert` (same command, same checkpoints)" } else { "; use a newer gsv" };
            return Err(field("format_version", format!("this gsv reads version {FORMAT_VERSION}, the bundle is version {}{hint}", self.format_version)));
        }
        if !["v1", "v2"].contains(&self.model_version.as_str()) && !self.is_v2pro() {
            return Err(field("model_version", format!("expected v1, v2, v2Pro or v2ProPlus, got {:?}", self.model_version)));
        }
        let g = &self.gpt;
        if g.eos != g.vocab_size as i64 - 1 {
            return Err(field("gpt.eos", format!("must be vocab_size-1 = {}, got {}", g.vocab_size as i64 - 1, g.eos)));
        }
        if g.n_layer == 0 || g.hidden_dim == 0 || g.n_head == 0 || !g.hidden_dim.is_multiple_of(g.n_head) {
            return Err(field("gpt.hidden_dim", format!("{} must be a positive multiple of n_head {}", g.hidden_dim, g.n_head)));
        }
        let want_dk = (g.hidden_dim / g.n_head).div_ceil(8) * 8;
        if g.kv_head_dim != want_dk {
            return Err(field("gpt.kv_head_dim", format!("must be hidden_dim/n_head rounded up to a multiple of 8 = {want_dk}, got {}", g.kv_head_dim)));
        }
        let s = &self.symbols;
        if let Err(e) = crate::text::SymbolVersion::parse(&s.version) {
            return Err(field("symbols.version", e.to_string()));
        }
        if s.count != s.list.len() {
            return Err(field("symbols.count", format!("{} but the list has {} entries", s.count, s.list.len())));
        }
        let h = symbols_hash(&s.list);
        if !h.eq_ignore_ascii_case(&s.sha256) {
            return Err(field("symbols.sha256", format!("manifest says {}, the list hashes to {h}", s.sha256)));
        }
        // v1 GPTs have 512 phone embeddings for the 322 v1 symbols; fewer rows than symbols cannot work
        if g.phoneme_vocab_size < s.count {
            return Err(field("gpt.phoneme_vocab_size", format!("{} is smaller than symbols.count {}", g.phoneme_vocab_size, s.count)));
        }
        let prod: usize = self.sovits.upsample_rates.iter().product();
        if prod != self.hop_length {
            return Err(field("sovits.upsample_rates", format!("product {prod} differs from hop_length {}", self.hop_length)));
        }
        if self.sovits.samples_per_frame != self.hop_length {
            return Err(field("sovits.samples_per_frame", format!("{} differs from hop_length {}", self.sovits.samples_per_frame, self.hop_length)));
        }
        if let Some(g) = &self.g2pw {
            if self.model_version == "v1" {
                return Err(field("g2pw", "a v1 bundle never asks g2pW (upstream's v1 Chinese frontend is pypinyin only)"));
            }
            if g.labels == 0 {
                return Err(field("g2pw.labels", "must be positive"));
            }
        }
        if self.is_v2pro() {
            self.validate_sv()?;
        } else if self.sv.is_some() {
            return Err(field("sv", format!("a {} bundle has no speaker-verification model", self.model_version)));
        }
        self.check_declared(&crate::engine::graph_contracts(self))
    }

    /// Every contract's graph is declared, with the contract's input and output names.
    pub fn check_declared(&self, contracts: &[GraphContract]) -> Result<()> {
        let n_layer = self.gpt.n_layer;
        for c in contracts {
            let name = c.graph;
            let entry = self.graphs.get(name).ok_or_else(|| field(&format!("graphs.{name}"), "missing"))?;
            let (en, on) = (GraphContract::names(&c.inputs), GraphContract::names(&c.outputs));
            if sorted(&entry.inputs) != sorted(&en) {
                return Err(field(&format!("graphs.{name}.inputs"), format!("expected {en:?} (BUNDLE.md, n_layer={n_layer}), got {:?}", entry.inputs)));
            }
            if sorted(&entry.outputs) != sorted(&on) {
                return Err(field(&format!("graphs.{name}.outputs"), format!("expected {on:?} (BUNDLE.md, n_layer={n_layer}), got {:?}", entry.outputs)));
            }
        }
        Ok(())
    }

    /// The v2Pro `sv` section: present, naming the graph and input the contract expects, at the model's rate.
    fn validate_sv(&self) -> Result<()> {
        let sv = self.sv.as_ref().ok_or_else(|| field("sv", format!("missing: a {} bundle needs the speaker-verification section (re-export with `python -m export convert ... --sv`)", self.model_version)))?;
        if sv.graph != "sv" {
            return Err(field("sv.graph", format!("expected \"sv\", got {:?}", sv.graph)));
        }
        if sv.input != "wav32k" {
            return Err(field("sv.input", format!("expected \"wav32k\", got {:?}", sv.input)));
        }
        if sv.input_rate != self.sample_rate {
            return Err(field("sv.input_rate", format!("{} differs from sample_rate {}", sv.input_rate, self.sample_rate)));
        }
        if sv.rate != SV_RATE {
            return Err(field("sv.rate", format!("expected {SV_RATE}, got {}", sv.rate)));
        }
        if sv.embedding_dim == 0 {
            return Err(field("sv.embedding_dim", "must be positive"));
        }
        if self.symbols.version != "v2" {
            return Err(field("symbols.version", format!("{} models use the v2 symbols, got {:?}", self.model_version, self.symbols.version)));
        }
        Ok(())
    }
}

impl Bundle {
    /// Read and validate `<dir>/manifest.json`; check that every declared graph file and variant file exists.
    pub fn open(dir: &Path) -> Result<Bundle> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| BundleError::Io { path: path.display().to_string(), msg: e.to_string() })?;
        let manifest = Manifest::from_json(&text, &path.display().to_string())?;
        manifest.validate()?;
        for (name, g) in &manifest.graphs {
            let p = dir.join(&g.file);
            if !p.is_file() {
                return Err(BundleError::MissingFile { graph: name.clone(), path: p.display().to_string() });
            }
            for (v, e) in &g.variants {
                if Precision::parse(v).is_err() {
                    return Err(field(&format!("graphs.{name}.variants.{v}"), format!("unknown precision (gsv knows {})", Precision::ALL.map(Precision::name).join(", "))));
                }
                if !dir.join(&e.file).is_file() {
                    return Err(field(&format!("graphs.{name}.variants.{v}"), format!("file {} is missing", e.file)));
                }
            }
        }
        if let Some(g) = &manifest.g2pw {
            for (what, f) in [("g2pw.file", &g.file), ("g2pw.polyphonic_chars", &g.polyphonic_chars), ("g2pw.monophonic_chars", &g.monophonic_chars), ("g2pw.bopomofo_to_pinyin", &g.bopomofo_to_pinyin)] {
                if !dir.join(f).is_file() {
                    return Err(field(what, format!("file {f} is missing from the bundle")));
                }
            }
        }
        Ok(Bundle { dir: dir.to_path_buf(), manifest })
    }

    /// A file of the bundle (e.g. `tokenizer.json`), which must exist.
    pub fn file(&self, name: &str) -> Result<PathBuf> {
        let p = self.dir.join(name);
        if !p.is_file() {
            return Err(BundleError::MissingFile { graph: name.into(), path: p.display().to_string() });
        }
        Ok(p)
    }

    /// The file of graph `name` in `precision`.
    pub fn graph_file(&self, name: &str, precision: Precision) -> Result<PathBuf> {
        let entry = self.manifest.graphs.get(name).ok_or_else(|| field(&format!("graphs.{name}"), "missing"))?;
        match precision.variant() {
            None => Ok(self.dir.join(&entry.file)),
            Some(v) => {
                let e = entry.variants.get(v).ok_or_else(|| {
                    field(&format!("graphs.{name}.variants.{v}"), "this bundle has no such variant (python -m export quantize adds int8)")
                })?;
                Ok(self.dir.join(&e.file))
            }
        }
    }

    /// The sha256 the manifest records for graph `name` in `precision`, if any.
    pub fn graph_sha256(&self, name: &str, precision: Precision) -> Option<&str> {
        let entry = self.manifest.graphs.get(name)?;
        match precision.variant() {
            None => entry.sha256.as_deref(),
            Some(v) => entry.variants.get(v)?.sha256.as_deref(),
        }
    }

    /// Checks `file` (a path inside the bundle) against `sha256` unless `opts.skip_integrity` or no hash is recorded.
    pub fn verify(&self, graph: &str, file: &Path, sha256: Option<&str>, opts: &SessionOptions) -> Result<()> {
        match sha256 {
            Some(h) if !opts.skip_integrity => verify_file(graph, file, h),
            _ => Ok(()),
        }
    }

    /// Load the graph of `contract` in `precision` (after its integrity check) and check what the session reports
    /// against the contract.
    pub fn load_graph(&self, rt: &Runtime, contract: &GraphContract, precision: Precision, opts: &SessionOptions) -> std::result::Result<Graph, LoadError> {
        let file = self.graph_file(contract.graph, precision)?;
        self.verify(contract.graph, &file, self.graph_sha256(contract.graph, precision), opts)?;
        let g = rt.load(contract.graph, &file, opts)?;
        self.check_graph(contract, &g.inputs, &g.outputs, &g.metadata)?;
        Ok(g)
    }

    /// Compare a loaded graph's reported inputs/outputs (and `gsv.*` metadata) with the manifest and the contract.
    pub fn check_graph(&self, contract: &GraphContract, inputs: &[IoSpec], outputs: &[IoSpec], metadata: &[(String, String)]) -> Result<()> {
        let m = &self.manifest;
        let name = contract.graph;
        let entry = m.graphs.get(name).ok_or_else(|| field(&format!("graphs.{name}"), "missing"))?;
        for (what, exp, act, man) in [("inputs", &contract.inputs, inputs, &entry.inputs), ("outputs", &contract.outputs, outputs, &entry.outputs)] {
            let an: Vec<String> = act.iter().map(|s| s.name.clone()).collect();
            if sorted(&an) != sorted(man) {
                return Err(BundleError::GraphIo { graph: name.into(), what: format!("{what} names (onnx vs manifest)"), expected: format!("{man:?}"), actual: format!("{an:?}") });
            }
            for t in exp.iter() {
                let a = act.iter().find(|s| s.name == t.name).ok_or_else(|| BundleError::GraphIo {
                    graph: name.into(),
                    what: format!("{what} names"),
                    expected: t.name.clone(),
                    actual: format!("{an:?}"),
                })?;
                // fp16 bundles keep float32 I/O, so the dtype must match exactly.
                if a.dtype != t.dtype {
                    return Err(BundleError::GraphIo { graph: name.into(), what: format!("dtype of `{}`", t.name), expected: t.dtype.to_string(), actual: a.dtype.clone() });
                }
                if a.rank != Some(t.rank) {
                    return Err(BundleError::GraphIo { graph: name.into(), what: format!("rank of `{}`", t.name), expected: t.rank.to_string(), actual: format!("{:?}", a.rank) });
                }
            }
        }
        for (key, want) in [("gsv.graph", name.to_string()), ("gsv.format_version", FORMAT_VERSION.to_string()), ("gsv.model_version", m.model_version.clone())] {
            match metadata.iter().find(|(k, _)| k == key) {
                Some((_, v)) if *v == want => {}
                Some((_, v)) => return Err(BundleError::GraphIo { graph: name.into(), what: format!("metadata {key}"), expected: want, actual: v.clone() }),
                None => return Err(BundleError::GraphIo { graph: name.into(), what: format!("metadata {key}"), expected: want, actual: "absent".into() }),
            }
        }
        Ok(())
    }
}
