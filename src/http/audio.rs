//! Response audio: the format a route asked for, encoded from the engine's PCM as it arrives.
//!
//! In:  the job's events: PCM16 mono pieces at the model's rate (a segment, or a token chunk in `/tts` modes 2/3),
//!      then [`TtsStats`]. The route's [`Output`] names the format ([`AudioFormat`]), its encoder options (AAC bit
//!      rate, OpenAI `pcm`'s forced 24 kHz), the `Content-Type`, whether the response streams, and its framing.
//! Out: either one complete file (`Delivery::Whole`: WAV sizes, FLAC STREAMINFO totals and MD5, MP3 LAME tag patched
//!      in; `Content-Length`), or a chunked stream (`Delivery::Stream`): the container's header with the first piece,
//!      then whatever Ogg pages / MP3 frames / ADTS frames / FLAC frames / PCM bytes each piece completes, then the
//!      encoder's tail. [`Framing::Sse`] wraps every piece of bytes in OpenAI's `speech.audio.delta` event (base64
//!      `audio`) and ends with `speech.audio.done` (with `usage`).
//!
//! One [`Encoder`] per request, created by the route before the job is queued (a codec that cannot start is a 500
//! before any byte is sent) and moved into the response. It lives in a [`Packer`]; a streaming response is driven by
//! [`pump`], a task that reads the job's events and feeds a bounded channel the response body reads. Lossy codecs
//! encode on tokio's blocking pool (AAC runs at ~23x real time on one core: tens of milliseconds per segment), the
//! lossless ones inline. A client that disconnects drops the body, whose [`CancelGuard`] stops the worker, and the
//! pump ends when its channel closes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Frame;

use super::metrics::Metrics;
use super::HttpError;
use crate::codec::{apply_patches, AudioFormat, CodecError, Delivery, Encoder, EncoderOptions};
use crate::engine::pool::{CancelGuard, Event};
use crate::engine::TtsStats;

/// How a route wants its audio delivered.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub format: AudioFormat,
    /// Bit rate and forced output rate; the delivery is set from `stream`.
    pub opts: EncoderOptions,
    pub content_type: &'static str,
    /// Chunked, piece by piece (true), or one complete file with `Content-Length`.
    pub stream: bool,
    pub framing: Framing,
}

impl Output {
    /// `format` with its registered `Content-Type`, delivered whole, no framing.
    pub fn new(format: AudioFormat) -> Output {
        Output { format, opts: EncoderOptions::default(), content_type: format.content_type(), stream: false, framing: Framing::Bytes }
    }

    /// The encoder for this output at the model's rate `in_rate` (before the job is queued).
    pub fn encoder(&self, in_rate: u32) -> Result<Encoder, HttpError> {
        let delivery = if self.stream { Delivery::Stream } else { Delivery::Whole };
        Encoder::new(self.format, in_rate, EncoderOptions { delivery, ..self.opts }).map_err(codec_error)
    }

    /// `Content-Type` of the response (SSE: `text/event-stream`).
    pub fn response_type(&self) -> &'static str {
        match self.framing {
            Framing::Bytes => self.content_type,
            Framing::Sse { .. } => "text/event-stream",
        }
    }
}

/// How encoded bytes are put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// The container's bytes as they are.
    Bytes,
    /// OpenAI's server-sent events (`stream_format: "sse"`); `input_tokens` is reported in `usage`.
    Sse { input_tokens: usize },
}

fn codec_error(e: CodecError) -> HttpError {
    match e {
        // a format left out of the build is the client's to avoid; the routes check it first, this is the net
        CodecError::NotBuilt(_) => HttpError::BadRequest(e.to_string()),
        other => HttpError::Internal(format!("audio encoder: {other}")),
    }
}

/// One request's encoder and framing.
pub(crate) struct Packer {
    enc: Option<Encoder>,
    framing: Framing,
}

