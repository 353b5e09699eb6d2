//! The speaker-verification model of v2Pro / v2ProPlus bundles (upstream's ERes2NetV2 `SV.compute_embedding3`).
//!
//! [`SpeakerVerifier`] owns the bundle's `sv` graph and declares its contract ([`SpeakerVerifier::contract`]):
//! * `sv`: `wav32k` `[1, S32]` f32 -> `sv_emb` `[1, D]` (D = `sv.embedding_dim`, 20480), plus `wav16k`
//!   `[1, ceil(S32/2)]` and `fbank` `[1, T, 80]` (intermediates, compared by `gsv parity`).
//!
//! The input is the normalised reference at the model rate that the spectrogram is computed from
//! ([`crate::reference::PreparedReference::wav32k`]: torchaudio sinc resampling of the decoded file, divided by
//! `min(2, max|x|)` when `max|x| > 1`), exactly what upstream's `TTS._get_ref_spec` hands to the SV model; the
//! graph resamples it to 16 kHz (torchaudio `Resample(32000, 16000)`) and computes the Kaldi fbank itself. It is
//! NOT HuBERT's 16 kHz signal (librosa/soxr). The embedding is computed once per voice and fused into the speaker
//! vector by `ref_enc` ([`crate::vocoder::Vocoder::speaker`]); it is not kept afterwards.

use ndarray::ArrayD;

use crate::bundle::{Bundle, GraphContract, LoadError, Manifest, Precision};
use crate::runtime::{Graph, Input, Runtime, RuntimeError, SessionOptions};

#[derive(Debug, thiserror::Error)]
pub enum SvError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The reference signal is too short for one fbank frame (a request error).
    #[error("reference signal too short for the speaker-verification model: {len} samples at {rate} Hz, at least {min} needed")]
    TooShort { len: usize, min: usize, rate: u32 },
    #[error("graph sv returned {what}")]
    Shape { what: String },
}

pub type Result<T> = std::result::Result<T, SvError>;

/// What one `sv` run returns when the intermediates are asked for (parity).
#[derive(Debug)]
pub struct SvOutputs {
    /// `[D]`
    pub sv_emb: Vec<f32>,
    /// `(name, array)` for `wav16k` `[1, S16]` and `fbank` `[1, T, 80]`.
    pub extras: Vec<(String, ArrayD<f32>)>,
}

/// The `sv` graph of a v2Pro/v2ProPlus bundle.
pub struct SpeakerVerifier {
    graph: Graph,
    /// `D` of `sv_emb`.
    dim: usize,
    /// Shortest input (samples at `input_rate`) that yields one fbank frame.
    min_input_samples: usize,
    input_rate: u32,
}

impl SpeakerVerifier {
    /// The graph this struct runs (BUNDLE.md, "v2Pro and v2ProPlus"); `None` for bundles without one (v1, v2).
    pub fn contract(m: &Manifest) -> Option<GraphContract> {
        m.is_v2pro().then(|| {
            GraphContract::new("sv").input("wav32k", "float32", 2).output("sv_emb", "float32", 2).output("wav16k", "float32", 2).output("fbank", "float32", 3)
        })
    }

    /// Loads `sv` (fp32) when the bundle has one (v2Pro/v2ProPlus), else `None`.
    pub fn load(rt: &Runtime, bundle: &Bundle, opts: &SessionOptions) -> std::result::Result<Option<SpeakerVerifier>, LoadError> {
        let m = &bundle.manifest;
        let (Some(contract), Some(info)) = (SpeakerVerifier::contract(m), m.sv.as_ref()) else {
            return Ok(None);
        };
        let graph = bundle.load_graph(rt, &contract, Precision::Fp32, opts)?;
        Ok(Some(SpeakerVerifier { graph, dim: info.embedding_dim, min_input_samples: info.min_input_samples, input_rate: info.input_rate }))
    }

    /// Length of the embedding (`sv.embedding_dim`).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The speaker-verification embedding `[D]` of the normalised model-rate reference `wav32k`.
    pub fn embedding(&mut self, wav32k: &[f32]) -> Result<Vec<f32>> {
        Ok(self.run(wav32k, false)?.sv_emb)
    }

    /// [`SpeakerVerifier::embedding`] and, with `extras`, the graph's 16 kHz signal and fbank.
    pub fn run(&mut self, wav32k: &[f32], extras: bool) -> Result<SvOutputs> {
        if wav32k.len() < self.min_input_samples.max(1) {
            return Err(SvError::TooShort { len: wav32k.len(), min: self.min_input_samples.max(1), rate: self.input_rate });
        }
        let outs = self.graph.run(&[Input::f32("wav32k", &[1, wav32k.len()], wav32k)])?;
        let (shape, emb) = outs.get::<f32>("sv_emb")?;
        if shape != [1, self.dim] {
            return Err(SvError::Shape { what: format!("sv_emb of shape {shape:?}, expected [1, {}]", self.dim) });
        }
        if emb.iter().any(|x| !x.is_finite()) {
            return Err(SvError::Shape { what: "a non-finite embedding".into() });
        }
        let mut out = SvOutputs { sv_emb: emb.to_vec(), extras: Vec::new() };
        if extras {
            for name in ["wav16k", "fbank"] {
                let (shape, data) = outs.get::<f32>(name)?;
                let arr = ArrayD::from_shape_vec(shape.clone(), data.to_vec()).map_err(|e| SvError::Shape { what: format!("{name} {shape:?}: {e}") })?;
                out.extras.push((name.to_string(), arr));
            }
        }
        Ok(out)
    }
}
