//! Bundle reading and validation (format in `export/BUNDLE.md`).
//!
//! Input: a bundle folder with `manifest.json` and the `.onnx` graphs. [`Bundle::open`] parses the manifest
//! (serde) and checks it against itself: format and version, every graph present with its file, the
//! symbol list's count and sha256 (`sha256("\n".join(symbols))`), EOS = vocab-1, `prod(upsample_rates)` =
//! hop, GPT K/V input/output counts = `n_layer`, and each graph's manifest input/output names against
//! [`expected_io`] (BUNDLE.md's table). [`Bundle::check_graph`] then compares the names, ranks and element
//! types a loaded session reports ([`crate::runtime::IoSpec`], plain data) with the same table, plus the
//! graph's `gsv.*` metadata. Every mismatch is a [`BundleError`] naming the field.
//!
//! v2Pro / v2ProPlus bundles (issue 12) have an eighth graph, `sv` (32 kHz reference -> speaker-verification
//! embedding), a `ref_enc` that also takes that embedding, a decoder with one more output (`ge512`) and a
//! manifest `sv` section ([`SvInfo`]); [`Manifest::validate`] checks all of it ([`expected_io_for`]). The
//! engine cannot run them yet: [`Bundle::open`] refuses them with a message saying so, while
//! [`Bundle::read`] (validation only) accepts them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::runtime::IoSpec;

pub const FORMAT_VERSION: u32 = 2;

/// The seven graphs of a v1/v2 bundle, in pipeline order.
pub const GRAPH_NAMES: [&str; 7] = ["hubert", "vq_encode", "bert", "gpt_prefill", "gpt_step", "ref_enc", "sovits_decode"];
/// The eight graphs of a v2Pro/v2ProPlus bundle, in pipeline order (`sv` feeds `ref_enc`).
pub const GRAPH_NAMES_V2PRO: [&str; 8] =
    ["hubert", "vq_encode", "bert", "gpt_prefill", "gpt_step", "sv", "ref_enc", "sovits_decode"];
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
}

pub type Result<T> = std::result::Result<T, BundleError>;

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
    #[serde(default)]
    pub bert: Option<BertInfo>,
    /// Present in the demo bundle only: its default reference.
    #[serde(default)]
    pub demo: Option<DemoInfo>,
    /// v2Pro/v2ProPlus only: the speaker-verification graph's contract.
    #[serde(default)]
    pub sv: Option<SvInfo>,
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
    /// `true` for a v2Pro/v2ProPlus bundle.
    pub fn is_v2pro(&self) -> bool {
        is_v2pro(&self.model_version)
    }
    /// The graphs this bundle must have, in pipeline order.
    pub fn graph_names(&self) -> &'static [&'static str] {
        if self.is_v2pro() {
            &GRAPH_NAMES_V2PRO
        } else {
            &GRAPH_NAMES
        }
    }
}

