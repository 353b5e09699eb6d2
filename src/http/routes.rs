//! Route handlers. Each returns `Result<Response, HttpError>`; `handle` in the parent module turns errors into
//! responses.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::json;

use super::audio::{self, Framing, Output, Packer};
use super::error::HttpError;
use super::params::{v2_languages, Params};
use super::table::RouteId;
use super::{full, json, paths, AudioStream, Body, RefSpec, State, Synth};
use crate::codec::{AudioFormat, API_PY_AAC_BITRATE, OPENAI_PCM_CONTENT_TYPE};
use crate::engine::pool::Event;
use crate::engine::{Api2Cut, EngineError, RefAudio, TextSplit, TtsRequest, TtsStats, V2Cut};
use crate::reference::ReferenceError;
use crate::text::Language;

pub(super) async fn dispatch(state: &Arc<State>, req: Request<Incoming>, id: &str) -> Result<Response<Body>, HttpError> {
    let path = req.uri().path().to_string();
    // the route table decides what exists (404/405); public routes (the page, its files, the API description,
    // /health, /ready) need no key
    let route = super::table::lookup(req.method(), &path);
    if !route.as_ref().is_ok_and(|m| m.route.public || (m.route.id == RouteId::Root && super::page::wants_page(&req))) {
        check_key(state, &req, &path)?;
    }
    let route = route?;
    match route.route.id {
        RouteId::Voices | RouteId::Voice => return super::voices::handle(state, req, route).await,
        RouteId::OpenApi | RouteId::Docs | RouteId::DocsAsset => return super::openapi::handle(route),
        RouteId::PageAsset => return super::page::asset(route.param.as_deref().unwrap_or("")),
        RouteId::Root if super::page::wants_page(&req) => return Ok(super::page::index()),
        _ => {}
    }
    let get_or_post = matches!(*req.method(), Method::GET | Method::POST);
    match path.as_str() {
        "/" if get_or_post => {
            let p = read_params(state, req).await?;
            let s = api2_request(state, &p)?;
            synthesize(state, id, s).await
        }
        "/tts" if get_or_post => {
            let p = read_params(state, req).await?;
            let s = v2_request(state, &p)?;
            synthesize(state, id, s).await
        }
        "/v1/audio/speech" if *req.method() == Method::POST => {
            let p = read_params(state, req).await?;
            let s = openai_request(state, &p)?;
            synthesize(state, id, s).await
        }
        "/v1/models" if *req.method() == Method::GET => {
            let data: Vec<_> = state.model_names().into_iter().map(|n| json!({"id": n, "object": "model", "owned_by": "gsv"})).collect();
            Ok(json(200, &json!({"object": "list", "data": data})))
        }
        "/change_refer" if get_or_post => {
            let p = read_params(state, req).await?;
            change_refer(state, &p)
        }
        "/set_model" if get_or_post => {
            let p = read_params(state, req).await?;
            set_model(state, &p).await
        }
        "/control" if get_or_post => {
            let p = read_params(state, req).await?;
            control(state, &p).await
        }
        "/set_gpt_weights" | "/set_sovits_weights" if get_or_post => {
            let p = read_params(state, req).await?;
            set_weights(state, &p, path == "/set_gpt_weights").await
        }
        "/set_refer_audio" if get_or_post => {
            let p = read_params(state, req).await?;
            set_refer_audio(state, &p)
        }
        "/health" if *req.method() == Method::GET => Ok(health(state).await),
        "/ready" if *req.method() == Method::GET => Ok(ready(state).await),
        "/metrics" if *req.method() == Method::GET => Ok(full(200, "text/plain; version=0.0.4; charset=utf-8", state.metrics.render())),
        "/" | "/tts" | "/v1/audio/speech" | "/v1/models" | "/change_refer" | "/set_model" | "/control" | "/set_gpt_weights"
        | "/set_sovits_weights" | "/set_refer_audio" | "/health" | "/ready" | "/metrics" => Err(HttpError::MethodNotAllowed),
        _ => Err(HttpError::NotFound),
    }
}

/// Routes that change what the server serves or reveal its state: they need the admin key (or the API key when no
/// admin key is set).
const ADMIN_ROUTES: &[&str] = &["/set_model", "/set_gpt_weights", "/set_sovits_weights", "/change_refer", "/set_refer_audio", "/control", "/metrics"];

/// Which key a route needs: none for `/health` and `/ready`; the admin key (else the API key) for [`ADMIN_ROUTES`];
/// the API key (the admin key works too) for the others. `Authorization: Bearer KEY`, the scheme in any case.
pub(super) fn check_key(state: &State, req: &Request<Incoming>, path: &str) -> Result<(), HttpError> {
    if matches!(path, "/health" | "/ready") {
        return Ok(());
    }
    check_key_for(state, req, ADMIN_ROUTES.contains(&path))
}

