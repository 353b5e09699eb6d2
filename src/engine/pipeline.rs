//! Text in, audio out: the whole path of one TTS request, segment by segment.
//!
//! In:  [`TtsRequest`]: target text + language, reference recording + its transcript + language, the cutting
//!      rule (api2's `-c 1..5` or api_v2's `cut0..cut5`), sampling and decoding parameters.
//! Out: one [`SegmentAudio`] per text segment, handed to a callback as soon as it is decoded (PCM16 mono at the
//!      model rate, 32 kHz, including api2's 0.3 s of silence after each segment), then [`TtsStats`].
//!
//! Order (as api2.py / inference_webui): prompt text -> phones + BERT; target text -> preprocessing + cut ->
//! segments -> phones + BERT each; reference -> (cached by content hash) prompt codes and speaker vector;
//! per segment: GPT over prompt phones + segment phones -> tokens -> SoVITS decode (segment phones only) ->
//! peak-normalise if > 1 -> int16 (clamped) -> + 0.3 s silence. BERT features are computed for Chinese pieces
//! (hidden_states[-3] repeated per word2ph) and are zeros for other languages, as upstream does.
//! A `cancel` probe is checked between GPT steps, so a client that disconnects stops its work within one step.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{concatenate, Array2, Axis};

use super::{Engine, EngineError, Result};
use crate::gpt::{GenerateConfig, SamplingParams};
use crate::reference::{self, ContentHash, SpecParams};
use crate::text::{self, FrontendData, Lang, SymbolVersion};
use crate::vocoder::stream::{StreamDecoder, StreamParams};
use crate::vocoder::{self, DecodeParams, Int16Scale};

/// How the target text is cut into segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextSplit {
    /// api2.py / api.py: preprocessing of contract §2.6 and cut method 0..5 (0 = no cut).
    Api2(u8),
    /// api_v2.py: `TextPreprocessor.pre_seg_text` with `cut0`..`cut5`.
    V2(String),
}

/// Where the reference recording comes from.
#[derive(Debug, Clone)]
pub enum RefAudio {
    Path(PathBuf),
    /// File contents (e.g. an upload) and an extension hint for format probing.
    Bytes(std::sync::Arc<Vec<u8>>, Option<String>),
}

#[derive(Debug, Clone)]
pub struct TtsRequest {
    pub text: String,
    pub text_lang: String,
    pub ref_audio: RefAudio,
    /// Extra references whose speaker vectors are averaged with the main one (api.py `inp_refs`).
    pub aux_refs: Vec<RefAudio>,
    pub prompt_text: String,
    pub prompt_lang: String,
    pub split: TextSplit,
    pub top_k: usize,
    pub top_p: f32,
    pub temperature: f32,
    pub repetition_penalty: f32,
    pub speed: f64,
    pub noise_scale: f32,
    /// `None`: a fresh random seed per request (upstream's behaviour); `Some`: reproducible output.
    pub seed: Option<u64>,
    /// Stop after this many tokens per segment (upstream: 50 * max_sec).
    pub early_stop_num: Option<i64>,
    /// `×32768` (api2/api.py/api_v2) or `×32767` (webui).
    pub int16: Int16Scale,
    /// Decode while generating, chunk by chunk (speed 1 only; otherwise whole segments). Pieces are clamped,
    /// not peak-normalised (the peak is unknown until the segment ends).
    pub stream: Option<StreamParams>,
}

impl TtsRequest {
    /// A request with api2's defaults (top_k from the bundle is applied by [`Engine::tts`] when `top_k == 0`).
    pub fn new(text: &str, text_lang: &str, ref_audio: RefAudio, prompt_text: &str, prompt_lang: &str) -> TtsRequest {
        TtsRequest {
            text: text.into(),
            text_lang: text_lang.into(),
            ref_audio,
            aux_refs: vec![],
            prompt_text: prompt_text.into(),
            prompt_lang: prompt_lang.into(),
            split: TextSplit::Api2(5),
            top_k: 0,
            top_p: 1.0,
            temperature: 1.0,
            repetition_penalty: 1.35,
            speed: 1.0,
            noise_scale: 0.5,
            seed: None,
            early_stop_num: None,
            int16: Int16Scale::Api2,
            stream: None,
        }
    }
}