/// A parsed, self-consistent bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// Expected (name, element type, rank) of a graph's inputs and outputs, from BUNDLE.md.
/// (name, element type, rank)
pub type IoExpect = Vec<(String, &'static str, usize)>;

/// [`expected_io_for`] of a v1/v2 bundle.
pub fn expected_io(graph: &str, n_layer: usize) -> Option<(IoExpect, IoExpect)> {
    expected_io_for(graph, n_layer, "v2")
}

/// Expected inputs and outputs of `graph` in a bundle of `model_version` (BUNDLE.md's tables). v2Pro/v2ProPlus:
/// `sv` (wav32k -> sv_emb, wav16k, fbank), `ref_enc` (spec, sv_emb -> ge, ge_refenc, sv_proj), `sovits_decode`
/// with the extra output `ge512`.
pub fn expected_io_for(graph: &str, n_layer: usize, model_version: &str) -> Option<(IoExpect, IoExpect)> {
    let e = |n: &str, t: &'static str, r: usize| (n.to_string(), t, r);
    if is_v2pro(model_version) {
        match graph {
            "sv" => {
                return Some((
                    vec![e("wav32k", "float32", 2)],
                    vec![e("sv_emb", "float32", 2), e("wav16k", "float32", 2), e("fbank", "float32", 3)],
                ))
            }
            "ref_enc" => {
                return Some((
                    vec![e("spec", "float32", 3), e("sv_emb", "float32", 2)],
                    vec![e("ge", "float32", 3), e("ge_refenc", "float32", 3), e("sv_proj", "float32", 2)],
                ))
            }
            "sovits_decode" => {
                let (i, mut o) = expected_io_for(graph, n_layer, "v2")?;
                o.push(e("ge512", "float32", 3));
                return Some((i, o));
            }
            _ => {}
        }
    }
    let (i, o) = match graph {
        "hubert" => (vec![e("wav16k", "float32", 2)], vec![e("ssl", "float32", 3)]),
        "vq_encode" => (vec![e("ssl", "float32", 3)], vec![e("codes", "int64", 2), e("ssl_proj", "float32", 3)]),
        "bert" => (
            vec![e("input_ids", "int64", 2), e("attention_mask", "int64", 2), e("token_type_ids", "int64", 2)],
            vec![e("hidden", "float32", 3)],
        ),
        "gpt_prefill" => {
            let mut o = vec![e("logits", "float32", 2)];
            o.extend((0..n_layer).map(|i| e(&format!("k_{i}"), "float32", 3)));
            o.extend((0..n_layer).map(|i| e(&format!("v_{i}"), "float32", 3)));
            (vec![e("phone_ids", "int64", 2), e("bert", "float32", 3), e("prompt", "int64", 2)], o)
        }
        "gpt_step" => {
            // head-major cache [1, H, C, Dk], updated in place (BUNDLE.md, format 2)
            let mut i = vec![e("token", "int64", 2), e("position", "int64", 1), e("seqlens_k", "int32", 1), e("total_len", "int32", 0)];
            i.extend((0..n_layer).map(|l| e(&format!("past_k_{l}"), "float32", 4)));
            i.extend((0..n_layer).map(|l| e(&format!("past_v_{l}"), "float32", 4)));
            let mut o = vec![e("logits", "float32", 2)];
            o.extend((0..n_layer).map(|l| e(&format!("present_k_{l}"), "float32", 4)));
            o.extend((0..n_layer).map(|l| e(&format!("present_v_{l}"), "float32", 4)));
            (i, o)
        }
        "ref_enc" => (vec![e("spec", "float32", 3)], vec![e("ge", "float32", 3)]),
        "sovits_decode" => (
            vec![e("codes", "int64", 3), e("text", "int64", 2), e("ge", "float32", 3), e("noise_scale", "float32", 1), e("noise", "float32", 3)],
            vec![
                e("audio", "float32", 3),
                e("z", "float32", 3),
                e("m_p", "float32", 3),
                e("logs_p", "float32", 3),
                e("enc_p_x", "float32", 3),
                e("quantized", "float32", 3),
            ],
        ),
        _ => return None,
    };
    Some((i, o))
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
        if self.is_v2pro() {
            self.validate_sv()?;
        } else if self.sv.is_some() {
            return Err(field("sv", format!("a {} bundle has no speaker-verification model", self.model_version)));
        }
        for &name in self.graph_names() {
            let entry = self.graphs.get(name).ok_or_else(|| field(&format!("graphs.{name}"), "missing"))?;
            let (ei, eo) = expected_io_for(name, g.n_layer, &self.model_version)
                .ok_or_else(|| field(&format!("graphs.{name}"), "unknown graph"))?;
            let en: Vec<String> = ei.iter().map(|x| x.0.clone()).collect();
            let on: Vec<String> = eo.iter().map(|x| x.0.clone()).collect();
            if sorted(&entry.inputs) != sorted(&en) {
                return Err(field(&format!("graphs.{name}.inputs"), format!("expected {en:?} (BUNDLE.md, n_layer={}), got {:?}", g.n_layer, entry.inputs)));
            }
            if sorted(&entry.outputs) != sorted(&on) {
                return Err(field(&format!("graphs.{name}.outputs"), format!("expected {on:?} (BUNDLE.md, n_layer={}), got {:?}", g.n_layer, entry.outputs)));
            }
        }
        Ok(())
    }
}