/// `admin`: the admin key (else the API key) is needed; otherwise the API key or the admin key.
pub(super) fn check_key_for(state: &State, req: &Request<Incoming>, admin: bool) -> Result<(), HttpError> {
    let l = &state.limits;
    let accepted: Vec<&str> = if admin {
        match (&l.admin_key, &l.api_key) {
            (Some(a), _) => vec![a],
            (None, Some(k)) => vec![k],
            (None, None) => return Ok(()),
        }
    } else {
        match &l.api_key {
            Some(k) => std::iter::once(k.as_str()).chain(l.admin_key.as_deref()).collect(),
            None => return Ok(()),
        }
    };
    let got = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let v = v.trim_start();
            let (scheme, rest) = v.split_at(v.find([' ', '\t'])?);
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .unwrap_or("");
    // constant-time comparison against each accepted key
    let matches = |key: &str| {
        let (a, b) = (got.as_bytes(), key.as_bytes());
        let mut diff = (a.len() != b.len()) as u8;
        for i in 0..a.len().max(b.len()) {
            diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
        }
        diff == 0
    };
    let mut ok = false;
    for k in accepted {
        ok |= matches(k);
    }
    if ok {
        Ok(())
    } else {
        Err(HttpError::Unauthorized)
    }
}

/// GET: the query string; POST: the body as JSON whatever the Content-Type (api2 reads it that way).
async fn read_params(state: &State, req: Request<Incoming>) -> Result<Params, HttpError> {
    if *req.method() == Method::GET {
        return Ok(Params::from_query(req.uri().query()));
    }
    let limit = state.limits.max_body;
    let declared = req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(HttpError::BodyTooLarge(limit));
    }
    let secs = state.limits.body_timeout.as_secs();
    let body = tokio::time::timeout(state.limits.body_timeout, http_body_util::Limited::new(req.into_body(), limit).collect())
        .await
        .map_err(|_| HttpError::BodyTimeout(secs))?
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                HttpError::BodyTooLarge(limit)
            } else {
                HttpError::BadRequest(format!("cannot read the request body: {e}"))
            }
        })?
        .to_bytes();
    Params::from_json(&body)
}

fn check_text(state: &State, text: &str) -> Result<(), HttpError> {
    let n = text.chars().count();
    if n > state.limits.max_text {
        return Err(HttpError::BadRequest(format!("文本过长 / text too long: {n} characters, at most {}", state.limits.max_text)));
    }
    Ok(())
}

/// A reference path sent by a client: opened now, once, confined to `--ref-root` in the same call, and checked
/// (regular file, at most `--max-ref-bytes`); the job reads that very file ([`RefAudio::File`]).
fn reference(state: &State, p: &str) -> Result<RefAudio, HttpError> {
    match crate::reference::open_reference(Path::new(p), &state.limits.ref_roots, state.limits.max_ref_bytes) {
        Ok(f) => Ok(RefAudio::File(Arc::new(f))),
        Err(e) => Err(reference_error(e, p)),
    }
}

/// The answer for a reference that cannot be opened: 403 outside the roots, else 400 (naming only what was sent).
fn reference_error(e: ReferenceError, sent: &str) -> HttpError {
    match e {
        ReferenceError::Forbidden => HttpError::Forbidden(format!("参考音频路径不在允许的目录内 / reference path is outside the allowed folders: {sent}")),
        ReferenceError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            HttpError::BadRequest(format!("无法读取参考音频 / cannot read the reference audio: file not found: {sent}"))
        }
        other => HttpError::Engine(EngineError::Reference(other)),
    }
}

/// A stored reference (the default, a `--voice`), opened again at every use: a client-set one (`/change_refer`)
/// under `--ref-root` again; messages do not name the stored path.
fn stored_reference(state: &State, r: &RefSpec) -> Result<RefAudio, HttpError> {
    let roots: &[PathBuf] = if r.confined { &state.limits.ref_roots } else { &[] };
    match crate::reference::open_reference(Path::new(&r.path), roots, state.limits.max_ref_bytes) {
        Ok(f) => Ok(RefAudio::File(Arc::new(f))),
        Err(ReferenceError::Forbidden) => Err(HttpError::Forbidden("默认参考音频路径不在允许的目录内 / the stored reference path is outside the allowed folders".into())),
        Err(e) => Err(HttpError::Engine(EngineError::Reference(e))),
    }
}

/// A file of the operator's (a library voice's audio or aux reference): opened once like any reference, checked
/// (regular file, `--max-ref-bytes`), not confined to `--ref-root`; messages do not name the stored path.
fn operator_reference(state: &State, path: &Path) -> Result<RefAudio, HttpError> {
    let spec = RefSpec { path: path.display().to_string(), text: String::new(), lang: String::new(), confined: false };
    stored_reference(state, &spec)
}

