//! SoVITS side: speaker vector, decode to audio, and api2's post-processing to int16.
//!
//! [`Vocoder`] owns the two SoVITS graphs and declares their contracts ([`Vocoder::contracts`]):
//! * `ref_enc` ([`Vocoder::speaker`]): the 32 kHz reference's linear spectrogram `spec` `[1, 1025, F]` -> `ge`
//!   `[1, G, 1]`, the [`Speaker`] of a voice (computed once per voice and cached by the engine). v2Pro/v2ProPlus:
//!   `ref_enc` also takes the speaker-verification embedding `sv_emb` `[1, D]` (from
//!   [`crate::reference::SpeakerVerifier`]) and returns the **fused** `ge = PReLU(ref_enc(spec) + Linear(sv_emb))`
//!   (upstream's `SynthesizerTrn.decode` per reference), plus `ge_refenc` `[1, G, 1]` and `sv_proj` `[1, G]` for
//!   parity. Several references average these fused vectors ([`Speaker::mean`]), after the PReLU, as upstream does;
//! * `sovits_decode` ([`Vocoder::decode`]): semantic `codes` `[1, 1, T25]` (25 Hz), target phone ids `text`
//!   `[1, N]`, `ge` `[1, G, 1]`, `noise_scale` `[1]` and `noise` `[1, C, Ty]` -> `audio` `[1, 1, Ty*hop]` f32 at the
//!   model rate (32 kHz; 1280 samples per token at speed 1), plus intermediates for parity (v2Pro: also `ge512`
//!   `[1, 512, 1]`, the text encoder's projection of the fused `ge`, applied inside the graph). The noise is
//!   `[C, Ty]` with `Ty` from [`target_frames`] (BUNDLE.md's speed rule), standard normal from a seeded ChaCha8
//!   RNG (Box–Muller), zeros when `noise_scale == 0`.
//! * [`postprocess`]: per segment, divide by the peak if it exceeds 1, append 0.3 s of silence (model
//!   rate), concatenate, scale and convert to int16 (truncation toward zero like numpy's `astype`,
//!   clamped to the int16 range). [`Int16Scale::Api2`] is TTS.py/api.py's `×32768`; [`Int16Scale::Webui`]
//!   is inference_webui's `×32767` (what `webui_output_int16` was made with).

pub mod stream;

use ndarray::{Array2, ArrayD, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::bundle::{Bundle, GraphContract, LoadError, Manifest, Precision};
use crate::runtime::{Device, Graph, Input, Runtime, RuntimeError, SessionOptions};

#[derive(Debug, thiserror::Error)]
pub enum VocoderError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("bad input: {0}")]
    Input(String),
}

pub type Result<T> = std::result::Result<T, VocoderError>;

/// Decoder output frames for `t25` semantic tokens at `speed`: `T50 = 2*T25`; `Ty = T50` at speed 1,
/// else `floor(T50 / speed) + 1` computed in f64.
pub fn target_frames(t25: usize, speed: f64) -> usize {
    let t50 = 2 * t25;
    if speed == 1.0 {
        t50
    } else {
        (t50 as f64 / speed).floor() as usize + 1
    }
}

