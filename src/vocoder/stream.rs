//! Streaming vocoding: decode the tokens of a segment chunk by chunk while the GPT is still generating.
//!
//! In:  semantic tokens as they arrive (25 Hz), the segment's phone ids and speaker vector.
//! Out: audio (f32 at the model rate, 1280 samples per token at speed 1) in pieces, as soon as a chunk of
//!      `chunk` tokens plus `lookahead` tokens exists.
//!
//! Each chunk is decoded as a window: `left` tokens of already-emitted context, the chunk, and `lookahead`
//! tokens of right context (decoded again later as part of the next chunk). Only the chunk's own samples are kept;
//! consecutive chunks overlap by `crossfade` samples taken from the context, blended with a linear fade, so no
//! boundary clicks. The decoder's attention sees only the window, so the result differs slightly from decoding the
//! whole segment at once; `tests` and `gsv parity`-style measurements report that difference (SNR).
//! Streaming requires speed 1 (token -> sample alignment is exact only then); callers fall back to whole-segment
//! decoding otherwise.

use super::{DecodeParams, Result, Speaker, Vocoder};

#[derive(Debug, Clone, Copy)]
pub struct StreamParams {
    /// Tokens per emitted chunk (25 tokens = 1 s of audio).
    pub chunk: usize,
    /// Tokens of the first chunk (0: `chunk`). Small, so that the first audio comes after a few steps
    /// (time to first audio = prefill + `first_chunk + lookahead` steps + one short decode); later chunks
    /// are `chunk` long, which costs fewer decoder calls.
    pub first_chunk: usize,
    /// Tokens of right context decoded with a chunk but emitted with the next one.
    pub lookahead: usize,
    /// Tokens of left context.
    pub left: usize,
    /// Samples blended between consecutive chunks.
    pub crossfade: usize,
}

impl Default for StreamParams {
    fn default() -> Self {
        StreamParams { chunk: 24, first_chunk: 4, lookahead: 2, left: 16, crossfade: 640 }
    }
}

/// State of one segment's streaming decode.
pub struct StreamDecoder<'a> {
    pub p: StreamParams,
    samples_per_token: usize,
    text: &'a [i64],
    speaker: &'a Speaker,
    dp: DecodeParams,
    /// Tokens whose audio has been emitted (except the held-back crossfade tail).
    emitted: usize,
    /// The last `crossfade` samples of the previous chunk, not yet emitted.
    tail: Vec<f32>,
    pub decode_calls: usize,
}

impl<'a> StreamDecoder<'a> {
    /// `samples_per_token`: the vocoder's ([`Vocoder::samples_per_token`], 1280 at 32 kHz).
    pub fn new(p: StreamParams, samples_per_token: usize, text: &'a [i64], speaker: &'a Speaker, dp: DecodeParams) -> Self {
        let mut p = p;
        p.chunk = p.chunk.max(1);
        p.crossfade = p.crossfade.min(p.left * samples_per_token);
        StreamDecoder { p, samples_per_token, text, speaker, dp, emitted: 0, tail: Vec::new(), decode_calls: 0 }
    }

    /// Call after every new token with all tokens so far; returns audio to emit (possibly empty).
    pub fn push(&mut self, voc: &mut Vocoder, tokens: &[i64]) -> Result<Vec<f32>> {
        let chunk = if self.emitted == 0 && self.p.first_chunk > 0 { self.p.first_chunk } else { self.p.chunk };
        if tokens.len() < self.emitted + chunk + self.p.lookahead {
            return Ok(Vec::new());
        }
        let end = self.emitted + chunk;
        self.window(voc, tokens, end, tokens.len().min(end + self.p.lookahead))
    }

    /// Call once generation has ended: the rest of the audio.
    pub fn finish(&mut self, voc: &mut Vocoder, tokens: &[i64]) -> Result<Vec<f32>> {
        if tokens.len() <= self.emitted {
            return Ok(std::mem::take(&mut self.tail));
        }
        let mut out = self.window(voc, tokens, tokens.len(), tokens.len())?;
        out.extend(std::mem::take(&mut self.tail));
        Ok(out)
    }

    /// Decode tokens[ws..we], emit the audio of tokens [emitted..end) (minus a held-back tail unless final).
    fn window(&mut self, voc: &mut Vocoder, tokens: &[i64], end: usize, we: usize) -> Result<Vec<f32>> {
        let spt = self.samples_per_token;
        let ws = self.emitted.saturating_sub(self.p.left);
        let d = voc.decode(&tokens[ws..we], self.text, self.speaker, self.dp, None, false)?;
        self.decode_calls += 1;
        let audio = d.audio;
        let final_chunk = end == tokens.len() && we == tokens.len();
        let xf = if self.emitted == 0 { 0 } else { self.tail.len() };
        // window-relative sample range of [emitted - xf/spt.., end)
        let start = (self.emitted - ws) * spt - xf;
        let stop = ((end - ws) * spt).min(audio.len());
        let piece = &audio[start.min(stop)..stop];
        let mut out = Vec::with_capacity(piece.len());
        // blend the held-back tail with the same span decoded in this window
        for i in 0..xf.min(piece.len()) {
            let w = (i as f32 + 0.5) / xf as f32;
            out.push(self.tail[i] * (1.0 - w) + piece[i] * w);
        }
        out.extend_from_slice(&piece[xf.min(piece.len())..]);
        self.emitted = end;
        if final_chunk {
            self.tail.clear();
            return Ok(out);
        }
        let hold = self.p.crossfade.min(out.len());
        self.tail = out.split_off(out.len() - hold);
        Ok(out)
    }
}