/// Sampling extensions shared by `/` (api.py's fields) and `/tts`. `speed_key`: the field that sets the speed
/// (`None`: the route ignores speed).
fn sampling(p: &Params, r: &mut TtsRequest, speed_key: Option<&str>) -> Result<(), HttpError> {
    if let Some(k) = p.i64("top_k")? {
        if k < 0 {
            return Err(HttpError::BadRequest("top_k must be >= 0".into()));
        }
        r.top_k = k as usize;
    }
    if let Some(v) = p.f64("top_p")? {
        r.top_p = v as f32;
    }
    if let Some(v) = p.f64("temperature")? {
        r.temperature = v as f32;
    }
    if let Some(v) = p.f64("repetition_penalty")? {
        r.repetition_penalty = v as f32;
    }
    if let Some(v) = speed_key.map(|k| p.f64(k)).transpose()?.flatten() {
        r.speed = v;
    }
    if let Some(s) = p.i64("seed")? {
        r.seed = if s < 0 { None } else { Some(s as u64) };
    }
    Ok(())
}

fn lang(code: &str, what: &str) -> Result<Language, HttpError> {
    Language::from_api(code).ok_or_else(|| HttpError::BadRequest(format!("{what} 不支持的语言 / unsupported {what}: {code:?} (zh, ja, en, auto, all_zh, all_ja)")))
}

/// api2.py / api.py `GET|POST /`.
///
/// Reference rule: api2's, as it is: if any of `refer_wav_path`, `prompt_text`, `prompt_language` is missing or
/// empty, all three come from the defaults (`-dr/-dt/-dl`, `/change_refer`), and incomplete defaults are api2's
/// 400. So an empty `prompt_text` on `/` means "the default reference", never reference-free: api2 clients send
/// partial references and rely on that. Reference-free synthesis on `/` is asked for explicitly with the gsv
/// extension `ref_free: true` (the name of upstream webui's switch): the transcript is not used, the audio is
/// `refer_wav_path`, or the default reference's when it is not given.
fn api2_request(state: &State, p: &Params) -> Result<Synth, HttpError> {
    let text = p.str("text").ok_or_else(|| HttpError::BadRequest("缺少 text 参数 / text is required".into()));
    let ref_free = p.bool("ref_free")?.unwrap_or(false);
    let given = (p.nonempty("refer_wav_path"), p.nonempty("prompt_text"), p.nonempty("prompt_language"));
    let (ref_audio, prompt_text, prompt_lang) = match given {
        _ if ref_free => {
            let audio = match p.nonempty("refer_wav_path") {
                Some(path) => reference(state, &path)?,
                None => {
                    let d = state.default_ref();
                    if d.path.is_empty() {
                        return Err(HttpError::NoDefaultReference);
                    }
                    stored_reference(state, &d)?
                }
            };
            (audio, String::new(), p.nonempty("prompt_language").unwrap_or_default())
        }
        (Some(path), Some(t), Some(l)) => (reference(state, &path)?, t, l),
        _ => {
            let d = state.default_ref();
            if !d.is_ready() {
                return Err(HttpError::NoDefaultReference);
            }
            // the operator's own default is not confined to --ref-root (one set by /change_refer is, again)
            (stored_reference(state, &d)?, d.text, d.lang)
        }
    };
    let text = text?;
    let text_lang = p.nonempty("text_language").ok_or_else(|| HttpError::BadRequest("缺少 text_language 参数 / text_language is required".into()))?;
    let text_lang = lang(&text_lang, "text_language")?;
    // reference-free: the transcript's language is not used (any valid code, else the text's)
    let prompt_lang = if prompt_text.is_empty() && (prompt_lang.is_empty() || Language::from_api(&prompt_lang).is_none()) {
        text_lang
    } else {
        lang(&prompt_lang, "prompt_language")?
    };
    check_text(state, &text)?;
    let mut r = TtsRequest::new(&text, text_lang, ref_audio, &prompt_text, prompt_lang);
    let mut cut = state.limits.cut;
    if let Some(c) = state.limits.default_cut_punc {
        cut = c;
    }
    if let Some(c) = p.str("cut_punc").as_deref().and_then(Api2Cut::from_punctuation) {
        cut = c;
    }
    if let Some(c) = p.i64("cut")? {
        cut = Api2Cut::from_number(c);
    }
    r.split = TextSplit::Api2(cut);
    // api2.py ignores `speed` (pyvideotrans sends 2.0 at its default rate): only --api-py-speed honours it
    sampling(p, &mut r, state.limits.api_py_speed.then_some("speed"))?;
    for a in p.list("inp_refs")? {
        r.aux_refs.push(reference(state, &a)?);
    }
    let stream = match p.0.get("streaming_mode").or_else(|| p.0.get("stream")) {
        Some(_) if p.0.contains_key("streaming_mode") => p.streaming_mode("streaming_mode")? > 0,
        Some(_) => p.bool("stream")?.unwrap_or(false),
        None => state.limits.stream_default,
    };
    // the server's -mt; a request may name another (gsv extension; api_v2's names, so `raw` too)
    let format = match p.nonempty("media_type") {
        None => state.limits.api_py_format,
        Some(m) => AudioFormat::from_api_v2(&m)
            .ok_or_else(|| HttpError::BadRequest(format!("media_type: {m} is not supported (wav, raw, ogg, aac, mp3, flac, opus)")))?,
    };
    if !format.available() {
        return Err(HttpError::BadRequest(format.unavailable_message()));
    }
    let mut out = Output::new(format);
    out.stream = stream;
    // api.py's pack_aac: -b:a 128k for int16
    out.opts.bitrate = (format == AudioFormat::Aac).then_some(API_PY_AAC_BITRATE);
    Ok(Synth { model: state.default_model(), req: r, out })
}

