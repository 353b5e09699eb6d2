//! soxr "HQ" resampling through libsoxr (Debian `libsoxr-dev`), the way librosa 0.10 calls it.
//!
//! In: mono `f32` samples at `in_rate`. Out: mono `f32` at `out_rate`, length as python-soxr 1.x
//! returns it (librosa then fixes the length; see [`super::resample_librosa`]).
//!
//! `librosa.resample(res_type="soxr_hq")` calls `soxr.resample(y, orig, target, quality="soxr_hq")`,
//! which for a 1-D float32 array runs python-soxr's "divide_proc": one `soxr_create` with float32
//! interleaved I/O, `soxr_quality_spec(SOXR_HQ, 0)` and the default runtime spec; the input is fed
//! in chunks of `48000 * in_rate / out_rate` samples, then the stream is flushed with a NULL input;
//! the output buffer holds `ilen * out_rate / in_rate + 1` samples. This module repeats exactly that.

use std::ffi::{c_char, c_uint, c_ulong, c_void, CStr};

use super::ReferenceError;

#[repr(C)]
struct SoxrIoSpec {
    itype: c_uint,
    otype: c_uint,
    scale: f64,
    e: *mut c_void,
    flags: c_ulong,
}

#[repr(C)]
struct SoxrQualitySpec {
    precision: f64,
    phase_response: f64,
    passband_end: f64,
    stopband_begin: f64,
    e: *mut c_void,
    flags: c_ulong,
}

#[repr(C)]
struct SoxrOpaque {
    _private: [u8; 0],
}

type SoxrT = *mut SoxrOpaque;
type SoxrError = *const c_char;

const SOXR_FLOAT32_I: c_uint = 0;
const SOXR_HQ: c_ulong = 4; // SOXR_20_BITQ

#[link(name = "soxr")]
extern "C" {
    fn soxr_create(
        input_rate: f64,
        output_rate: f64,
        num_channels: c_uint,
        error: *mut SoxrError,
        io_spec: *const SoxrIoSpec,
        quality_spec: *const SoxrQualitySpec,
        runtime_spec: *const c_void,
    ) -> SoxrT;
    fn soxr_process(
        resampler: SoxrT,
        input: *const c_void,
        ilen: usize,
        idone: *mut usize,
        output: *mut c_void,
        olen: usize,
        odone: *mut usize,
    ) -> SoxrError;
    fn soxr_delete(resampler: SoxrT);
    fn soxr_quality_spec(recipe: c_ulong, flags: c_ulong) -> SoxrQualitySpec;
    fn soxr_io_spec(itype: c_uint, otype: c_uint) -> SoxrIoSpec;
}

fn err_text(e: SoxrError) -> String {
    if e.is_null() {
        return "unknown soxr error".into();
    }
    // SAFETY: libsoxr returns NUL-terminated static strings as errors.
    unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
}

/// Owns a `soxr_t` and deletes it on drop.
struct Resampler(SoxrT);

impl Resampler {
    /// A mono f32 resampler at soxr's HQ recipe (python-soxr's default): `SOXR_HQ`, no flags, default runtime spec.
    fn hq(in_rate: f64, out_rate: f64) -> Result<Resampler, ReferenceError> {
        if !(in_rate > 0.0 && in_rate.is_finite() && out_rate > 0.0 && out_rate.is_finite()) {
            return Err(ReferenceError::Resample(format!("bad rates {in_rate} -> {out_rate}")));
        }
        let mut error: SoxrError = std::ptr::null();
        // SAFETY: plain constructors returning structs by value.
        let io = unsafe { soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I) };
        let q = unsafe { soxr_quality_spec(SOXR_HQ, 0) };
        // SAFETY: valid pointers to initialised specs; runtime spec NULL = defaults (as python-soxr).
        let handle = unsafe { soxr_create(in_rate, out_rate, 1, &mut error, &io, &q, std::ptr::null()) };
        if !error.is_null() || handle.is_null() {
            if !handle.is_null() {
                // SAFETY: a handle soxr_create returned, deleted once and never used again.
                unsafe { soxr_delete(handle) };
            }
            return Err(ReferenceError::Resample(err_text(error)));
        }
        Ok(Resampler(handle))
    }
}