/// The runner side of a bundle's `g2pw` entry: its tables, flags and the bundle's BERT tokenizer (the one
/// upstream hands g2pW).
pub(super) fn load_g2pw(bundle: &crate::bundle::Bundle, info: &crate::bundle::G2pwInfo) -> Result<text::g2pw_onnx::G2pwModel> {
    let p = bundle.dir.join("tokenizer.json");
    let bytes = std::fs::read(&p).map_err(|e| EngineError::Request(format!("cannot read {}: {e}", p.display())))?;
    let tok = std::sync::Arc::new(text::bert::load_tokenizer(&bytes)?);
    let d = &bundle.dir;
    let m = text::g2pw_onnx::G2pwModel::load(
        &d.join(&info.polyphonic_chars),
        &d.join(&info.monophonic_chars),
        &d.join(&info.bopomofo_to_pinyin),
        info.use_mask,
        info.use_char_phoneme,
        tok,
    )?;
    if m.labels.labels.len() != info.labels {
        return Err(EngineError::Request(format!("g2pw: manifest says {} labels, POLYPHONIC_CHARS.txt gives {}", info.labels, m.labels.labels.len())));
    }
    Ok(m)
}

/// One decoded segment, or one piece of it when streaming by token chunks.
#[derive(Debug, Clone)]
pub struct SegmentAudio {
    pub index: usize,
    pub text: String,
    /// PCM16 mono at the model rate; the last piece of a segment ends with 0.3 s of silence.
    pub pcm: Vec<i16>,
    /// Tokens generated so far in this segment.
    pub tokens: usize,
    /// True for the last piece of the segment (always true without token streaming).
    pub last: bool,
}

#[derive(Debug, Clone, Default)]
pub struct TtsStats {
    pub segments: usize,
    pub tokens: usize,
    pub samples: usize,
    pub sample_rate: u32,
    pub frontend_ms: f64,
    pub reference_ms: f64,
    pub reference_cached: bool,
    pub prefill_ms: f64,
    pub steps_ms: f64,
    pub steps: usize,
    pub decode_ms: f64,
    /// From the start of the request to the first segment handed out.
    pub first_audio_ms: f64,
    pub total_ms: f64,
    pub seed: u64,
}

impl TtsStats {
    pub fn audio_seconds(&self) -> f64 {
        if self.sample_rate == 0 { 0.0 } else { self.samples as f64 / self.sample_rate as f64 }
    }
    pub fn rtf(&self) -> f64 {
        let a = self.audio_seconds();
        if a > 0.0 { self.total_ms / 1e3 / a } else { 0.0 }
    }
    pub fn tokens_per_s(&self) -> f64 {
        if self.steps_ms > 0.0 { self.steps as f64 / (self.steps_ms / 1e3) } else { 0.0 }
    }
}

/// What a reference costs once: prompt codes (25 Hz) and the speaker vector.
#[derive(Debug, Clone)]
pub struct VoiceFeatures {
    pub prompt_codes: Vec<i64>,
    pub ge: Vec<f32>,
}

/// Phones and BERT features of one piece of text.
#[derive(Debug, Clone)]
pub struct TextFeatures {
    pub norm_text: String,
    pub phone_ids: Vec<i64>,
    pub bert: Array2<f32>,
}

impl Engine {
    fn symbol_version(&self) -> Result<SymbolVersion> {
        match self.bundle.manifest.symbols.version.as_str() {
            "v1" => Ok(SymbolVersion::V1),
            "v2" => Ok(SymbolVersion::V2),
            other => Err(EngineError::Request(format!("bundle symbol table {other:?} is not supported"))),
        }
    }

