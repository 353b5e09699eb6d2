//! Audio encoders for HTTP responses: PCM16 mono in, the bytes of a container out, piece by piece.
//!
//! In: mono PCM16 (`i16`) at the model's rate (32 kHz for v1/v2/v2Pro; taken as a parameter, never
//! assumed), pushed in pieces as synthesis produces them. Out: bytes that are ready after each push
//! (whole Ogg pages, MP3 frames, ADTS frames, FLAC frames, raw PCM), then the rest at [`Encoder::finish`].
//! One [`Encoder`] holds one request's codec state; it is `Send`, so it can live in a response body.
//!
//! | [`AudioFormat`] | container / codec | library (linked)                        | output rate                         |
//! |-----------------|-------------------|-----------------------------------------|-------------------------------------|
//! | `Wav`           | RIFF/WAVE PCM16   | [`crate::wav`]                          | input rate                          |
//! | `Raw`           | headerless PCM16LE| —                                       | input rate, or forced (OpenAI `pcm`: 24 kHz) |
//! | `Mp3`           | MPEG-1/2 Layer III, CBR | LAME (`libmp3lame`)               | input rate if LAME takes it, else resampled |
//! | `OggVorbis`     | Ogg / Vorbis, VBR q0.4 | libvorbis + libvorbisenc, libogg   | input rate (8..=192 kHz)            |
//! | `OggOpus`       | Ogg / Opus (RFC 7845) | libopus, libogg                     | 48 kHz (Opus's own clock)           |
//! | `Aac`           | ADTS / AAC-LC     | FFmpeg's native `aac` encoder + `adts` muxer (libavcodec, libavformat) | input rate if AAC has it, else resampled |
//! | `Flac`          | native FLAC       | libFLAC                                 | input rate                          |
//!
//! A rate a codec cannot take is resampled with libsoxr HQ ([`crate::reference::SoxrStream`],
//! streaming), never refused. Bit rates default to [`Bitrates::default`] (AAC: api_v2's 192 kbps);
//! [`EncoderOptions::bitrate`] overrides them (api.py's AAC is 128 kbps: [`API_PY_AAC_BITRATE`]).
//!
//! Delivery ([`Delivery`]): `Stream` writes what a stream of unknown length can carry (WAV sizes
//! `0xFFFFFFFF`, FLAC STREAMINFO without total/MD5, MP3 without a LAME/Info tag); `Whole` is for a
//! response sent in one piece: [`Encoder::finish`] then also returns [`Patch`]es that rewrite bytes
//! already produced (WAV sizes, FLAC STREAMINFO, the MP3 LAME tag that carries the encoder delay and
//! padding for gapless decoding). [`encode_whole`] does all of it for a buffer.

#[cfg(feature = "aac")]
mod aac;
mod flac;
mod mp3;
mod ogg;
mod opus;
mod raw;
mod resample;
mod vorbis;
mod wav;

pub use opus::OpusDecoder;

use resample::RateStage;

/// Response audio formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioFormat {
    /// RIFF/WAVE, PCM16 mono.
    Wav,
    /// Headerless PCM16 little-endian mono (api_v2 `raw`, OpenAI `pcm`).
    Raw,
    /// MPEG audio Layer III (LAME), CBR.
    Mp3,
    /// Ogg Vorbis: what upstream's `soundfile.write(format="ogg")` writes (libsndfile's default OGG subtype).
    OggVorbis,
    /// Ogg Opus (RFC 7845).
    OggOpus,
    /// AAC-LC in ADTS frames, FFmpeg's native encoder (upstream: `ffmpeg -c:a aac -f adts`).
    Aac,
    /// FLAC, 16-bit.
    Flac,
}

/// Every format, in a fixed order (tests and docs iterate over it).
pub const ALL_FORMATS: [AudioFormat; 7] =
    [AudioFormat::Wav, AudioFormat::Raw, AudioFormat::Mp3, AudioFormat::OggVorbis, AudioFormat::OggOpus, AudioFormat::Aac, AudioFormat::Flac];

