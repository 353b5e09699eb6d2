//! Windowed-sinc resampling as `torchaudio.transforms.Resample(orig, new)` computes it with its
//! defaults (`sinc_interp_hann`, `lowpass_filter_width = 6`, `rolloff = 0.99`).
//!
//! In: mono `f32` at `orig` Hz. Out: mono `f32` at `new` Hz, `ceil(len * new / orig)` samples.
//!
//! torchaudio reduces both rates by their gcd (`o`, `n`), builds `n` polyphase filters of
//! `2 * width + o` taps with `width = ceil(6 * o / (min(o, n) * 0.99))`, zero-pads the signal by
//! `width` on the left and `width + o` on the right and runs a strided (`o`) convolution; output
//! sample `b * n + p` is filter `p` applied at input offset `b * o`.
//!
//! Kernel arithmetic follows torchaudio's dtypes: the transform builds the kernel with `dtype=None`,
//! so the tap positions `idx` are float64 but the phase term `arange(0, -n, -1) / n` is an int64
//! tensor divided in the default dtype (float32) before the float64 sum; the finished kernel is cast
//! to float32. The convolution itself is accumulated here in f64 and rounded to f32 (torch sums
//! float32 products in an unspecified order; the two agree to a few ulps).

use super::ReferenceError;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// The polyphase kernel: `n` rows of `2 * width + o` taps (row-major), and `width`.
pub(crate) fn sinc_kernel(o: usize, n: usize, lowpass_filter_width: f64, rolloff: f64) -> (Vec<f32>, usize) {
    let base_freq = (o.min(n) as f64) * rolloff;
    let width = (lowpass_filter_width * o as f64 / base_freq).ceil() as usize;
    let taps = 2 * width + o;
    let mut kernel = vec![0.0f32; n * taps];
    let pi = std::f64::consts::PI;
    let scale = base_freq / o as f64;
    for p in 0..n {
        // int64 arange / n in float32 (torch's default dtype), then promoted to float64.
        let phase = ((-(p as i64)) as f32 / n as f32) as f64;
        for k in 0..taps {
            let idx = (k as f64 - width as f64) / o as f64;
            let mut t = (phase + idx) * base_freq;
            t = t.clamp(-lowpass_filter_width, lowpass_filter_width);
            let c = (t * pi / lowpass_filter_width / 2.0).cos();
            let window = c * c;
            let tp = t * pi;
            let sinc = if tp == 0.0 { 1.0 } else { tp.sin() / tp };
            kernel[p * taps + k] = (sinc * (window * scale)) as f32;
        }
    }
    (kernel, width)
}

/// Resamples `x` from `orig` Hz to `new` Hz exactly as torchaudio's default `Resample` does.
/// Equal rates return the input unchanged (torchaudio does the same).
pub fn resample_torchaudio(x: &[f32], orig: u32, new: u32) -> Result<Vec<f32>, ReferenceError> {
    if orig == 0 || new == 0 {
        return Err(ReferenceError::BadSampleRate(0));
    }
    if orig == new {
        return Ok(x.to_vec());
    }
    let g = gcd(orig as u64, new as u64);
    let o = (orig as u64 / g) as usize;
    let n = (new as u64 / g) as usize;
    // A huge reduced rate pair (e.g. 44101 -> 32000) means a huge kernel; refuse rather than eat memory.
    if n.saturating_mul(2 * o + 64) > 64 << 20 {
        return Err(ReferenceError::Resample(format!(
            "rate pair {orig} -> {new} reduces to {o}:{n}, too large for the sinc kernel"
        )));
    }
    let (kernel, width) = sinc_kernel(o, n, 6.0, 0.99);
    let taps = 2 * width + o;
    let len = x.len();
    // Padded signal: width zeros, x, width + o zeros.
    let mut padded = vec![0.0f32; len + 2 * width + o];
    padded[width..width + len].copy_from_slice(x);
    let blocks = (padded.len() - taps) / o + 1;
    let target = ((n as u128 * len as u128).div_ceil(o as u128)) as usize;
    let mut y = Vec::with_capacity(target);
    'outer: for b in 0..blocks {
        let window = &padded[b * o..b * o + taps];
        for p in 0..n {
            if y.len() == target {
                break 'outer;
            }
            let row = &kernel[p * taps..(p + 1) * taps];
            let mut acc = 0.0f64;
            for (w, v) in row.iter().zip(window) {
                acc += (*w as f64) * (*v as f64);
            }
            y.push(acc as f32);
        }
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_shape_22050_to_32000() {
        let (k, width) = sinc_kernel(441, 640, 6.0, 0.99);
        assert_eq!(width, 7);
        assert_eq!(k.len(), 640 * (2 * 7 + 441));
    }

    #[test]
    fn output_length_is_ceil() {
        let x = vec![0.1f32; 1001];
        let y = resample_torchaudio(&x, 22050, 32000).unwrap();
        assert_eq!(y.len(), (1001usize * 640).div_ceil(441));
    }
}
