//! Bundle reading and validation (format in `export/BUNDLE.md`).
//!
//! Input: a bundle folder with `manifest.json` and the `.onnx` graphs. [`Bundle::open`] parses the manifest
//! (serde) and checks it against itself: format and version, every graph present with its file, the
//! symbol list's count and sha256 (`sha256("\n".join(symbols))`), EOS = vocab-1, `prod(upsample_rates)` =
//! hop, GPT K/V input/output counts = `n_layer`, and each graph's manifest input/output names against
//! [`expected_io`] (BUNDLE.md's table). [`Bundle::check_graph`] then compares the names, ranks and element
//! types a loaded session reports ([`crate::runtime::IoSpec`], plain data) with the same table, plus the
//! graph's `gsv.*` metadata. Every mismatch is a [`BundleError`] naming the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::runtime::IoSpec;

pub const FORMAT_VERSION: u32 = 2;

/// The seven graphs, in pipeline order.
pub const GRAPH_NAMES: [&str; 7] = ["hubert", "vq_encode", "bert", "gpt_prefill", "gpt_step", "ref_enc", "sovits_decode"];

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
    /// Optional: g2pW's polyphone model, added with `python -m export convert --g2pw DIR` (v2 bundles).
    #[serde(default)]
    pub g2pw: Option<G2pwInfo>,
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

/// The inputs of g2pW's graph as upstream feeds them: (name, element type, rank).
pub const G2PW_INPUTS: [(&str, &str, usize); 6] = [
    ("input_ids", "int64", 2),
    ("token_type_ids", "int64", 2),
    ("attention_mask", "int64", 2),
    ("phoneme_mask", "float32", 2),
    ("char_ids", "int64", 1),
    ("position_ids", "int64", 1),
];

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

pub fn expected_io(graph: &str, n_layer: usize) -> Option<(IoExpect, IoExpect)> {
    let e = |n: &str, t: &'static str, r: usize| (n.to_string(), t, r);
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
        if self.model_version != "v1" && self.model_version != "v2" {
            return Err(field("model_version", format!("expected v1 or v2, got {:?}", self.model_version)));
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
        if let Some(g) = &self.g2pw {
            if self.model_version == "v1" {
                return Err(field("g2pw", "a v1 bundle never asks g2pW (upstream's v1 Chinese frontend is pypinyin only)"));
            }
            if g.labels == 0 {
                return Err(field("g2pw.labels", "must be positive"));
            }
        }
        for name in GRAPH_NAMES {
            let entry = self.graphs.get(name).ok_or_else(|| field(&format!("graphs.{name}"), "missing"))?;
            let (ei, eo) = expected_io(name, g.n_layer).expect("known graph");
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

impl Bundle {
    /// Read and validate `<dir>/manifest.json`; check every graph file exists.
    pub fn open(dir: &Path) -> Result<Bundle> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| BundleError::Io { path: path.display().to_string(), msg: e.to_string() })?;
        let manifest = Manifest::from_json(&text, &path.display().to_string())?;
        manifest.validate()?;
        for name in GRAPH_NAMES {
            let p = dir.join(&manifest.graphs[name].file);
            if !p.is_file() {
                return Err(BundleError::MissingFile { graph: name.into(), path: p.display().to_string() });
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

    /// Compare a loaded `g2pw.onnx`'s inputs with [`G2PW_INPUTS`] and its first output with `[N, labels]` float32.
    pub fn check_g2pw(&self, inputs: &[IoSpec], outputs: &[IoSpec]) -> Result<()> {
        let io = |what: &str, expected: String, actual: String| BundleError::GraphIo { graph: "g2pw".into(), what: what.into(), expected, actual };
        let names: Vec<&str> = inputs.iter().map(|s| s.name.as_str()).collect();
        for (n, t, r) in G2PW_INPUTS {
            let a = inputs.iter().find(|s| s.name == n).ok_or_else(|| io("inputs", n.into(), format!("{names:?}")))?;
            if a.dtype != t || a.rank != Some(r) {
                return Err(io(&format!("input `{n}`"), format!("{t} rank {r}"), format!("{} rank {:?}", a.dtype, a.rank)));
            }
        }
        if inputs.len() != G2PW_INPUTS.len() {
            return Err(io("inputs", format!("{:?}", G2PW_INPUTS.map(|x| x.0)), format!("{names:?}")));
        }
        match outputs.first() {
            Some(o) if o.dtype == "float32" && o.rank == Some(2) => Ok(()),
            Some(o) => Err(io("first output", "float32 rank 2".into(), format!("{} rank {:?}", o.dtype, o.rank))),
            None => Err(io("outputs", "one".into(), "none".into())),
        }
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
        let (ei, eo) = expected_io(name, m.gpt.n_layer).ok_or_else(|| field(&format!("graphs.{name}"), "unknown graph"))?;
        for (what, exp, act, man) in [("inputs", &ei, inputs, &m.graphs[name].inputs), ("outputs", &eo, outputs, &m.graphs[name].outputs)] {
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
