//! Decoding: file bytes -> mono [`Audio`] at the file's own rate.
//!
//! In: WAV (RIFF/WAVE; PCM 8/16/24/32-bit or 32-bit float, read with `hound`), else through
//! `symphonia`: MP3, FLAC, Ogg Vorbis, AAC-LC in MP4/M4A or ADTS (a phone recording), Vorbis in
//! Matroska/WebM, and WAV variants hound rejects (e.g. A-law); Opus in Ogg or WebM/Matroska is
//! demuxed by symphonia and decoded by libopus (mono/stereo, mapping family 0) at 48 kHz, with the
//! pre-skip and Ogg's end trimming applied.
//! Out: `Audio { samples: Vec<f32> (mono), sample_rate }`, at most [`MAX_DECODE_SECONDS`] long: every decoder stops
//! with [`ReferenceError::TooLong`] past that, so no input can make a decode allocate more than ~60 s of audio.
//!
//! Integer PCM becomes float as libsndfile (soundfile, used by both librosa and torchaudio in
//! GPT-SoVITS) does it: divided by `2^(bits-1)` (16-bit: /32768). Channels are mixed by the
//! arithmetic mean, summed in channel order in `f32` and divided by the channel count — what
//! `np.mean(axis=0)` (librosa) and `Tensor.mean(0)` (the 32 kHz path) give for stereo.

use std::io::Cursor;
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL, CODEC_TYPE_OPUS};
use symphonia::core::errors::Error as SymErr;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::{Audio, ReferenceError};

/// No decode produces more than this many seconds of audio ([`ReferenceError::TooLong`] instead): a reference must be
/// 3-10 s, and a small compressed file (or a WAV header with a tiny rate) must not expand into gigabytes.
pub const MAX_DECODE_SECONDS: u32 = 60;

/// Highest rate the cap is computed for (a header claiming more gets the cap of this rate).
const MAX_CAP_RATE: u32 = 192_000;

/// Mono frames a decode may produce at `rate`: [`MAX_DECODE_SECONDS`] of audio (at most 60 s at 192 kHz, 46 MB of f32).
pub fn max_decode_frames(rate: u32) -> usize {
    MAX_DECODE_SECONDS as usize * rate.clamp(1, MAX_CAP_RATE) as usize
}

fn too_long() -> ReferenceError {
    ReferenceError::TooLong { max_secs: MAX_DECODE_SECONDS }
}

/// Reads and decodes the file at `path` (its extension is used as a format hint). Only regular files are read
/// ([`super::open_reference`]).
pub fn load_file(path: &Path) -> Result<Audio, ReferenceError> {
    let f = super::open_reference(path, &[], super::LOCAL_MAX_REF_BYTES)?;
    let bytes = f.read_all(&|| false)?;
    decode_bytes(&bytes, f.ext.as_deref())
}

/// Decodes audio file contents. `ext_hint` (e.g. `"mp3"`) helps the container probe; it is optional.
pub fn decode_bytes(bytes: &[u8], ext_hint: Option<&str>) -> Result<Audio, ReferenceError> {
    if bytes.is_empty() {
        return Err(ReferenceError::EmptyAudio);
    }
    let is_riff_wave = bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE";
    let audio = if is_riff_wave {
        match decode_wav_hound(bytes) {
            Ok(a) => a,
            // hound only reads PCM / IEEE float; let symphonia try the other WAV codecs.
            Err(ReferenceError::UnsupportedFormat(why)) => match decode_symphonia_guarded(bytes, Some("wav")) {
                Ok(a) => a,
                Err(_) => return Err(ReferenceError::UnsupportedFormat(why)),
            },
            Err(e) => return Err(e),
        }
    } else {
        // a table or element sized past the file would make symphonia's MP4/Matroska demuxers abort the process
        // (see mp4check)
        super::mp4check::check(bytes).map_err(ReferenceError::Decode)?;
        super::mp4check::check_ebml(bytes).map_err(ReferenceError::Decode)?;
        decode_symphonia_guarded(bytes, ext_hint)?
    };
    if audio.sample_rate == 0 {
        return Err(ReferenceError::BadSampleRate(0));
    }
    if audio.samples.is_empty() {
        return Err(ReferenceError::EmptyAudio);
    }
    Ok(audio)
}