    fn tokenizer(&mut self) -> Result<std::sync::Arc<tokenizers::Tokenizer>> {
        if let Some(t) = &self.tokenizer {
            return Ok(t.clone());
        }
        let p = self.bundle.dir.join("tokenizer.json");
        let bytes = std::fs::read(&p).map_err(|e| EngineError::Request(format!("cannot read {}: {e}", p.display())))?;
        let t = std::sync::Arc::new(text::bert::load_tokenizer(&bytes)?);
        self.tokenizer = Some(t.clone());
        Ok(t)
    }

    /// Phones and BERT features of `text` in language `lang` (api2/api_v2 language codes).
    pub fn text_features(&mut self, data: &FrontendData, text: &str, lang: &str) -> Result<TextFeatures> {
        let version = self.symbol_version()?;
        let ph = match self.g2pw.as_mut() {
            Some((graph, model)) => {
                let mut run = |x: &text::g2pw_onnx::G2pwOnnxInput| {
                    let v = (x.input_ids.view(), x.token_type_ids.view(), x.attention_masks.view(), x.phoneme_masks.view());
                    graph.g2pw(v.0, v.1, v.2, v.3, &x.char_ids, &x.position_ids).map_err(|e| e.to_string())
                };
                let reader = model.reader(&mut run);
                text::phonemize_with_polyphones(data, text, lang, version, Some(&reader))?
            }
            None => text::phonemize_with(data, text, lang, version)?,
        };
        if ph.phone_ids.is_empty() {
            return Err(EngineError::Text(text::TextError::EmptyText));
        }
        let h = self.bundle.manifest.bert_hidden();
        let mut parts: Vec<Array2<f32>> = Vec::with_capacity(ph.segments.len());
        for seg in &ph.segments {
            let n = seg.phone_ids.len();
            if seg.language == Lang::Zh && n > 0 {
                let tok = self.tokenizer()?;
                let (ids, mask, types) = text::bert::bert_inputs_with(&tok, &seg.norm_text)?;
                let hidden = self.bert.bert(&ids, &mask, &types)?;
                let feats = text::bert::expand_word2ph(hidden.view(), &seg.word2ph)?;
                if feats.dim() != (h, n) {
                    return Err(EngineError::Request(format!(
                        "BERT features {:?} do not match {n} phones of {:?}",
                        feats.dim(),
                        seg.norm_text
                    )));
                }
                parts.push(feats);
            } else {
                parts.push(Array2::zeros((h, n)));
            }
        }
        let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
        let bert = if views.is_empty() {
            Array2::zeros((h, 0))
        } else {
            concatenate(Axis(1), &views).map_err(|e| EngineError::Request(e.to_string()))?
        };
        Ok(TextFeatures { norm_text: ph.norm_text, phone_ids: ph.phone_ids, bert })
    }

    /// Prompt codes and speaker vector of a reference, from the cache when the same bytes were seen before.
    pub fn voice(&mut self, r: &RefAudio) -> Result<(VoiceFeatures, bool)> {
        let bytes_owned;
        let (bytes, ext): (&[u8], Option<String>) = match r {
            RefAudio::Path(p) => {
                bytes_owned = std::fs::read(p).map_err(|source| reference::ReferenceError::Io { path: p.clone(), source })?;
                (&bytes_owned, p.extension().and_then(|e| e.to_str()).map(str::to_string))
            }
            RefAudio::Bytes(b, ext) => (b.as_slice(), ext.clone()),
        };
        let hash: ContentHash = reference::content_hash(bytes);
        if let Some(v) = self.voices.get(&hash) {
            return Ok((v.clone(), true));
        }
        let m = &self.bundle.manifest;
        let sp = SpecParams { n_fft: m.filter_length, hop: m.hop_length, win: m.win_length };
        let prepared = reference::prepare_bytes(bytes, ext.as_deref(), m.sample_rate, sp)?;
        let prompt_codes = self.prompt_codes(&prepared.wav16k_padded)?;
        let bins = self.bundle.manifest.spec_bins();
        let spec = Array2::from_shape_vec((prepared.spec.bins, prepared.spec.frames), prepared.spec.data)
            .map_err(|e| EngineError::Request(e.to_string()))?;
        let ge = vocoder::reference_ge(&mut self.ref_enc, bins, spec.view())?;
        let v = VoiceFeatures { prompt_codes, ge };
        self.voices.insert(hash, v.clone());
        Ok((v, false))
    }