/// OpenAI's `pcm`: 24 kHz, 16-bit signed little-endian, mono, no header.
pub const OPENAI_PCM_RATE: u32 = 24_000;
/// api_v2.py `pack_aac`: `ffmpeg ... -c:a aac -b:a 192k -f adts`.
pub const API_V2_AAC_BITRATE: u32 = 192_000;
/// api.py `pack_aac` with `-st int16` (its default): `-b:a 128k` (256k for int32).
pub const API_PY_AAC_BITRATE: u32 = 128_000;
/// libsndfile's default Vorbis quality (`vdata->quality = 0.4`, `vorbis_encode_init_vbr`), i.e. upstream's `ogg`.
pub const LIBSNDFILE_VORBIS_QUALITY: f32 = 0.4;

/// A format together with a forced output rate (OpenAI `pcm`), as a route's parameter names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSpec {
    pub format: AudioFormat,
    /// `Some(rate)`: the output is resampled to this rate whatever the model's rate is.
    pub sample_rate: Option<u32>,
}

impl AudioFormat {
    /// api_v2 `/tts` `media_type`: upstream's `wav | raw | ogg | aac`, plus gsv's `mp3 | flac | opus`.
    /// ASCII case-insensitive (upstream compares exactly; accepting `WAV` breaks no client).
    /// `None` for anything else: the route answers `{"message":"media_type: X is not supported"}`.
    pub fn from_api_v2(media_type: &str) -> Option<AudioFormat> {
        match media_type.to_ascii_lowercase().as_str() {
            "wav" => Some(AudioFormat::Wav),
            "raw" => Some(AudioFormat::Raw),
            "ogg" => Some(AudioFormat::OggVorbis),
            "aac" => Some(AudioFormat::Aac),
            "mp3" => Some(AudioFormat::Mp3),
            "flac" => Some(AudioFormat::Flac),
            "opus" => Some(AudioFormat::OggOpus),
            _ => None,
        }
    }

    /// api.py `-mt` / `--media_type`: `wav | ogg | aac` (api.py lower-cases the flag), plus gsv's
    /// `mp3 | flac | opus`. An empty value gives api.py's default, [`AudioFormat::api_py_default`].
    /// api.py silently falls back to its default for unknown names; here they are `None`, so the
    /// server can refuse a mistyped flag at start-up instead of serving something else.
    pub fn from_api_py(media_type: &str, stream_mode_normal: bool) -> Option<AudioFormat> {
        match media_type.trim().to_ascii_lowercase().as_str() {
            "" => Some(AudioFormat::api_py_default(stream_mode_normal)),
            "wav" => Some(AudioFormat::Wav),
            "ogg" => Some(AudioFormat::OggVorbis),
            "aac" => Some(AudioFormat::Aac),
            "mp3" => Some(AudioFormat::Mp3),
            "flac" => Some(AudioFormat::Flac),
            "opus" => Some(AudioFormat::OggOpus),
            _ => None,
        }
    }

    /// api.py's default when `-mt` names neither aac nor ogg: `wav` with `-sm close`, **`ogg`** with
    /// `-sm normal` (`else: media_type = "ogg"` in api.py).
    pub fn api_py_default(stream_mode_normal: bool) -> AudioFormat {
        if stream_mode_normal {
            AudioFormat::OggVorbis
        } else {
            AudioFormat::Wav
        }
    }

    /// OpenAI `response_format`: `mp3` (the default when absent) `| opus | aac | flac | wav | pcm`.
    /// `pcm` is 24 kHz ([`OPENAI_PCM_RATE`]); the others keep the model's rate (their headers say it).
    /// ASCII case-insensitive. `None`: the route answers OpenAI's `invalid_request_error`.
    pub fn from_openai(response_format: Option<&str>) -> Option<OutputSpec> {
        let name = response_format.unwrap_or("mp3").to_ascii_lowercase();
        let (format, sample_rate) = match name.as_str() {
            "mp3" => (AudioFormat::Mp3, None),
            "opus" => (AudioFormat::OggOpus, None),
            "aac" => (AudioFormat::Aac, None),
            "flac" => (AudioFormat::Flac, None),
            "wav" => (AudioFormat::Wav, None),
            "pcm" => (AudioFormat::Raw, Some(OPENAI_PCM_RATE)),
            _ => return None,
        };
        Some(OutputSpec { format, sample_rate })
    }

