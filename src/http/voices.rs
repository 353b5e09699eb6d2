//! `/voices` and `/voices/{name}`: the voice library over HTTP, and voice names for the synthesis routes.
//!
//! * `GET /voices` -> JSON array of voices (`name`, `text`, `language`, `model`, `source`: `default` for the
//!   server's default reference, `flag` for `--voice NAME=...`, `library` for `--voices DIR`).
//! * `POST /voices` (`multipart/form-data`: `name`, `audio` (file), `text`, `language`, optional `model`, optional
//!   `aux` files) -> 201 and the voice; 409 when the name is taken, 400 for a bad name/transcript/language/audio
//!   (decoded and checked to be 3-10 s before anything is written), 413 over `--max-upload`, 403 on a read-only
//!   library. Admin route: when the server has keys, the admin key is required ([`require_admin`]).
//! * `GET /voices/{name}` -> the voice; `DELETE /voices/{name}` (admin) -> `{"name":..,"deleted":true}`.
//!
//! [`resolve`] turns a name into a reference (audio path, transcript, language, aux references, preferred model)
//! for the OpenAI route's `voice`, `/tts`'s `voice` extension and the page.

use std::path::PathBuf;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::json;

use super::error::HttpError;
use super::table::{Matched, RouteId};
use super::{json, Body, RefSpec, State};
use crate::voices::{Library, NewVoice, VoiceError};

/// A voice as the synthesis routes use it.
pub(crate) struct ResolvedVoice {
    pub spec: RefSpec,
    pub aux: Vec<PathBuf>,
    /// The model the voice was made for (used when a request names none).
    pub model: Option<String>,
}

/// Every name a request may use: `default`, `--voice` names, library voices.
fn known_names(state: &State) -> Vec<String> {
    let mut v = vec!["default".to_string()];
    v.extend(state.voices.read().unwrap_or_else(|e| e.into_inner()).keys().cloned());
    if let Some(lib) = &state.library {
        v.extend(lib.list().iter().map(|x| x.name().to_string()));
    }
    v
}

/// The voice called `name`: `default` (the default reference), a `--voice` flag, or a library voice. 400 with the
/// known names when there is none (the voice is a parameter of the request, not the resource it addresses).
pub(crate) fn resolve(state: &State, name: &str) -> Result<ResolvedVoice, HttpError> {
    if name == "default" {
        let d = state.default_ref();
        if !d.is_ready() {
            return Err(HttpError::BadRequest("voice `default`: the server has no default reference (-dr/-dt/-dl)".into()));
        }
        return Ok(ResolvedVoice { spec: d, aux: vec![], model: None });
    }
    if let Some(v) = state.voices.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned() {
        return Ok(ResolvedVoice { spec: v, aux: vec![], model: None });
    }
    if let Some(v) = state.library.as_ref().and_then(|l| l.get(name)) {
        return Ok(ResolvedVoice {
            spec: RefSpec { path: v.audio_path().display().to_string(), text: v.meta.text.clone(), lang: v.meta.language.clone(), confined: false },
            aux: v.aux_paths(),
            model: v.meta.model.clone(),
        });
    }
    Err(HttpError::BadRequest(format!("unknown voice `{name}`; voices: {}", known_names(state).join(", "))))
}

/// The one "admin" check of the voice library's writes: the admin key (`--admin-key`, else the API key).
fn require_admin(state: &State, req: &Request<Incoming>) -> Result<(), HttpError> {
    super::routes::check_key_for(state, req, true)
}

fn flag_json(name: &str, r: &RefSpec, source: &str) -> serde_json::Value {
    json!({"name": name, "text": r.text, "language": r.lang, "model": null, "aux": 0, "source": source})
}

fn all_voices(state: &State) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let d = state.default_ref();
    if d.is_ready() {
        out.push(flag_json("default", &d, "default"));
    }
    for (n, r) in state.voices.read().unwrap_or_else(|e| e.into_inner()).iter() {
        out.push(flag_json(n, r, "flag"));
    }
    if let Some(lib) = &state.library {
        lib.rescan();
        out.extend(lib.list().iter().map(|v| v.to_json()));
    }
    out
}

fn voice_error(e: VoiceError) -> HttpError {
    match e {
        VoiceError::Invalid(m) => HttpError::BadRequest(m),
        VoiceError::Exists(n) => HttpError::Conflict(format!("voice `{n}` already exists (DELETE /voices/{n} first)")),
        VoiceError::NotFound(n) => HttpError::Missing(format!("voice `{n}` not found")),
        VoiceError::ReadOnly => HttpError::Forbidden("the voice library is read-only on this server".into()),
        VoiceError::Io(m) => HttpError::Internal(m),
    }
}

fn library(state: &State) -> Result<&Arc<Library>, HttpError> {
    state.library.as_ref().ok_or_else(|| HttpError::BadRequest("this server has no voice library (start gsv with --voices DIR)".into()))
}

