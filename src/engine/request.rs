//! A TTS request as the engine takes it: typed, parsed once at the edge (HTTP parameters, CLI flags), and what
//! comes back (audio pieces and statistics).

use std::path::PathBuf;
use std::sync::Arc;

use super::{EngineError, Result};
use crate::text::{Language, TextError};
use crate::vocoder::stream::StreamParams;
use crate::vocoder::Int16Scale;

/// api2.py's cut methods (`-c`, the `cut` field; contract §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api2Cut {
    /// 0 (or any value outside 1..5): the whole text is one segment.
    None,
    /// 1: every four sentences.
    FourSentences,
    /// 2: about every 50 characters.
    FiftyChars,
    /// 3: at `。`.
    ChinesePeriod,
    /// 4: at `.`.
    EnglishPeriod,
    /// 5: at every punctuation mark.
    Punctuation,
}

impl Api2Cut {
    /// api2's number: 1..5; anything else is "no cut", as api2 treats unknown values.
    pub fn from_number(n: i64) -> Api2Cut {
        match n {
            1 => Api2Cut::FourSentences,
            2 => Api2Cut::FiftyChars,
            3 => Api2Cut::ChinesePeriod,
            4 => Api2Cut::EnglishPeriod,
            5 => Api2Cut::Punctuation,
            _ => Api2Cut::None,
        }
    }
    pub fn number(self) -> u8 {
        match self {
            Api2Cut::None => 0,
            Api2Cut::FourSentences => 1,
            Api2Cut::FiftyChars => 2,
            Api2Cut::ChinesePeriod => 3,
            Api2Cut::EnglishPeriod => 4,
            Api2Cut::Punctuation => 5,
        }
    }
    /// api.py's `cut_punc` (characters to cut at): only `。` -> 3, only `.` -> 4, any other punctuation -> 5,
    /// empty -> None (the server's `-c` stays).
    pub fn from_punctuation(p: &str) -> Option<Api2Cut> {
        let chars: Vec<char> = p.chars().filter(|c| !c.is_whitespace()).collect();
        if chars.is_empty() {
            return None;
        }
        Some(if chars.iter().all(|&c| c == '。') {
            Api2Cut::ChinesePeriod
        } else if chars.iter().all(|&c| c == '.') {
            Api2Cut::EnglishPeriod
        } else {
            Api2Cut::Punctuation
        })
    }
}

/// api_v2.py's `text_split_method` `cut0`..`cut5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Cut {
    Cut0,
    Cut1,
    Cut2,
    Cut3,
    Cut4,
    Cut5,
}

impl V2Cut {
    pub const ALL: [V2Cut; 6] = [V2Cut::Cut0, V2Cut::Cut1, V2Cut::Cut2, V2Cut::Cut3, V2Cut::Cut4, V2Cut::Cut5];
    pub fn parse(s: &str) -> Option<V2Cut> {
        V2Cut::ALL.into_iter().find(|c| c.name() == s)
    }
    pub fn name(self) -> &'static str {
        match self {
            V2Cut::Cut0 => "cut0",
            V2Cut::Cut1 => "cut1",
            V2Cut::Cut2 => "cut2",
            V2Cut::Cut3 => "cut3",
            V2Cut::Cut4 => "cut4",
            V2Cut::Cut5 => "cut5",
        }
    }
}

/// How the target text is cut into segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextSplit {
    /// api2.py / api.py: preprocessing of contract §2.6 and an api2 cut method.
    Api2(Api2Cut),
    /// api_v2.py: `TextPreprocessor.pre_seg_text` with `cut0`..`cut5`.
    V2(V2Cut),
}

/// Where the reference recording comes from.
#[derive(Debug, Clone)]
pub enum RefAudio {
    /// A file the operator named (`gsv synth --ref`): opened by the engine, a regular file only.
    Path(PathBuf),
    /// A file already opened and checked ([`crate::reference::open_reference`]: confinement, file type, size). The
    /// server reads these into [`RefAudio::Bytes`] before a job reaches a worker, so a worker never waits on a file.
    File(Arc<crate::reference::RefFile>),
    /// File contents (e.g. an upload) and an extension hint for format probing.
    Bytes(Arc<Vec<u8>>, Option<String>),
}

#[derive(Debug, Clone)]
pub struct TtsRequest {
    pub text: String,
    pub text_lang: Language,
    pub ref_audio: RefAudio,
    /// Extra references whose speaker vectors are averaged with the main one (api.py `inp_refs`).
    pub aux_refs: Vec<RefAudio>,
    /// The reference's transcript. Empty (or only whitespace): reference-free synthesis ([`TtsRequest::ref_free`]).
    pub prompt_text: String,
    pub prompt_lang: Language,
    pub split: TextSplit,
    /// 0: the bundle's (the GPT checkpoint's) top_k.
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
    /// A request with api2's defaults (top_k from the bundle is applied by the engine when `top_k == 0`).
    pub fn new(text: &str, text_lang: Language, ref_audio: RefAudio, prompt_text: &str, prompt_lang: Language) -> TtsRequest {
        TtsRequest {
            text: text.into(),
            text_lang,
            ref_audio,
            aux_refs: vec![],
            prompt_text: prompt_text.into(),
            prompt_lang,
            split: TextSplit::Api2(Api2Cut::Punctuation),
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

    /// Range checks of the numeric parameters (the engine runs them before any work).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::Invalid(m));
        if !(self.speed.is_finite() && (0.25..=4.0).contains(&self.speed)) {
            return bad(format!("speed must be between 0.25 and 4, got {}", self.speed));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0 && self.temperature <= 10.0) {
            return bad(format!("temperature must be in (0, 10], got {}", self.temperature));
        }
        if !(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0 && self.repetition_penalty <= 10.0) {
            return bad(format!("repetition_penalty must be in (0, 10], got {}", self.repetition_penalty));
        }
        if !(self.noise_scale.is_finite() && (0.0..=2.0).contains(&self.noise_scale)) {
            return bad(format!("noise_scale must be in [0, 2], got {}", self.noise_scale));
        }
        if self.top_k > 1024 {
            return bad(format!("top_k must be at most 1024, got {}", self.top_k));
        }
        if self.text.trim().is_empty() {
            return Err(EngineError::Text(TextError::EmptyText));
        }
        Ok(())
    }

    /// Reference-free synthesis (upstream's `ref_free` / `no_prompt_text`): no transcript. The GPT then gets
    /// neither the transcript's phones and BERT features nor the reference's prompt codes; SoVITS still takes the
    /// timbre from the reference recording's spectrogram. Upstream tests `prompt_text in [None, ""]`; a transcript of
    /// only whitespace counts too (upstream would fail on it).
    pub fn ref_free(&self) -> bool {
        self.prompt_text.trim().is_empty()
    }
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
    /// The voice's features came from the cache (computed by an earlier request, on any worker).
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