    /// `Content-Type` of a response in this format. `wav`, `raw`, `ogg`, `aac` are upstream api_v2's
    /// `f"audio/{media_type}"`; the others are the registered types (`audio/mpeg`, `audio/flac`, and
    /// `audio/ogg; codecs=opus` per RFC 7845). OpenAI's `pcm` route uses [`AudioFormat::Raw`] with
    /// [`OPENAI_PCM_CONTENT_TYPE`] instead.
    pub fn content_type(self) -> &'static str {
        match self {
            AudioFormat::Wav => "audio/wav",
            AudioFormat::Raw => "audio/raw",
            AudioFormat::Mp3 => "audio/mpeg",
            AudioFormat::OggVorbis => "audio/ogg",
            AudioFormat::OggOpus => "audio/ogg; codecs=opus",
            AudioFormat::Aac => "audio/aac",
            AudioFormat::Flac => "audio/flac",
        }
    }

    /// Short name (api_v2's `media_type` spelling; `opus` for Ogg Opus).
    pub fn name(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Raw => "raw",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::OggVorbis => "ogg",
            AudioFormat::OggOpus => "opus",
            AudioFormat::Aac => "aac",
            AudioFormat::Flac => "flac",
        }
    }

    /// File extension for a download of this format.
    pub fn extension(self) -> &'static str {
        match self {
            AudioFormat::Raw => "pcm",
            AudioFormat::OggOpus => "opus",
            other => other.name(),
        }
    }

    /// Whether this build has the encoder (AAC needs the default cargo feature `aac`, FFmpeg's libraries).
    /// Routes refuse an unavailable format with a 400 naming it ([`AudioFormat::unavailable_message`]).
    pub fn available(self) -> bool {
        match self {
            AudioFormat::Aac => cfg!(feature = "aac"),
            _ => true,
        }
    }

    /// The client-facing reason an unavailable format is refused.
    pub fn unavailable_message(self) -> String {
        format!("this build has no {} encoder (built without the cargo feature `{}`)", self.name().to_ascii_uppercase(), self.name())
    }

    /// Every format here streams (bytes leave with each push). Listed for routes and docs.
    pub fn streams(self) -> bool {
        true
    }

    /// Whether decoding gives back exactly the pushed samples (before any resampling).
    pub fn lossless(self) -> bool {
        matches!(self, AudioFormat::Wav | AudioFormat::Raw | AudioFormat::Flac)
    }

    /// The rate the encoded stream has for input at `in_rate` (no forced rate).
    pub fn output_rate(self, in_rate: u32) -> u32 {
        match self {
            AudioFormat::Wav | AudioFormat::Raw | AudioFormat::Flac => in_rate,
            AudioFormat::Mp3 => pick_rate(in_rate, &mp3::RATES),
            AudioFormat::Aac => pick_rate(in_rate, &AAC_RATES),
            AudioFormat::OggOpus => opus::RATE,
            AudioFormat::OggVorbis => {
                if (vorbis::MIN_RATE..=vorbis::MAX_RATE).contains(&in_rate) {
                    in_rate
                } else {
                    48_000
                }
            }
        }
    }
}

/// Sample rates the AAC sampling-frequency table has, ascending.
pub(crate) const AAC_RATES: [u32; 13] = [7_350, 8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 64_000, 88_200, 96_000];

/// `Content-Type` for OpenAI's `pcm` (the OpenAI route's current value, kept).
pub const OPENAI_PCM_CONTENT_TYPE: &str = "audio/pcm";

