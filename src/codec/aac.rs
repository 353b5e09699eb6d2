//! AAC-LC in ADTS through FFmpeg's libraries (Debian `libavcodec-dev`, `libavformat-dev`): the native
//! `aac` encoder and the `adts` muxer, i.e. what upstream runs as `ffmpeg -f s16le -ar RATE -ac 1 -i
//! pipe:0 -c:a aac -b:a 192k -vn -f adts pipe:1` (api_v2; api.py uses 128k), here in-process.
//!
//! In: PCM16 mono at an AAC rate ([`RATES`]), scaled by 1/32768 to planar float. Out: ADTS frames
//! (7-byte header + one 1024-sample raw AAC frame each) as the encoder releases them (it keeps one
//! frame of look-ahead), the muxer's I/O flushed after every push. ADTS cannot signal the encoder's
//! 1024-sample priming: decoders return it as leading silence (so does upstream's output).
//! Upstream's streaming mode runs one ffmpeg process per chunk (priming before every chunk); here one
//! encoder runs for the whole response.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::Once;

use ffmpeg_sys_next as ff;

use super::{lib_err, AudioEncoder, CodecError, Patch};

use super::AAC_RATES as RATES;

fn av_err(what: &str, code: c_int) -> CodecError {
    let mut buf = [0 as std::ffi::c_char; 128];
    // SAFETY: av_strerror writes a NUL-terminated message into the buffer.
    let msg = unsafe {
        if ff::av_strerror(code, buf.as_mut_ptr(), buf.len()) == 0 {
            CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
        } else {
            format!("error {code}")
        }
    };
    lib_err("aac", format!("{what}: {msg}"))
}

/// FFmpeg logs to stderr; keep only its errors (everything else comes back as return codes).
static QUIET: Once = Once::new();

/// avio write callback: appends the muxer's bytes to the encoder's sink.
unsafe extern "C" fn on_write(opaque: *mut c_void, buf: *const u8, size: c_int) -> c_int {
    if opaque.is_null() || size < 0 || (buf.is_null() && size > 0) {
        return ff::AVERROR(libc::EINVAL);
    }
    // SAFETY: opaque is the Box<Vec<u8>> given to avio_alloc_context, alive while the muxer is.
    let sink = &mut *(opaque as *mut Vec<u8>);
    if size > 0 {
        sink.extend_from_slice(std::slice::from_raw_parts(buf, size as usize));
    }
    size
}

pub(crate) struct AdtsEncoder {
    ctx: *mut ff::AVCodecContext,
    oc: *mut ff::AVFormatContext,
    stream: *mut ff::AVStream,
    frame: *mut ff::AVFrame,
    pkt: *mut ff::AVPacket,
    // Boxed: its address is the avio opaque pointer, which must not move with the encoder.
    #[allow(clippy::box_collection)]
    sink: Box<Vec<u8>>,
    frame_size: usize,
    pending: Vec<f32>,
    pts: i64,
    ended: bool,
}

// SAFETY: every FFmpeg object here is owned exclusively by this encoder and used from one thread at a
// time; FFmpeg's encoder/muxer contexts have no thread affinity.
unsafe impl Send for AdtsEncoder {}

