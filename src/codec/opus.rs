//! Ogg Opus (RFC 7845) through libopus and libogg (Debian `libopus-dev`, `libogg-dev`); also the
//! Opus packet decoder that reference audio in Ogg/WebM uses.
//!
//! Encoder in: PCM16 mono at 48 kHz (Opus's clock; the [`super::Encoder`] resamples 32 kHz with
//! soxr). Out: an `OpusHead` page (pre-skip = the encoder's look-ahead, input rate = the model's
//! rate, mapping family 0), an `OpusTags` page (libopus's version string, `ENCODER=gsv`), then 20 ms
//! packets (`OPUS_APPLICATION_AUDIO`, VBR at the requested bit rate), one page flushed per push.
//! Granule positions count 48 kHz samples including the pre-skip; the last page's granule is
//! `pre_skip + samples`, so decoders drop the look-ahead and the padding of the last frame and
//! return exactly the pushed length (at 48 kHz). Input shorter than a frame waits for the next push.

use std::ffi::{c_char, c_int, c_void, CStr};

use super::ogg::OggStream;
use super::{lib_err, AudioEncoder, CodecError, Patch};

/// The rate of every Ogg Opus stream written here.
pub(crate) const RATE: u32 = 48_000;
/// 20 ms at 48 kHz.
const FRAME: usize = 960;
/// Largest packet libopus may write for one frame (its own recommendation for the buffer).
const MAX_PACKET: usize = 4000;
/// Largest frame a decoder may return per channel: 120 ms at 48 kHz.
const MAX_DECODE_FRAME: usize = 5760;

const OPUS_OK: c_int = 0;
const OPUS_APPLICATION_AUDIO: c_int = 2049;
const OPUS_SET_BITRATE_REQUEST: c_int = 4002;
const OPUS_GET_LOOKAHEAD_REQUEST: c_int = 4027;

#[link(name = "opus")]
extern "C" {
    fn opus_encoder_create(fs: i32, channels: c_int, application: c_int, error: *mut c_int) -> *mut c_void;
    fn opus_encoder_destroy(st: *mut c_void);
    fn opus_encoder_ctl(st: *mut c_void, request: c_int, ...) -> c_int;
    fn opus_encode(st: *mut c_void, pcm: *const i16, frame_size: c_int, data: *mut u8, max_data_bytes: i32) -> i32;
    fn opus_decoder_create(fs: i32, channels: c_int, error: *mut c_int) -> *mut c_void;
    fn opus_decoder_destroy(st: *mut c_void);
    fn opus_decode_float(st: *mut c_void, data: *const u8, len: i32, pcm: *mut f32, frame_size: c_int, decode_fec: c_int) -> c_int;
    fn opus_strerror(error: c_int) -> *const c_char;
    fn opus_get_version_string() -> *const c_char;
}

