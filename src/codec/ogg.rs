//! Ogg framing through libogg (Debian `libogg-dev`): packets in, pages out (for Vorbis and Opus).
//!
//! The encoders `flush` after every push (and after the headers): the current page is closed so that
//! what was encoded so far leaves now instead of waiting for libogg's ~4 KiB pages; a page costs
//! 27 bytes + 1 per 255 bytes of packet.

use std::ffi::{c_int, c_long};

use super::{lib_err, CodecError};

/// libogg's `ogg_packet` (layout unchanged since libogg 1.0).
#[repr(C)]
pub(crate) struct OggPacket {
    pub packet: *mut u8,
    pub bytes: c_long,
    pub b_o_s: c_long,
    pub e_o_s: c_long,
    pub granulepos: i64,
    pub packetno: i64,
}

impl OggPacket {
    pub(crate) fn empty() -> OggPacket {
        OggPacket { packet: std::ptr::null_mut(), bytes: 0, b_o_s: 0, e_o_s: 0, granulepos: 0, packetno: 0 }
    }
}

#[repr(C)]
struct OggPage {
    header: *mut u8,
    header_len: c_long,
    body: *mut u8,
    body_len: c_long,
}

/// Storage for libogg's `ogg_stream_state`, which is only ever touched by libogg: 408 bytes on LP64
/// targets; twice that is reserved so that the layout never matters here.
#[repr(C, align(16))]
pub(crate) struct StreamState([u8; 1024]);

#[link(name = "ogg")]
extern "C" {
    fn ogg_stream_init(os: *mut StreamState, serialno: c_int) -> c_int;
    fn ogg_stream_clear(os: *mut StreamState) -> c_int;
    fn ogg_stream_packetin(os: *mut StreamState, op: *mut OggPacket) -> c_int;
    fn ogg_stream_flush(os: *mut StreamState, og: *mut OggPage) -> c_int;
}

/// One logical Ogg bitstream being written.
pub(crate) struct OggStream {
    os: Box<StreamState>,
    next_packetno: i64,
}

// SAFETY: the stream state is heap memory owned exclusively by this value; libogg keeps no globals.
unsafe impl Send for OggStream {}

impl OggStream {
    /// A stream with a random serial number (so that concatenated streams chain, as libsndfile does).
    pub(crate) fn new() -> Result<OggStream, CodecError> {
        let mut os = Box::new(StreamState([0; 1024]));
        let serial: i32 = rand::random();
        // SAFETY: `os` is writable storage larger than ogg_stream_state, pinned in a Box.
        if unsafe { ogg_stream_init(&mut *os, serial) } != 0 {
            return Err(lib_err("ogg", "ogg_stream_init failed"));
        }
        Ok(OggStream { os, next_packetno: 0 })
    }

    /// Submits a packet made by a codec library (its fields already set).
    pub(crate) fn packetin_raw(&mut self, op: &mut OggPacket) -> Result<(), CodecError> {
        // SAFETY: initialised stream; libogg copies `bytes` bytes from `packet` and does not keep the pointer.
        if unsafe { ogg_stream_packetin(&mut *self.os, op) } != 0 {
            return Err(lib_err("ogg", "ogg_stream_packetin failed"));
        }
        self.next_packetno = op.packetno + 1;
        Ok(())
    }

    /// Submits `data` as the next packet.
    pub(crate) fn packetin(&mut self, data: &[u8], bos: bool, eos: bool, granulepos: i64) -> Result<(), CodecError> {
        let mut op = OggPacket {
            packet: data.as_ptr() as *mut u8,
            bytes: data.len() as c_long,
            b_o_s: bos as c_long,
            e_o_s: eos as c_long,
            granulepos,
            packetno: self.next_packetno,
        };
        self.packetin_raw(&mut op)
    }

    /// Appends all pending packets as pages, ending the last page now.
    pub(crate) fn flush(&mut self, out: &mut Vec<u8>) {
        let mut og = OggPage { header: std::ptr::null_mut(), header_len: 0, body: std::ptr::null_mut(), body_len: 0 };
        // SAFETY: initialised stream; the page points into the stream's buffers until the next call.
        while unsafe { ogg_stream_flush(&mut *self.os, &mut og) } != 0 {
            append_page(&og, out);
        }
    }
}

fn append_page(og: &OggPage, out: &mut Vec<u8>) {
    // SAFETY: libogg's page points at header_len / body_len valid bytes.
    unsafe {
        if og.header_len > 0 && !og.header.is_null() {
            out.extend_from_slice(std::slice::from_raw_parts(og.header, og.header_len as usize));
        }
        if og.body_len > 0 && !og.body.is_null() {
            out.extend_from_slice(std::slice::from_raw_parts(og.body, og.body_len as usize));
        }
    }
}

impl Drop for OggStream {
    fn drop(&mut self) {
        // SAFETY: initialised in new, cleared once.
        unsafe { ogg_stream_clear(&mut *self.os) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_the_packets() {
        let mut s = OggStream::new().unwrap();
        let mut out = Vec::new();
        s.packetin(b"OpusHead-ish", true, false, 0).unwrap();
        s.flush(&mut out);
        assert_eq!(&out[0..4], b"OggS");
        assert_eq!(out[5] & 2, 2, "first page has BOS");
        let first = out.len();
        s.packetin(&[7u8; 300], false, true, 960).unwrap();
        s.flush(&mut out);
        assert_eq!(&out[first..first + 4], b"OggS");
        assert_eq!(out[first + 5] & 4, 4, "last page has EOS");
        assert_eq!(i64::from_le_bytes(out[first + 6..first + 14].try_into().unwrap()), 960);
        assert_eq!(out.len(), first + 27 + 2 + 300); // 300 bytes = lacing 255 + 45
    }
}