/// api_v2.py `GET|POST /tts` (checks and messages of its `check_params`, in its order).
fn v2_request(state: &State, p: &Params) -> Result<Synth, HttpError> {
    let model = state.default_model();
    let bad = |m: String| Err(HttpError::BadRequest(m));
    // gsv extension `voice`: a voice name supplies ref_audio_path, prompt_text and prompt_lang (fields given win)
    let voice = match p.nonempty("voice") {
        Some(n) => Some(super::voices::resolve(state, &n)?),
        None => None,
    };
    let voice_ref = voice.as_ref().filter(|_| p.nonempty("ref_audio_path").is_none());
    let Some(ref_path) = p.nonempty("ref_audio_path").or_else(|| voice_ref.map(|v| v.spec.path.clone())) else { return bad("ref_audio_path is required".into()) };
    let Some(text) = p.nonempty("text") else { return bad("text is required".into()) };
    let langs = v2_languages(&model.version);
    let v2_lang = |l: &str| Language::from_code(l).filter(|x| langs.contains(x));
    let text_lang = match p.nonempty("text_lang") {
        None => return bad("text_lang is required".into()),
        Some(l) => match v2_lang(&l) {
            Some(x) => x,
            None => return bad(format!("text_lang: {l} is not supported in version {}", model.version)),
        },
    };
    let prompt_lang = match p.nonempty("prompt_lang") {
        None if voice.is_some() => match voice.as_ref().and_then(|v| Language::from_api(&v.spec.lang)) {
            Some(l) => l,
            None => return bad("prompt_lang is required".into()),
        },
        None => return bad("prompt_lang is required".into()),
        Some(l) => match v2_lang(&l) {
            Some(x) => x,
            None => return bad(format!("prompt_lang: {l} is not supported in version {}", model.version)),
        },
    };
    let mode = p.streaming_mode("streaming_mode")?;
    let streaming = mode > 0 || p.bool("return_fragment")?.unwrap_or(false);
    let media = p.str("media_type").unwrap_or_else(|| "wav".into());
    let format = match AudioFormat::from_api_v2(&media) {
        Some(f) if f.available() => f,
        Some(f) => return bad(f.unavailable_message()),
        None => return bad(format!("media_type: {media} is not supported")),
    };
    let method = p.str("text_split_method").unwrap_or_else(|| "cut5".into());
    let Some(method) = V2Cut::parse(&method) else {
        return bad(format!("text_split_method:{method} is not supported"));
    };
    check_text(state, &text)?;
    // empty or absent (api_v2's default ""): reference-free synthesis, as upstream's TTS.run; a voice supplies its
    // transcript when the request has none
    let prompt_text = p.nonempty("prompt_text").or_else(|| voice.as_ref().map(|v| v.spec.text.clone())).unwrap_or_default();
    // api_v2's all_zh is upstream's current one (Latin runs read as English), not api2's (Language::AllZhUpstream)
    // a library voice's files are the operator's (not confined to --ref-root), like -dr
    let ref_audio = if voice_ref.is_some() { operator_reference(state, Path::new(&ref_path))? } else { reference(state, &ref_path)? };
    let mut r = TtsRequest::new(&text, text_lang.for_api_v2(), ref_audio, &prompt_text, prompt_lang.for_api_v2());
    for path in voice.iter().flat_map(|v| v.aux.iter()) {
        r.aux_refs.push(operator_reference(state, path)?);
    }
    r.split = TextSplit::V2(method);
    sampling(p, &mut r, Some("speed_factor"))?;
    // streaming_mode 2 (token streaming) and 3 (fixed chunks): decode while generating, by token chunks
    // (min_chunk_length tokens, api_v2's default 16); mode 1 streams whole fragments (segments)
    if mode >= 2 {
        let chunk = p.i64("min_chunk_length")?.unwrap_or(16).clamp(4, 200) as usize;
        let sp = if mode == 2 {
            crate::vocoder::stream::StreamParams { chunk, ..Default::default() }
        } else {
            crate::vocoder::stream::StreamParams { chunk, first_chunk: 0, lookahead: 2, left: 8, crossfade: 320 }
        };
        r.stream = Some(sp);
    }
    for a in p.list("aux_ref_audio_paths")? {
        r.aux_refs.push(reference(state, &a)?);
    }
    let mut out = Output::new(format);
    out.stream = streaming;
    Ok(Synth { model, req: r, out })
}