impl Manifest {
    /// The v2Pro `sv` section: present, naming the graph and input the table expects, at the model's rate.
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
    /// Read and validate `<dir>/manifest.json`; check every graph file exists. v2Pro/v2ProPlus bundles are
    /// refused with a clear message: this build validates them ([`Bundle::read`]) but cannot run them yet.
    pub fn open(dir: &Path) -> Result<Bundle> {
        let b = Bundle::read(dir)?;
        if b.manifest.is_v2pro() {
            return Err(field(
                "model_version",
                format!(
                    "{} is a {} bundle; this gsv validates such bundles but cannot run them yet (the speaker-verification stage is not wired into the engine: issue 12); serve a v1 or v2 bundle",
                    dir.display(),
                    b.manifest.model_version
                ),
            ));
        }
        Ok(b)
    }

    /// [`Bundle::open`] without the runtime-support check: parse, validate, check that every graph file exists.
    pub fn read(dir: &Path) -> Result<Bundle> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| BundleError::Io { path: path.display().to_string(), msg: e.to_string() })?;
        let manifest = Manifest::from_json(&text, &path.display().to_string())?;
        manifest.validate()?;
        for &name in manifest.graph_names() {
            let p = dir.join(&manifest.graphs[name].file);
            if !p.is_file() {
                return Err(BundleError::MissingFile { graph: name.into(), path: p.display().to_string() });
            }
        }
        Ok(Bundle { dir: dir.to_path_buf(), manifest })
    }

    pub fn graph_path(&self, name: &str) -> PathBuf {
        self.dir.join(&self.manifest.graphs[name].file)
    }

    /// The file of graph `name` in precision `variant` (`None` or "fp32": the main file).
    pub fn graph_variant_path(&self, name: &str, variant: Option<&str>) -> Result<PathBuf> {
        match variant {
            None | Some("fp32") => Ok(self.graph_path(name)),
            Some(v) => {
                let e = self.manifest.graphs[name].variants.get(v).ok_or_else(|| {
                    field(&format!("graphs.{name}.variants.{v}"), "this bundle has no such variant (python -m export quantize adds int8)")
                })?;
                let p = self.dir.join(&e.file);
                if !p.is_file() {
                    return Err(field(&format!("graphs.{name}.variants.{v}"), format!("file {} is missing", e.file)));
                }
                Ok(p)
            }
        }
    }

    /// Compare a loaded graph's reported inputs/outputs (and `gsv.*` metadata) with the manifest and BUNDLE.md.
    pub fn check_graph(&self, name: &str, inputs: &[IoSpec], outputs: &[IoSpec], metadata: &[(String, String)]) -> Result<()> {
        let m = &self.manifest;
        let (ei, eo) = expected_io_for(name, m.gpt.n_layer, &m.model_version).ok_or_else(|| field(&format!("graphs.{name}"), "unknown graph"))?;
        let entry = m.graphs.get(name).ok_or_else(|| field(&format!("graphs.{name}"), "missing"))?;
        for (what, exp, act, man) in [("inputs", &ei, inputs, &entry.inputs), ("outputs", &eo, outputs, &entry.outputs)] {
            let an: Vec<String> = act.iter().map(|s| s.name.clone()).collect();
            if sorted(&an) != sorted(man) {
                return Err(BundleError::GraphIo { graph: name.into(), what: format!("{what} names (onnx vs manifest)"), expected: format!("{man:?}"), actual: format!("{an:?}") });
            }
            for (en, et, er) in exp.iter() {
                let a = act.iter().find(|s| &s.name == en).ok_or_else(|| BundleError::GraphIo {
                    graph: name.into(),
                    what: format!("{what} names"),
                    expected: en.clone(),
                    actual: format!("{an:?}"),
                })?;
                // fp16 bundles keep float32 I/O, so the dtype must match exactly.
                if a.dtype != *et {
                    return Err(BundleError::GraphIo { graph: name.into(), what: format!("dtype of `{en}`"), expected: et.to_string(), actual: a.dtype.clone() });
                }
                if a.rank != Some(*er) {
                    return Err(BundleError::GraphIo { graph: name.into(), what: format!("rank of `{en}`"), expected: er.to_string(), actual: format!("{:?}", a.rank) });
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