impl Drop for Resampler {
    fn drop(&mut self) {
        // SAFETY: created by soxr_create, deleted once.
        unsafe { soxr_delete(self.0) }
    }
}

/// Resamples mono `x` from `in_rate` to `out_rate` with soxr HQ quality, as python-soxr's `resample`.
pub fn resample_soxr_hq(x: &[f32], in_rate: f64, out_rate: f64) -> Result<Vec<f32>, ReferenceError> {
    let r = Resampler::hq(in_rate, out_rate)?;

    let ilen = x.len();
    // C++: `const size_t olen = ilen * out_rate / in_rate + 1;` (double arithmetic, truncated).
    let olen = (ilen as f64 * out_rate / in_rate + 1.0) as usize;
    let chunk_len = ((48000.0 * in_rate / out_rate) as usize).max(1);
    let mut y = vec![0.0f32; olen];
    let mut out_pos = 0usize;
    let mut last_err: SoxrError = std::ptr::null();
    let mut idx = 0usize;
    while idx < ilen {
        let n = chunk_len.min(ilen - idx);
        let mut odone = 0usize;
        // SAFETY: input slice has n valid samples from idx; output has olen - out_pos free slots.
        last_err = unsafe {
            soxr_process(
                r.0,
                x[idx..].as_ptr() as *const c_void,
                n,
                std::ptr::null_mut(),
                y[out_pos..].as_mut_ptr() as *mut c_void,
                olen - out_pos,
                &mut odone,
            )
        };
        out_pos += odone;
        idx += chunk_len;
    }
    // Flush: NULL input signals end of input.
    let mut odone = 0usize;
    // SAFETY: as above; NULL input is the documented end-of-input marker.
    let flush_err = unsafe {
        soxr_process(
            r.0,
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
            y[out_pos..].as_mut_ptr() as *mut c_void,
            olen - out_pos,
            &mut odone,
        )
    };
    out_pos += odone;
    if !flush_err.is_null() {
        last_err = flush_err;
    }
    if !last_err.is_null() {
        return Err(ReferenceError::Resample(err_text(last_err)));
    }
    y.truncate(out_pos);
    Ok(y)
}

/// A streaming soxr HQ resampler (mono `f32`): feed pieces as they come, read what is ready, flush at the end.
///
/// Used by the audio encoders (`crate::codec`) when a codec cannot take the model's rate. Same
/// library and quality recipe as [`resample_soxr_hq`] (`SOXR_HQ`, 20-bit, linear phase); the output
/// of a whole stream has `round(n * out_rate / in_rate)` samples (soxr's own length rule), whatever
/// the piece sizes were. One resampler belongs to one stream; it may move between threads.
pub struct SoxrStream {
    r: Resampler,
    ratio: f64,
    flushed: bool,
}

// SAFETY: a soxr_t is plain heap state with no thread affinity; SoxrStream owns it exclusively
// (no aliasing handle exists), so moving it to another thread is sound.
unsafe impl Send for SoxrStream {}

impl SoxrStream {
    /// A resampler from `in_rate` to `out_rate` (both > 0, finite).
    pub fn new(in_rate: f64, out_rate: f64) -> Result<SoxrStream, ReferenceError> {
        Ok(SoxrStream { r: Resampler::hq(in_rate, out_rate)?, ratio: out_rate / in_rate, flushed: false })
    }