impl AdtsEncoder {
    pub(crate) fn new(rate: u32, bitrate: u32) -> Result<AdtsEncoder, CodecError> {
        if !RATES.contains(&rate) {
            return Err(lib_err("aac", format!("AAC has no {rate} Hz")));
        }
        QUIET.call_once(|| unsafe { ff::av_log_set_level(ff::AV_LOG_ERROR) });
        let mut me = AdtsEncoder {
            ctx: ptr::null_mut(),
            oc: ptr::null_mut(),
            stream: ptr::null_mut(),
            frame: ptr::null_mut(),
            pkt: ptr::null_mut(),
            sink: Box::new(Vec::new()),
            frame_size: 0,
            pending: Vec::new(),
            pts: 0,
            ended: false,
        };
        // SAFETY: FFmpeg's documented set-up sequence; every pointer is checked before use and owned
        // by `me`, whose Drop frees whatever was allocated if a later step fails.
        unsafe {
            let codec = ff::avcodec_find_encoder_by_name(c"aac".as_ptr());
            if codec.is_null() {
                return Err(lib_err("aac", "this FFmpeg has no native aac encoder"));
            }
            me.ctx = ff::avcodec_alloc_context3(codec);
            if me.ctx.is_null() {
                return Err(lib_err("aac", "avcodec_alloc_context3 failed"));
            }
            let ctx = &mut *me.ctx;
            ctx.sample_fmt = ff::AVSampleFormat::AV_SAMPLE_FMT_FLTP;
            ctx.sample_rate = rate as c_int;
            ff::av_channel_layout_default(&mut ctx.ch_layout, 1);
            ctx.bit_rate = bitrate.clamp(8_000, 512_000) as i64;
            ctx.time_base = ff::AVRational { num: 1, den: rate as c_int };
            let r = ff::avcodec_open2(me.ctx, codec, ptr::null_mut());
            if r < 0 {
                return Err(av_err("avcodec_open2", r));
            }
            me.frame_size = usize::try_from((*me.ctx).frame_size).ok().filter(|&n| n > 0).unwrap_or(1024);

            let r = ff::avformat_alloc_output_context2(&mut me.oc, ptr::null(), c"adts".as_ptr(), ptr::null());
            if r < 0 || me.oc.is_null() {
                return Err(av_err("avformat_alloc_output_context2(adts)", r));
            }
            const IO_BUF: usize = 4096;
            let io_buf = ff::av_malloc(IO_BUF) as *mut u8;
            if io_buf.is_null() {
                return Err(lib_err("aac", "av_malloc failed"));
            }
            let write: unsafe extern "C" fn(*mut c_void, *const u8, c_int) -> c_int = on_write;
            let opaque = &mut *me.sink as *mut Vec<u8> as *mut c_void;
            // The write callback's buffer is `uint8_t *` before FFmpeg 7 and `const uint8_t *` after;
            // the ABI is the same, so the function pointer is cast to whichever this FFmpeg declares.
            #[allow(clippy::missing_transmute_annotations)]
            let pb = ff::avio_alloc_context(io_buf, IO_BUF as c_int, 1, opaque, None, Some(std::mem::transmute(write)), None);
            if pb.is_null() {
                ff::av_free(io_buf as *mut c_void);
                return Err(lib_err("aac", "avio_alloc_context failed"));
            }
            (*me.oc).pb = pb;
            (*me.oc).flags |= ff::AVFMT_FLAG_CUSTOM_IO as c_int;
            me.stream = ff::avformat_new_stream(me.oc, ptr::null());
            if me.stream.is_null() {
                return Err(lib_err("aac", "avformat_new_stream failed"));
            }
            let r = ff::avcodec_parameters_from_context((*me.stream).codecpar, me.ctx);
            if r < 0 {
                return Err(av_err("avcodec_parameters_from_context", r));
            }
            (*me.stream).time_base = (*me.ctx).time_base;
            let r = ff::avformat_write_header(me.oc, ptr::null_mut());
            if r < 0 {
                return Err(av_err("avformat_write_header", r));
            }

            me.frame = ff::av_frame_alloc();
            me.pkt = ff::av_packet_alloc();
            if me.frame.is_null() || me.pkt.is_null() {
                return Err(lib_err("aac", "av_frame_alloc/av_packet_alloc failed"));
            }
            let f = &mut *me.frame;
            f.nb_samples = me.frame_size as c_int;
            f.format = ff::AVSampleFormat::AV_SAMPLE_FMT_FLTP as c_int;
            f.sample_rate = rate as c_int;
            let r = ff::av_channel_layout_copy(&mut f.ch_layout, &(*me.ctx).ch_layout);
            if r < 0 {
                return Err(av_err("av_channel_layout_copy", r));
            }
            let r = ff::av_frame_get_buffer(me.frame, 0);
            if r < 0 {
                return Err(av_err("av_frame_get_buffer", r));
            }
        }
        Ok(me)
    }

