//! Ogg Vorbis through libvorbis + libvorbisenc and libogg (Debian `libvorbis-dev`, `libogg-dev`).
//!
//! This is what upstream's `ogg` is: api.py / api_v2.py call `soundfile.SoundFile(..., format="ogg")`,
//! whose default subtype is VORBIS; libsndfile then runs `vorbis_encode_init_vbr(channels, rate, 0.4)`
//! (quality 0.4, [`super::LIBSNDFILE_VORBIS_QUALITY`]), the three headers on their own pages, and the
//! audio packets. Same library, same settings here, with two differences on purpose: one continuous
//! logical stream per response (upstream's streaming mode writes a complete Ogg file per chunk, i.e. a
//! chained Ogg stream), and a page flush after every push so audio leaves as it is made. The comment
//! header carries `ENCODER=gsv` where libsndfile writes `ENCODER=libsndfile`.
//!
//! In: PCM16 mono at 8..=192 kHz (scaled by 1/32768 to float). Out: Ogg pages; libvorbis holds back
//! up to one long block (2048 samples at 32 kHz) of look-ahead, released at finish. Granule positions
//! (set by libvorbis) let decoders trim the end exactly.

use std::ffi::{c_char, c_int, c_long, CString};

use super::ogg::{OggPacket, OggStream};
use super::{lib_err, AudioEncoder, CodecError, Patch};

pub(crate) const MIN_RATE: u32 = 8_000;
pub(crate) const MAX_RATE: u32 = 192_000;

/// Opaque storage for one libvorbis struct (vorbis_info 56 B, vorbis_comment 32 B, vorbis_dsp_state
/// ~144 B, vorbis_block ~200 B on LP64); only libvorbis reads or writes them.
#[repr(C, align(16))]
struct Opaque([u8; 1024]);

#[repr(C)]
struct State {
    vi: Opaque,
    vc: Opaque,
    vd: Opaque,
    vb: Opaque,
}

#[link(name = "vorbis")]
extern "C" {
    fn vorbis_info_init(vi: *mut Opaque);
    fn vorbis_info_clear(vi: *mut Opaque);
    fn vorbis_comment_init(vc: *mut Opaque);
    fn vorbis_comment_add_tag(vc: *mut Opaque, tag: *const c_char, contents: *const c_char);
    fn vorbis_comment_clear(vc: *mut Opaque);
    fn vorbis_analysis_init(vd: *mut Opaque, vi: *mut Opaque) -> c_int;
    fn vorbis_block_init(vd: *mut Opaque, vb: *mut Opaque) -> c_int;
    fn vorbis_block_clear(vb: *mut Opaque) -> c_int;
    fn vorbis_dsp_clear(vd: *mut Opaque);
    fn vorbis_analysis_headerout(vd: *mut Opaque, vc: *mut Opaque, op: *mut OggPacket, op_comm: *mut OggPacket, op_code: *mut OggPacket) -> c_int;
    fn vorbis_analysis_buffer(vd: *mut Opaque, vals: c_int) -> *mut *mut f32;
    fn vorbis_analysis_wrote(vd: *mut Opaque, vals: c_int) -> c_int;
    fn vorbis_analysis_blockout(vd: *mut Opaque, vb: *mut Opaque) -> c_int;
    fn vorbis_analysis(vb: *mut Opaque, op: *mut OggPacket) -> c_int;
    fn vorbis_bitrate_addblock(vb: *mut Opaque) -> c_int;
    fn vorbis_bitrate_flushpacket(vd: *mut Opaque, op: *mut OggPacket) -> c_int;
}

#[link(name = "vorbisenc")]
extern "C" {
    fn vorbis_encode_init_vbr(vi: *mut Opaque, channels: c_long, rate: c_long, quality: f32) -> c_int;
}

/// Which structs are initialised (and so must be cleared on drop).
#[derive(Default)]
struct Inited {
    info: bool,
    comment: bool,
    dsp: bool,
    block: bool,
}

pub(crate) struct VorbisEncoder {
    st: Box<State>,
    inited: Inited,
    ogg: OggStream,
    headers_sent: bool,
    ended: bool,
}

// SAFETY: all libvorbis/libogg state is heap memory owned by this encoder (pinned in Boxes that are
// never moved out); the libraries keep no thread-local or global mutable state.
unsafe impl Send for VorbisEncoder {}

/// Samples handed to `vorbis_analysis_buffer` per call.
const CALL_SAMPLES: usize = 1 << 14;