    /// Synthesize `req`, handing each segment to `on_segment` as soon as it is ready. `cancel` is polled
    /// between GPT steps; when it returns true the request ends with [`EngineError::Cancelled`].
    /// `on_segment` returning false also cancels (the consumer has gone).
    pub fn tts(
        &mut self,
        data: &FrontendData,
        req: &TtsRequest,
        cancel: &dyn Fn() -> bool,
        on_segment: &mut dyn FnMut(SegmentAudio) -> bool,
    ) -> Result<TtsStats> {
        let t_all = Instant::now();
        let mut st = TtsStats { sample_rate: self.sample_rate(), ..Default::default() };
        validate(req)?;

        // text
        let t0 = Instant::now();
        let segments: Vec<String> = match &req.split {
            TextSplit::Api2(m) => text::cut::api2_segments(&req.text, &req.text_lang, *m)?,
            TextSplit::V2(m) => text::cut::pre_seg_text(&req.text, &req.text_lang, m)?,
        };
        if segments.is_empty() {
            return Err(EngineError::Text(text::TextError::EmptyText));
        }
        let prompt_text = match &req.split {
            TextSplit::Api2(_) => text::cut::api2_prompt(&req.prompt_text, &req.prompt_lang),
            TextSplit::V2(_) => req.prompt_text.trim_matches('\n').to_string(),
        };
        let key = (prompt_text.clone(), req.prompt_lang.clone());
        let prompt = match self.prompt_features.get(&key) {
            Some(f) => f.clone(),
            None => {
                let f = self.text_features(data, &prompt_text, &req.prompt_lang)?;
                self.prompt_features.insert(key, f.clone());
                f
            }
        };
        st.frontend_ms += t0.elapsed().as_secs_f64() * 1e3;

        // reference
        let t0 = Instant::now();
        let (voice, cached) = self.voice(&req.ref_audio)?;
        let mut ge = voice.ge.clone();
        if !req.aux_refs.is_empty() {
            let mut n = 1.0f32;
            for r in &req.aux_refs {
                let (v, _) = self.voice(r)?;
                for (a, b) in ge.iter_mut().zip(&v.ge) {
                    *a += *b;
                }
                n += 1.0;
            }
            for a in &mut ge {
                *a /= n;
            }
        }
        st.reference_ms = t0.elapsed().as_secs_f64() * 1e3;
        st.reference_cached = cached;

        let m = self.bundle.manifest.clone();
        let seed = req.seed.unwrap_or_else(fresh_seed);
        st.seed = seed;
        let top_k = if req.top_k == 0 { m.gpt.top_k as usize } else { req.top_k };
        let early = req.early_stop_num.unwrap_or(50 * m.gpt.max_sec as i64);
        for (si, seg_text) in segments.iter().enumerate() {
            if cancel() {
                return Err(EngineError::Cancelled);
            }
            // a segment of punctuation only would make the GPT babble (or return the reference): skip it
            if !seg_text.chars().any(char::is_alphanumeric) {
                continue;
            }
            let t0 = Instant::now();
            let mut feats = self.text_features(data, seg_text, &req.text_lang);
            // api_v2 (TextPreprocessor): fewer than 6 phones -> once more with "." in front
            if matches!(req.split, TextSplit::V2(_)) {
                if let Ok(f) = &feats {
                    if f.phone_ids.len() < 6 {
                        feats = self.text_features(data, &format!(".{seg_text}"), &req.text_lang);
                    }
                }
            }
            st.frontend_ms += t0.elapsed().as_secs_f64() * 1e3;
            let feats = match feats {
                Ok(f) => f,
                // a segment with nothing to say (only punctuation, or only text of a dropped language) is skipped
                Err(EngineError::Text(text::TextError::EmptyText)) => continue,
                Err(e) => return Err(e),
            };
            let ids: Vec<i64> = prompt.phone_ids.iter().chain(feats.phone_ids.iter()).copied().collect();
            let bert = concatenate(Axis(1), &[prompt.bert.view(), feats.bert.view()]).map_err(|e| EngineError::Request(e.to_string()))?;
            let cfg = GenerateConfig {
                params: SamplingParams { top_k, top_p: req.top_p, temperature: req.temperature, repetition_penalty: req.repetition_penalty },
                seed: seed.wrapping_add(si as u64),
                early_stop_num: early,
                ..Default::default()
            };
            let dp = DecodeParams { noise_scale: req.noise_scale, speed: req.speed, seed: seed.wrapping_add(1_000_003 * (si as u64 + 1)) };
            let streaming = req.stream.filter(|_| req.speed == 1.0);
            let gap = (m.sample_rate as f64 * 0.3) as usize;
            let out = if let Some(sp) = streaming {
                // decode chunks from inside the token callback: the GPT and the decoder are different sessions
                let mut dec = StreamDecoder::new(sp, m.sovits.samples_per_frame * 2, m.sovits.inter_channels, &feats.phone_ids, &ge, dp);
                let mut toks: Vec<i64> = Vec::new();
                let mut failure: Option<EngineError> = None;
                let mut gone = false;
                let mut decode_ms = 0.0;
                let dims = self.gpt_dims();
                let input = crate::gpt::GptInput { phone_ids: &ids, bert: bert.view(), prompt: &voice.prompt_codes };
                let sovits = &mut self.sovits_decode;
                let res = crate::gpt::generate(&mut self.gpt_prefill, &mut self.gpt_step, dims, &input, &cfg, &mut self.cache, &mut |t| {
                    if cancel() {
                        return false;
                    }
                    toks.push(t);
                    let t1 = Instant::now();
                    match dec.push(sovits, &toks) {
                        Ok(a) if !a.is_empty() => {
                            decode_ms += t1.elapsed().as_secs_f64() * 1e3;
                            let pcm = vocoder::pcm16(&a, req.int16);
                            st.samples += pcm.len();
                            if st.first_audio_ms == 0.0 {
                                st.first_audio_ms = t_all.elapsed().as_secs_f64() * 1e3;
                            }
                            if !on_segment(SegmentAudio { index: si, text: seg_text.clone(), pcm, tokens: toks.len(), last: false }) {
                                gone = true;
                                return false;
                            }
                            true
                        }
                        Ok(_) => true,
                        Err(e) => {
                            failure = Some(e.into());
                            false
                        }
                    }
                });
                if let Some(e) = failure {
                    return Err(e);
                }
                if gone {
                    return Err(EngineError::Cancelled);
                }
                let out = match res {
                    Err(crate::gpt::GptError::Cancelled) => return Err(EngineError::Cancelled),
                    other => other?,
                };
                let t1 = Instant::now();
                let rest = dec.finish(&mut self.sovits_decode, &out.tokens)?;
                st.decode_ms += decode_ms + t1.elapsed().as_secs_f64() * 1e3;
                let mut pcm = vocoder::pcm16(&rest, req.int16);
                pcm.extend(std::iter::repeat_n(0i16, gap));
                st.samples += pcm.len();
                st.segments += 1;
                if st.first_audio_ms == 0.0 {
                    st.first_audio_ms = t_all.elapsed().as_secs_f64() * 1e3;
                }
                if !on_segment(SegmentAudio { index: si, text: seg_text.clone(), pcm, tokens: out.tokens.len(), last: true }) {
                    return Err(EngineError::Cancelled);
                }
                out
            } else {
                let out = match self.generate(&ids, bert.view(), &voice.prompt_codes, &cfg, &mut |_| !cancel()) {
                    Err(EngineError::Gpt(crate::gpt::GptError::Cancelled)) => return Err(EngineError::Cancelled),
                    other => other?,
                };
                let t1 = Instant::now();
                let dec = vocoder::decode(&mut self.sovits_decode, m.sovits.inter_channels, &out.tokens, &feats.phone_ids, &ge, dp, None, false)?;
                let pcm = vocoder::postprocess(std::slice::from_ref(&dec.audio), m.sample_rate, 0.3, req.int16);
                st.decode_ms += t1.elapsed().as_secs_f64() * 1e3;
                st.samples += pcm.len();
                st.segments += 1;
                if st.segments == 1 {
                    st.first_audio_ms = t_all.elapsed().as_secs_f64() * 1e3;
                }
                if !on_segment(SegmentAudio { index: si, text: seg_text.clone(), pcm, tokens: out.tokens.len(), last: true }) {
                    return Err(EngineError::Cancelled);
                }
                out
            };
            st.prefill_ms += out.timings.prefill_ms;
            st.steps += out.timings.steps;
            st.steps_ms += out.timings.steps_ms;
            st.tokens += out.tokens.len();
        }
        if st.segments == 0 {
            return Err(EngineError::Text(text::TextError::EmptyText));
        }
        st.total_ms = t_all.elapsed().as_secs_f64() * 1e3;
        Ok(st)
    }
}

