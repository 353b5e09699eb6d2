//! Reference audio: from a file (or its bytes) to the arrays the graphs need.
//!
//! In:  an audio file (WAV PCM 8/16/24/32-bit or float, MP3, FLAC, Ogg Vorbis, AAC in M4A/MP4 or ADTS,
//!      Opus in Ogg or WebM, Vorbis in WebM), any rate, any channel count.
//! Out:
//! * [`Audio`]: mono `f32` samples at the file's native rate (channel mean, integer PCM scaled by
//!   `1 / 2^(bits-1)` as libsndfile does).
//! * [`hubert_input`]: `wav16k_padded`, 1-D `f32` at **16 kHz** — `librosa.load(path, sr=16000)`
//!   (soxr "HQ" via libsoxr), checked to be 3..=10 s (48000..=160000 samples), then followed by
//!   `int(32000 * 0.3) = 9600` zeros exactly as GPT-SoVITS does. Feed it to HuBERT as `[1, N]`.
//! * [`vits_input`]: `wav32k`, 1-D `f32` at **32 kHz** (the SoVITS rate) — `torchaudio.transforms.Resample`
//!   with its defaults, then divided by `min(2, max|x|)` when `max|x| > 1`.
//! * [`spectrogram`]: the linear magnitude spectrogram `refer_spec` of `wav32k`, `[n_fft/2 + 1, frames]`
//!   row-major (bins x frames), as `spectrogram_torch(..., center=False)` computes it.
//! * [`ReferenceCache`]: a small content-hash (sha256 of the file bytes) LRU for derived data.
//! * [`Hubert`]: the prompt encoder (`hubert` + `vq_encode` graphs): `wav16k_padded` -> prompt codes (25 Hz).
//! * [`SpeakerVerifier`] (v2Pro/v2ProPlus bundles): the `sv` graph, `wav32k` -> the speaker-verification embedding
//!   (20480 values) that `ref_enc` fuses into the speaker vector.
//!
//! [`prepare`] runs the whole signal chain for one file (plain Rust); [`Hubert`] runs its graphs through
//! [`crate::runtime`]. The engine caches what a voice costs (prompt codes, speaker vector) by content hash.
//!
//! Differences from upstream, all on inputs upstream mishandles: files with more than two channels are
//! mixed to mono by the mean on both paths (torchaudio's path only mixes exactly two channels);
//! rate pairs whose gcd-reduced sinc kernel would exceed ~64 M taps are refused with
//! [`ReferenceError::Resample`]. MP3 is decoded by symphonia (no gapless trimming), which may differ
//! from libsndfile's mpg123 by the encoder delay; WAV/FLAC decode sample-exactly.

mod cache;
mod decode;
mod file;
mod hubert;
mod mp4check;
mod sinc;
mod soxr;
mod spec;
mod sv;

use std::path::{Path, PathBuf};

pub use cache::{content_hash, ContentHash, ReferenceCache};
pub use decode::{decode_bytes, load_file, max_decode_frames, MAX_DECODE_SECONDS};
pub use file::{canonical_roots, open_reference, RefFile, DEFAULT_MAX_REF_BYTES};
pub use hubert::{Hubert, HubertError};
pub use sinc::resample_torchaudio;
pub use soxr::{resample_soxr_hq, SoxrStream};
pub use spec::{spectrogram, Spectrogram};
pub use sv::{SpeakerVerifier, SvError, SvOutputs};

/// Size limit of reference files the operator names on the command line (`gsv synth --ref`, parity): a regular file
/// is still required, but the limit is generous (the server uses `--max-ref-bytes`).
pub const LOCAL_MAX_REF_BYTES: u64 = 256 << 20;

/// Sample rate HuBERT expects.
pub const HUBERT_RATE: u32 = 16_000;
/// Shortest accepted reference at 16 kHz (3 s), inclusive.
pub const MIN_REF_SAMPLES_16K: usize = 48_000;
/// Longest accepted reference at 16 kHz (10 s), inclusive.
pub const MAX_REF_SAMPLES_16K: usize = 160_000;
/// Zeros GPT-SoVITS appends to the 16 kHz signal: `int(32000 * 0.3)` (sized for 32 kHz, kept as is).
pub const HUBERT_PAD_SAMPLES: usize = 9_600;

/// Mono audio at its own sample rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

impl Audio {
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }
}

/// Errors of the reference-audio layer.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot read reference audio {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The path resolves outside every `--ref-root` (or climbs with `..`).
    #[error("reference path is outside the allowed folders")]
    Forbidden,
    /// A FIFO, a device, a directory...: never read (a FIFO would block, a device never ends).
    #[error("the reference is not a regular file (a {0})")]
    NotRegular(&'static str),
    /// The file is larger than `--max-ref-bytes`; refused before reading.
    #[error("the reference file is larger than {max} bytes")]
    TooLarge { max: u64 },
    /// The decoder stopped at the cap ([`MAX_DECODE_SECONDS`]): far outside the 3-10 s rule.
    #[error("reference audio longer than {max_secs} s")]
    TooLong { max_secs: u32 },
    /// The read was stopped (the request's deadline passed or its client left).
    #[error("reading the reference was interrupted")]
    Interrupted,
    #[error("unsupported audio format: {0}")]
    UnsupportedFormat(String),
    #[error("cannot decode audio: {0}")]
    Decode(String),
    #[error("reference audio contains no samples")]
    EmptyAudio,
    #[error("invalid sample rate {0}")]
    BadSampleRate(u32),
    #[error(
        "reference audio must be 3..10 s: {samples} samples at 16 kHz ({secs:.2} s), allowed {min}..={max}"
    )]
    Duration { samples: usize, secs: f64, min: usize, max: usize },
    #[error("resampling failed: {0}")]
    Resample(String),
    #[error("invalid spectrogram parameters: {0}")]
    SpecParams(String),
    #[error("signal of {len} samples too short for reflect padding of {pad}")]
    TooShortForSpec { len: usize, pad: usize },
}