impl Packer {
    pub fn new(enc: Encoder, framing: Framing) -> Packer {
        Packer { enc: Some(enc), framing }
    }

    /// Runs `f` on the encoder: inline for the cheap lossless formats, on the blocking pool for the others.
    async fn with_encoder<T: Send + 'static>(&mut self, f: impl FnOnce(&mut Encoder) -> Result<T, CodecError> + Send + 'static) -> Result<T, HttpError> {
        let mut enc = self.enc.take().ok_or_else(|| HttpError::Internal("audio encoder already consumed".into()))?;
        if enc.format().lossless() {
            let r = f(&mut enc);
            self.enc = Some(enc);
            return r.map_err(codec_error);
        }
        let (enc, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut enc);
            (enc, r)
        })
        .await
        .map_err(|e| HttpError::Internal(format!("audio encoder task: {e}")))?;
        self.enc = Some(enc);
        r.map_err(codec_error)
    }

    /// Encodes one piece; the bytes to send now, framed (`None` when the codec completed nothing yet).
    pub async fn push(&mut self, pcm: Vec<i16>) -> Result<Option<Bytes>, HttpError> {
        let bytes = self.with_encoder(move |e| e.push(&pcm)).await?;
        Ok(self.frame(bytes))
    }

    /// Ends a streamed response: the encoder's tail, framed, and for SSE the `speech.audio.done` event.
    pub async fn finish_stream(&mut self, st: &TtsStats) -> Result<Option<Bytes>, HttpError> {
        let fin = self.with_encoder(|e| e.finish()).await?;
        let mut out = self.frame(fin.tail).map(|b| b.to_vec()).unwrap_or_default();
        if let Framing::Sse { input_tokens } = self.framing {
            out.extend_from_slice(&sse_done(input_tokens, st.tokens));
        }
        Ok(if out.is_empty() { None } else { Some(Bytes::from(out)) })
    }

    /// A whole response: all of `pcm`, finished and patched (header fields a stream cannot know).
    pub async fn whole(mut self, pcm: Vec<i16>) -> Result<Vec<u8>, HttpError> {
        let mut out = self
            .with_encoder(move |e| {
                let mut out = e.push(&pcm)?;
                let fin = e.finish()?;
                out.extend_from_slice(&fin.tail);
                apply_patches(&mut out, &fin.patches)?;
                Ok(out)
            })
            .await?;
        if let Framing::Sse { .. } = self.framing {
            // not reached by the routes (SSE always streams); kept consistent anyway
            out = sse_delta(&out);
        }
        Ok(out)
    }

    fn frame(&self, bytes: Vec<u8>) -> Option<Bytes> {
        if bytes.is_empty() {
            return None;
        }
        Some(Bytes::from(match self.framing {
            Framing::Bytes => bytes,
            Framing::Sse { .. } => sse_delta(&bytes),
        }))
    }
}

/// `data: {"type":"speech.audio.delta","audio":"<base64>"}` and the blank line that ends the event.
pub(crate) fn sse_delta(audio: &[u8]) -> Vec<u8> {
    let mut s = String::with_capacity(64 + audio.len() * 4 / 3);
    s.push_str("data: {\"type\":\"speech.audio.delta\",\"audio\":\"");
    base64_into(audio, &mut s);
    s.push_str("\"}\n\n");
    s.into_bytes()
}

/// `speech.audio.done` with OpenAI's `usage` (input: characters of `input`; output: semantic tokens generated).
pub(crate) fn sse_done(input_tokens: usize, output_tokens: usize) -> Vec<u8> {
    let v = serde_json::json!({
        "type": "speech.audio.done",
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens},
    });
    format!("data: {v}\n\n").into_bytes()
}