pub(super) async fn handle(state: &Arc<State>, req: Request<Incoming>, m: Matched) -> Result<Response<Body>, HttpError> {
    match (m.route.id, req.method().clone()) {
        (RouteId::Voices, Method::GET) => {
            let st = state.clone();
            let list = tokio::task::spawn_blocking(move || all_voices(&st)).await.map_err(|e| HttpError::Internal(e.to_string()))?;
            Ok(json(200, &serde_json::Value::Array(list)))
        }
        (RouteId::Voices, Method::POST) => {
            require_admin(state, &req)?;
            let lib = library(state)?.clone();
            let upload = read_upload(state, req).await?;
            let v = tokio::task::spawn_blocking(move || lib.add(upload)).await.map_err(|e| HttpError::Internal(e.to_string()))?.map_err(voice_error)?;
            tracing::info!(voice = %v.name(), "voice added");
            let mut r = json(201, &v.to_json());
            if let Ok(loc) = hyper::header::HeaderValue::from_str(&format!("/voices/{}", enc(v.name()))) {
                r.headers_mut().insert("location", loc);
            }
            Ok(r)
        }
        (RouteId::Voice, method) => {
            let name = m.param.unwrap_or_default();
            if method == Method::DELETE {
                require_admin(state, &req)?;
                if name == "default" || state.voices.read().unwrap_or_else(|e| e.into_inner()).contains_key(&name) {
                    return Err(HttpError::Conflict(format!("voice `{name}` is set by the server's flags, not the library; it cannot be deleted")));
                }
                let lib = library(state)?.clone();
                let n = name.clone();
                tokio::task::spawn_blocking(move || lib.remove(&n)).await.map_err(|e| HttpError::Internal(e.to_string()))?.map_err(voice_error)?;
                tracing::info!(voice = %name, "voice deleted");
                return Ok(json(200, &json!({"name": name, "deleted": true})));
            }
            let st = state.clone();
            let n = name.clone();
            let found = tokio::task::spawn_blocking(move || all_voices(&st).into_iter().find(|v| v["name"] == n.as_str()))
                .await
                .map_err(|e| HttpError::Internal(e.to_string()))?;
            found.map(|v| json(200, &v)).ok_or_else(|| HttpError::Missing(format!("voice `{name}` not found")))
        }
        _ => Err(HttpError::MethodNotAllowed),
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

/// Reads a `multipart/form-data` upload within `--max-upload` bytes.
async fn read_upload(state: &State, req: Request<Incoming>) -> Result<NewVoice, HttpError> {
    let limit = state.limits.max_upload as u64;
    let ct = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let boundary = multer::parse_boundary(&ct).map_err(|_| HttpError::BadRequest("POST /voices takes multipart/form-data (fields name, audio, text, language, model?, aux?)".into()))?;
    if req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()).is_some_and(|n| n > limit) {
        return Err(HttpError::BodyTooLarge(limit as usize));
    }
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["name", "audio", "text", "language", "model", "aux"])
        .size_limit(
            multer::SizeLimit::new()
                .whole_stream(limit)
                .for_field("name", 1024)
                .for_field("text", 16 * 1024)
                .for_field("language", 64)
                .for_field("model", 1024),
        );
    let stream = http_body_util::BodyDataStream::new(req.into_body());
    let mut mp = multer::Multipart::with_constraints(stream, boundary, constraints);
    let bad = |e: multer::Error| match e {
        multer::Error::StreamSizeExceeded { .. } => HttpError::BodyTooLarge(limit as usize),
        multer::Error::FieldSizeExceeded { field_name, .. } => HttpError::BadRequest(format!("field {} is too long", field_name.unwrap_or_default())),
        multer::Error::UnknownField { field_name } => {
            HttpError::BadRequest(format!("unknown field {:?} (name, audio, text, language, model, aux)", field_name.unwrap_or_default()))
        }
        other => HttpError::BadRequest(format!("malformed multipart body: {other}")),
    };
    let (mut name, mut text, mut language, mut model, mut audio, mut aux) = (None, None, None, None, None, Vec::new());
    while let Some(field) = mp.next_field().await.map_err(bad)? {
        let fname = field.name().unwrap_or("").to_string();
        let file = field.file_name().map(str::to_string);
        let bytes = field.bytes().await.map_err(bad)?;
        let as_text = || String::from_utf8(bytes.to_vec()).map_err(|_| HttpError::BadRequest(format!("field {fname} is not UTF-8 text")));
        match fname.as_str() {
            "name" => name = Some(as_text()?.trim().to_string()),
            "text" => text = Some(as_text()?),
            "language" => language = Some(as_text()?.trim().to_string()),
            "model" => model = Some(as_text()?.trim().to_string()).filter(|m| !m.is_empty()),
            "audio" => audio = Some((bytes.to_vec(), file)),
            "aux" => aux.push((bytes.to_vec(), file)),
            _ => {}
        }
    }
    let need = |v: Option<String>, f: &str| v.filter(|s| !s.is_empty()).ok_or_else(|| HttpError::BadRequest(format!("field {f} is required")));
    let audio = audio.filter(|(b, _)| !b.is_empty()).ok_or_else(|| HttpError::BadRequest("field audio (the reference recording, a file) is required".into()))?;
    Ok(NewVoice { name: need(name, "name")?, text: need(text, "text")?, language: need(language, "language")?, model, audio, aux })
}

/// Puts the library behind a model generation's feature cache (features persisted per bundle).
pub(super) fn attach(library: &Option<Arc<Library>>, model: &crate::engine::pool::ModelGen) {
    let Some(lib) = library else { return };
    match crate::voices::bundle_sha256(&model.dir) {
        Ok(sha) => model.features.set_store(lib.clone(), sha),
        Err(e) => tracing::warn!(model = %model.name, "voice features will not be persisted: cannot read the bundle manifest: {e}"),
    }
}
