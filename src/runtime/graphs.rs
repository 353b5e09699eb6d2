//! Typed run helpers for the seven bundle graphs (see `export/BUNDLE.md`). Batch is always 1.
//!
//! | helper | takes | returns |
//! |---|---|---|
//! | [`Graph::hubert`] | 16 kHz samples (with the 9600-zero pad) | ssl `[768, T50]` |
//! | [`Graph::vq_encode`] | ssl `[768, T50]` | codes `T25`, ssl_proj `[768, T25]` |
//! | [`Graph::bert`] | input_ids, attention_mask, token_type_ids (`L`) | hidden `[L, 1024]` |
//! | [`Graph::gpt_prefill`] | phone ids `N`, bert `[1024, N]`, prompt codes `P` | logits `V`; K/V rows `[N+P, D]` per layer via a sink |
//! | [`Graph::gpt_step`] (`kv.rs`) | token, position, the [`super::KvCache`] bound in place | logits `V`; the new K/V row appended in the cache |
//! | [`Graph::ref_enc`] | spectrogram `[1025, F]` | ge `G` |
//! | [`Graph::g2pw`] (optional) | g2pW's six inputs (`[B, L]` text, `[N, C]` masks, `[N]` ids) | probabilities `[N, C]` |
//! | [`Graph::sovits_decode`] | codes `T25`, target phones `N`, ge `G`, noise_scale, noise `[C, Ty]` | audio `Ty*hop` at 32 kHz (+ intermediates) |

use ndarray::{Array2, ArrayD, ArrayView2, Axis};
use ort::value::TensorRef;

use super::{Graph, Result, RuntimeError};

/// Receives `(layer, is_v, values)` for each K/V output of the GPT graphs.
pub type KvSink<'a> = dyn FnMut(usize, bool, &[f32]) -> Result<()> + 'a;

/// Extra outputs of `sovits_decode`, for parity checks.
#[derive(Debug, Default)]
pub struct DecodeOut {
    pub audio: Vec<f32>,
    /// `(name, array)` for `z`, `m_p`, `logs_p`, `enc_p_x`, `quantized` when requested.
    pub extras: Vec<(String, ArrayD<f32>)>,
}

impl Graph {
    fn input_err(&self, msg: impl Into<String>) -> RuntimeError {
        RuntimeError::Input { graph: self.name.clone(), msg: msg.into() }
    }

    /// hubert: `wav16k` `[1,S]` -> `ssl` `[768, T50]`.
    pub fn hubert(&mut self, wav16k: &[f32]) -> Result<Array2<f32>> {
        if wav16k.is_empty() {
            return Err(self.input_err("empty waveform"));
        }
        let t = TensorRef::from_array_view(([1usize, wav16k.len()], wav16k)).map_err(|e| self.input_err(e.to_string()))?;
        let outs = self.session.run(ort::inputs!["wav16k" => t]).map_err(|e| RuntimeError::Run { graph: "hubert".into(), msg: e.to_string() })?;
        let (shape, data) = extract(&outs, "hubert", "ssl")?;
        to_2d("hubert", "ssl", &shape, data)
    }

    /// vq_encode: `ssl` `[768, T50]` -> (codes `T25`, ssl_proj `[768, T25]`).
    pub fn vq_encode(&mut self, ssl: ArrayView2<f32>) -> Result<(Vec<i64>, Array2<f32>)> {
        let ssl3 = ssl.insert_axis(Axis(0));
        let ssl3 = ssl3.as_standard_layout();
        let t = TensorRef::from_array_view(&ssl3).map_err(|e| self.input_err(e.to_string()))?;
        let outs = self.session.run(ort::inputs!["ssl" => t]).map_err(|e| RuntimeError::Run { graph: "vq_encode".into(), msg: e.to_string() })?;
        let codes = {
            let v = outs.get("codes").ok_or_else(|| RuntimeError::Output { graph: "vq_encode".into(), output: "codes".into(), msg: "missing".into() })?;
            let (_, d) = v.try_extract_tensor::<i64>().map_err(|e| RuntimeError::Output { graph: "vq_encode".into(), output: "codes".into(), msg: e.to_string() })?;
            d.to_vec()
        };
        let (shape, data) = extract(&outs, "vq_encode", "ssl_proj")?;
        Ok((codes, to_2d("vq_encode", "ssl_proj", &shape, data)?))
    }

