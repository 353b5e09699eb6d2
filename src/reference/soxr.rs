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

impl Drop for Resampler {
    fn drop(&mut self) {
        // SAFETY: created by soxr_create, deleted once.
        unsafe { soxr_delete(self.0) }
    }
}

/// Resamples mono `x` from `in_rate` to `out_rate` with soxr HQ quality, as python-soxr's `resample`.
pub fn resample_soxr_hq(x: &[f32], in_rate: f64, out_rate: f64) -> Result<Vec<f32>, ReferenceError> {
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
            unsafe { soxr_delete(handle) };
        }
        return Err(ReferenceError::Resample(err_text(error)));
    }
    let r = Resampler(handle);

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