    /// Sends up to one frame of samples (fewer only for the last frame), or `None` to drain.
    fn send(&mut self, samples: Option<&[f32]>) -> Result<(), CodecError> {
        // SAFETY: contexts set up in new; the frame buffer holds frame_size floats of one plane.
        unsafe {
            let r = match samples {
                Some(s) => {
                    let r = ff::av_frame_make_writable(self.frame);
                    if r < 0 {
                        return Err(av_err("av_frame_make_writable", r));
                    }
                    let f = &mut *self.frame;
                    let n = s.len().min(self.frame_size);
                    f.nb_samples = n as c_int;
                    let plane = std::slice::from_raw_parts_mut(f.data[0] as *mut f32, n);
                    plane.copy_from_slice(&s[..n]);
                    f.pts = self.pts;
                    self.pts += n as i64;
                    ff::avcodec_send_frame(self.ctx, self.frame)
                }
                None => ff::avcodec_send_frame(self.ctx, ptr::null()),
            };
            if r < 0 {
                return Err(av_err("avcodec_send_frame", r));
            }
            loop {
                let r = ff::avcodec_receive_packet(self.ctx, self.pkt);
                if r == ff::AVERROR(libc::EAGAIN) || r == ff::AVERROR_EOF {
                    break;
                }
                if r < 0 {
                    return Err(av_err("avcodec_receive_packet", r));
                }
                (*self.pkt).stream_index = 0;
                ff::av_packet_rescale_ts(self.pkt, (*self.ctx).time_base, (*self.stream).time_base);
                let w = ff::av_write_frame(self.oc, self.pkt);
                ff::av_packet_unref(self.pkt);
                if w < 0 {
                    return Err(av_err("av_write_frame", w));
                }
            }
        }
        Ok(())
    }

    fn drain_io(&mut self, out: &mut Vec<u8>) {
        // SAFETY: the muxer's AVIOContext set up in new.
        unsafe { ff::avio_flush((*self.oc).pb) };
        out.append(&mut self.sink);
    }
}

impl AudioEncoder for AdtsEncoder {
    fn push(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.pending.extend(pcm.iter().map(|&s| s as f32 / 32768.0));
        let whole = self.pending.len() / self.frame_size * self.frame_size;
        let pending = std::mem::take(&mut self.pending);
        for chunk in pending[..whole].chunks_exact(self.frame_size) {
            self.send(Some(chunk))?;
        }
        self.pending = pending[whole..].to_vec();
        self.drain_io(out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<Vec<Patch>, CodecError> {
        if !self.ended {
            self.ended = true;
            if !self.pending.is_empty() {
                let last = std::mem::take(&mut self.pending);
                self.send(Some(&last))?;
            }
            self.send(None)?;
            // SAFETY: header written in new; the trailer is written once.
            let r = unsafe { ff::av_write_trailer(self.oc) };
            if r < 0 {
                return Err(av_err("av_write_trailer", r));
            }
        }
        self.drain_io(out);
        Ok(Vec::new())
    }
}

impl Drop for AdtsEncoder {
    fn drop(&mut self) {
        // SAFETY: frees exactly what new allocated (each free function accepts NULL).
        unsafe {
            ff::av_frame_free(&mut self.frame);
            ff::av_packet_free(&mut self.pkt);
            ff::avcodec_free_context(&mut self.ctx);
            if !self.oc.is_null() {
                let mut pb = (*self.oc).pb;
                if !pb.is_null() {
                    ff::av_freep(&mut (*pb).buffer as *mut *mut u8 as *mut c_void);
                    ff::avio_context_free(&mut pb);
                    (*self.oc).pb = ptr::null_mut();
                }
                ff::avformat_free_context(self.oc);
                self.oc = ptr::null_mut();
            }
        }
    }
}
