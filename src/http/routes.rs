//! Route handlers. Each returns `Result<Response, HttpError>`; `handle` in the parent module turns errors into
//! responses.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::json;

use super::error::HttpError;
use super::params::{v2_languages, Params};
use super::table::RouteId;
use super::{full, json, paths, AudioStream, Body, RefSpec, State, Synth};
use crate::engine::pool::Event;
use crate::engine::{Api2Cut, EngineError, RefAudio, TextSplit, TtsRequest, TtsStats, V2Cut};
use crate::text::Language;

pub(super) async fn dispatch(state: &Arc<State>, req: Request<Incoming>, id: &str) -> Result<Response<Body>, HttpError> {
    let path = req.uri().path().to_string();
    // the route table decides what exists (404/405); public routes (the page, its files, the API description) need no key
    let route = super::table::lookup(req.method(), &path);
    if path != "/health" && !route.as_ref().is_ok_and(|m| m.route.public || (m.route.id == RouteId::Root && super::page::wants_page(&req))) {
        check_key(state, &req)?;
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
        "/metrics" if *req.method() == Method::GET => Ok(full(200, "text/plain; version=0.0.4; charset=utf-8", state.metrics.render())),
        "/" | "/tts" | "/v1/audio/speech" | "/v1/models" | "/change_refer" | "/set_model" | "/control" | "/set_gpt_weights"
        | "/set_sovits_weights" | "/set_refer_audio" | "/health" | "/metrics" => Err(HttpError::MethodNotAllowed),
        _ => Err(HttpError::NotFound),
    }
}