/// `[c, ty]` standard-normal noise from `seed` (zeros when `zero`).
pub fn make_noise(c: usize, ty: usize, seed: u64, zero: bool) -> Array2<f32> {
    if zero {
        return Array2::zeros((c, ty));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(c * ty);
    while v.len() < c * ty {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = 2.0 * std::f64::consts::PI * u2;
        v.push((r * a.cos()) as f32);
        v.push((r * a.sin()) as f32);
    }
    v.truncate(c * ty);
    Array2::from_shape_vec((c, ty), v).expect("sized")
}

/// Decode parameters.
#[derive(Debug, Clone, Copy)]
pub struct DecodeParams {
    pub noise_scale: f32,
    pub speed: f64,
    pub seed: u64,
}

impl Default for DecodeParams {
    /// Upstream's `decode` default noise_scale 0.5, speed 1.
    fn default() -> Self {
        DecodeParams { noise_scale: 0.5, speed: 1.0, seed: 0 }
    }
}

/// What the decoder needs of a voice besides its tokens: the reference encoder's speaker vector `ge` (`G` values;
/// for v2Pro/v2ProPlus the fused one, the speaker-verification embedding already inside it).
#[derive(Debug, Clone, PartialEq)]
pub struct Speaker {
    pub ge: Vec<f32>,
}

impl Speaker {
    /// The mean of several speakers' vectors (api.py `inp_refs`: timbre averaged over references).
    pub fn mean(first: &Speaker, others: &[Speaker]) -> Speaker {
        let mut ge = first.ge.clone();
        for o in others {
            for (a, b) in ge.iter_mut().zip(&o.ge) {
                *a += *b;
            }
        }
        let n = 1.0 + others.len() as f32;
        if !others.is_empty() {
            for a in &mut ge {
                *a /= n;
            }
        }
        Speaker { ge }
    }
}

/// Audio of one `sovits_decode` call; with `extras`, also its intermediate outputs (parity checks).
#[derive(Debug, Default)]
pub struct DecodeOut {
    pub audio: Vec<f32>,
    /// `(name, array)` for `z`, `m_p`, `logs_p`, `enc_p_x`, `quantized` (v2Pro: and `ge512`) when requested.
    pub extras: Vec<(String, ArrayD<f32>)>,
}

/// The SoVITS decoder and reference encoder of a bundle.
pub struct Vocoder {
    decoder: Graph,
    ref_enc: Graph,
    /// `C` of the noise (`sovits.inter_channels`).
    inter_channels: usize,
    /// Spectrogram rows `ref_enc` takes (n_fft / 2 + 1).
    bins: usize,
    /// Output samples per semantic token at speed 1 (2 frames of `hop`).
    samples_per_token: usize,
    /// v2Pro/v2ProPlus: `ref_enc` takes an `sv_emb` of this length.
    sv_dim: Option<usize>,
    /// Intermediate outputs `decode` can return (the contract's outputs besides `audio`).
    extras: &'static [&'static str],
}

impl Vocoder {
    /// The graphs this struct runs (BUNDLE.md).
    /// v2Pro/v2ProPlus: `ref_enc(spec, sv_emb) -> ge (fused), ge_refenc, sv_proj`, `sovits_decode` also returns
    /// `ge512`.
    pub fn contracts(m: &Manifest) -> [GraphContract; 2] {
        let mut ref_enc = GraphContract::new("ref_enc").input("spec", "float32", 3);
        if m.is_v2pro() {
            ref_enc = ref_enc.input("sv_emb", "float32", 2);
        }
        ref_enc = ref_enc.output("ge", "float32", 3);
        if m.is_v2pro() {
            ref_enc = ref_enc.output("ge_refenc", "float32", 3).output("sv_proj", "float32", 2);
        }
        let mut decode = GraphContract::new("sovits_decode")
            .input("codes", "int64", 3)
            .input("text", "int64", 2)
            .input("ge", "float32", 3)
            .input("noise_scale", "float32", 1)
            .input("noise", "float32", 3)
            .output("audio", "float32", 3);
        for name in decode_extras(m) {
            decode = decode.output(*name, "float32", 3);
        }
        [ref_enc, decode]
    }

    /// Loads `ref_enc` (fp32) and `sovits_decode` in `precision`.
    pub fn load(rt: &Runtime, bundle: &Bundle, opts: &SessionOptions, precision: Precision) -> std::result::Result<Vocoder, LoadError> {
        let [rc, dc] = Vocoder::contracts(&bundle.manifest);
        let ref_enc = bundle.load_graph(rt, &rc, Precision::Fp32, opts)?;
        let decoder = bundle.load_graph(rt, &dc, precision, opts)?;
        let m = &bundle.manifest;
        Ok(Vocoder {
            decoder,
            ref_enc,
            inter_channels: m.sovits.inter_channels,
            bins: m.spec_bins(),
            samples_per_token: m.sovits.samples_per_frame * 2,
            sv_dim: if m.is_v2pro() { m.sv.as_ref().map(|s| s.embedding_dim) } else { None },
            extras: decode_extras(m),
        })
    }

    pub fn samples_per_token(&self) -> usize {
        self.samples_per_token
    }

    pub fn inter_channels(&self) -> usize {
        self.inter_channels
    }

    pub fn device(&self) -> Device {
        self.decoder.device
    }

    /// Whether `ref_enc` takes a speaker-verification embedding (v2Pro/v2ProPlus), and of what length.
    pub fn sv_dim(&self) -> Option<usize> {
        self.sv_dim
    }

