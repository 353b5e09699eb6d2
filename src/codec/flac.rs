//! FLAC through libFLAC (Debian `libflac-dev`): native FLAC, 16-bit mono, compression level 5.
//!
//! In: PCM16 mono at any rate FLAC takes. Out: `fLaC` + STREAMINFO at the first push, then one FLAC
//! frame per 4096 samples (level 5's block size: 128 ms at 32 kHz) as they fill; the last partial
//! block at finish. `Stream`: libFLAC gets no seek callback, so STREAMINFO keeps "unknown" total
//! samples and MD5 (valid FLAC; decoders read to the end). `Whole`: libFLAC seeks back at finish to
//! write the final STREAMINFO (total samples, frame sizes, MD5); those writes come back as patches.

use std::ffi::{c_int, c_void};

use super::{lib_err, AudioEncoder, CodecError, Delivery, Patch};

type Flac = *mut c_void;
type WriteCb = unsafe extern "C" fn(Flac, *const u8, usize, u32, u32, *mut c_void) -> c_int;
type SeekCb = unsafe extern "C" fn(Flac, u64, *mut c_void) -> c_int;
type TellCb = unsafe extern "C" fn(Flac, *mut u64, *mut c_void) -> c_int;

const WRITE_OK: c_int = 0;
const WRITE_FATAL: c_int = 1;
const SEEK_OK: c_int = 0;
const SEEK_ERROR: c_int = 1;
const TELL_OK: c_int = 0;
const INIT_OK: c_int = 0;
/// libFLAC's default preset (the `flac` tool's default).
const COMPRESSION_LEVEL: u32 = 5;

#[link(name = "FLAC")]
extern "C" {
    fn FLAC__stream_encoder_new() -> Flac;
    fn FLAC__stream_encoder_delete(enc: Flac);
    fn FLAC__stream_encoder_set_channels(enc: Flac, n: u32) -> c_int;
    fn FLAC__stream_encoder_set_bits_per_sample(enc: Flac, n: u32) -> c_int;
    fn FLAC__stream_encoder_set_sample_rate(enc: Flac, rate: u32) -> c_int;
    fn FLAC__stream_encoder_set_compression_level(enc: Flac, level: u32) -> c_int;
    fn FLAC__stream_encoder_init_stream(
        enc: Flac,
        write: Option<WriteCb>,
        seek: Option<SeekCb>,
        tell: Option<TellCb>,
        metadata: Option<unsafe extern "C" fn(Flac, *const c_void, *mut c_void)>,
        client_data: *mut c_void,
    ) -> c_int;
    fn FLAC__stream_encoder_process_interleaved(enc: Flac, buffer: *const i32, samples: u32) -> c_int;
    fn FLAC__stream_encoder_finish(enc: Flac) -> c_int;
    fn FLAC__stream_encoder_get_state(enc: Flac) -> c_int;
}

/// Where libFLAC's callbacks write: new bytes are appended; bytes written after a seek back become patches.
#[derive(Default)]
struct Sink {
    out: Vec<u8>,
    pos: u64,
    len: u64,
    patches: Vec<Patch>,
}

unsafe extern "C" fn on_write(_enc: Flac, buffer: *const u8, bytes: usize, _samples: u32, _frame: u32, cd: *mut c_void) -> c_int {
    if cd.is_null() || (buffer.is_null() && bytes > 0) {
        return WRITE_FATAL;
    }
    // SAFETY: cd is the Sink passed to init_stream, alive while the encoder is; buffer has `bytes` bytes.
    let sink = &mut *(cd as *mut Sink);
    let data = if bytes == 0 { &[][..] } else { std::slice::from_raw_parts(buffer, bytes) };
    let inside = (sink.len - sink.pos).min(bytes as u64) as usize;
    if inside > 0 {
        sink.patches.push(Patch { offset: sink.pos, bytes: data[..inside].to_vec() });
    }
    sink.out.extend_from_slice(&data[inside..]);
    sink.pos += bytes as u64;
    sink.len = sink.len.max(sink.pos);
    WRITE_OK
}