/// `rate` if `supported` (ascending) has it, else the smallest supported rate above it, else the largest.
fn pick_rate(rate: u32, supported: &[u32]) -> u32 {
    if supported.contains(&rate) {
        return rate;
    }
    supported.iter().copied().find(|&r| r > rate).unwrap_or_else(|| supported.last().copied().unwrap_or(rate))
}

/// How the output will be delivered (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Sent as produced; the total length is unknown while encoding; no patches.
    #[default]
    Stream,
    /// Kept until [`Encoder::finish`] and sent whole: finish returns patches for bytes already produced.
    Whole,
}

/// Options of one encoder.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EncoderOptions {
    pub delivery: Delivery,
    /// Bits per second for the lossy codecs (MP3: CBR kbps rounded to LAME's table; Opus: VBR target;
    /// AAC: ABR target). Ignored by WAV, raw, FLAC and Vorbis (Vorbis uses [`EncoderOptions::vorbis_quality`]).
    pub bitrate: Option<u32>,
    /// Vorbis VBR quality (-0.1..=1.0); default [`LIBSNDFILE_VORBIS_QUALITY`] as upstream's soundfile.
    pub vorbis_quality: Option<f32>,
    /// Forced output rate (OpenAI `pcm`); `None` = [`AudioFormat::output_rate`].
    pub sample_rate: Option<u32>,
}

/// Default bit rates of the lossy codecs.
#[derive(Debug, Clone, Copy)]
pub struct Bitrates;

impl Bitrates {
    /// MP3: 128 kbps CBR (LAME rounds to the nearest legal rate for MPEG-2 sample rates).
    pub const MP3: u32 = 128_000;
    /// Opus: 64 kbps VBR (speech is transparent well below this).
    pub const OPUS: u32 = 64_000;
    /// AAC: 192 kbps, api_v2's `-b:a 192k`.
    pub const AAC: u32 = API_V2_AAC_BITRATE;
}

/// Bytes that replace already produced output at `offset` (from the first byte of the stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// What [`Encoder::finish`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Finished {
    /// The last bytes of the stream.
    pub tail: Vec<u8>,
    /// Only with [`Delivery::Whole`]: rewrites of earlier bytes, to apply in order ([`apply_patches`]).
    pub patches: Vec<Patch>,
}