    /// The speaker vector of a reference spectrogram `[bins, F]` (bins = n_fft/2+1 = 1025); v2Pro/v2ProPlus bundles
    /// need the reference's speaker-verification embedding `sv_emb` (`[D]`) and return the fused `ge`.
    pub fn speaker(&mut self, spec: ArrayView2<f32>, sv_emb: Option<&[f32]>) -> Result<Speaker> {
        Ok(self.speaker_with_extras(spec, sv_emb, false)?.0)
    }

    /// [`Vocoder::speaker`] and, with `extras`, `ref_enc`'s other outputs (v2Pro: `ge_refenc`, `sv_proj`).
    pub fn speaker_with_extras(&mut self, spec: ArrayView2<f32>, sv_emb: Option<&[f32]>, extras: bool) -> Result<(Speaker, Vec<(String, ArrayD<f32>)>)> {
        match (self.sv_dim, sv_emb) {
            (Some(d), Some(e)) if e.len() != d => {
                return Err(VocoderError::Input(format!("sv_emb must have {d} values, got {}", e.len())));
            }
            (Some(_), None) => return Err(VocoderError::Input("this model's reference encoder needs the speaker-verification embedding".into())),
            (None, Some(_)) => return Err(VocoderError::Input("this model's reference encoder takes no speaker-verification embedding".into())),
            _ => {}
        }
        if spec.nrows() != self.bins {
            return Err(VocoderError::Input(format!("spectrogram must have {} bins, got {}", self.bins, spec.nrows())));
        }
        let f = spec.ncols();
        if f == 0 {
            return Err(VocoderError::Input("empty spectrogram".into()));
        }
        let spec = spec.as_standard_layout();
        let data = spec.as_slice().ok_or_else(|| VocoderError::Input("spectrogram is not contiguous".into()))?;
        let mut inputs = vec![Input::f32("spec", &[1, self.bins, f], data)];
        if let Some(e) = sv_emb {
            inputs.push(Input::f32("sv_emb", &[1, e.len()], e));
        }
        let outs = self.ref_enc.run(&inputs)?;
        let speaker = Speaker { ge: outs.get::<f32>("ge")?.1.to_vec() };
        let mut more = Vec::new();
        if extras {
            for name in ["ge_refenc", "sv_proj"] {
                if outs.contains(name) {
                    let (shape, data) = outs.get::<f32>(name)?;
                    let arr = ArrayD::from_shape_vec(shape, data.to_vec()).map_err(|e| VocoderError::Input(format!("output {name}: {e}")))?;
                    more.push((name.to_string(), arr));
                }
            }
        }
        Ok((speaker, more))
    }

    /// Run `sovits_decode`. `noise` overrides the generated noise (must be `[C, Ty]`).
    pub fn decode(&mut self, codes: &[i64], text: &[i64], speaker: &Speaker, p: DecodeParams, noise: Option<Array2<f32>>, extras: bool) -> Result<DecodeOut> {
        let inter_channels = self.inter_channels;
        if codes.is_empty() {
            return Err(VocoderError::Input("no semantic tokens to decode".into()));
        }
        if text.is_empty() {
            return Err(VocoderError::Input("no target phones".into()));
        }
        if !(p.speed.is_finite() && p.speed > 0.0) {
            return Err(VocoderError::Input(format!("speed must be > 0, got {}", p.speed)));
        }
        let ty = target_frames(codes.len(), p.speed);
        let noise = match noise {
            Some(n) => {
                if n.dim() != (inter_channels, ty) {
                    return Err(VocoderError::Input(format!("noise must be [{inter_channels}, {ty}], got {:?}", n.dim())));
                }
                n.as_standard_layout().into_owned()
            }
            None => make_noise(inter_channels, ty, p.seed, p.noise_scale == 0.0),
        };
        let noise = noise.as_slice().ok_or_else(|| VocoderError::Input("noise is not contiguous".into()))?;
        let ge = &speaker.ge;
        let ns = [p.noise_scale];
        let outs = self.decoder.run(&[
            Input::i64("codes", &[1, 1, codes.len()], codes),
            Input::i64("text", &[1, text.len()], text),
            Input::f32("ge", &[1, ge.len(), 1], ge),
            Input::f32("noise_scale", &[1], &ns),
            Input::f32("noise", &[1, inter_channels, ty], noise),
        ])?;
        let mut out = DecodeOut { audio: outs.get::<f32>("audio")?.1.to_vec(), extras: Vec::new() };
        if extras {
            for &name in self.extras {
                if outs.contains(name) {
                    let (shape, data) = outs.get::<f32>(name)?;
                    let arr = ArrayD::from_shape_vec(shape, data.to_vec()).map_err(|e| VocoderError::Input(format!("output {name}: {e}")))?;
                    out.extras.push((name.to_string(), arr));
                }
            }
        }
        Ok(out)
    }
}

