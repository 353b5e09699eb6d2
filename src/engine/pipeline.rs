//! Text in, audio out: the one path of a TTS request ([`Engine::tts`]), used by the server's workers, `gsv synth`
//! and `gsv bench --text`.
//!
//! In:  a [`TtsRequest`]: target text + [`crate::text::Language`], reference recording + its transcript + language, the cutting
//!      rule ([`TextSplit`]: api2's `-c 1..5` or api_v2's `cut0..cut5`), sampling and decoding parameters.
//! Out: [`SegmentAudio`] pieces handed to a callback as soon as they are decoded (PCM16 mono at the model rate,
//!      32 kHz; each segment's last piece ends with api2's 0.3 s of silence), then [`TtsStats`].
//!
//! 1. Planning ([`plan`]): the target text is preprocessed and cut into segments (api2.py or api_v2's
//!    `TextPreprocessor.pre_seg_text`), the transcript preprocessed.
//! 2. Features: the transcript's phones + BERT (cached per model), the voice's prompt codes and speaker vector
//!    (cached by content hash, averaged with any extra references), each segment's phones + BERT `[1024, N]`.
//!    Upstream's "fewer than 6 phones: once more with `.` in front" happens once per text, in the frontend, as in
//!    `TextPreprocessor.get_phones_and_bert`.
//! 3. Generation, per segment: the GPT over prompt phones + segment phones and the prompt codes, into a
//!    [`SegmentSink`] ([`WholeSegment`], or [`TokenChunks`] when the request streams by tokens at speed 1) that
//!    decodes the segment's phones only.
//!
//! Reference-free requests ([`TtsRequest::ref_free`]: no transcript) skip the transcript in 1 and 2, and the GPT
//! gets the segment's phones and BERT alone with no prompt codes ([`gpt_text`]); the voice's speaker vector
//! (SoVITS's timbre) is still computed from the reference recording, as upstream's `ref_free` path does.
//!
//! `cancel` (the client left, or the request's deadline passed) is polled at every stage boundary — before planning,
//! after the transcript's features, between the steps of a voice that has to be computed, after the voice, before and
//! after each segment's text features, before the prefill, between GPT steps, before each decode — so a request
//! never runs more than one stage past its deadline.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{concatenate, Array2, Axis};

use super::sink::{SegmentSink, TokenChunks, WholeSegment};
use super::{Engine, EngineError, Result, SegmentAudio, TextFeatures, TextSplit, TtsRequest, TtsStats};
use crate::gpt::{GenerateConfig, GptInput, SamplingParams};
use crate::text::{self, FrontendData};
use crate::vocoder::{DecodeParams, Speaker};

/// What the text of a request becomes before any model runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Target segments, synthesised one by one.
    pub segments: Vec<String>,
    /// The preprocessed reference transcript; empty for a reference-free request.
    pub prompt_text: String,
}

/// Cut the target text and preprocess the transcript, as api2.py or api_v2.py does.
pub fn plan(req: &TtsRequest) -> Result<Plan> {
    let segments = match req.split {
        TextSplit::Api2(cut) => text::cut::api2_segments(&req.text, req.text_lang.code(), cut.number())?,
        TextSplit::V2(cut) => text::cut::pre_seg_text(&req.text, req.text_lang.code(), cut.name())?,
    };
    if segments.is_empty() {
        return Err(EngineError::Text(text::TextError::EmptyText));
    }
    let prompt_text = match req.split {
        _ if req.ref_free() => String::new(),
        TextSplit::Api2(_) => text::cut::api2_prompt(&req.prompt_text, req.prompt_lang.code()),
        TextSplit::V2(_) => req.prompt_text.trim_matches('\n').to_string(),
    };
    Ok(Plan { segments, prompt_text })
}