/// OpenAI's spec voice names (the SDK's `Voice` literal); with `--strict-voices` they must be configured like any other.
const OPENAI_VOICES: &[&str] = &["alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "marin", "cedar"];

/// OpenAI's model names, which select the default model so stock clients work unchanged.
const OPENAI_MODELS: &[&str] = &["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15", "gsv"];

/// OpenAI-style `POST /v1/audio/speech`: `model`, `input`, `voice` (a name or `{"id": ...}`), `response_format`
/// (mp3 default | opus | aac | flac | wav | pcm at 24 kHz), `speed` 0.25-4.0, `stream_format` audio | sse,
/// `instructions` (accepted, ignored: GPT-SoVITS takes its style from the reference audio); extensions `language`,
/// `seed`, `stream`.
fn openai_request(state: &State, p: &Params) -> Result<Synth, HttpError> {
    let invalid = |param: &'static str, message: String| HttpError::Invalid { param, message };
    let mut model = match p.nonempty("model") {
        None => state.default_model(),
        Some(m) => match state.named_model(&m) {
            Some(g) => g,
            None if OPENAI_MODELS.contains(&m.as_str()) => state.default_model(),
            None => return Err(HttpError::UnknownModel(format!("The model `{m}` does not exist; loaded: {}", state.model_names().join(", ")))),
        },
    };
    let input = p.nonempty("input").ok_or_else(|| invalid("input", "input is required".into()))?;
    check_text(state, &input)?;
    let voice_name = match p.0.get("voice") {
        None | Some(serde_json::Value::Null) => "default".to_string(),
        // a custom voice object: `{"id": "voice_1234"}`
        Some(serde_json::Value::Object(o)) => match o.get("id").and_then(|v| v.as_str()).filter(|v| !v.is_empty()) {
            Some(id) => id.to_string(),
            None => return Err(invalid("voice", "voice: an object needs a non-empty `id`".into())),
        },
        Some(serde_json::Value::String(v)) if !v.is_empty() => v.clone(),
        Some(_) => return Err(invalid("voice", "voice must be a name or an object with an `id`".into())),
    };
    // a --voice flag or a library voice (--voices; it may name the model it was made for); `default`, OpenAI's
    // names (alloy, ...) and any other name: the default voice, unless --strict-voices
    let resolved = if voice_name == "default" {
        None
    } else {
        match super::voices::resolve(state, &voice_name) {
            Ok(v) => Some(v),
            Err(HttpError::BadRequest(m)) if state.limits.strict_voices => return Err(invalid("voice", m)),
            Err(e) if state.limits.strict_voices => return Err(e),
            Err(_) => {
                let whose = if OPENAI_VOICES.contains(&voice_name.as_str()) { "OpenAI's voice" } else { "voice" };
                tracing::debug!("{whose} `{voice_name}` is not configured: the default voice speaks");
                None
            }
        }
    };
    let (voice, aux) = match resolved {
        Some(r) => {
            if p.nonempty("model").is_none() {
                if let Some(m) = r.model.as_deref().and_then(|m| state.named_model(m)) {
                    model = m;
                }
            }
            (r.spec, r.aux)
        }
        None => {
            let d = state.default_ref();
            if d.path.is_empty() || (!d.text.is_empty() && d.lang.is_empty()) {
                return Err(invalid("voice", format!("voice `{voice_name}`: the server has no default reference (-dr/-dt/-dl) and no --voice of that name")));
            }
            (d, vec![])
        }
    };
    let spec = AudioFormat::from_openai(p.str("response_format").as_deref())
        .ok_or_else(|| invalid("response_format", format!("response_format `{}` is not supported (mp3, opus, aac, flac, wav, pcm)", p.str("response_format").unwrap_or_default())))?;
    if !spec.format.available() {
        return Err(invalid("response_format", spec.format.unavailable_message()));
    }
    let sse = match p.str("stream_format").as_deref() {
        None | Some("audio") => false,
        Some("sse") => true,
        Some(other) => return Err(invalid("stream_format", format!("stream_format `{other}` is not supported (audio, sse)"))),
    };
    let text_lang = match p.nonempty("language") {
        Some(l) => lang(&l, "language")?,
        None => Language::Auto,
    };
    // a voice without a transcript (`--voice NAME=WAV||LANG`, or -dr without -dt) is reference-free
    let prompt_lang = if voice.text.is_empty() && voice.lang.is_empty() { text_lang } else { lang(&voice.lang, "voice language")? };
    let mut r = TtsRequest::new(&input, text_lang, stored_reference(state, &voice)?, &voice.text, prompt_lang);
    for path in aux {
        r.aux_refs.push(operator_reference(state, &path)?);
    }
    r.split = TextSplit::Api2(state.limits.cut);
    if let Some(s) = p.f64("speed").map_err(|_| invalid("speed", "speed must be a number".into()))? {
        if !(0.25..=4.0).contains(&s) {
            return Err(invalid("speed", format!("speed must be between 0.25 and 4.0, got {s}")));
        }
        r.speed = s;
    }
    if let Some(s) = p.i64("seed")? {
        r.seed = if s < 0 { None } else { Some(s as u64) };
    }
    let mut out = Output::new(spec.format);
    out.opts.sample_rate = spec.sample_rate;
    if spec.format == AudioFormat::Raw {
        out.content_type = OPENAI_PCM_CONTENT_TYPE;
    }
    // OpenAI streams its audio; so does gsv, except WAV, which is complete (sizes in its header) unless
    // `stream: true`; `stream: false` gives any format as one complete file
    out.stream = sse || p.bool("stream")?.unwrap_or(spec.format != AudioFormat::Wav);
    if sse {
        out.framing = Framing::Sse { input_tokens: input.chars().count() };
    }
    Ok(Synth { model, req: r, out })
}

fn timing_header(st: &TtsStats) -> String {
    format!(
        "frontend;dur={:.1}, reference;dur={:.1}, prefill;dur={:.1}, steps;dur={:.1}, decode;dur={:.1}, ttfa;dur={:.1}, total;dur={:.1}, audio_s={:.3}, rtf={:.3}, tokens={}, tokens_per_s={:.1}, segments={}, reference_cached={}",
        st.frontend_ms,
        st.reference_ms,
        st.prefill_ms,
        st.steps_ms,
        st.decode_ms,
        st.first_audio_ms,
        st.total_ms,
        st.audio_seconds(),
        st.rtf(),
        st.tokens,
        st.tokens_per_s(),
        st.segments,
        st.reference_cached
    )
}

async fn next_event(events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>, deadline: Option<Instant>, timeout_s: u64) -> Result<Event, HttpError> {
    let r = match deadline {
        Some(d) => tokio::time::timeout_at(d.into(), events.recv()).await.map_err(|_| HttpError::Engine(EngineError::Timeout(timeout_s)))?,
        None => events.recv().await,
    };
    r.ok_or_else(|| HttpError::Internal("worker stopped without an answer".into()))
}

/// Reads every opened reference file of `req` into memory, on a blocking thread and under `deadline` (a read past it
/// is stopped between chunks and the request answered 504), so that the worker never touches a file.
async fn read_references(req: &mut TtsRequest, deadline: Option<Instant>, timeout_s: u64) -> Result<(), HttpError> {
    for r in std::iter::once(&mut req.ref_audio).chain(req.aux_refs.iter_mut()) {
        let RefAudio::File(f) = r else { continue };
        let (f, stop) = (f.clone(), Arc::new(AtomicBool::new(false)));
        let s2 = stop.clone();
        let task = tokio::task::spawn_blocking(move || {
            let bytes = f.read_all(&|| s2.load(Ordering::Relaxed))?;
            Ok::<_, ReferenceError>((bytes, f.ext.clone()))
        });
        let res = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), task).await {
                Ok(r) => r,
                Err(_) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(HttpError::Engine(EngineError::Timeout(timeout_s)));
                }
            },
            None => task.await,
        };
        let (bytes, ext) = res.map_err(|e| HttpError::Internal(format!("reference read task: {e}")))?.map_err(|e| HttpError::Engine(EngineError::Reference(e)))?;
        *r = RefAudio::Bytes(Arc::new(bytes), ext);
    }
    Ok(())
}