    /// bert: ids, mask, type ids (each `L`) -> hidden `[L, 1024]`.
    pub fn bert(&mut self, input_ids: &[i64], attention_mask: &[i64], token_type_ids: &[i64]) -> Result<Array2<f32>> {
        let l = input_ids.len();
        if l == 0 || attention_mask.len() != l || token_type_ids.len() != l {
            return Err(self.input_err(format!("input lengths differ or are zero: {} {} {}", l, attention_mask.len(), token_type_ids.len())));
        }
        let a = TensorRef::from_array_view(([1usize, l], input_ids)).map_err(|e| self.input_err(e.to_string()))?;
        let b = TensorRef::from_array_view(([1usize, l], attention_mask)).map_err(|e| self.input_err(e.to_string()))?;
        let c = TensorRef::from_array_view(([1usize, l], token_type_ids)).map_err(|e| self.input_err(e.to_string()))?;
        let outs = self
            .session
            .run(ort::inputs!["input_ids" => a, "attention_mask" => b, "token_type_ids" => c])
            .map_err(|e| RuntimeError::Run { graph: "bert".into(), msg: e.to_string() })?;
        let (shape, data) = extract(&outs, "bert", "hidden")?;
        to_2d("bert", "hidden", &shape, data)
    }

    /// gpt_prefill: returns the last-position logits; `sink(layer, is_v, rows)` receives each layer's K and V
    /// (`(N+P)*D` values, row-major `[N+P, D]`).
    pub fn gpt_prefill(
        &mut self,
        n_layer: usize,
        phone_ids: &[i64],
        bert: ArrayView2<f32>,
        prompt: &[i64],
        sink: &mut KvSink<'_>,
    ) -> Result<Vec<f32>> {
        let n = phone_ids.len();
        if n == 0 || bert.ncols() != n {
            return Err(self.input_err(format!("bert is {:?} but there are {} phones", bert.shape(), n)));
        }
        let bert3 = bert.insert_axis(Axis(0));
        let bert3 = bert3.as_standard_layout();
        let ids = TensorRef::from_array_view(([1usize, n], phone_ids)).map_err(|e| self.input_err(e.to_string()))?;
        let b = TensorRef::from_array_view(&bert3).map_err(|e| self.input_err(e.to_string()))?;
        let p = TensorRef::from_array_view(([1usize, prompt.len()], prompt)).map_err(|e| self.input_err(e.to_string()))?;
        let outs = self
            .session
            .run(ort::inputs!["phone_ids" => ids, "bert" => b, "prompt" => p])
            .map_err(|e| RuntimeError::Run { graph: "gpt_prefill".into(), msg: e.to_string() })?;
        for i in 0..n_layer {
            for (is_v, name) in [(false, format!("k_{i}")), (true, format!("v_{i}"))] {
                let v = outs.get(&name).ok_or_else(|| RuntimeError::Output { graph: "gpt_prefill".into(), output: name.clone(), msg: "missing".into() })?;
                let (_, d) = v.try_extract_tensor::<f32>().map_err(|e| RuntimeError::Output { graph: "gpt_prefill".into(), output: name.clone(), msg: e.to_string() })?;
                sink(i, is_v, d)?;
            }
        }
        let (_, logits) = extract(&outs, "gpt_prefill", "logits")?;
        Ok(logits)
    }

    /// ref_enc: spectrogram `[1025, F]` -> ge (`G` values).
    pub fn ref_enc(&mut self, spec: ArrayView2<f32>) -> Result<Vec<f32>> {
        if spec.ncols() == 0 {
            return Err(self.input_err("empty spectrogram"));
        }
        let s3 = spec.insert_axis(Axis(0));
        let s3 = s3.as_standard_layout();
        let t = TensorRef::from_array_view(&s3).map_err(|e| self.input_err(e.to_string()))?;
        let outs = self.session.run(ort::inputs!["spec" => t]).map_err(|e| RuntimeError::Run { graph: "ref_enc".into(), msg: e.to_string() })?;
        Ok(extract(&outs, "ref_enc", "ge")?.1)
    }

    /// sovits_decode: audio (`Ty*hop` samples); with `extras`, also the intermediate outputs.
    pub fn sovits_decode(
        &mut self,
        codes: &[i64],
        text: &[i64],
        ge: &[f32],
        noise_scale: f32,
        noise: ArrayView2<f32>,
        extras: bool,
    ) -> Result<DecodeOut> {
        if codes.is_empty() || text.is_empty() {
            return Err(self.input_err("empty codes or phones"));
        }
        let noise3 = noise.insert_axis(Axis(0));
        let noise3 = noise3.as_standard_layout();
        let ns = [noise_scale];
        let mk = |e: ort::Error| RuntimeError::Input { graph: "sovits_decode".into(), msg: e.to_string() };
        let c = TensorRef::from_array_view(([1usize, 1, codes.len()], codes)).map_err(mk)?;
        let tx = TensorRef::from_array_view(([1usize, text.len()], text)).map_err(mk)?;
        let g = TensorRef::from_array_view(([1usize, ge.len(), 1], ge)).map_err(mk)?;
        let n = TensorRef::from_array_view(([1usize], &ns[..])).map_err(mk)?;
        let z = TensorRef::from_array_view(&noise3).map_err(mk)?;
        let outs = self
            .session
            .run(ort::inputs!["codes" => c, "text" => tx, "ge" => g, "noise_scale" => n, "noise" => z])
            .map_err(|e| RuntimeError::Run { graph: "sovits_decode".into(), msg: e.to_string() })?;
        let (_, audio) = extract(&outs, "sovits_decode", "audio")?;
        let mut out = DecodeOut { audio, extras: Vec::new() };
        if extras {
            for name in ["z", "m_p", "logs_p", "enc_p_x", "quantized"] {
                if outs.get(name).is_some() {
                    let (shape, data) = extract(&outs, "sovits_decode", name)?;
                    let arr = ArrayD::from_shape_vec(shape, data)
                        .map_err(|e| RuntimeError::Output { graph: "sovits_decode".into(), output: name.into(), msg: e.to_string() })?;
                    out.extras.push((name.to_string(), arr));
                }
            }
        }
        Ok(out)
    }
}