pub(super) fn check_key(state: &State, req: &Request<Incoming>) -> Result<(), HttpError> {
    let Some(key) = &state.limits.api_key else { return Ok(()) };
    let got = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .unwrap_or("");
    // constant-time comparison
    let (a, b) = (got.as_bytes(), key.as_bytes());
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    if diff == 0 {
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
    let body = http_body_util::Limited::new(req.into_body(), limit)
        .collect()
        .await
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

fn reference(state: &State, p: &str) -> Result<RefAudio, HttpError> {
    Ok(RefAudio::Path(paths::resolve_reference(p, &state.limits.ref_roots)?))
}

/// Sampling extensions shared by `/` (api.py's fields) and `/tts`.
fn sampling(p: &Params, r: &mut TtsRequest, speed_key: &str) -> Result<(), HttpError> {
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
    if let Some(v) = p.f64(speed_key)? {
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
fn api2_request(state: &State, p: &Params) -> Result<Synth, HttpError> {
    // default-reference rule (contract §2.3): any of the three missing or "" -> all three from -dr/-dt/-dl
    let given = (p.nonempty("refer_wav_path"), p.nonempty("prompt_text"), p.nonempty("prompt_language"));
    let (ref_audio, prompt_text, prompt_lang) = match given {
        (Some(path), Some(t), Some(l)) => (reference(state, &path)?, t, l),
        _ => {
            let d = state.default_ref();
            if !d.is_ready() {
                return Err(HttpError::NoDefaultReference);
            }
            // the operator's own default is not confined to --ref-root
            (RefAudio::Path(PathBuf::from(&d.path)), d.text, d.lang)
        }
    };
    let text = p.str("text").ok_or_else(|| HttpError::BadRequest("缺少 text 参数 / text is required".into()))?;
    let text_lang = p.nonempty("text_language").ok_or_else(|| HttpError::BadRequest("缺少 text_language 参数 / text_language is required".into()))?;
    let text_lang = lang(&text_lang, "text_language")?;
    let prompt_lang = lang(&prompt_lang, "prompt_language")?;
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
    sampling(p, &mut r, "speed")?;
    for a in p.list("inp_refs")? {
        r.aux_refs.push(reference(state, &a)?);
    }
    let stream = match p.0.get("streaming_mode").or_else(|| p.0.get("stream")) {
        Some(_) if p.0.contains_key("streaming_mode") => p.streaming_mode("streaming_mode")? > 0,
        Some(_) => p.bool("stream")?.unwrap_or(false),
        None => state.limits.stream_default,
    };
    Ok(Synth { model: state.default_model(), req: r, stream, wav: true, content_type: "audio/wav" })
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
    let (wav, content_type) = match media.as_str() {
        "wav" => (true, "audio/wav"),
        "raw" => (false, "audio/raw"),
        other => return bad(format!("media_type: {other} is not supported")),
    };
    let method = p.str("text_split_method").unwrap_or_else(|| "cut5".into());
    let Some(method) = V2Cut::parse(&method) else {
        return bad(format!("text_split_method:{method} is not supported"));
    };
    check_text(state, &text)?;
    let prompt_text = p.nonempty("prompt_text").or_else(|| voice.as_ref().map(|v| v.spec.text.clone())).unwrap_or_default();
    // api_v2's all_zh is upstream's current one (Latin runs read as English), not api2's (Language::AllZhUpstream)
    // a library voice's files are the operator's (not confined to --ref-root), like -dr
    let ref_audio = if voice_ref.is_some() { RefAudio::Path(PathBuf::from(&ref_path)) } else { reference(state, &ref_path)? };
    let mut r = TtsRequest::new(&text, text_lang.for_api_v2(), ref_audio, &prompt_text, prompt_lang.for_api_v2());
    r.aux_refs.extend(voice.iter().flat_map(|v| v.aux.iter().cloned()).map(RefAudio::Path));
    r.split = TextSplit::V2(method);
    sampling(p, &mut r, "speed_factor")?;
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
    Ok(Synth { model, req: r, stream: streaming, wav, content_type })
}

/// OpenAI-style `POST /v1/audio/speech`.
fn openai_request(state: &State, p: &Params) -> Result<Synth, HttpError> {
    let mut model = match p.nonempty("model") {
        None => state.default_model(),
        Some(m) => match state.named_model(&m) {
            Some(g) => g,
            // OpenAI's own model names select the default model, so stock clients work unchanged
            None if matches!(m.as_str(), "tts-1" | "tts-1-hd" | "gpt-4o-mini-tts" | "gsv") => state.default_model(),
            None => return Err(HttpError::UnknownModel(format!("The model `{m}` does not exist; loaded: {}", state.model_names().join(", ")))),
        },
    };
    let input = p.nonempty("input").ok_or_else(|| HttpError::BadRequest("input is required".into()))?;
    check_text(state, &input)?;
    let voice_name = p.nonempty("voice").unwrap_or_else(|| "default".into());
    // `default`, a --voice flag or a library voice (--voices); a library voice may name the model it was made for
    let resolved = super::voices::resolve(state, &voice_name)?;
    if p.nonempty("model").is_none() {
        if let Some(m) = resolved.model.as_deref().and_then(|m| state.named_model(m)) {
            model = m;
        }
    }
    let voice = resolved.spec;
    let fmt = p.str("response_format").unwrap_or_else(|| "wav".into());
    let (wav, content_type) = match fmt.as_str() {
        "wav" => (true, "audio/wav"),
        "pcm" => (false, "audio/pcm"),
        other => return Err(HttpError::BadRequest(format!("response_format `{other}` is not supported (wav, pcm)"))),
    };
    let text_lang = match p.nonempty("language") {
        Some(l) => lang(&l, "language")?,
        None => Language::Auto,
    };
    let prompt_lang = lang(&voice.lang, "voice language")?;
    let mut r = TtsRequest::new(&input, text_lang, RefAudio::Path(PathBuf::from(&voice.path)), &voice.text, prompt_lang);
    r.aux_refs.extend(resolved.aux.into_iter().map(RefAudio::Path));
    r.split = TextSplit::Api2(state.limits.cut);
    if let Some(s) = p.f64("speed")? {
        r.speed = s;
    }
    if let Some(s) = p.i64("seed")? {
        r.seed = if s < 0 { None } else { Some(s as u64) };
    }
    // raw PCM streams (no header to fix up); WAV is complete unless `stream: true`
    let stream = p.bool("stream")?.unwrap_or(!wav);
    Ok(Synth { model, req: r, stream, wav, content_type })
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

/// Sends the job to a worker; streams segments or collects them into one WAV.
async fn synthesize(state: &Arc<State>, id: &str, s: Synth) -> Result<Response<Body>, HttpError> {
    let sr = s.model.sample_rate;
    let mut ticket = state.pool.submit(id.to_string(), s.model.clone(), s.req, state.limits.timeout)?;
    let deadline = ticket.deadline;
    let timeout_s = state.limits.timeout.map(|d| d.as_secs()).unwrap_or(0);
    if s.stream {
        // wait for the first segment, so errors before any audio still get a proper status
        let first = match next_event(&mut ticket.events, deadline, timeout_s).await? {
            Event::Segment(pcm) => pcm,
            Event::Done(Ok(_)) => return Err(HttpError::Internal("no audio produced".into())),
            Event::Done(Err(e)) => return Err(HttpError::Engine(e)),
        };
        let mut pending = VecDeque::new();
        if s.wav {
            let h = crate::wav::streaming_header(sr).map_err(|e| HttpError::Internal(e.to_string()))?;
            pending.push_back(Bytes::copy_from_slice(&h));
        }
        pending.push_back(Bytes::from(crate::wav::pcm16_bytes(&first)));
        let body = Body::Audio(AudioStream {
            pending,
            events: ticket.events,
            _guard: ticket.guard,
            metrics: state.metrics.clone(),
            id: id.to_string(),
            done: false,
        });
        return Response::builder()
            .status(200)
            .header("content-type", s.content_type)
            .header("cache-control", "no-store")
            .header("x-gsv-sample-rate", sr)
            .header("x-gsv-streaming", "segments")
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
    let mut out = Vec::with_capacity(44 + pcm.len() * 2);
    if s.wav {
        let h = crate::wav::header_for_len(sr, pcm.len() as u64).map_err(|e| HttpError::Internal(e.to_string()))?;
        out.extend_from_slice(&h);
    }
    out.extend_from_slice(&crate::wav::pcm16_bytes(&pcm));
    let mut resp = full(200, s.content_type, out);
    let h = resp.headers_mut();
    if let Ok(v) = hyper::header::HeaderValue::from_str(&timing_header(&st)) {
        h.insert("x-gsv-timing", v);
    }
    h.insert("x-gsv-seed", st.seed.into());
    h.insert("x-gsv-sample-rate", sr.into());
    Ok(resp)
}

/// 200 when at least one worker answers that it can serve (busy workers count) and the server is not stopping.
async fn health(state: &State) -> Response<Body> {
    let m = state.default_model();
    let stopping = *state.shutdown.borrow();
    // a stopping server is not asked: its workers are finishing their last jobs
    let h = if stopping { state.pool.states() } else { state.pool.health(HEALTH_TIMEOUT).await };
    let ready = h.can_serve() && !stopping;
    let body = json!({
        "status": if ready { "ok" } else { "unavailable" },
        "model": m.label,
        "version": m.version,
        "generation": m.generation,
        "models": state.model_names(),
        "workers": state.pool.workers(),
        "workers_serving": h.serving,
        "worker_states": h.states,
        "default_reference": state.default_ref().is_ready(),
    });
    json(if ready { 200 } else { 503 }, &body)
}

/// How long `/health` waits for the workers' answers.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// api.py `/change_refer`: replaces the default reference (fields left empty keep their value).
fn change_refer(state: &State, p: &Params) -> Result<Response<Body>, HttpError> {
    let (path, text, lang_) = (p.nonempty("refer_wav_path"), p.nonempty("prompt_text"), p.nonempty("prompt_language"));
    if path.is_none() && text.is_none() && lang_.is_none() {
        return Err(HttpError::BadRequest(r#"缺少任意一项以下参数: "path", "text", "language""#.into()));
    }
    let path = match path {
        Some(pth) => {
            let resolved = paths::resolve_reference(&pth, &state.limits.ref_roots)?;
            if !resolved.is_file() {
                return Err(HttpError::BadRequest(format!("无法读取参考音频 / cannot read the reference audio: file not found: {pth}")));
            }
            Some(resolved.display().to_string())
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
fn bundle_dir(state: &State, sovits: Option<&str>, gpt: Option<&str>) -> Result<PathBuf, String> {
    for n in [sovits, gpt].into_iter().flatten() {
        if let Some(m) = state.named_model(n) {
            if !std::path::Path::new(n).exists() {
                return Ok(m.dir.clone());
            }
        }
    }
    let l = &state.limits;
    paths::bundle_from_models(sovits.map(std::path::Path::new), gpt.map(std::path::Path::new), l.hubert_path.as_deref(), l.bert_path.as_deref())?
        .ok_or_else(|| "缺少参数 / give gpt_model_path and/or sovits_model_path (a bundle folder)".to_string())
}

/// api.py `/set_model`: `gpt_model_path`, `sovits_model_path` (bundle folders; both may name the same one).
async fn set_model(state: &State, p: &Params) -> Result<Response<Body>, HttpError> {
    let (g, s) = (p.nonempty("gpt_model_path"), p.nonempty("sovits_model_path"));
    let dir = bundle_dir(state, s.as_deref(), g.as_deref()).map_err(HttpError::BadRequest)?;
    state.swap_model("default", dir).await.map_err(|e| HttpError::BadRequest(format!("模型加载失败 / cannot load the model: {e}")))?;
    Ok(json(200, &json!({"code": 0, "message": "Success"})))
}

/// api_v2 `/set_gpt_weights` and `/set_sovits_weights` (`weights_path` = a bundle folder).
async fn set_weights(state: &State, p: &Params, gpt: bool) -> Result<Response<Body>, HttpError> {
    let what = if gpt { "change gpt weight failed" } else { "change sovits weight failed" };
    let Some(w) = p.nonempty("weights_path") else {
        return Err(HttpError::BadRequest("weights_path is required".into()));
    };
    let (s, g) = if gpt { (None, Some(w.as_str())) } else { (Some(w.as_str()), None) };
    let dir = bundle_dir(state, s, g).map_err(|detail| HttpError::ChangeFailed { what, detail })?;
    state.swap_model("default", dir).await.map_err(|detail| HttpError::ChangeFailed { what, detail })?;
    Ok(json(200, &json!({"message": "success"})))
}

/// api_v2 `/set_refer_audio?refer_audio_path=`: replaces the default reference's audio (text and language stay).
fn set_refer_audio(state: &State, p: &Params) -> Result<Response<Body>, HttpError> {
    let what = "set refer audio failed";
    let Some(pth) = p.nonempty("refer_audio_path") else {
        return Err(HttpError::BadRequest("refer_audio_path is required".into()));
    };
    let resolved = paths::resolve_reference(&pth, &state.limits.ref_roots)?;
    if !resolved.is_file() {
        return Err(HttpError::ChangeFailed { what, detail: format!("file not found: {pth}") });
    }
    state.default_ref.write().unwrap_or_else(|e| e.into_inner()).path = resolved.display().to_string();
    Ok(json(200, &json!({"message": "success"})))
}

/// api.py / api_v2 `/control?command=restart|exit`. `exit` stops the server gracefully; `restart` reloads the
/// default model from its folder (the process is not re-executed).
async fn control(state: &State, p: &Params) -> Result<Response<Body>, HttpError> {
    match p.str("command").as_deref() {
        Some("exit") => {
            state.trigger_shutdown();
            Ok(json(200, &json!({"code": 0, "message": "Success"})))
        }
        Some("restart") => {
            let dir = state.default_model().dir.clone();
            state.swap_model("default", dir).await.map_err(HttpError::Internal)?;
            Ok(json(200, &json!({"code": 0, "message": "Success"})))
        }
        _ => Err(HttpError::BadRequest("command must be restart or exit".into())),
    }
}