    /// Feeds `x` and appends every output sample that is ready to `out`.
    pub fn process(&mut self, x: &[f32], out: &mut Vec<f32>) -> Result<(), ReferenceError> {
        if self.flushed {
            return Err(ReferenceError::Resample("resampler already flushed".into()));
        }
        if x.is_empty() {
            return Ok(());
        }
        // With `idone` NULL soxr takes the whole input at once; what does not fit the output buffer
        // stays inside and is drained below with empty (non-NULL, i.e. not end-of-input) calls.
        let mut input: Option<&[f32]> = Some(x);
        loop {
            let olen = ((x.len() as f64 * self.ratio) as usize + 256).max(1024);
            let start = out.len();
            out.resize(start + olen, 0.0);
            let mut odone = 0usize;
            let (ptr, ilen) = match input.take() {
                Some(s) => (s.as_ptr(), s.len()),
                // a valid non-NULL pointer with length 0: "no new input yet", not "end of input"
                None => (x.as_ptr(), 0),
            };
            // SAFETY: ptr is valid for ilen samples; the output has olen free slots from `start`.
            let e = unsafe {
                soxr_process(self.r.0, ptr as *const c_void, ilen, std::ptr::null_mut(), out[start..].as_mut_ptr() as *mut c_void, olen, &mut odone)
            };
            out.truncate(start + odone);
            if !e.is_null() {
                return Err(ReferenceError::Resample(err_text(e)));
            }
            if odone < olen {
                return Ok(());
            }
        }
    }

    /// Signals the end of input and appends the remaining output to `out`. Further calls are errors.
    pub fn flush(&mut self, out: &mut Vec<f32>) -> Result<(), ReferenceError> {
        if self.flushed {
            return Err(ReferenceError::Resample("resampler already flushed".into()));
        }
        self.flushed = true;
        loop {
            let olen = 4096usize;
            let start = out.len();
            out.resize(start + olen, 0.0);
            let mut odone = 0usize;
            // SAFETY: NULL input is soxr's end-of-input marker; the output has olen free slots.
            let e = unsafe {
                soxr_process(self.r.0, std::ptr::null(), 0, std::ptr::null_mut(), out[start..].as_mut_ptr() as *mut c_void, olen, &mut odone)
            };
            out.truncate(start + odone);
            if !e.is_null() {
                return Err(ReferenceError::Resample(err_text(e)));
            }
            if odone < olen {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    fn tone(n: usize, rate: f64, hz: f64) -> Vec<f32> {
        (0..n).map(|i| (0.5 * (2.0 * std::f64::consts::PI * hz * i as f64 / rate).sin()) as f32).collect()
    }

    fn run(x: &[f32], pieces: &[usize], from: f64, to: f64) -> Vec<f32> {
        let mut s = SoxrStream::new(from, to).unwrap();
        let mut out = Vec::new();
        let mut i = 0;
        let mut k = 0;
        while i < x.len() {
            let n = pieces[k % pieces.len()].min(x.len() - i);
            s.process(&x[i..i + n], &mut out).unwrap();
            i += n;
            k += 1;
        }
        s.flush(&mut out).unwrap();
        out
    }

    #[test]
    fn streamed_pieces_equal_one_piece_and_keep_the_length() {
        let x = tone(32000, 32000.0, 440.0);
        let whole = run(&x, &[x.len()], 32000.0, 48000.0);
        assert_eq!(whole.len(), 48000);
        let pieces = run(&x, &[1, 7, 333, 4096, 50], 32000.0, 48000.0);
        assert_eq!(pieces.len(), whole.len());
        let maxdiff = whole.iter().zip(&pieces).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(maxdiff < 1e-5, "piecewise differs by {maxdiff}");
        // the tone survives: compare with the ideal 440 Hz tone at 48 kHz away from the edges
        let ideal = tone(48000, 48000.0, 440.0);
        let err = whole[2000..46000].iter().zip(&ideal[2000..46000]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(err < 1e-3, "tone error {err}");
        let down = run(&x, &[1000], 32000.0, 24000.0);
        assert_eq!(down.len(), 24000);
    }

    #[test]
    fn misuse_is_an_error() {
        assert!(SoxrStream::new(0.0, 16000.0).is_err());
        let mut s = SoxrStream::new(16000.0, 8000.0).unwrap();
        let mut out = Vec::new();
        s.flush(&mut out).unwrap();
        assert!(out.is_empty());
        assert!(s.process(&[0.0; 10], &mut out).is_err());
        assert!(s.flush(&mut out).is_err());
    }
}
