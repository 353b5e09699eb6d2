//! SoVITS side: speaker vector, decode to audio, and api2's post-processing to int16.
//!
//! * [`reference_ge`]: `ref_enc` on the 32 kHz reference's linear spectrogram `[1025, F]` -> ge (`G`).
//! * [`decode`]: `sovits_decode` on semantic codes (25 Hz, `T25`), target phone ids, ge, noise scale and
//!   speed. The noise is `[C, Ty]` with `Ty` from [`target_frames`] (BUNDLE.md's speed rule), standard
//!   normal from a seeded ChaCha8 RNG (Box–Muller), zeros when `noise_scale == 0`. Output: f32 audio at
//!   the model rate (32 kHz), `Ty * hop` samples.
//! * [`postprocess`]: per segment, divide by the peak if it exceeds 1, append 0.3 s of silence (model
//!   rate), concatenate, scale and convert to int16 (truncation toward zero like numpy's `astype`,
//!   clamped to the int16 range). [`Int16Scale::Api2`] is TTS.py/api.py's `×32768`; [`Int16Scale::Webui`]
//!   is inference_webui's `×32767` (what `webui_output_int16` was made with).

pub mod stream;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::runtime::{graphs::DecodeOut, Graph, RuntimeError};

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

/// Speaker vector from a reference spectrogram `[bins, F]` (bins = n_fft/2+1 = 1025).
pub fn reference_ge(ref_enc: &mut Graph, bins: usize, spec: ndarray::ArrayView2<f32>) -> Result<Vec<f32>> {
    if spec.nrows() != bins {
        return Err(VocoderError::Input(format!("spectrogram must have {bins} bins, got {}", spec.nrows())));
    }
    Ok(ref_enc.ref_enc(spec)?)
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

/// Run `sovits_decode`. `inter_channels` is the manifest's `sovits.inter_channels`. `noise` overrides the
/// generated noise (must be `[C, Ty]`).
#[allow(clippy::too_many_arguments)]
pub fn decode(
    graph: &mut Graph,
    inter_channels: usize,
    codes: &[i64],
    text: &[i64],
    ge: &[f32],
    p: DecodeParams,
    noise: Option<Array2<f32>>,
    extras: bool,
) -> Result<DecodeOut> {
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
            n
        }
        None => make_noise(inter_channels, ty, p.seed, p.noise_scale == 0.0),
    };
    Ok(graph.sovits_decode(codes, text, ge, p.noise_scale, noise.view(), extras)?)
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