/// Sends the job to a worker; streams its audio through the request's encoder, or collects it into one file.
async fn synthesize(state: &Arc<State>, id: &str, mut s: Synth) -> Result<Response<Body>, HttpError> {
    let out = s.out;
    // the encoder exists before the job is queued: a codec that cannot start answers with a status, not a cut stream
    let enc = out.encoder(s.model.sample_rate)?;
    let rate = enc.output_rate();
    let mut packer = Packer::new(enc, out.framing);
    let token_chunks = s.req.stream.is_some() && s.req.speed == 1.0;
    // the request's deadline starts now and covers reading the references, the queue and the synthesis
    let deadline = state.limits.timeout.map(|t| Instant::now() + t);
    let timeout_s = state.limits.timeout.map(|d| d.as_secs()).unwrap_or(0);
    // a place in the pool first (429 at once when full), so that at most workers + max_queue requests hold
    // reference bytes in memory
    let admission = state.pool.admit()?;
    read_references(&mut s.req, deadline, timeout_s).await?;
    let mut ticket = state.pool.submit_admitted(admission, id.to_string(), s.model.clone(), s.req, deadline, state.limits.timeout)?;
    if out.stream {
        // wait for the first piece, so errors before any audio still get a proper status
        let first = match next_event(&mut ticket.events, deadline, timeout_s).await? {
            Event::Segment(pcm) => pcm,
            Event::Done(Ok(_)) => return Err(HttpError::Internal("no audio produced".into())),
            Event::Done(Err(e)) => return Err(HttpError::Engine(e)),
        };
        let first = packer.push(first).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(audio::pump(packer, ticket.events, tx, state.metrics.clone(), id.to_string(), deadline));
        let body = Body::Audio(AudioStream::new(first, rx, ticket.guard));
        return Response::builder()
            .status(200)
            .header("content-type", out.response_type())
            .header("cache-control", "no-store")
            .header("x-gsv-sample-rate", rate)
            .header("x-gsv-format", out.format.name())
            .header("x-gsv-streaming", if token_chunks { "tokens" } else { "segments" })
            .body(body)
            .map_err(|e| HttpError::Internal(e.to_string()));
    }
    let mut pcm: Vec<i16> = Vec::new();
    let st = loop {
        match next_event(&mut ticket.events, deadline, timeout_s).await? {
            Event::Segment(p) => pcm.extend_from_slice(&p),
            Event::Done(Ok(st)) => break st,
            Event::Done(Err(e)) => return Err(HttpError::Engine(e)),
        }
    };
    ticket.guard.disarm();
    let bytes = packer.whole(pcm).await?;
    let mut resp = full(200, out.response_type(), bytes);
    let h = resp.headers_mut();
    if let Ok(v) = hyper::header::HeaderValue::from_str(&timing_header(&st)) {
        h.insert("x-gsv-timing", v);
    }
    h.insert("x-gsv-seed", st.seed.into());
    h.insert("x-gsv-sample-rate", rate.into());
    h.insert("x-gsv-format", hyper::header::HeaderValue::from_static(out.format.name()));
    Ok(resp)
}

