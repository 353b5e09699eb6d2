//! Generation of one segment into a [`SegmentSink`]: the GPT's tokens in, PCM16 pieces out.
//!
//! [`Engine::generate_segment`] runs the GPT loop and hands every new token to the sink, which may return audio
//! at once (token-chunk streaming) or only when generation ends (whole segment). Every piece goes to the caller's
//! `emit` as PCM16 mono at the model rate (32 kHz); the segment's last piece carries api2's 0.3 s of silence.
//! That end-of-segment step is written here once, for every sink.
//!
//! * [`WholeSegment`]: decodes all tokens at once after generation, divides by the peak when it exceeds 1, int16.
//! * [`TokenChunks`]: decodes by chunks of tokens while the GPT is still generating ([`StreamDecoder`]; speed 1
//!   only), clamped rather than peak-normalised (the peak is unknown until the segment ends).
//!
//! The sink is also where output encoders plug in: a sink that wraps one of these and turns their PCM into
//! encoded frames keeps its encoder state for the request, and `emit` carries its bytes.

use std::time::Instant;

use super::{Engine, EngineError, Result};
use crate::gpt::{GenerateConfig, GenerateOutput, GptError, GptInput};
use crate::vocoder::stream::{StreamDecoder, StreamParams};
use crate::vocoder::{self, DecodeParams, Int16Scale, Speaker, Vocoder, VocoderError};

/// Turns a segment's tokens into PCM16 as they arrive.
pub trait SegmentSink {
    /// Called after every new token with all tokens so far; returns audio that can be emitted now (maybe none).
    fn token(&mut self, voc: &mut Vocoder, tokens: &[i64]) -> std::result::Result<Vec<i16>, VocoderError>;
    /// Called once when generation has ended: the rest of the segment's audio.
    fn finish(&mut self, voc: &mut Vocoder, tokens: &[i64]) -> std::result::Result<Vec<i16>, VocoderError>;
}

/// Decode the whole segment once generation has ended; peak-normalised when the peak exceeds 1.
pub struct WholeSegment<'a> {
    text: &'a [i64],
    speaker: &'a Speaker,
    dp: DecodeParams,
    int16: Int16Scale,
}

impl<'a> WholeSegment<'a> {
    /// `text`: the segment's own phone ids (no prompt phones).
    pub fn new(text: &'a [i64], speaker: &'a Speaker, dp: DecodeParams, int16: Int16Scale) -> Self {
        WholeSegment { text, speaker, dp, int16 }
    }
}

impl SegmentSink for WholeSegment<'_> {
    fn token(&mut self, _voc: &mut Vocoder, _tokens: &[i64]) -> std::result::Result<Vec<i16>, VocoderError> {
        Ok(Vec::new())
    }
    fn finish(&mut self, voc: &mut Vocoder, tokens: &[i64]) -> std::result::Result<Vec<i16>, VocoderError> {
        let d = voc.decode(tokens, self.text, self.speaker, self.dp, None, false)?;
        Ok(vocoder::postprocess(std::slice::from_ref(&d.audio), 0, 0.0, self.int16))
    }
}

/// Decode by token chunks while generating.
pub struct TokenChunks<'a> {
    dec: StreamDecoder<'a>,
    int16: Int16Scale,
}

impl<'a> TokenChunks<'a> {
    pub fn new(p: StreamParams, samples_per_token: usize, text: &'a [i64], speaker: &'a Speaker, dp: DecodeParams, int16: Int16Scale) -> Self {
        TokenChunks { dec: StreamDecoder::new(p, samples_per_token, text, speaker, dp), int16 }
    }
}

impl SegmentSink for TokenChunks<'_> {
    fn token(&mut self, voc: &mut Vocoder, tokens: &[i64]) -> std::result::Result<Vec<i16>, VocoderError> {
        Ok(vocoder::pcm16(&self.dec.push(voc, tokens)?, self.int16))
    }
    fn finish(&mut self, voc: &mut Vocoder, tokens: &[i64]) -> std::result::Result<Vec<i16>, VocoderError> {
        Ok(vocoder::pcm16(&self.dec.finish(voc, tokens)?, self.int16))
    }
}

/// What one segment's generation did.
#[derive(Debug)]
pub struct SegmentRun {
    /// Tokens, stop reason and GPT timings.
    pub gen: GenerateOutput,
    /// Wall time of the GPT loop (prefill, steps, sampling), decoding inside it excluded.
    pub gen_ms: f64,
    /// Time spent decoding (in the loop and after it).
    pub decode_ms: f64,
    /// Samples emitted before the trailing silence.
    pub speech_samples: usize,
}

/// Seconds of silence after every segment (api2's `np.zeros(int(hps.data.sampling_rate * 0.3))`).
pub const SEGMENT_GAP_S: f64 = 0.3;

impl Engine {
    /// Generate one segment into `sink`. Every piece goes to `emit(pcm, tokens_so_far, last)`; `emit` returning
    /// false, or `cancel` returning true (polled after every token), ends the request with
    /// [`EngineError::Cancelled`].
    pub fn generate_segment(
        &mut self,
        input: &GptInput<'_>,
        cfg: &GenerateConfig,
        sink: &mut dyn SegmentSink,
        cancel: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Vec<i16>, usize, bool) -> bool,
    ) -> Result<SegmentRun> {
        let gap = (self.sample_rate() as f64 * SEGMENT_GAP_S) as usize;
        // stage boundary: before the prefill
        if cancel() {
            return Err(EngineError::Cancelled);
        }
        let (gpt, voc) = (&mut self.gpt, &mut self.vocoder);
        let mut toks: Vec<i64> = Vec::new();
        let mut failure: Option<VocoderError> = None;
        let mut gone = false;
        let mut decode_ms = 0.0;
        let mut speech_samples = 0usize;
        let t0 = Instant::now();
        let res = gpt.generate(input, cfg, &mut |t| {
            if cancel() {
                return false;
            }
            toks.push(t);
            let t1 = Instant::now();
            match sink.token(voc, &toks) {
                Ok(pcm) if !pcm.is_empty() => {
                    decode_ms += t1.elapsed().as_secs_f64() * 1e3;
                    speech_samples += pcm.len();
                    if !emit(pcm, toks.len(), false) {
                        gone = true;
                        return false;
                    }
                    true
                }
                Ok(_) => true,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        });
        let gen_ms = t0.elapsed().as_secs_f64() * 1e3 - decode_ms;
        if let Some(e) = failure {
            return Err(e.into());
        }
        if gone {
            return Err(EngineError::Cancelled);
        }
        let gen = match res {
            Err(GptError::Cancelled) => return Err(EngineError::Cancelled),
            other => other?,
        };
        // stage boundary: before the (last) decode
        if cancel() {
            return Err(EngineError::Cancelled);
        }
        let t1 = Instant::now();
        let mut pcm = sink.finish(voc, &gen.tokens)?;
        decode_ms += t1.elapsed().as_secs_f64() * 1e3;
        speech_samples += pcm.len();
        pcm.extend(std::iter::repeat_n(0i16, gap));
        if !emit(pcm, gen.tokens.len(), true) {
            return Err(EngineError::Cancelled);
        }
        Ok(SegmentRun { gen, gen_ms, decode_ms, speech_samples })
    }
}