unsafe extern "C" fn on_seek(_enc: Flac, offset: u64, cd: *mut c_void) -> c_int {
    if cd.is_null() {
        return SEEK_ERROR;
    }
    // SAFETY: as in on_write.
    let sink = &mut *(cd as *mut Sink);
    if offset > sink.len {
        return SEEK_ERROR;
    }
    sink.pos = offset;
    SEEK_OK
}

unsafe extern "C" fn on_tell(_enc: Flac, offset: *mut u64, cd: *mut c_void) -> c_int {
    if cd.is_null() || offset.is_null() {
        return SEEK_ERROR;
    }
    // SAFETY: as in on_write; `offset` is libFLAC's out-parameter.
    *offset = (*(cd as *mut Sink)).pos;
    TELL_OK
}

pub(crate) struct FlacEncoder {
    enc: Flac,
    // Boxed so that its address (libFLAC's client data) never changes.
    sink: Box<Sink>,
    buf: Vec<i32>,
    finished: bool,
}

// SAFETY: the libFLAC encoder and its sink are owned exclusively by this value; no thread affinity.
unsafe impl Send for FlacEncoder {}

/// Samples per `process_interleaved` call.
const CALL_SAMPLES: usize = 1 << 16;

impl FlacEncoder {
    pub(crate) fn new(rate: u32, delivery: Delivery) -> Result<FlacEncoder, CodecError> {
        if rate == 0 || rate > 655_350 {
            return Err(CodecError::BadSampleRate(rate));
        }
        // SAFETY: plain constructor; NULL checked.
        let enc = unsafe { FLAC__stream_encoder_new() };
        if enc.is_null() {
            return Err(lib_err("flac", "FLAC__stream_encoder_new failed"));
        }
        let mut me = FlacEncoder { enc, sink: Box::new(Sink::default()), buf: Vec::new(), finished: false };
        let whole = delivery == Delivery::Whole;
        let cd = &mut *me.sink as *mut Sink as *mut c_void;
        // SAFETY: valid encoder; setters before init; the sink outlives the encoder (Drop deletes it first).
        let status = unsafe {
            let ok = FLAC__stream_encoder_set_channels(enc, 1) != 0
                && FLAC__stream_encoder_set_bits_per_sample(enc, 16) != 0
                && FLAC__stream_encoder_set_sample_rate(enc, rate) != 0
                && FLAC__stream_encoder_set_compression_level(enc, COMPRESSION_LEVEL) != 0;
            if !ok {
                return Err(lib_err("flac", "setting up the encoder failed"));
            }
            FLAC__stream_encoder_init_stream(
                enc,
                Some(on_write),
                if whole { Some(on_seek) } else { None },
                if whole { Some(on_tell) } else { None },
                None,
                cd,
            )
        };
        if status != INIT_OK {
            return Err(lib_err("flac", format!("FLAC__stream_encoder_init_stream failed (init status {status})")));
        }
        Ok(me)
    }
}

impl AudioEncoder for FlacEncoder {
    fn push(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        for piece in pcm.chunks(CALL_SAMPLES) {
            self.buf.clear();
            self.buf.extend(piece.iter().map(|&s| s as i32));
            // SAFETY: initialised encoder; buf holds piece.len() samples of one channel.
            let ok = unsafe { FLAC__stream_encoder_process_interleaved(self.enc, self.buf.as_ptr(), piece.len() as u32) };
            if ok == 0 {
                let state = unsafe { FLAC__stream_encoder_get_state(self.enc) };
                return Err(lib_err("flac", format!("encoding failed (encoder state {state})")));
            }
        }
        out.append(&mut self.sink.out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<Vec<Patch>, CodecError> {
        if !self.finished {
            self.finished = true;
            // SAFETY: initialised encoder; finish flushes the last block through the callbacks.
            if unsafe { FLAC__stream_encoder_finish(self.enc) } == 0 {
                return Err(lib_err("flac", "FLAC__stream_encoder_finish failed"));
            }
        }
        out.append(&mut self.sink.out);
        Ok(std::mem::take(&mut self.sink.patches))
    }
}

impl Drop for FlacEncoder {
    fn drop(&mut self) {
        // SAFETY: created in new, deleted once, before the sink it writes to is dropped.
        unsafe { FLAC__stream_encoder_delete(self.enc) };
    }
}