/// Intermediate outputs of `sovits_decode`, compared stage by stage by `gsv parity` (v2Pro: and `ge512`).
const EXTRAS: [&str; 5] = ["z", "m_p", "logs_p", "enc_p_x", "quantized"];
const EXTRAS_V2PRO: [&str; 6] = ["z", "m_p", "logs_p", "enc_p_x", "quantized", "ge512"];

fn decode_extras(m: &Manifest) -> &'static [&'static str] {
    if m.is_v2pro() {
        &EXTRAS_V2PRO
    } else {
        &EXTRAS
    }
}

/// int16 conversion convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int16Scale {
    /// `×32768` (TTS.py / api.py), clamped to [-32768, 32767].
    Api2,
    /// `×32767` (inference_webui `get_tts_wav`).
    Webui,
}

/// Normalise each segment whose peak exceeds 1, append `silence_s` seconds of zeros at `sample_rate`
/// after each, and convert to int16.
pub fn postprocess(segments: &[Vec<f32>], sample_rate: u32, silence_s: f64, scale: Int16Scale) -> Vec<i16> {
    let gap = (sample_rate as f64 * silence_s) as usize;
    let k = match scale {
        Int16Scale::Api2 => 32768.0f32,
        Int16Scale::Webui => 32767.0f32,
    };
    let total: usize = segments.iter().map(|s| s.len() + gap).sum();
    let mut out = Vec::with_capacity(total);
    for seg in segments {
        let peak = seg.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
        let div = if peak > 1.0 { peak } else { 1.0 };
        for &x in seg {
            out.push(to_i16(x / div * k));
        }
        out.extend(std::iter::repeat_n(0i16, gap));
    }
    out
}

/// int16 of a streamed piece: no peak normalisation is possible before the segment ends, so values are clamped.
pub fn pcm16(samples: &[f32], scale: Int16Scale) -> Vec<i16> {
    let k = match scale {
        Int16Scale::Api2 => 32768.0f32,
        Int16Scale::Webui => 32767.0f32,
    };
    samples.iter().map(|&x| to_i16(x * k)).collect()
}

fn to_i16(v: f32) -> i16 {
    if v.is_nan() {
        0
    } else {
        v.trunc().clamp(-32768.0, 32767.0) as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ty_rule() {
        assert_eq!(target_frames(60, 1.0), 120);
        assert_eq!(target_frames(60, 1.25), 97); // 96 + 1, golden: 62080 / 640
        assert_eq!(target_frames(60, 0.8), 151);
        assert_eq!(target_frames(7, 3.0), 5); // floor(14/3)=4, +1
    }

    #[test]
    fn noise_seeded_normal() {
        let a = make_noise(4, 1001, 3, false);
        assert_eq!(a, make_noise(4, 1001, 3, false));
        let n = a.len() as f32;
        let mean = a.sum() / n;
        let var = a.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
        assert!(mean.abs() < 0.1 && (var - 1.0).abs() < 0.1, "{mean} {var}");
        assert!(make_noise(2, 3, 3, true).iter().all(|&x| x == 0.0));
    }

    #[test]
    fn post_normalise_silence_scale() {
        let segs = vec![vec![0.5, -0.25], vec![2.0, -1.0, 0.0]];
        let out = postprocess(&segs, 10, 0.3, Int16Scale::Webui);
        assert_eq!(out, vec![16383, -8191, 0, 0, 0, 32767, -16383, 0, 0, 0, 0]);
        let out2 = postprocess(&[vec![1.0, -1.0, 0.99999]], 10, 0.0, Int16Scale::Api2);
        assert_eq!(out2, vec![32767, -32768, 32767]); // 32768 clamped instead of wrapping
    }
}
