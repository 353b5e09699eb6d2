//! WAV writing: PCM16 mono headers (known and unknown length) and f32 -> i16 conversion.
//!
//! In: `f32` samples (nominally in [-1, 1]) or `i16` PCM, a sample rate. Out: bytes of a canonical
//! 44-byte-header RIFF/WAVE file (PCM, 1 channel, 16 bit, little endian).
//!
//! Conversion rule (`f32_to_i16`): GPT-SoVITS's api_v2 path (`TTS.audio_postprocess`) does
//! `(audio * 32768).astype(np.int16)` after dividing the audio by its peak when the peak exceeds 1:
//! multiply by [`API_V2_SCALE`] in f32 and truncate toward zero. One deliberate difference: numpy's
//! cast wraps out-of-range values (exactly +1.0 gives 32768 -> -32768, a full-scale click); here the
//! result saturates to `i16::MAX` / `i16::MIN`. `inference_webui.py` uses ×32767 instead
//! ([`WEBUI_SCALE`]), same truncation.
//!
//! Streaming: when the length is unknown, [`streaming_header`] writes `0xFFFFFFFF` as both the RIFF
//! size and the `data` size (the convention of most streaming TTS servers; ffmpeg, browsers, sox
//! read such a stream to EOF). Upstream api_v2 sends a header made by Python's `wave` module for
//! zero frames (RIFF size 36, data size 0); we do not copy that because a strict reader honouring
//! the sizes would then see an empty file.

/// Scale of api_v2 / `TTS.audio_postprocess`: `(audio * 32768).astype(np.int16)`.
pub const API_V2_SCALE: f32 = 32768.0;
/// Scale of `inference_webui.get_tts_wav`: `(audio * 32767).astype(np.int16)`.
pub const WEBUI_SCALE: f32 = 32767.0;

/// Size value written for unknown lengths (RIFF and data chunk).
pub const STREAMING_SIZE: u32 = 0xFFFF_FFFF;

/// Length of the header written here.
pub const HEADER_LEN: usize = 44;

/// Errors of the WAV layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WavError {
    #[error("{samples} samples do not fit a WAV file (max {max})")]
    TooLong { samples: u64, max: u64 },
    #[error("invalid sample rate {0}")]
    BadSampleRate(u32),
}

/// One sample: `x * scale` in f32, truncated toward zero, saturated to the i16 range; NaN -> 0.
pub fn f32_to_i16(x: f32, scale: f32) -> i16 {
    let v = (x * scale).trunc();
    if v.is_nan() {
        0
    } else if v >= i16::MAX as f32 {
        i16::MAX
    } else if v <= i16::MIN as f32 {
        i16::MIN
    } else {
        v as i16
    }
}

/// A whole buffer with [`f32_to_i16`].
pub fn to_pcm16(samples: &[f32], scale: f32) -> Vec<i16> {
    samples.iter().map(|&x| f32_to_i16(x, scale)).collect()
}

/// GPT-SoVITS's peak rule before conversion: divide by `max|x|` when it exceeds 1 (in place).
pub fn normalize_peak(samples: &mut [f32]) {
    let peak = samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if peak > 1.0 {
        for v in samples.iter_mut() {
            *v /= peak;
        }
    }
}

fn header(sample_rate: u32, riff_size: u32, data_size: u32) -> [u8; HEADER_LEN] {
    let channels: u16 = 1;
    let bits: u16 = 16;
    let block_align: u16 = channels * bits / 8;
    let byte_rate: u32 = sample_rate.wrapping_mul(block_align as u32);
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&riff_size.to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&bits.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_size.to_le_bytes());
    h
}

/// Most samples a known-length 16-bit mono WAV can hold (RIFF size must fit in u32).
pub const MAX_SAMPLES: u64 = (u32::MAX as u64 - 36) / 2;

/// 44-byte header for `num_samples` PCM16 mono samples.
pub fn header_for_len(sample_rate: u32, num_samples: u64) -> Result<[u8; HEADER_LEN], WavError> {
    if sample_rate == 0 {
        return Err(WavError::BadSampleRate(0));
    }
    if num_samples > MAX_SAMPLES {
        return Err(WavError::TooLong { samples: num_samples, max: MAX_SAMPLES });
    }
    let data = (num_samples * 2) as u32;
    Ok(header(sample_rate, 36 + data, data))
}

