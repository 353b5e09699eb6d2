//! Linear magnitude spectrogram of the 32 kHz reference (`refer_spec`), as GPT-SoVITS's
//! `spectrogram_torch(y, n_fft, sr, hop, win, center=False)` computes it.
//!
//! In: mono `f32` signal (the SoVITS-rate `wav32k`), [`SpecParams`] `{n_fft, hop, win}` (v2: 2048/640/2048).
//! Out: [`Spectrogram`] `{bins = n_fft/2 + 1, frames, data}` with `data` row-major `[bins, frames]`
//! (the graph input is `[1, bins, frames]`).
//!
//! Steps: reflect-pad `int((n_fft - hop) / 2)` samples on both sides (no edge repeat, like
//! `F.pad(mode="reflect")`); frames `1 + (len_padded - n_fft) / hop`; each frame times a periodic
//! Hann window of `win` samples (centred in `n_fft` when shorter, as `torch.stft` does); onesided
//! real FFT; magnitude `sqrt(re^2 + im^2 + 1e-8)` in f32 (epsilon inside the sqrt).

use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

use super::{ReferenceError, SpecParams};

/// A `[bins, frames]` magnitude spectrogram, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrogram {
    pub bins: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

impl Spectrogram {
    /// Magnitude of `bin` at `frame`.
    pub fn at(&self, bin: usize, frame: usize) -> f32 {
        self.data[bin * self.frames + frame]
    }
}

/// Periodic Hann window of length `win` (`torch.hann_window(win)`), in f32.
fn hann_periodic(win: usize) -> Vec<f32> {
    let n = win as f64;
    (0..win)
        .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n).cos()) as f32)
        .collect()
}

/// Computes the spectrogram; see the module docs.
pub fn spectrogram(y: &[f32], params: SpecParams) -> Result<Spectrogram, ReferenceError> {
    let SpecParams { n_fft, hop, win } = params;
    if n_fft == 0 || hop == 0 || win == 0 || win > n_fft || hop > n_fft {
        return Err(ReferenceError::SpecParams(format!("n_fft {n_fft}, hop {hop}, win {win}")));
    }
    let pad = (n_fft - hop) / 2;
    let len = y.len();
    if len == 0 {
        return Err(ReferenceError::EmptyAudio);
    }
    if pad >= len {
        return Err(ReferenceError::TooShortForSpec { len, pad });
    }
    // Reflect padding: left mirrors y[pad..=1], right mirrors y[len-2..=len-1-pad].
    let mut padded = Vec::with_capacity(len + 2 * pad);
    for i in 0..pad {
        padded.push(y[pad - i]);
    }
    padded.extend_from_slice(y);
    for i in 0..pad {
        padded.push(y[len - 2 - i]);
    }
    if padded.len() < n_fft {
        return Err(ReferenceError::TooShortForSpec { len, pad });
    }
    let frames = 1 + (padded.len() - n_fft) / hop;
    let bins = n_fft / 2 + 1;

    // Window of `win`, zero-padded to n_fft and centred.
    let mut window = vec![0.0f32; n_fft];
    let left = (n_fft - win) / 2;
    window[left..left + win].copy_from_slice(&hann_periodic(win));

    let fft = FftPlanner::<f64>::new().plan_fft_forward(n_fft);
    let mut buf = vec![Complex::new(0.0f64, 0.0); n_fft];
    let mut scratch = vec![Complex::new(0.0f64, 0.0); fft.get_inplace_scratch_len()];
    let mut data = vec![0.0f32; bins * frames];
    for f in 0..frames {
        let frame = &padded[f * hop..f * hop + n_fft];
        for ((b, &s), &w) in buf.iter_mut().zip(frame).zip(&window) {
            *b = Complex::new((s * w) as f64, 0.0);
        }
        fft.process_with_scratch(&mut buf, &mut scratch);
        for (k, c) in buf.iter().take(bins).enumerate() {
            let re = c.re as f32;
            let im = c.im as f32;
            data[k * frames + f] = (re * re + im * im + 1e-8f32).sqrt();
        }
    }
    Ok(Spectrogram { bins, frames, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_reflect() {
        let y: Vec<f32> = (0..4000).map(|i| (i as f32 * 0.01).sin()).collect();
        let s = spectrogram(&y, SpecParams::default()).unwrap();
        assert_eq!(s.bins, 1025);
        assert_eq!(s.frames, 1 + (4000 + 2 * 704 - 2048) / 640);
        assert!(s.data.iter().all(|v| v.is_finite() && *v >= 1e-4));
    }

    #[test]
    fn too_short_is_error() {
        let y = vec![0.0f32; 100];
        assert!(matches!(
            spectrogram(&y, SpecParams::default()),
            Err(ReferenceError::TooShortForSpec { .. })
        ));
    }

    #[test]
    fn bad_params_are_errors() {
        let y = vec![0.0f32; 10000];
        assert!(spectrogram(&y, SpecParams { n_fft: 0, hop: 1, win: 1 }).is_err());
        assert!(spectrogram(&y, SpecParams { n_fft: 512, hop: 128, win: 1024 }).is_err());
    }
}