fn validate(req: &TtsRequest) -> Result<()> {
    let bad = |m: String| Err(EngineError::Request(m));
    if !(req.speed.is_finite() && (0.25..=4.0).contains(&req.speed)) {
        return bad(format!("speed must be between 0.25 and 4, got {}", req.speed));
    }
    if !(req.temperature.is_finite() && req.temperature > 0.0 && req.temperature <= 10.0) {
        return bad(format!("temperature must be in (0, 10], got {}", req.temperature));
    }
    if !(req.top_p.is_finite() && req.top_p > 0.0 && req.top_p <= 1.0) {
        return bad(format!("top_p must be in (0, 1], got {}", req.top_p));
    }
    if !(req.repetition_penalty.is_finite() && req.repetition_penalty > 0.0 && req.repetition_penalty <= 10.0) {
        return bad(format!("repetition_penalty must be in (0, 10], got {}", req.repetition_penalty));
    }
    if !(req.noise_scale.is_finite() && (0.0..=2.0).contains(&req.noise_scale)) {
        return bad(format!("noise_scale must be in [0, 2], got {}", req.noise_scale));
    }
    if req.top_k > 1024 {
        return bad(format!("top_k must be at most 1024, got {}", req.top_k));
    }
    if req.text.trim().is_empty() {
        return Err(EngineError::Text(text::TextError::EmptyText));
    }
    if req.prompt_text.trim().is_empty() {
        return bad("prompt_text (the reference transcript) is empty; reference-free synthesis is not supported".into());
    }
    Ok(())
}

fn fresh_seed() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (t as u64) ^ ((t >> 64) as u64) ^ 0x9E37_79B9_7F4A_7C15
}

/// The default reference of a demo bundle (its manifest names it), if any.
pub fn demo_reference(bundle_dir: &Path, m: &crate::bundle::Manifest) -> Option<(PathBuf, String, String)> {
    let d = m.demo.as_ref()?;
    Some((bundle_dir.join(&d.reference.file), d.reference.text.clone(), d.reference.language.clone()))
}