/// 44-byte header for a stream of unknown length (sizes `0xFFFFFFFF`; see the module docs).
pub fn streaming_header(sample_rate: u32) -> Result<[u8; HEADER_LEN], WavError> {
    if sample_rate == 0 {
        return Err(WavError::BadSampleRate(0));
    }
    Ok(header(sample_rate, STREAMING_SIZE, STREAMING_SIZE))
}

/// Little-endian bytes of PCM16 samples (a streaming chunk body).
pub fn pcm16_bytes(samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// A complete WAV file from PCM16 samples.
pub fn encode_pcm16(sample_rate: u32, samples: &[i16]) -> Result<Vec<u8>, WavError> {
    let h = header_for_len(sample_rate, samples.len() as u64)?;
    let mut out = Vec::with_capacity(HEADER_LEN + samples.len() * 2);
    out.extend_from_slice(&h);
    out.extend_from_slice(&pcm16_bytes(samples));
    Ok(out)
}

/// A complete WAV file from f32 samples: [`to_pcm16`] with `scale`, then [`encode_pcm16`].
pub fn encode_f32(sample_rate: u32, samples: &[f32], scale: f32) -> Result<Vec<u8>, WavError> {
    encode_pcm16(sample_rate, &to_pcm16(samples, scale))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn conversion_truncates_and_saturates() {
        assert_eq!(f32_to_i16(0.0, API_V2_SCALE), 0);
        assert_eq!(f32_to_i16(0.5, API_V2_SCALE), 16384);
        assert_eq!(f32_to_i16(1.0, API_V2_SCALE), 32767); // numpy would wrap to -32768
        assert_eq!(f32_to_i16(-1.0, API_V2_SCALE), -32768);
        assert_eq!(f32_to_i16(-2.0, API_V2_SCALE), -32768);
        assert_eq!(f32_to_i16(1.0, WEBUI_SCALE), 32767);
        // Truncation toward zero, not rounding.
        assert_eq!(f32_to_i16(0.99999, WEBUI_SCALE), 32766);
        assert_eq!(f32_to_i16(-0.00004, API_V2_SCALE), -1);
        assert_eq!(f32_to_i16(-0.00002, API_V2_SCALE), 0);
        assert_eq!(f32_to_i16(f32::NAN, API_V2_SCALE), 0);
    }

    #[test]
    fn known_length_parses_back_with_hound() {
        let samples: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.05).sin() * 0.8).collect();
        let bytes = encode_f32(32000, &samples, API_V2_SCALE).unwrap();
        assert_eq!(bytes.len(), 44 + 2000);
        let mut r = hound::WavReader::new(Cursor::new(&bytes)).unwrap();
        let spec = r.spec();
        assert_eq!(spec.channels, 1);
        assert_eq!(spec.sample_rate, 32000);
        assert_eq!(spec.bits_per_sample, 16);
        assert_eq!(spec.sample_format, hound::SampleFormat::Int);
        let back: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(back, to_pcm16(&samples, API_V2_SCALE));
    }

    #[test]
    fn empty_file_is_valid() {
        let bytes = encode_pcm16(16000, &[]).unwrap();
        let r = hound::WavReader::new(Cursor::new(&bytes)).unwrap();
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn streaming_header_fields() {
        let h = streaming_header(32000).unwrap();
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(h[4..8].try_into().unwrap()), 0xFFFF_FFFF);
        assert_eq!(&h[36..40], b"data");
        assert_eq!(u32::from_le_bytes(h[40..44].try_into().unwrap()), 0xFFFF_FFFF);
        assert_eq!(u32::from_le_bytes(h[24..28].try_into().unwrap()), 32000);
        assert_eq!(u32::from_le_bytes(h[28..32].try_into().unwrap()), 64000);
        // Same fmt chunk as the known-length header.
        assert_eq!(h[12..36], header_for_len(32000, 10).unwrap()[12..36]);
        assert_eq!(streaming_header(0), Err(WavError::BadSampleRate(0)));
    }

    #[test]
    fn too_long_is_error() {
        assert!(matches!(header_for_len(32000, MAX_SAMPLES + 1), Err(WavError::TooLong { .. })));
        assert!(header_for_len(32000, MAX_SAMPLES).is_ok());
    }
}