/// Liveness: 200 when at least one worker answers that it can serve (busy workers within their job's deadline count)
/// and the server is not stopping.
async fn health(state: &State) -> Response<Body> {
    let m = state.default_model();
    let stopping = *state.shutdown.borrow();
    // a stopping server is not asked: its workers are finishing their last jobs
    let h = if stopping { state.pool.states() } else { state.pool.health(HEALTH_TIMEOUT).await };
    let ok = h.can_serve() && !stopping;
    let body = json!({
        "status": if ok { "ok" } else { "unavailable" },
        "model": m.label,
        "version": m.version,
        "generation": m.generation,
        "precision": m.precision.to_json(),
        "models": state.model_names(),
        "workers": state.pool.workers(),
        "workers_serving": h.serving,
        "workers_overrunning": h.overrunning,
        "workers_wedged_total": h.wedged_total,
        "workers_abandoned": h.abandoned_running,
        "worker_states": h.states,
        "default_reference": state.default_ref().is_ready(),
    });
    json(if ok { 200 } else { 503 }, &body)
}

/// Readiness: 200 only when a synthesis request can succeed now: the server is not stopping, the warm-up passed (or
/// was not asked for), every worker answers that it can serve (none broken, rebuilding or past its job's deadline),
/// and the default reference, when one is configured, can be opened (confined again when a client set it). The body
/// lists what is wrong.
async fn ready(state: &State) -> Response<Body> {
    let stopping = *state.shutdown.borrow();
    let mut reasons: Vec<String> = Vec::new();
    if stopping {
        reasons.push("the server is stopping".into());
    }
    let h = if stopping { state.pool.states() } else { state.pool.health(HEALTH_TIMEOUT).await };
    if !h.all_serving() {
        reasons.push(format!("{} of {} workers can serve ({} past their job's deadline)", h.serving, h.states.len(), h.overrunning));
    }
    let d = state.default_ref();
    let default_reference = if d.is_ready() {
        match stored_reference(state, &d) {
            Ok(_) => "readable",
            Err(e) => {
                reasons.push(format!("default reference: {}", e.public_message("-")));
                "unreadable"
            }
        }
    } else {
        "none"
    };
    let ok = reasons.is_empty();
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "reasons": reasons,
        "warmup": if state.warmed_up { "passed" } else { "skipped" },
        "workers": h.states.len(),
        "workers_serving": h.serving,
        "worker_states": h.states,
        "default_reference": default_reference,
    });
    json(if ok { 200 } else { 503 }, &body)
}