/// Mixes interleaved frames of `channels` channels to mono by the mean.
fn mix_to_mono(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    let n = channels as f32;
    interleaved
        .chunks_exact(channels)
        .map(|frame| {
            let mut s = 0.0f32;
            for &v in frame {
                s += v;
            }
            s / n
        })
        .collect()
}

fn decode_wav_hound(bytes: &[u8]) -> Result<Audio, ReferenceError> {
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(hound_err)?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 {
        return Err(ReferenceError::Decode("WAV header declares 0 channels".into()));
    }
    let cap = max_decode_frames(spec.sample_rate);
    if reader.duration() as usize > cap {
        return Err(too_long());
    }
    // never more than the cap, whatever the data chunk really holds
    let limit = (cap + 1).saturating_mul(channels);
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => {
            if spec.bits_per_sample != 32 {
                return Err(ReferenceError::UnsupportedFormat(format!(
                    "{}-bit float WAV",
                    spec.bits_per_sample
                )));
            }
            reader.into_samples::<f32>().take(limit).collect::<Result<_, _>>().map_err(hound_err)?
        }
        hound::SampleFormat::Int => {
            let bits = spec.bits_per_sample;
            if !(1..=32).contains(&bits) {
                return Err(ReferenceError::UnsupportedFormat(format!("{bits}-bit PCM WAV")));
            }
            // Scale in f64 so that 32-bit PCM keeps its precision before rounding to f32.
            let scale = 1.0f64 / (1u64 << (bits - 1)) as f64;
            reader
                .into_samples::<i32>()
                .take(limit)
                .map(|s| s.map(|v| (v as f64 * scale) as f32))
                .collect::<Result<_, _>>()
                .map_err(hound_err)?
        }
    };
    if interleaved.len() / channels > cap {
        return Err(too_long());
    }
    Ok(Audio { samples: mix_to_mono(&interleaved, channels), sample_rate: spec.sample_rate })
}

fn hound_err(e: hound::Error) -> ReferenceError {
    match e {
        hound::Error::Unsupported => ReferenceError::UnsupportedFormat("WAV encoding not supported by hound".into()),
        hound::Error::TooWide => ReferenceError::UnsupportedFormat("WAV sample width too large".into()),
        hound::Error::InvalidSampleFormat => ReferenceError::UnsupportedFormat("invalid WAV sample format".into()),
        other => ReferenceError::Decode(format!("WAV: {other}")),
    }
}

/// [`decode_symphonia`] with a panic turned into an error: symphonia 0.5's demuxers can panic on
/// malformed input (its Matroska reader does on a truncated WebM header), and a reference upload must
/// never take a worker down.
fn decode_symphonia_guarded(bytes: &[u8], ext_hint: Option<&str>) -> Result<Audio, ReferenceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_symphonia(bytes, ext_hint)))
        .unwrap_or_else(|_| Err(ReferenceError::Decode("malformed or truncated audio file".into())))
}

fn decode_symphonia(bytes: &[u8], ext_hint: Option<&str>) -> Result<Audio, ReferenceError> {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = ext_hint {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| match e {
            SymErr::Unsupported(w) => ReferenceError::UnsupportedFormat(w.to_string()),
            SymErr::IoError(_) => ReferenceError::UnsupportedFormat("unrecognised container".into()),
            other => ReferenceError::Decode(other.to_string()),
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| ReferenceError::UnsupportedFormat("no decodable audio track".into()))?;
    if track.codec_params.codec == CODEC_TYPE_OPUS {
        // symphonia demuxes Opus but has no decoder for it: libopus decodes (read again with gapless
        // trimming on, so that the Ogg pre-skip and end trim come with the packets)
        return decode_opus(bytes, ext_hint);
    }
    let track_id = track.id;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    if let (Some(n), true) = (track.codec_params.n_frames, rate > 0) {
        if n > max_decode_frames(rate) as u64 {
            return Err(too_long());
        }
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| match e {
            SymErr::Unsupported(w) => ReferenceError::UnsupportedFormat(w.to_string()),
            other => ReferenceError::Decode(other.to_string()),
        })?;

    let mut mono: Vec<f32> = Vec::new();
    while let Some(packet) = next_packet_of(format.as_mut(), track_id)? {
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A corrupt frame: skip it, as players do.
            Err(SymErr::DecodeError(_)) => continue,
            Err(e) => return Err(ReferenceError::Decode(e.to_string())),
        };
        let spec = *decoded.spec();
        if rate == 0 {
            rate = spec.rate;
        }
        let channels = spec.channels.count();
        if channels == 0 {
            return Err(ReferenceError::Decode("stream with 0 channels".into()));
        }
        let mut sb = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        sb.copy_interleaved_ref(decoded);
        mono.extend(mix_to_mono(sb.samples(), channels));
        if mono.len() > max_decode_frames(rate) {
            return Err(too_long());
        }
    }
    Ok(Audio { samples: mono, sample_rate: rate })
}