/// Standard base64 (RFC 4648, with padding).
pub(crate) fn base64_into(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

/// The body of a streamed response: the first piece (sent with the headers), then what [`pump`] sends.
pub struct AudioStream {
    first: Option<Bytes>,
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    /// Dropped with the body (client gone) -> the worker stops.
    _guard: CancelGuard,
    done: bool,
}

impl AudioStream {
    pub(crate) fn new(first: Option<Bytes>, rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>, guard: CancelGuard) -> AudioStream {
        AudioStream { first, rx, _guard: guard, done: false }
    }

    pub(crate) fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let s = self.get_mut();
        if let Some(b) = s.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if s.done {
            return Poll::Ready(None);
        }
        match s.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => {
                s.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                s.done = true;
                Poll::Ready(None)
            }
        }
    }
}

/// Feeds a streamed response: every further piece of the job through the packer into `tx`, then the tail. A
/// failure after the first bytes, or the request's `deadline` passing while it waits for audio, aborts the transfer
/// (the status is already sent); the client sees a cut stream.
pub(crate) async fn pump(
    mut packer: Packer,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    metrics: Arc<Metrics>,
    id: String,
    deadline: Option<std::time::Instant>,
) {
    let abort = |what: &str| Err(std::io::Error::other(what.to_string()));
    loop {
        // a stream still waiting for audio at the request's deadline is aborted (its worker may be wedged)
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), events.recv()).await {
                Ok(e) => e,
                Err(_) => {
                    metrics.failure("stream_aborted");
                    tracing::warn!(id = %id, "stream aborted: the request's deadline passed");
                    let _ = tx.send(abort("deadline passed")).await;
                    return;
                }
            },
            None => events.recv().await,
        };
        let msg = match next {
            Some(Event::Segment(pcm)) => match packer.push(pcm).await {
                Ok(Some(b)) => Ok(b),
                Ok(None) => continue,
                Err(e) => {
                    metrics.failure("stream_aborted");
                    tracing::error!(id = %id, "stream aborted: {e}");
                    let _ = tx.send(abort("encoder failed")).await;
                    return;
                }
            },
            Some(Event::Done(Ok(st))) => {
                match packer.finish_stream(&st).await {
                    Ok(Some(b)) => {
                        let _ = tx.send(Ok(b)).await;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        metrics.failure("stream_aborted");
                        tracing::error!(id = %id, "stream aborted at its end: {e}");
                        let _ = tx.send(abort("encoder failed")).await;
                    }
                }
                return;
            }
            Some(Event::Done(Err(e))) => {
                metrics.failure("stream_aborted");
                tracing::warn!(id = %id, "stream aborted after the first audio: {e}");
                abort("synthesis failed")
            }
            None => abort("worker stopped"),
        };
        let last = msg.is_err();
        if tx.send(msg).await.is_err() || last {
            // the client is gone (the body, and with it the cancel guard, was dropped), or the stream ended
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_rfc4648() {
        let enc = |b: &[u8]| {
            let mut s = String::new();
            base64_into(b, &mut s);
            s
        };
        // RFC 4648 section 10 test vectors
        for (i, o) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")] {
            assert_eq!(enc(i.as_bytes()), o, "{i}");
        }
        assert_eq!(enc(&[0xff, 0xfe, 0x00, 0x3f]), "//4APw==");
    }

    #[test]
    fn sse_events_have_openai_fields() {
        let d = String::from_utf8(sse_delta(b"\x00\x01\x02")).unwrap();
        assert!(d.starts_with("data: ") && d.ends_with("\n\n"), "{d:?}");
        let v: serde_json::Value = serde_json::from_str(d.trim_start_matches("data: ").trim_end()).unwrap();
        assert_eq!(v, serde_json::json!({"type": "speech.audio.delta", "audio": "AAEC"}));
        let d = String::from_utf8(sse_done(7, 30)).unwrap();
        let v: serde_json::Value = serde_json::from_str(d.trim_start_matches("data: ").trim_end()).unwrap();
        assert_eq!(v["type"], "speech.audio.done");
        assert_eq!(v["usage"], serde_json::json!({"input_tokens": 7, "output_tokens": 30, "total_tokens": 37}));
    }
}