/// How long `/health` and `/ready` wait for the workers' answers.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// api.py `/change_refer`: replaces the default reference (fields left empty keep their value).
fn change_refer(state: &State, p: &Params) -> Result<Response<Body>, HttpError> {
    let (path, text, lang_) = (p.nonempty("refer_wav_path"), p.nonempty("prompt_text"), p.nonempty("prompt_language"));
    if path.is_none() && text.is_none() && lang_.is_none() {
        return Err(HttpError::BadRequest(r#"缺少任意一项以下参数: "path", "text", "language""#.into()));
    }
    // checked now (confinement, regular file, size); stored as sent and checked again at every use
    let path = match path {
        Some(pth) => {
            reference(state, &pth)?;
            Some(pth)
        }
        None => None,
    };
    if let Some(l) = &lang_ {
        lang(l, "prompt_language")?;
    }
    let mut d = state.default_ref.write().unwrap_or_else(|e| e.into_inner());
    let mut next: RefSpec = d.clone();
    if let Some(x) = path {
        next.path = x;
        next.confined = true;
    }
    if let Some(x) = text {
        next.text = x;
    }
    if let Some(x) = lang_ {
        next.lang = x;
    }
    *d = next;
    Ok(json(200, &json!({"code": 0, "message": "Success"})))
}

/// The bundle a `/set_model`-style path names: a `--bundle` name, or a folder (checkpoints get the convert
/// command as the error).
fn bundle_dir(state: &State, sovits: Option<&str>, gpt: Option<&str>) -> Result<PathBuf, HttpError> {
    for n in [sovits, gpt].into_iter().flatten() {
        if let Some(m) = state.named_model(n) {
            if !std::path::Path::new(n).exists() {
                return Ok(m.dir.clone());
            }
        }
    }
    let l = &state.limits;
    // checkpoints get the convert command (nothing is looked up); folders must be inside a model root (403)
    let is_ckpt = |p: &str| matches!(Path::new(p).extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(), Some("pth" | "ckpt"));
    for p in [sovits, gpt].into_iter().flatten().filter(|p| !is_ckpt(p)) {
        paths::confine_model(Path::new(p), &l.model_roots)?;
    }
    paths::bundle_from_models(sovits.map(Path::new), gpt.map(Path::new), l.hubert_path.as_deref(), l.bert_path.as_deref())
        .map_err(HttpError::BadRequest)?
        .ok_or_else(|| HttpError::BadRequest("缺少参数 / give gpt_model_path and/or sovits_model_path (a bundle folder)".to_string()))
}

/// api.py `/set_model`: `gpt_model_path`, `sovits_model_path` (bundle folders; both may name the same one).
async fn set_model(state: &State, p: &Params) -> Result<Response<Body>, HttpError> {
    let (g, s) = (p.nonempty("gpt_model_path"), p.nonempty("sovits_model_path"));
    let dir = bundle_dir(state, s.as_deref(), g.as_deref())?;
    state.swap_model("default", dir).await.map_err(HttpError::BadRequest)?;
    Ok(json(200, &json!({"code": 0, "message": "Success"})))
}

/// api_v2 `/set_gpt_weights` and `/set_sovits_weights` (`weights_path` = a bundle folder).
async fn set_weights(state: &State, p: &Params, gpt: bool) -> Result<Response<Body>, HttpError> {
    let what = if gpt { "change gpt weight failed" } else { "change sovits weight failed" };
    let Some(w) = p.nonempty("weights_path") else {
        return Err(HttpError::BadRequest("weights_path is required".into()));
    };
    let (s, g) = if gpt { (None, Some(w.as_str())) } else { (Some(w.as_str()), None) };
    let dir = match bundle_dir(state, s, g) {
        Ok(d) => d,
        Err(e @ HttpError::Forbidden(_)) => return Err(e),
        Err(e) => return Err(HttpError::ChangeFailed { what, detail: e.public_message("-") }),
    };
    state.swap_model("default", dir).await.map_err(|detail| HttpError::ChangeFailed { what, detail })?;
    Ok(json(200, &json!({"message": "success"})))
}

/// api_v2 `/set_refer_audio?refer_audio_path=`: replaces the default reference's audio (text and language stay).
fn set_refer_audio(state: &State, p: &Params) -> Result<Response<Body>, HttpError> {
    let what = "set refer audio failed";
    let Some(pth) = p.nonempty("refer_audio_path") else {
        return Err(HttpError::BadRequest("refer_audio_path is required".into()));
    };
    match reference(state, &pth) {
        Ok(_) => {}
        Err(e @ HttpError::Forbidden(_)) => return Err(e),
        Err(e) => return Err(HttpError::ChangeFailed { what, detail: e.public_message("-") }),
    }
    let mut d = state.default_ref.write().unwrap_or_else(|e| e.into_inner());
    d.path = pth;
    d.confined = true;
    Ok(json(200, &json!({"message": "success"})))
}

/// api.py / api_v2 `/control?command=restart|exit`. `exit` stops the server gracefully; `restart` reloads the
/// default model from its folder (the process is not re-executed). Bodies as api_v2.py: no `command` is
/// `400 {"message":"command is required"}`; any other command does nothing and answers `200 null`, as both
/// upstream servers do (their handler returns None).
async fn control(state: &State, p: &Params) -> Result<Response<Body>, HttpError> {
    match p.str("command").as_deref() {
        None => Ok(json(400, &json!({"message": "command is required"}))),
        Some("exit") => {
            state.trigger_shutdown();
            Ok(json(200, &json!({"code": 0, "message": "Success"})))
        }
        Some("restart") => {
            let dir = state.default_model().dir.clone();
            state.swap_model("default", dir).await.map_err(|e| HttpError::Internal(format!("restart: {e}")))?;
            Ok(json(200, &json!({"code": 0, "message": "Success"})))
        }
        Some(_) => Ok(json(200, &serde_json::Value::Null)),
    }
}
