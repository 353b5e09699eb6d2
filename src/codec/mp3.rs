//! MP3 through LAME (`libmp3lame`, Debian `libmp3lame-dev`): MPEG Layer III, mono, CBR.
//!
//! In: PCM16 mono at one of LAME's rates ([`RATES`]; the [`super::Encoder`] resamples others).
//! Out: MP3 frames as LAME releases them (it keeps about two granules of look-ahead and the bit
//! reservoir, so the first frames come after ~2.3 k samples). LAME's own resampler is never used
//! (`out_samplerate = in_samplerate`), nor ID3 tags.
//!
//! `Delivery::Whole` turns on LAME's "Info" tag: LAME writes an empty frame first and, after the
//! flush, [`lame_get_lametag_frame`] gives the real one (encoder delay, padding, length), returned as
//! a patch at offset 0. Decoders that read it (ffmpeg, mpg123) then return exactly the pushed
//! samples. A stream has no tag: decoders then also return LAME's delay (576 + 529 samples) and the
//! padding of the last frame.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Mutex;

use super::{lib_err, AudioEncoder, CodecError, Delivery, Patch};

/// Sample rates LAME encodes (MPEG-1, MPEG-2 and MPEG-2.5 Layer III), ascending.
pub(crate) const RATES: [u32; 9] = [8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000];

type LameT = *mut c_void;
type ReportFn = unsafe extern "C" fn(*const c_char, *mut c_void);

const MONO: c_int = 3; // MPEG_mode MONO
const VBR_OFF: c_int = 0;
/// LAME's -q: 0 best/slowest .. 9 worst/fastest; 3 is the LAME front end's default.
const QUALITY: c_int = 3;

#[link(name = "mp3lame")]
extern "C" {
    fn lame_init() -> LameT;
    fn lame_set_in_samplerate(gfp: LameT, rate: c_int) -> c_int;
    fn lame_set_out_samplerate(gfp: LameT, rate: c_int) -> c_int;
    fn lame_set_num_channels(gfp: LameT, n: c_int) -> c_int;
    fn lame_set_mode(gfp: LameT, mode: c_int) -> c_int;
    fn lame_set_VBR(gfp: LameT, mode: c_int) -> c_int;
    fn lame_set_brate(gfp: LameT, kbps: c_int) -> c_int;
    fn lame_set_quality(gfp: LameT, q: c_int) -> c_int;
    fn lame_set_bWriteVbrTag(gfp: LameT, on: c_int) -> c_int;
    fn lame_set_write_id3tag_automatic(gfp: LameT, on: c_int);
    fn lame_set_errorf(gfp: LameT, f: Option<ReportFn>) -> c_int;
    fn lame_set_debugf(gfp: LameT, f: Option<ReportFn>) -> c_int;
    fn lame_set_msgf(gfp: LameT, f: Option<ReportFn>) -> c_int;
    fn lame_init_params(gfp: LameT) -> c_int;
    fn lame_encode_buffer(gfp: LameT, l: *const i16, r: *const i16, n: c_int, out: *mut u8, out_size: c_int) -> c_int;
    fn lame_encode_flush(gfp: LameT, out: *mut u8, out_size: c_int) -> c_int;
    fn lame_get_lametag_frame(gfp: LameT, buf: *mut u8, size: usize) -> usize;
    fn lame_close(gfp: LameT) -> c_int;
}

/// LAME's printf-style reports go nowhere (errors come back as return codes).
unsafe extern "C" fn quiet(_format: *const c_char, _args: *mut c_void) {}

/// LAME 3.100 fills some static tables lazily on first init; initialise one context at a time.
static INIT: Mutex<()> = Mutex::new(());

/// Samples per `lame_encode_buffer` call (its count is an `int`; the buffer bound grows with it).
const CALL_SAMPLES: usize = 1 << 16;

struct Lame(LameT);

impl Drop for Lame {
    fn drop(&mut self) {
        // SAFETY: created by lame_init, closed once.
        unsafe { lame_close(self.0) };
    }
}