fn strerror(code: c_int) -> String {
    // SAFETY: libopus returns static NUL-terminated strings for every code.
    let p = unsafe { opus_strerror(code) };
    if p.is_null() {
        return format!("error {code}");
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// libopus's version string, e.g. `libopus 1.3.1` (the OpusTags vendor).
pub fn opus_version() -> String {
    // SAFETY: static NUL-terminated string.
    let p = unsafe { opus_get_version_string() };
    if p.is_null() {
        return "libopus".into();
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

pub(crate) struct OggOpusEncoder {
    enc: *mut c_void,
    ogg: OggStream,
    pre_skip: u16,
    input_rate: u32,
    pending: Vec<i16>,
    /// 48 kHz samples in the packets written so far (pre-skip included).
    granule: i64,
    /// Real samples pushed (48 kHz).
    real: u64,
    packet: Vec<u8>,
    headers_sent: bool,
    ended: bool,
}

// SAFETY: the OpusEncoder is heap state owned exclusively by this value; libopus has no globals.
unsafe impl Send for OggOpusEncoder {}

impl OggOpusEncoder {
    /// `input_rate` is the model's rate, recorded in OpusHead (informational for decoders).
    pub(crate) fn new(input_rate: u32, bitrate: u32) -> Result<OggOpusEncoder, CodecError> {
        let mut err: c_int = 0;
        // SAFETY: plain constructor; NULL and err checked.
        let enc = unsafe { opus_encoder_create(RATE as i32, 1, OPUS_APPLICATION_AUDIO, &mut err) };
        if enc.is_null() || err != OPUS_OK {
            if !enc.is_null() {
                unsafe { opus_encoder_destroy(enc) };
            }
            return Err(lib_err("opus", format!("opus_encoder_create: {}", strerror(err))));
        }
        let mut me = OggOpusEncoder {
            enc,
            ogg: OggStream::new()?,
            pre_skip: 0,
            input_rate,
            pending: Vec::new(),
            granule: 0,
            real: 0,
            packet: vec![0; MAX_PACKET],
            headers_sent: false,
            ended: false,
        };
        let bps = bitrate.clamp(6_000, 510_000) as i32;
        let mut lookahead: i32 = 0;
        // SAFETY: valid encoder; the variadic arguments have the types these requests take (opus_int32, opus_int32*).
        unsafe {
            let r = opus_encoder_ctl(enc, OPUS_SET_BITRATE_REQUEST, bps);
            if r != OPUS_OK {
                return Err(lib_err("opus", format!("OPUS_SET_BITRATE({bps}): {}", strerror(r))));
            }
            let r = opus_encoder_ctl(enc, OPUS_GET_LOOKAHEAD_REQUEST, &mut lookahead as *mut i32);
            if r != OPUS_OK {
                return Err(lib_err("opus", format!("OPUS_GET_LOOKAHEAD: {}", strerror(r))));
            }
        }
        me.pre_skip = u16::try_from(lookahead.max(0)).unwrap_or(u16::MAX);
        Ok(me)
    }

    fn headers(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        if self.headers_sent {
            return Ok(());
        }
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(1); // channels
        head.extend_from_slice(&self.pre_skip.to_le_bytes());
        head.extend_from_slice(&self.input_rate.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family 0 (mono/stereo)
        self.ogg.packetin(&head, true, false, 0)?;
        self.ogg.flush(out);
        let vendor = opus_version();
        let comment = b"ENCODER=gsv";
        let mut tags = Vec::with_capacity(8 + 4 + vendor.len() + 4 + 4 + comment.len());
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(&1u32.to_le_bytes());
        tags.extend_from_slice(&(comment.len() as u32).to_le_bytes());
        tags.extend_from_slice(comment);
        self.ogg.packetin(&tags, false, false, 0)?;
        self.ogg.flush(out);
        self.headers_sent = true;
        Ok(())
    }

    /// Encodes one 960-sample frame and submits it with the given end flag and granule position.
    fn encode_frame(&mut self, frame: &[i16], eos: bool, granulepos: i64) -> Result<(), CodecError> {
        debug_assert_eq!(frame.len(), FRAME);
        // SAFETY: `frame` has FRAME samples (mono); the packet buffer has MAX_PACKET bytes.
        let n = unsafe { opus_encode(self.enc, frame.as_ptr(), FRAME as c_int, self.packet.as_mut_ptr(), MAX_PACKET as i32) };
        if n < 0 {
            return Err(lib_err("opus", format!("opus_encode: {}", strerror(n))));
        }
        let packet = std::mem::take(&mut self.packet);
        let r = self.ogg.packetin(&packet[..n as usize], false, eos, granulepos);
        self.packet = packet;
        r
    }
}

impl AudioEncoder for OggOpusEncoder {
    fn push(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.headers(out)?;
        self.real += pcm.len() as u64;
        self.pending.extend_from_slice(pcm);
        let whole = self.pending.len() / FRAME * FRAME;
        let pending = std::mem::take(&mut self.pending);
        for frame in pending[..whole].chunks_exact(FRAME) {
            self.granule += FRAME as i64;
            self.encode_frame(frame, false, self.granule)?;
        }
        self.pending = pending[whole..].to_vec();
        self.ogg.flush(out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<Vec<Patch>, CodecError> {
        self.headers(out)?;
        if !self.ended {
            self.ended = true;
            // Pad with silence until the look-ahead has pushed every real sample out; the last page's
            // granule position (pre-skip + real samples) tells decoders where the audio ends.
            let end = self.pre_skip as i64 + self.real as i64;
            let mut frame = vec![0i16; FRAME];
            loop {
                frame.iter_mut().for_each(|s| *s = 0);
                let n = self.pending.len().min(FRAME);
                frame[..n].copy_from_slice(&self.pending[..n]);
                self.pending.drain(..n);
                self.granule += FRAME as i64;
                let last = self.granule >= end && self.pending.is_empty();
                let gp = if last { end } else { self.granule };
                self.encode_frame(&frame, last, gp)?;
                if last {
                    break;
                }
            }
        }
        self.ogg.flush(out);
        Ok(Vec::new())
    }
}

impl Drop for OggOpusEncoder {
    fn drop(&mut self) {
        // SAFETY: created in new, destroyed once.
        unsafe { opus_encoder_destroy(self.enc) };
    }
}

/// An Opus packet decoder (libopus), for reference audio in Ogg or WebM containers.
pub struct OpusDecoder {
    dec: *mut c_void,
    channels: usize,
    buf: Vec<f32>,
}

// SAFETY: the OpusDecoder is heap state owned exclusively by this value.
unsafe impl Send for OpusDecoder {}

impl OpusDecoder {
    /// A decoder producing `channels` (1 or 2) interleaved channels at `rate` (8, 12, 16, 24 or 48 kHz).
    pub fn new(rate: u32, channels: usize) -> Result<OpusDecoder, CodecError> {
        if !(1..=2).contains(&channels) {
            return Err(lib_err("opus", format!("{channels} channels (only mono/stereo Opus is decoded)")));
        }
        let mut err: c_int = 0;
        // SAFETY: plain constructor; NULL and err checked.
        let dec = unsafe { opus_decoder_create(rate as i32, channels as c_int, &mut err) };
        if dec.is_null() || err != OPUS_OK {
            if !dec.is_null() {
                unsafe { opus_decoder_destroy(dec) };
            }
            return Err(lib_err("opus", format!("opus_decoder_create({rate} Hz): {}", strerror(err))));
        }
        Ok(OpusDecoder { dec, channels, buf: vec![0.0; MAX_DECODE_FRAME * channels] })
    }

    /// Decodes one packet; appends interleaved samples to `out` and returns the samples per channel.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<f32>) -> Result<usize, CodecError> {
        if packet.len() > i32::MAX as usize {
            return Err(lib_err("opus", "packet too large"));
        }
        // SAFETY: `packet` is valid for its length; `buf` holds MAX_DECODE_FRAME samples per channel.
        let n = unsafe {
            opus_decode_float(self.dec, packet.as_ptr(), packet.len() as i32, self.buf.as_mut_ptr(), MAX_DECODE_FRAME as c_int, 0)
        };
        if n < 0 {
            return Err(lib_err("opus", format!("opus_decode: {}", strerror(n))));
        }
        let n = n as usize;
        out.extend_from_slice(&self.buf[..n * self.channels]);
        Ok(n)
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        // SAFETY: created in new, destroyed once.
        unsafe { opus_decoder_destroy(self.dec) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_with_libopus() {
        let tone: Vec<i16> = (0..48_000).map(|i| ((i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * 8000.0) as i16).collect();
        let mut e = OggOpusEncoder::new(32_000, 64_000).unwrap();
        let mut out = Vec::new();
        e.push(&tone, &mut out).unwrap();
        e.finish(&mut out).unwrap();
        assert!(e.pre_skip > 0);
        assert_eq!(&out[28..36], b"OpusHead");
        assert_eq!(u32::from_le_bytes(out[28 + 12..28 + 16].try_into().unwrap()), 32_000);
        // decode the raw packets back: decoding one frame must give 960 samples
        let mut d = OpusDecoder::new(48_000, 1).unwrap();
        let mut pcm = Vec::new();
        let mut probe = OggOpusEncoder::new(48_000, 64_000).unwrap();
        let n = unsafe {
            opus_encode(probe.enc, tone.as_ptr(), FRAME as c_int, probe.packet.as_mut_ptr(), MAX_PACKET as i32)
        };
        assert!(n > 0);
        let got = d.decode(&probe.packet[..n as usize], &mut pcm).unwrap();
        assert_eq!(got, FRAME);
        // a malformed packet is an error (or concealment audio), never a panic
        let _ = d.decode(&[0xff; 3], &mut pcm);
        assert!(d.decode(&[], &mut pcm).is_ok(), "an empty packet asks libopus for packet-loss concealment");
        assert!(OpusDecoder::new(44_100, 1).is_err());
        assert!(OpusDecoder::new(48_000, 6).is_err());
    }
}