/// The next packet of track `track_id`, or `None` at the end of the stream (a clean end, a truncated file's
/// end, or a chained stream's reset: what was decoded until then is kept).
fn next_packet_of(
    format: &mut dyn symphonia::core::formats::FormatReader,
    track_id: u32,
) -> Result<Option<symphonia::core::formats::Packet>, ReferenceError> {
    loop {
        match format.next_packet() {
            Ok(p) if p.track_id() == track_id => return Ok(Some(p)),
            Ok(_) => continue,
            Err(SymErr::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(SymErr::ResetRequired) => return Ok(None),
            Err(e) => return Err(ReferenceError::Decode(e.to_string())),
        }
    }
}

/// Opus in Ogg or Matroska/WebM: symphonia's demuxer, libopus's decoder ([`crate::codec::OpusDecoder`]).
fn decode_opus(bytes: &[u8], ext_hint: Option<&str>) -> Result<Audio, ReferenceError> {
    const OPUS_RATE: u32 = 48_000;
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = ext_hint {
        hint.with_extension(ext);
    }
    let opts = FormatOptions { enable_gapless: true, ..Default::default() };
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &opts, &MetadataOptions::default())
        .map_err(|e| ReferenceError::Decode(e.to_string()))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec == CODEC_TYPE_OPUS)
        .ok_or_else(|| ReferenceError::UnsupportedFormat("no Opus track".into()))?;
    let track_id = track.id;
    // OpusHead (RFC 7845 5.1): channel count at 9, pre-skip at 10..12, mapping family at 18.
    let head = track.codec_params.extra_data.as_deref().unwrap_or(&[]);
    if head.len() < 19 || &head[..8] != b"OpusHead" {
        return Err(ReferenceError::Decode("Opus track without an OpusHead".into()));
    }
    let channels = head[9] as usize;
    let pre_skip = u16::from_le_bytes([head[10], head[11]]) as usize;
    let family = head[18];
    if family != 0 || !(1..=2).contains(&channels) {
        return Err(ReferenceError::UnsupportedFormat(format!(
            "Opus with {channels} channels (mapping family {family}); only mono and stereo are decoded"
        )));
    }
    let mut dec = crate::codec::OpusDecoder::new(OPUS_RATE, channels).map_err(|e| ReferenceError::Decode(e.to_string()))?;
    let mut interleaved: Vec<f32> = Vec::new();
    let mut packet_pcm: Vec<f32> = Vec::new();
    let mut trimmed_by_demuxer = false;
    while let Some(packet) = next_packet_of(format.as_mut(), track_id)? {
        packet_pcm.clear();
        let n = match dec.decode(&packet.data, &mut packet_pcm) {
            Ok(n) => n,
            // a corrupt packet: skip it, as players do
            Err(_) => continue,
        };
        let start = (packet.trim_start() as usize).min(n);
        let end = n - (packet.trim_end() as usize).min(n - start);
        trimmed_by_demuxer |= packet.trim_start() > 0;
        interleaved.extend_from_slice(&packet_pcm[start * channels..end * channels]);
        if interleaved.len() / channels > max_decode_frames(OPUS_RATE) + pre_skip {
            return Err(too_long());
        }
    }
    if !trimmed_by_demuxer {
        // Matroska/WebM: the demuxer does not apply the pre-skip; drop it here.
        let k = (pre_skip * channels).min(interleaved.len());
        interleaved.drain(..k);
    }
    Ok(Audio { samples: mix_to_mono(&interleaved, channels), sample_rate: OPUS_RATE })
}