impl VorbisEncoder {
    pub(crate) fn new(rate: u32, quality: f32) -> Result<VorbisEncoder, CodecError> {
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            return Err(lib_err("vorbis", format!("rate {rate} Hz outside {MIN_RATE}..={MAX_RATE}")));
        }
        let quality = if quality.is_finite() { quality.clamp(-0.1, 1.0) } else { super::LIBSNDFILE_VORBIS_QUALITY };
        let mut enc = VorbisEncoder {
            st: Box::new(State { vi: Opaque([0; 1024]), vc: Opaque([0; 1024]), vd: Opaque([0; 1024]), vb: Opaque([0; 1024]) }),
            inited: Inited::default(),
            ogg: OggStream::new()?,
            headers_sent: false,
            ended: false,
        };
        let st = &mut *enc.st;
        // SAFETY: each struct gets its init call before use; the Inited flags make Drop clear exactly those.
        unsafe {
            vorbis_info_init(&mut st.vi);
            enc.inited.info = true;
            let r = vorbis_encode_init_vbr(&mut st.vi, 1, rate as c_long, quality);
            if r != 0 {
                return Err(lib_err("vorbis", format!("vorbis_encode_init_vbr({rate} Hz, q {quality}) failed ({r})")));
            }
            vorbis_comment_init(&mut st.vc);
            enc.inited.comment = true;
            let (tag, value) = (CString::new("ENCODER").unwrap_or_default(), CString::new("gsv").unwrap_or_default());
            vorbis_comment_add_tag(&mut st.vc, tag.as_ptr(), value.as_ptr());
            if vorbis_analysis_init(&mut st.vd, &mut st.vi) != 0 {
                return Err(lib_err("vorbis", "vorbis_analysis_init failed"));
            }
            enc.inited.dsp = true;
            if vorbis_block_init(&mut st.vd, &mut st.vb) != 0 {
                return Err(lib_err("vorbis", "vorbis_block_init failed"));
            }
            enc.inited.block = true;
        }
        Ok(enc)
    }

    /// The identification, comment and setup headers, flushed so that audio starts on a new page.
    fn headers(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        if self.headers_sent {
            return Ok(());
        }
        let (mut id, mut comm, mut code) = (OggPacket::empty(), OggPacket::empty(), OggPacket::empty());
        let st = &mut *self.st;
        // SAFETY: initialised dsp state and comment; packets point into libvorbis storage until the next call.
        let r = unsafe { vorbis_analysis_headerout(&mut st.vd, &mut st.vc, &mut id, &mut comm, &mut code) };
        if r != 0 {
            return Err(lib_err("vorbis", format!("vorbis_analysis_headerout failed ({r})")));
        }
        self.ogg.packetin_raw(&mut id)?;
        self.ogg.packetin_raw(&mut comm)?;
        self.ogg.packetin_raw(&mut code)?;
        self.ogg.flush(out);
        self.headers_sent = true;
        Ok(())
    }

    /// Moves every finished block through analysis and the bitrate manager into Ogg.
    fn drain(&mut self) -> Result<(), CodecError> {
        let st = &mut *self.st;
        let mut op = OggPacket::empty();
        // SAFETY: initialised dsp/block state; `op` points into libvorbis storage, copied by packetin.
        unsafe {
            while vorbis_analysis_blockout(&mut st.vd, &mut st.vb) == 1 {
                if vorbis_analysis(&mut st.vb, std::ptr::null_mut()) != 0 {
                    return Err(lib_err("vorbis", "vorbis_analysis failed"));
                }
                if vorbis_bitrate_addblock(&mut st.vb) != 0 {
                    return Err(lib_err("vorbis", "vorbis_bitrate_addblock failed"));
                }
                while vorbis_bitrate_flushpacket(&mut st.vd, &mut op) == 1 {
                    self.ogg.packetin_raw(&mut op)?;
                }
            }
        }
        Ok(())
    }
}

impl AudioEncoder for VorbisEncoder {
    fn push(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.headers(out)?;
        if pcm.is_empty() {
            return Ok(());
        }
        for piece in pcm.chunks(CALL_SAMPLES) {
            let st = &mut *self.st;
            // SAFETY: vorbis_analysis_buffer returns one channel pointer with room for `piece.len()` floats.
            unsafe {
                let buf = vorbis_analysis_buffer(&mut st.vd, piece.len() as c_int);
                if buf.is_null() || (*buf).is_null() {
                    return Err(lib_err("vorbis", "vorbis_analysis_buffer failed"));
                }
                let ch0 = std::slice::from_raw_parts_mut(*buf, piece.len());
                for (d, &s) in ch0.iter_mut().zip(piece) {
                    *d = s as f32 / 32768.0;
                }
                if vorbis_analysis_wrote(&mut st.vd, piece.len() as c_int) != 0 {
                    return Err(lib_err("vorbis", "vorbis_analysis_wrote failed"));
                }
            }
            self.drain()?;
        }
        self.ogg.flush(out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<Vec<Patch>, CodecError> {
        self.headers(out)?;
        if !self.ended {
            self.ended = true;
            // SAFETY: initialised dsp state; 0 = end of input (libvorbis marks the last packet e_o_s).
            if unsafe { vorbis_analysis_wrote(&mut self.st.vd, 0) } != 0 {
                return Err(lib_err("vorbis", "vorbis_analysis_wrote(0) failed"));
            }
            self.drain()?;
        }
        self.ogg.flush(out);
        Ok(Vec::new())
    }
}

impl Drop for VorbisEncoder {
    fn drop(&mut self) {
        let st = &mut *self.st;
        // SAFETY: clear exactly what was initialised, in reverse order.
        unsafe {
            if self.inited.block {
                vorbis_block_clear(&mut st.vb);
            }
            if self.inited.dsp {
                vorbis_dsp_clear(&mut st.vd);
            }
            if self.inited.comment {
                vorbis_comment_clear(&mut st.vc);
            }
            if self.inited.info {
                vorbis_info_clear(&mut st.vi);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_rate_initialises() {
        for rate in [8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000, 192_000] {
            let mut e = VorbisEncoder::new(rate, 0.4).unwrap_or_else(|e| panic!("{rate}: {e}"));
            let mut out = Vec::new();
            e.push(&vec![100i16; rate as usize / 10], &mut out).unwrap();
            e.finish(&mut out).unwrap();
            assert_eq!(&out[..4], b"OggS");
        }
        assert!(VorbisEncoder::new(4_000, 0.4).is_err());
    }
}