pub(crate) struct Mp3Encoder {
    lame: Lame,
    tag: bool,
    buf: Vec<u8>,
}

// SAFETY: the LAME context is owned exclusively by this encoder and has no thread affinity.
unsafe impl Send for Mp3Encoder {}

impl Mp3Encoder {
    pub(crate) fn new(rate: u32, bitrate: u32, delivery: Delivery) -> Result<Mp3Encoder, CodecError> {
        if !RATES.contains(&rate) {
            return Err(lib_err("mp3", format!("LAME cannot encode at {rate} Hz")));
        }
        let kbps = ((bitrate.saturating_add(500)) / 1000).clamp(8, 320) as c_int;
        let tag = delivery == Delivery::Whole;
        let _g = INIT.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: plain constructor; NULL checked.
        let gfp = unsafe { lame_init() };
        if gfp.is_null() {
            return Err(lib_err("mp3", "lame_init failed"));
        }
        let lame = Lame(gfp);
        // SAFETY: valid context; setters only store values (checked by lame_init_params).
        let status = unsafe {
            lame_set_errorf(gfp, Some(quiet));
            lame_set_debugf(gfp, Some(quiet));
            lame_set_msgf(gfp, Some(quiet));
            lame_set_in_samplerate(gfp, rate as c_int);
            lame_set_out_samplerate(gfp, rate as c_int);
            lame_set_num_channels(gfp, 1);
            lame_set_mode(gfp, MONO);
            lame_set_VBR(gfp, VBR_OFF);
            lame_set_brate(gfp, kbps);
            lame_set_quality(gfp, QUALITY);
            lame_set_bWriteVbrTag(gfp, tag as c_int);
            lame_set_write_id3tag_automatic(gfp, 0);
            lame_init_params(gfp)
        };
        if status < 0 {
            return Err(lib_err("mp3", format!("lame_init_params failed ({status}) for {rate} Hz, {kbps} kbps")));
        }
        Ok(Mp3Encoder { lame, tag, buf: Vec::new() })
    }
}

impl AudioEncoder for Mp3Encoder {
    fn push(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        for piece in pcm.chunks(CALL_SAMPLES) {
            // LAME's documented worst case: 1.25 * samples + 7200 bytes.
            let cap = piece.len() + piece.len() / 4 + 7200;
            self.buf.resize(cap, 0);
            // SAFETY: `piece` holds n samples (mono: the right channel is ignored); the output buffer has cap bytes.
            let n = unsafe {
                lame_encode_buffer(self.lame.0, piece.as_ptr(), piece.as_ptr(), piece.len() as c_int, self.buf.as_mut_ptr(), cap as c_int)
            };
            if n < 0 {
                return Err(lib_err("mp3", format!("lame_encode_buffer failed ({n})")));
            }
            out.extend_from_slice(&self.buf[..n as usize]);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<Vec<Patch>, CodecError> {
        let cap = 16 * 1024;
        self.buf.resize(cap, 0);
        // SAFETY: valid context; buffer of cap bytes (LAME asks for >= 7200).
        let n = unsafe { lame_encode_flush(self.lame.0, self.buf.as_mut_ptr(), cap as c_int) };
        if n < 0 {
            return Err(lib_err("mp3", format!("lame_encode_flush failed ({n})")));
        }
        out.extend_from_slice(&self.buf[..n as usize]);
        if !self.tag {
            return Ok(Vec::new());
        }
        let mut frame = vec![0u8; 8192];
        // SAFETY: buffer of frame.len() bytes; LAME returns the size written or the size it needs.
        let len = unsafe { lame_get_lametag_frame(self.lame.0, frame.as_mut_ptr(), frame.len()) };
        if len == 0 || len > frame.len() {
            return Err(lib_err("mp3", format!("no LAME tag frame ({len} bytes)")));
        }
        frame.truncate(len);
        Ok(vec![Patch { offset: 0, bytes: frame }])
    }
}