impl Engine {
    /// Synthesize `req`, handing each piece of audio to `on_segment` as soon as it is ready. `cancel` is polled
    /// between GPT steps; when it returns true the request ends with [`EngineError::Cancelled`]. `on_segment`
    /// returning false also cancels (the consumer has gone).
    pub fn tts(
        &mut self,
        data: &FrontendData,
        req: &TtsRequest,
        cancel: &dyn Fn() -> bool,
        on_segment: &mut dyn FnMut(SegmentAudio) -> bool,
    ) -> Result<TtsStats> {
        let t_all = Instant::now();
        let mut st = TtsStats { sample_rate: self.sample_rate(), ..Default::default() };
        req.validate()?;
        let stop = || if cancel() { Err(EngineError::Cancelled) } else { Ok(()) };
        stop()?;

        // planning and the transcript's features
        let t0 = Instant::now();
        let plan = plan(req)?;
        // reference-free: no transcript features (and, below, no prompt codes)
        let prompt = if req.ref_free() { None } else { Some(self.prompt_features(data, &plan.prompt_text, req.prompt_lang)?.0) };
        st.frontend_ms += t0.elapsed().as_secs_f64() * 1e3;
        stop()?;

        // the voice
        let t0 = Instant::now();
        let (voice, cached) = self.voice(&req.ref_audio, cancel)?;
        let speaker = if req.aux_refs.is_empty() {
            voice.speaker.clone()
        } else {
            let mut others = Vec::with_capacity(req.aux_refs.len());
            for r in &req.aux_refs {
                stop()?;
                others.push(self.voice(r, cancel)?.0.speaker.clone());
            }
            Speaker::mean(&voice.speaker, &others)
        };
        st.reference_ms = t0.elapsed().as_secs_f64() * 1e3;
        st.reference_cached = cached;
        // a stage boundary: a client gone (or a deadline passed) during the voice's features stops here
        if cancel() {
            return Err(EngineError::Cancelled);
        }

        let g = &self.bundle.manifest.gpt;
        let seed = req.seed.unwrap_or_else(fresh_seed);
        st.seed = seed;
        let top_k = if req.top_k == 0 { g.top_k as usize } else { req.top_k };
        let early = req.early_stop_num.unwrap_or(50 * g.max_sec as i64);
        let samples_per_token = self.vocoder.samples_per_token();
        for (si, seg_text) in plan.segments.iter().enumerate() {
            if cancel() {
                return Err(EngineError::Cancelled);
            }
            // a segment of punctuation only would make the GPT babble (or return the reference): skip it
            if !seg_text.chars().any(char::is_alphanumeric) {
                continue;
            }
            let t0 = Instant::now();
            let feats = self.text_features(data, seg_text, req.text_lang);
            st.frontend_ms += t0.elapsed().as_secs_f64() * 1e3;
            stop()?;
            let feats = match feats {
                Ok(f) => f,
                // a segment with nothing to say (only punctuation, or only text of a dropped language) is skipped
                Err(EngineError::Text(text::TextError::EmptyText)) => continue,
                Err(e) => return Err(e),
            };
            let (ids, bert) = gpt_text(prompt.as_deref(), &feats)?;
            let cfg = GenerateConfig {
                params: SamplingParams { top_k, top_p: req.top_p, temperature: req.temperature, repetition_penalty: req.repetition_penalty },
                seed: seed.wrapping_add(si as u64),
                early_stop_num: early,
                ..Default::default()
            };
            let dp = DecodeParams { noise_scale: req.noise_scale, speed: req.speed, seed: seed.wrapping_add(1_000_003 * (si as u64 + 1)) };
            let mut whole;
            let mut chunks;
            let sink: &mut dyn SegmentSink = match req.stream.filter(|_| req.speed == 1.0) {
                Some(sp) => {
                    chunks = TokenChunks::new(sp, samples_per_token, &feats.phone_ids, &speaker, dp, req.int16);
                    &mut chunks
                }
                None => {
                    whole = WholeSegment::new(&feats.phone_ids, &speaker, dp, req.int16);
                    &mut whole
                }
            };
            let codes: &[i64] = if prompt.is_some() { &voice.prompt_codes } else { &[] };
            let input = GptInput { phone_ids: &ids, bert: bert.view(), prompt: codes };
            let run = self.generate_segment(&input, &cfg, sink, cancel, &mut |pcm, tokens, last| {
                st.samples += pcm.len();
                if last {
                    st.segments += 1;
                }
                if st.first_audio_ms == 0.0 {
                    st.first_audio_ms = t_all.elapsed().as_secs_f64() * 1e3;
                }
                on_segment(SegmentAudio { index: si, text: seg_text.clone(), pcm, tokens, last })
            })?;
            st.decode_ms += run.decode_ms;
            st.prefill_ms += run.gen.timings.prefill_ms;
            st.steps += run.gen.timings.steps;
            st.steps_ms += run.gen.timings.steps_ms;
            st.tokens += run.gen.tokens.len();
        }
        if st.segments == 0 {
            return Err(EngineError::Text(text::TextError::EmptyText));
        }
        st.total_ms = t_all.elapsed().as_secs_f64() * 1e3;
        Ok(st)
    }
}

/// The GPT's text input for one segment: the transcript's phones and BERT features, then the segment's
/// (`[1024, N_prompt + N_segment]`), or the segment's alone for a reference-free request (`prompt` is `None`),
/// as upstream's `to_batch(prompt_data=None)` / webui `ref_free` build it.
pub fn gpt_text(prompt: Option<&TextFeatures>, segment: &TextFeatures) -> Result<(Vec<i64>, Array2<f32>)> {
    match prompt {
        None => Ok((segment.phone_ids.clone(), segment.bert.clone())),
        Some(p) => {
            let ids = p.phone_ids.iter().chain(segment.phone_ids.iter()).copied().collect();
            let bert = concatenate(Axis(1), &[p.bert.view(), segment.bert.view()]).map_err(|e| EngineError::Internal(format!("BERT features: {e}")))?;
            Ok((ids, bert))
        }
    }
}

fn fresh_seed() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (t as u64) ^ ((t >> 64) as u64) ^ 0x9E37_79B9_7F4A_7C15
}

/// The default reference of a demo bundle (its manifest names it), if any: (file, transcript, language code).
pub fn demo_reference(bundle_dir: &Path, m: &crate::bundle::Manifest) -> Option<(PathBuf, String, String)> {
    let d = m.demo.as_ref()?;
    Some((bundle_dir.join(&d.reference.file), d.reference.text.clone(), d.reference.language.clone()))
}