impl Graph {
    /// g2pw (a bundle's optional `g2pw.onnx`, upstream's g2pW model): `input_ids`, `token_type_ids`,
    /// `attention_mask` `[B, L]` (B = 1 or N), `phoneme_mask` `[N, C]`, `char_ids`, `position_ids` `[N]` ->
    /// its first output, probabilities `[N, C]`.
    #[allow(clippy::too_many_arguments)]
    pub fn g2pw(
        &mut self,
        input_ids: ArrayView2<i64>,
        token_type_ids: ArrayView2<i64>,
        attention_mask: ArrayView2<i64>,
        phoneme_mask: ArrayView2<f32>,
        char_ids: &[i64],
        position_ids: &[i64],
    ) -> Result<Array2<f32>> {
        let n = char_ids.len();
        if n == 0 || position_ids.len() != n || phoneme_mask.nrows() != n || input_ids.dim() != attention_mask.dim() || input_ids.dim() != token_type_ids.dim() {
            return Err(self.input_err("inconsistent g2pw input shapes"));
        }
        let (a, b, c, d) = (input_ids.as_standard_layout(), token_type_ids.as_standard_layout(), attention_mask.as_standard_layout(), phoneme_mask.as_standard_layout());
        let mk = |e: ort::Error| RuntimeError::Input { graph: "g2pw".into(), msg: e.to_string() };
        let ids = TensorRef::from_array_view(&a).map_err(mk)?;
        let types = TensorRef::from_array_view(&b).map_err(mk)?;
        let mask = TensorRef::from_array_view(&c).map_err(mk)?;
        let pmask = TensorRef::from_array_view(&d).map_err(mk)?;
        let chars = TensorRef::from_array_view(([n], char_ids)).map_err(mk)?;
        let pos = TensorRef::from_array_view(([n], position_ids)).map_err(mk)?;
        let out = self.outputs.first().map(|o| o.name.clone()).ok_or_else(|| self.input_err("the graph has no output"))?;
        let outs = self
            .session
            .run(ort::inputs![
                "input_ids" => ids, "token_type_ids" => types, "attention_mask" => mask,
                "phoneme_mask" => pmask, "char_ids" => chars, "position_ids" => pos
            ])
            .map_err(|e| RuntimeError::Run { graph: "g2pw".into(), msg: e.to_string() })?;
        let (shape, data) = extract(&outs, "g2pw", &out)?;
        if shape.len() != 2 {
            return Err(RuntimeError::Output { graph: "g2pw".into(), output: out, msg: format!("expected rank 2, got {shape:?}") });
        }
        Array2::from_shape_vec((shape[0], shape[1]), data).map_err(|e| RuntimeError::Output { graph: "g2pw".into(), output: out, msg: e.to_string() })
    }
}

fn extract(outs: &ort::session::SessionOutputs<'_>, graph: &str, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let err = |msg: String| RuntimeError::Output { graph: graph.into(), output: name.into(), msg };
    let v = outs.get(name).ok_or_else(|| err("missing".into()))?;
    let (shape, data) = v.try_extract_tensor::<f32>().map_err(|e| err(e.to_string()))?;
    Ok((shape.iter().map(|&d| d as usize).collect(), data.to_vec()))
}

/// `[1, A, B]` -> `[A, B]`.
fn to_2d(graph: &str, name: &str, shape: &[usize], data: Vec<f32>) -> Result<Array2<f32>> {
    let err = |msg: String| RuntimeError::Output { graph: graph.into(), output: name.into(), msg };
    if shape.len() != 3 || shape[0] != 1 {
        return Err(err(format!("expected shape [1, A, B], got {shape:?}")));
    }
    Array2::from_shape_vec((shape[1], shape[2]), data).map_err(|e| err(e.to_string()))
}