/// Errors of the encoders. All are internal faults or caller misuse (a route maps them to 500).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("invalid sample rate {0}")]
    BadSampleRate(u32),
    #[error("{codec}: {message}")]
    Library { codec: &'static str, message: String },
    #[error("resampling failed: {0}")]
    Resample(String),
    #[error("the encoder is finished")]
    Finished,
    /// The format's encoder is not in this build (cargo feature off).
    #[error("this build has no {0} encoder")]
    NotBuilt(&'static str),
    #[error("{0}")]
    Wav(#[from] crate::wav::WavError),
    #[error("patch at {offset}+{len} outside the {total}-byte output")]
    PatchOutOfRange { offset: u64, len: usize, total: usize },
}

pub(crate) fn lib_err(codec: &'static str, message: impl Into<String>) -> CodecError {
    CodecError::Library { codec, message: message.into() }
}

/// One codec's per-request state at its own rate (the [`Encoder`] resamples before it).
///
/// `push` appends the bytes that are complete to `out`; `finish` ends the stream, appends the rest
/// and returns patches (only with [`Delivery::Whole`]). Implementations never panic on any input.
pub trait AudioEncoder: Send {
    fn push(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError>;
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<Vec<Patch>, CodecError>;
}

/// A streaming encoder for one response: optional resampling, then the codec.
pub struct Encoder {
    format: AudioFormat,
    in_rate: u32,
    out_rate: u32,
    stage: Option<RateStage>,
    codec: Box<dyn AudioEncoder>,
    scratch: Vec<i16>,
    pushed: u64,
    finished: bool,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("format", &self.format)
            .field("in_rate", &self.in_rate)
            .field("out_rate", &self.out_rate)
            .field("pushed", &self.pushed)
            .field("finished", &self.finished)
            .finish()
    }
}

impl Encoder {
    /// An encoder for `format` fed with PCM16 mono at `in_rate`.
    pub fn new(format: AudioFormat, in_rate: u32, opts: EncoderOptions) -> Result<Encoder, CodecError> {
        if in_rate == 0 {
            return Err(CodecError::BadSampleRate(0));
        }
        let out_rate = match opts.sample_rate {
            Some(0) => return Err(CodecError::BadSampleRate(0)),
            // a forced rate the codec cannot take still ends at a rate it can
            Some(r) => format.output_rate(r),
            None => format.output_rate(in_rate),
        };
        let stage = if out_rate != in_rate { Some(RateStage::new(in_rate, out_rate)?) } else { None };
        let codec: Box<dyn AudioEncoder> = match format {
            AudioFormat::Wav => Box::new(wav::WavEncoder::new(out_rate, opts.delivery)?),
            AudioFormat::Raw => Box::new(raw::RawEncoder),
            AudioFormat::Mp3 => Box::new(mp3::Mp3Encoder::new(out_rate, opts.bitrate.unwrap_or(Bitrates::MP3), opts.delivery)?),
            AudioFormat::OggVorbis => Box::new(vorbis::VorbisEncoder::new(
                out_rate,
                opts.vorbis_quality.unwrap_or(LIBSNDFILE_VORBIS_QUALITY),
            )?),
            AudioFormat::OggOpus => Box::new(opus::OggOpusEncoder::new(in_rate, opts.bitrate.unwrap_or(Bitrates::OPUS))?),
            #[cfg(feature = "aac")]
            AudioFormat::Aac => Box::new(aac::AdtsEncoder::new(out_rate, opts.bitrate.unwrap_or(Bitrates::AAC))?),
            #[cfg(not(feature = "aac"))]
            AudioFormat::Aac => return Err(CodecError::NotBuilt(AudioFormat::Aac.name())),
            AudioFormat::Flac => Box::new(flac::FlacEncoder::new(out_rate, opts.delivery)?),
        };
        Ok(Encoder { format, in_rate, out_rate, stage, codec, scratch: Vec::new(), pushed: 0, finished: false })
    }

    pub fn format(&self) -> AudioFormat {
        self.format
    }

    /// The rate of the pushed PCM.
    pub fn input_rate(&self) -> u32 {
        self.in_rate
    }

    /// The rate of the encoded stream (what a decoder reports; `X-GSV-Sample-Rate` for raw PCM).
    pub fn output_rate(&self) -> u32 {
        self.out_rate
    }

    /// Samples pushed so far (at the input rate).
    pub fn samples_pushed(&self) -> u64 {
        self.pushed
    }

    /// Feeds a piece of PCM16 mono at the input rate; returns the bytes ready now (may be empty).
    /// The first call's bytes start with the container's header.
    pub fn push(&mut self, pcm: &[i16]) -> Result<Vec<u8>, CodecError> {
        if self.finished {
            return Err(CodecError::Finished);
        }
        self.pushed += pcm.len() as u64;
        let mut out = Vec::new();
        match self.stage.as_mut() {
            None => self.codec.push(pcm, &mut out)?,
            Some(stage) => {
                self.scratch.clear();
                stage.process(pcm, &mut self.scratch)?;
                self.codec.push(&self.scratch, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Ends the stream: the remaining bytes, and patches with [`Delivery::Whole`]. Called once.
    pub fn finish(&mut self) -> Result<Finished, CodecError> {
        if self.finished {
            return Err(CodecError::Finished);
        }
        self.finished = true;
        let mut tail = Vec::new();
        if let Some(stage) = self.stage.as_mut() {
            self.scratch.clear();
            stage.flush(&mut self.scratch)?;
            self.codec.push(&self.scratch, &mut tail)?;
        }
        let patches = self.codec.finish(&mut tail)?;
        Ok(Finished { tail, patches })
    }
}

/// Applies patches to the whole output `buf` (bytes from the stream's first byte).
pub fn apply_patches(buf: &mut [u8], patches: &[Patch]) -> Result<(), CodecError> {
    for p in patches {
        let total = buf.len();
        let start = usize::try_from(p.offset).map_err(|_| CodecError::PatchOutOfRange { offset: p.offset, len: p.bytes.len(), total })?;
        let end = start.checked_add(p.bytes.len()).filter(|&e| e <= total).ok_or(CodecError::PatchOutOfRange {
            offset: p.offset,
            len: p.bytes.len(),
            total,
        })?;
        buf[start..end].copy_from_slice(&p.bytes);
    }
    Ok(())
}

/// Encodes a whole buffer ([`Delivery::Whole`], patches applied): a complete file.
pub fn encode_whole(format: AudioFormat, in_rate: u32, pcm: &[i16], opts: EncoderOptions) -> Result<Vec<u8>, CodecError> {
    let mut enc = Encoder::new(format, in_rate, EncoderOptions { delivery: Delivery::Whole, ..opts })?;
    let mut out = enc.push(pcm)?;
    let fin = enc.finish()?;
    out.extend_from_slice(&fin.tail);
    apply_patches(&mut out, &fin.patches)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_names_map_to_formats() {
        use AudioFormat::*;
        for (name, f) in [("wav", Wav), ("raw", Raw), ("ogg", OggVorbis), ("aac", Aac), ("mp3", Mp3), ("flac", Flac), ("opus", OggOpus)] {
            assert_eq!(AudioFormat::from_api_v2(name), Some(f), "{name}");
            assert_eq!(AudioFormat::from_api_v2(&name.to_uppercase()), Some(f));
        }
        assert_eq!(AudioFormat::from_api_v2("pcm"), None);
        assert_eq!(AudioFormat::from_api_v2("ogg "), None);
        assert_eq!(AudioFormat::from_api_v2(""), None);

        assert_eq!(AudioFormat::from_api_py("", false), Some(Wav));
        assert_eq!(AudioFormat::from_api_py("", true), Some(OggVorbis));
        assert_eq!(AudioFormat::from_api_py("AAC", false), Some(Aac));
        assert_eq!(AudioFormat::from_api_py("ogg", false), Some(OggVorbis));
        assert_eq!(AudioFormat::from_api_py("wav", true), Some(Wav));
        assert_eq!(AudioFormat::from_api_py("raw", false), None);
        assert_eq!(AudioFormat::from_api_py("wma", false), None);

        assert_eq!(AudioFormat::from_openai(None), Some(OutputSpec { format: Mp3, sample_rate: None }));
        assert_eq!(AudioFormat::from_openai(Some("pcm")), Some(OutputSpec { format: Raw, sample_rate: Some(24_000) }));
        for (name, f) in [("mp3", Mp3), ("opus", OggOpus), ("aac", Aac), ("flac", Flac), ("wav", Wav)] {
            assert_eq!(AudioFormat::from_openai(Some(name)), Some(OutputSpec { format: f, sample_rate: None }));
        }
        assert_eq!(AudioFormat::from_openai(Some("ogg")), None);
        assert_eq!(AudioFormat::from_openai(Some("raw")), None);
    }

    #[test]
    fn content_types_and_names() {
        assert_eq!(AudioFormat::Wav.content_type(), "audio/wav");
        assert_eq!(AudioFormat::Raw.content_type(), "audio/raw");
        assert_eq!(AudioFormat::OggVorbis.content_type(), "audio/ogg");
        assert_eq!(AudioFormat::Aac.content_type(), "audio/aac");
        assert_eq!(AudioFormat::Mp3.content_type(), "audio/mpeg");
        for f in ALL_FORMATS {
            assert_eq!(AudioFormat::from_api_v2(f.name()), Some(f));
            assert!(f.streams());
        }
    }

    #[test]
    fn output_rates() {
        use AudioFormat::*;
        assert_eq!(Mp3.output_rate(32_000), 32_000);
        assert_eq!(Mp3.output_rate(24_000), 24_000);
        assert_eq!(Mp3.output_rate(40_000), 44_100);
        assert_eq!(Mp3.output_rate(96_000), 48_000);
        assert_eq!(Aac.output_rate(32_000), 32_000);
        assert_eq!(Aac.output_rate(40_000), 44_100);
        assert_eq!(Aac.output_rate(6_000), 7_350);
        assert_eq!(OggOpus.output_rate(32_000), 48_000);
        assert_eq!(OggVorbis.output_rate(32_000), 32_000);
        assert_eq!(OggVorbis.output_rate(4_000), 48_000);
        assert_eq!(Flac.output_rate(22_050), 22_050);
    }

    #[test]
    fn patches_apply_and_check_bounds() {
        let mut b = vec![0u8; 8];
        apply_patches(&mut b, &[Patch { offset: 2, bytes: vec![1, 2] }, Patch { offset: 6, bytes: vec![9, 9] }]).unwrap();
        assert_eq!(b, [0, 0, 1, 2, 0, 0, 9, 9]);
        assert!(apply_patches(&mut b, &[Patch { offset: 7, bytes: vec![1, 2] }]).is_err());
        assert!(apply_patches(&mut b, &[Patch { offset: u64::MAX, bytes: vec![1] }]).is_err());
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        assert_eq!(Encoder::new(AudioFormat::Wav, 0, EncoderOptions::default()).unwrap_err(), CodecError::BadSampleRate(0));
        let forced = EncoderOptions { sample_rate: Some(0), ..Default::default() };
        assert!(Encoder::new(AudioFormat::Raw, 32_000, forced).is_err());
        for f in ALL_FORMATS.into_iter().filter(|f| f.available()) {
            let mut e = Encoder::new(f, 32_000, EncoderOptions::default()).unwrap();
            e.push(&[0; 100]).unwrap();
            e.finish().unwrap();
            assert_eq!(e.push(&[0; 10]).unwrap_err(), CodecError::Finished, "{f:?}");
            assert_eq!(e.finish().unwrap_err(), CodecError::Finished);
        }
    }

    #[test]
    fn wav_whole_equals_the_wav_module() {
        let pcm: Vec<i16> = (0..1000).map(|i| ((i * 37) % 2000 - 1000) as i16).collect();
        let a = encode_whole(AudioFormat::Wav, 32_000, &pcm, EncoderOptions::default()).unwrap();
        assert_eq!(a, crate::wav::encode_pcm16(32_000, &pcm).unwrap());
        let raw = encode_whole(AudioFormat::Raw, 32_000, &pcm, EncoderOptions::default()).unwrap();
        assert_eq!(raw, crate::wav::pcm16_bytes(&pcm));
    }

    #[test]
    fn a_format_left_out_of_the_build_is_an_error() {
        assert_eq!(AudioFormat::Aac.available(), cfg!(feature = "aac"));
        assert!(ALL_FORMATS.iter().all(|f| f.available() || *f == AudioFormat::Aac));
        let r = Encoder::new(AudioFormat::Aac, 32_000, EncoderOptions::default());
        if cfg!(feature = "aac") {
            assert!(r.is_ok());
        } else {
            assert_eq!(r.unwrap_err(), CodecError::NotBuilt("aac"));
        }
        assert!(AudioFormat::Aac.unavailable_message().contains("no AAC encoder"));
    }

    #[test]
    fn empty_streams_finish_cleanly() {
        for f in ALL_FORMATS.into_iter().filter(|f| f.available()) {
            let mut e = Encoder::new(f, 32_000, EncoderOptions::default()).unwrap();
            let fin = e.finish().unwrap();
            assert!(fin.patches.is_empty(), "{f:?}");
            let whole = encode_whole(f, 32_000, &[], EncoderOptions::default()).unwrap();
            // ADTS has no header outside its frames: an empty AAC stream is empty, like raw PCM
            if f != AudioFormat::Raw && f != AudioFormat::Aac {
                assert!(!whole.is_empty(), "{f:?}: an empty file still has its header");
            }
        }
    }
}
