//! The prompt encoder: reference audio at 16 kHz -> HuBERT SSL features (50 Hz) -> the SoVITS quantizer's codes
//! (25 Hz), the GPT's prompt.
//!
//! [`Hubert`] owns both graphs and declares their contracts ([`Hubert::contracts`]):
//! * `hubert`: `wav16k` `[1, S]` f32 (16 kHz, with GPT-SoVITS's 9600 trailing zeros) -> `ssl` `[1, E, T50]`
//!   (E = 768 for chinese-hubert-base);
//! * `vq_encode`: `ssl` `[1, E, T50]` -> `codes` `[1, T25]` i64 and `ssl_proj` `[1, E, T25]`.

use ndarray::{Array2, ArrayView2};

use crate::bundle::{Bundle, GraphContract, LoadError, Manifest, Precision};
use crate::runtime::{Graph, Input, Runtime, RuntimeError, SessionOptions};

#[derive(Debug, thiserror::Error)]
pub enum HubertError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("bad input: {0}")]
    Input(String),
    #[error("graph {graph} returned shape {shape:?} for `{output}`, expected [1, A, B]")]
    Shape { graph: &'static str, output: &'static str, shape: Vec<usize> },
}

pub type Result<T> = std::result::Result<T, HubertError>;

pub struct Hubert {
    hubert: Graph,
    vq: Graph,
}

/// `[1, A, B]` -> `[A, B]`.
fn to_2d(graph: &'static str, output: &'static str, shape: Vec<usize>, data: &[f32]) -> Result<Array2<f32>> {
    match shape.as_slice() {
        [1, a, b] if a * b == data.len() => Array2::from_shape_vec((*a, *b), data.to_vec()).map_err(|_| HubertError::Shape { graph, output, shape }),
        _ => Err(HubertError::Shape { graph, output, shape }),
    }
}

impl Hubert {
    /// The graphs this struct runs (BUNDLE.md).
    pub fn contracts(_m: &Manifest) -> [GraphContract; 2] {
        [
            GraphContract::new("hubert").input("wav16k", "float32", 2).output("ssl", "float32", 3),
            GraphContract::new("vq_encode").input("ssl", "float32", 3).output("codes", "int64", 2).output("ssl_proj", "float32", 3),
        ]
    }

    pub fn load(rt: &Runtime, bundle: &Bundle, opts: &SessionOptions) -> std::result::Result<Hubert, LoadError> {
        let [hc, vc] = Hubert::contracts(&bundle.manifest);
        Ok(Hubert { hubert: bundle.load_graph(rt, &hc, Precision::Fp32, opts)?, vq: bundle.load_graph(rt, &vc, Precision::Fp32, opts)? })
    }

    /// SSL features `[E, T50]` of 16 kHz samples.
    pub fn ssl(&mut self, wav16k: &[f32]) -> Result<Array2<f32>> {
        if wav16k.is_empty() {
            return Err(HubertError::Input("empty waveform".into()));
        }
        let outs = self.hubert.run(&[Input::f32("wav16k", &[1, wav16k.len()], wav16k)])?;
        let (shape, data) = outs.get::<f32>("ssl")?;
        to_2d("hubert", "ssl", shape, data)
    }

    /// Quantize SSL features `[E, T50]`: (codes `T25`, ssl_proj `[E, T25]`).
    pub fn vq_encode(&mut self, ssl: ArrayView2<f32>) -> Result<(Vec<i64>, Array2<f32>)> {
        let (e, t) = ssl.dim();
        let ssl = ssl.as_standard_layout();
        let data = ssl.as_slice().ok_or_else(|| HubertError::Input("ssl features are not contiguous".into()))?;
        let outs = self.vq.run(&[Input::f32("ssl", &[1, e, t], data)])?;
        let codes = outs.get::<i64>("codes")?.1.to_vec();
        let (shape, proj) = outs.get::<f32>("ssl_proj")?;
        Ok((codes, to_2d("vq_encode", "ssl_proj", shape, proj)?))
    }

    /// Prompt semantic codes (25 Hz) of the padded 16 kHz reference.
    pub fn prompt_codes(&mut self, wav16k_padded: &[f32]) -> Result<Vec<i64>> {
        let ssl = self.ssl(wav16k_padded)?;
        Ok(self.vq_encode(ssl.view())?.0)
    }
}