/// Parameters of the reference spectrogram (the bundle manifest gives them; GPT-SoVITS v2: 2048/640/2048).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecParams {
    pub n_fft: usize,
    pub hop: usize,
    pub win: usize,
}

impl Default for SpecParams {
    fn default() -> Self {
        SpecParams { n_fft: 2048, hop: 640, win: 2048 }
    }
}

/// Everything derived from one reference file.
#[derive(Debug, Clone)]
pub struct PreparedReference {
    /// sha256 of the file bytes.
    pub hash: ContentHash,
    /// HuBERT input at 16 kHz, 3..10 s of audio + 9600 zeros.
    pub wav16k_padded: Vec<f32>,
    /// The signal at `vits_rate` (32 kHz for v2), normalised as upstream.
    pub wav32k: Vec<f32>,
    /// `refer_spec`, `[bins, frames]`.
    pub spec: Spectrogram,
}

/// `librosa.load(path, sr=16000)` on decoded audio + the 3..10 s rule + 9600 zeros.
///
/// Output: 1-D `f32` at 16 kHz, `len = n16k + 9600`.
pub fn hubert_input(audio: &Audio) -> Result<Vec<f32>, ReferenceError> {
    // the 16 kHz length is known before resampling (librosa's fix_length, the same expression as
    // `resample_librosa`): refuse a reference outside 3..10 s without resampling it
    if audio.sample_rate > 0 && audio.sample_rate != HUBERT_RATE {
        let n = (audio.samples.len() as f64 * (HUBERT_RATE as f64 / audio.sample_rate as f64)).ceil() as usize;
        check_duration_16k(n)?;
    }
    let mut wav = resample_librosa(audio, HUBERT_RATE)?;
    check_duration_16k(wav.len())?;
    wav.resize(wav.len() + HUBERT_PAD_SAMPLES, 0.0);
    Ok(wav)
}

/// The 3..10 s rule of `TTS._set_prompt_semantic` on a 16 kHz length.
pub fn check_duration_16k(samples: usize) -> Result<(), ReferenceError> {
    if !(MIN_REF_SAMPLES_16K..=MAX_REF_SAMPLES_16K).contains(&samples) {
        return Err(ReferenceError::Duration {
            samples,
            secs: samples as f64 / HUBERT_RATE as f64,
            min: MIN_REF_SAMPLES_16K,
            max: MAX_REF_SAMPLES_16K,
        });
    }
    Ok(())
}

/// `librosa.resample(y, orig_sr, target_sr, res_type="soxr_hq")` including librosa's `fix_length`
/// to `ceil(n * target / orig)`; identity when the rates match (librosa skips resampling then).
pub fn resample_librosa(audio: &Audio, target_rate: u32) -> Result<Vec<f32>, ReferenceError> {
    if audio.sample_rate == 0 {
        return Err(ReferenceError::BadSampleRate(0));
    }
    if target_rate == 0 {
        return Err(ReferenceError::BadSampleRate(0));
    }
    if audio.samples.is_empty() {
        return Err(ReferenceError::EmptyAudio);
    }
    if audio.sample_rate == target_rate {
        return Ok(audio.samples.clone());
    }
    let mut y = resample_soxr_hq(&audio.samples, audio.sample_rate as f64, target_rate as f64)?;
    // librosa: n_samples = int(np.ceil(len * (target / orig))) with a float ratio.
    let ratio = target_rate as f64 / audio.sample_rate as f64;
    let n = (audio.samples.len() as f64 * ratio).ceil() as usize;
    y.resize(n, 0.0);
    Ok(y)
}

/// `TTS._get_ref_spec`'s audio: torchaudio resample to `target_rate` (skipped when equal), then
/// divide by `min(2, max|x|)` if `max|x| > 1`. Output: 1-D `f32` at `target_rate`.
pub fn vits_input(audio: &Audio, target_rate: u32) -> Result<Vec<f32>, ReferenceError> {
    if audio.samples.is_empty() {
        return Err(ReferenceError::EmptyAudio);
    }
    let mut y = if audio.sample_rate == target_rate {
        audio.samples.clone()
    } else {
        resample_torchaudio(&audio.samples, audio.sample_rate, target_rate)?
    };
    let maxx = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if maxx > 1.0 {
        let d = maxx.min(2.0);
        for v in &mut y {
            *v /= d;
        }
    }
    Ok(y)
}

/// The whole chain for one file at `path`: decode, hash, 16 kHz HuBERT input, `vits_rate` signal, spectrogram.
pub fn prepare(path: &Path, vits_rate: u32, params: SpecParams) -> Result<PreparedReference, ReferenceError> {
    let f = open_reference(path, &[], LOCAL_MAX_REF_BYTES)?;
    let bytes = f.read_all(&|| false)?;
    prepare_bytes(&bytes, f.ext.as_deref(), vits_rate, params)
}

/// [`prepare`] on file contents already in memory (`ext_hint` e.g. `Some("mp3")` helps format probing).
pub fn prepare_bytes(
    bytes: &[u8],
    ext_hint: Option<&str>,
    vits_rate: u32,
    params: SpecParams,
) -> Result<PreparedReference, ReferenceError> {
    let hash = content_hash(bytes);
    let audio = decode_bytes(bytes, ext_hint)?;
    let wav16k_padded = hubert_input(&audio)?;
    let wav32k = vits_input(&audio, vits_rate)?;
    let spec = spectrogram(&wav32k, params)?;
    Ok(PreparedReference { hash, wav16k_padded, wav32k, spec })
}
