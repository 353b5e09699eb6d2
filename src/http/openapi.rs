//! The OpenAPI 3.1 description (`GET /openapi.json`) and the docs page (`GET /docs`).
//!
//! Built with `utoipa` by walking the route table ([`super::table::ROUTES`]): every route gets its operations from
//! [`describe`], an exhaustive `match` over [`RouteId`], so a route cannot be answered without being described. The
//! request fields, their defaults and ranges are the `ToSchema` types below (GET routes take the same fields as
//! query parameters, derived from the same schema); each route lists the error bodies of its shape (api2's
//! `{"code","message"}`, api_v2's `{"message","Exception"}`, OpenAI's `{"error":{...}}`, FastAPI's `{"detail"}`).
//!
//! `/docs` is Swagger UI (npm `swagger-ui-dist`, installed by `scripts/setup` into `.data/node/`; no CDN), served
//! from `GSV_DOCS_DIR`, `.data/node/node_modules/swagger-ui-dist` (working directory, then next to the executable)
//! or `/usr/share/gsv/swagger-ui` (the container image). Without it, `/docs` says how to install it.

use std::path::PathBuf;
use std::sync::OnceLock;

use hyper::{Method, Response};
use utoipa::openapi::path::{OperationBuilder, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder, PathItem, PathsBuilder, RefOr, Required,
    ResponseBuilder, Schema, Type,
};
use utoipa::{PartialSchema, ToSchema};

use super::error::HttpError;
use super::table::{Matched, Route, RouteId, ROUTES};
use super::Body;

// ---------------------------------------------------------------- request fields

/// api2.py / api.py request (`GET /` query or `POST /` JSON body). When any of `refer_wav_path`, `prompt_text`,
/// `prompt_language` is missing or empty, all three come from the server's default reference (-dr/-dt/-dl).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Api2Request {
    /// Text to speak.
    #[schema(example = "你好，世界。")]
    text: String,
    /// Language of `text`: zh, ja, en, yue, ko, auto, auto_yue, all_zh, all_ja, all_yue, all_ko (case-insensitive;
    /// api.py's Chinese names such as 中文 too).
    #[schema(example = "zh")]
    text_language: String,
    /// Reference recording: a path on the server (confined to --ref-root when set).
    refer_wav_path: Option<String>,
    /// Transcript of the reference recording.
    prompt_text: Option<String>,
    /// Language of the transcript (same codes as `text_language`).
    prompt_language: Option<String>,
    /// api2 cut method (gsv extension): 1 four sentences, 2 ~50 characters, 3 at 。, 4 at ., 5 at punctuation,
    /// anything else no cut. Default: the server's -c.
    #[schema(default = 5)]
    cut: Option<i64>,
    /// api.py: characters to cut at (only 。 = cut 3, only . = cut 4, other punctuation = cut 5). Default: -cp.
    cut_punc: Option<String>,
    /// Top-k sampling; 0 = the model's (15 for v2).
    #[schema(default = 0, minimum = 0, maximum = 1024)]
    top_k: Option<i64>,
    #[schema(default = 1.0, exclusive_minimum = 0.0, maximum = 1.0)]
    top_p: Option<f64>,
    #[schema(default = 1.0, exclusive_minimum = 0.0, maximum = 10.0)]
    temperature: Option<f64>,
    #[schema(default = 1.35, exclusive_minimum = 0.0, maximum = 10.0)]
    repetition_penalty: Option<f64>,
    /// Speech speed.
    #[schema(default = 1.0, minimum = 0.25, maximum = 4.0)]
    speed: Option<f64>,
    /// Same seed + same request = same audio; absent or negative: a fresh one, returned in X-GSV-Seed.
    seed: Option<i64>,
    /// api.py: extra reference recordings whose speaker vectors are averaged with the main one.
    inp_refs: Option<Vec<String>>,
    /// Stream the audio segment by segment (true/1..3); default: -sm (close = false).
    #[schema(value_type = Option<Value>, default = false)]
    streaming_mode: Option<bool>,
    /// Same as `streaming_mode` (used when `streaming_mode` is absent).
    #[schema(default = false)]
    stream: Option<bool>,
    /// api.py v3/v4 field: accepted, ignored.
    sample_steps: Option<i64>,
    /// api.py v3/v4 field: accepted, ignored.
    if_sr: Option<bool>,
    /// gsv extension: this request's format (api_v2's names: wav, raw, ogg, aac; also mp3, flac, opus). Default: -mt.
    media_type: Option<String>,
    /// gsv extension: reference-free synthesis (the transcript is not used; the audio is refer_wav_path or the
    /// default reference's). api2 itself reads an empty prompt_text as "use the defaults".
    #[schema(default = false)]
    ref_free: Option<bool>,
}

/// api_v2.py `/tts` request (`GET` query or `POST` JSON body), with its checks and messages.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TtsRequest {
    /// Text to speak.
    #[schema(example = "你好，世界。")]
    text: String,
    /// Language of `text`: auto, auto_yue, en, zh, ja, yue, ko, all_zh, all_ja, all_yue, all_ko (v1 models: auto, en, zh, ja, all_zh, all_ja).
    #[schema(example = "zh")]
    text_lang: String,
    /// Reference recording (a path on the server). Not needed with `voice`.
    ref_audio_path: Option<String>,
    /// Language of the transcript. Not needed with `voice`.
    prompt_lang: Option<String>,
    /// Transcript of the reference.
    #[schema(default = "")]
    prompt_text: Option<String>,
    /// gsv extension: a voice name (`GET /voices`) that supplies ref_audio_path, prompt_text and prompt_lang
    /// (fields given in the request win).
    voice: Option<String>,
    /// Extra references whose speaker vectors are averaged with the main one.
    aux_ref_audio_paths: Option<Vec<String>>,
    #[schema(default = 0, minimum = 0, maximum = 1024)]
    top_k: Option<i64>,
    #[schema(default = 1.0)]
    top_p: Option<f64>,
    #[schema(default = 1.0)]
    temperature: Option<f64>,
    #[schema(default = 1.35)]
    repetition_penalty: Option<f64>,
    /// cut0..cut5 (api_v2's text split methods).
    #[schema(default = "cut5")]
    text_split_method: Option<String>,
    #[schema(default = 1.0, minimum = 0.25, maximum = 4.0)]
    speed_factor: Option<f64>,
    seed: Option<i64>,
    /// wav or raw (PCM16).
    #[schema(default = "wav")]
    media_type: Option<String>,
    /// false/0: one complete file; true/1: one chunk per segment; 2: by token chunks (first chunk early); 3: fixed token chunks.
    #[schema(value_type = Option<Value>, default = false)]
    streaming_mode: Option<bool>,
    /// Older api_v2 name of streaming by segments.
    #[schema(default = false)]
    return_fragment: Option<bool>,
    /// Tokens per chunk in streaming modes 2 and 3 (4..200).
    #[schema(default = 16)]
    min_chunk_length: Option<i64>,
    /// api_v2 field: accepted, ignored (segments are separated by 0.3 s of silence).
    fragment_interval: Option<f64>,
    /// api_v2 field: accepted, ignored.
    batch_size: Option<i64>,
    /// api_v2 field: accepted, ignored.
    batch_threshold: Option<f64>,
    /// api_v2 field: accepted, ignored.
    split_bucket: Option<bool>,
    /// api_v2 field: accepted, ignored.
    parallel_infer: Option<bool>,
    /// api_v2 field: accepted, ignored.
    super_sampling: Option<bool>,
    /// api_v2 field: accepted, ignored.
    sample_steps: Option<i64>,
}

/// OpenAI-style speech request.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SpeechRequest {
    /// A loaded model (`GET /v1/models`); OpenAI's names (tts-1, tts-1-hd, gpt-4o-mini-tts) select the default.
    /// Absent: the voice's model when it names one, else the default.
    #[schema(default = "default")]
    model: Option<String>,
    /// Text to speak.
    #[schema(example = "你好，世界。")]
    input: String,
    /// `default` (the server's default reference), a --voice name or a library voice (`GET /voices`), or an object
    /// `{"id": name}`. Other names (OpenAI's alloy, ...) speak with the default voice unless --strict-voices.
    #[schema(value_type = Option<Value>, default = "default")]
    voice: Option<String>,
    /// mp3 (the default, as OpenAI's), opus, aac, flac, wav, pcm (PCM16 at 24 kHz, as OpenAI's).
    #[schema(default = "mp3")]
    response_format: Option<String>,
    /// `audio` (the encoded stream) or `sse` (server-sent `speech.audio.delta` events with base64 audio, then
    /// `speech.audio.done`).
    #[schema(default = "audio")]
    stream_format: Option<String>,
    /// OpenAI's style instructions: accepted, ignored (GPT-SoVITS takes its style from the reference audio).
    instructions: Option<String>,
    #[schema(default = 1.0, minimum = 0.25, maximum = 4.0)]
    speed: Option<f64>,
    /// gsv extension: language of `input` (api2 codes).
    #[schema(default = "auto")]
    language: Option<String>,
    /// gsv extension: reproducible output.
    seed: Option<i64>,
    /// gsv extension: stream (chunked) or send one complete file; default: every format but wav streams.
    stream: Option<bool>,
}

/// api.py `/change_refer`: replaces the default reference; fields left empty keep their value.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ChangeReferRequest {
    refer_wav_path: Option<String>,
    prompt_text: Option<String>,
    prompt_language: Option<String>,
}

/// api.py `/set_model`: bundle folders (or --bundle names); both may name the same bundle.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SetModelRequest {
    gpt_model_path: Option<String>,
    sovits_model_path: Option<String>,
}

/// api_v2 `/set_gpt_weights`, `/set_sovits_weights`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct WeightsRequest {
    /// A bundle folder (or a --bundle name).
    weights_path: String,
}

/// api_v2 `/set_refer_audio`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReferAudioRequest {
    /// Replaces the default reference's audio (text and language stay).
    refer_audio_path: String,
}

/// api.py / api_v2 `/control`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ControlRequest {
    /// `exit`: stop gracefully; `restart`: reload the default model.
    #[schema(pattern = "^(exit|restart)$")]
    command: String,
}

/// `POST /voices` (multipart/form-data).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VoiceUpload {
    /// 1-64 letters, digits, `-`, `_`, `.`; starts with a letter or digit; not `default`.
    #[schema(max_length = 64, example = "alice")]
    name: String,
    /// The reference recording (3-10 s; WAV, FLAC, MP3, Ogg, Opus, M4A/AAC, WebM).
    #[schema(value_type = String, content_media_type = "application/octet-stream")]
    audio: Vec<u8>,
    /// Transcript of the recording.
    #[schema(max_length = 1000)]
    text: String,
    /// Language of the transcript (api2 codes).
    #[schema(example = "zh")]
    language: String,
    /// The model the voice is meant for (a loaded model name).
    model: Option<String>,
    /// Extra references (repeat the field; at most 8).
    #[schema(value_type = Option<Vec<String>>)]
    aux: Option<Vec<Vec<u8>>>,
}

// ---------------------------------------------------------------- response bodies

/// A voice.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Voice {
    name: String,
    /// Transcript of the reference.
    text: String,
    language: String,
    model: Option<String>,
    /// Number of extra references.
    aux: i64,
    /// `default` (the default reference), `flag` (--voice), `library` (--voices).
    #[schema(pattern = "^(default|flag|library)$")]
    source: String,
    /// Library voices: when the voice was added (RFC 3339).
    created_at: Option<String>,
    /// Library voices: sha256 of the reference audio.
    audio_sha256: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Deleted {
    name: String,
    deleted: bool,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ModelEntry {
    id: String,
    object: String,
    owned_by: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ModelList {
    object: String,
    data: Vec<ModelEntry>,
}

/// `/health`: 200 when at least one worker can serve, 503 otherwise (or while stopping).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    /// ok or unavailable.
    status: String,
    model: String,
    version: String,
    generation: i64,
    models: Vec<String>,
    workers: i64,
    workers_serving: i64,
    #[schema(value_type = Value)]
    worker_states: Vec<String>,
    default_reference: bool,
}

/// api2/api.py error body (the 400 without any reference is exactly `{"code":400,"message":"未指定参考音频且接口无预设"}`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Api2Error {
    code: i64,
    message: String,
}

/// api_v2 error body.
#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct V2Error {
    message: String,
    /// The reason, on synthesis and setter failures.
    Exception: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OpenAiErrorDetail {
    message: String,
    /// invalid_request_error, authentication_error, not_found_error, rate_limit_error, server_error.
    #[schema(rename = "type")]
    kind: String,
    /// `model_not_found` or null.
    code: Option<String>,
}

/// OpenAI-style error body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OpenAiError {
    error: OpenAiErrorDetail,
}

/// FastAPI's answer for an unknown path or method (kept from upstream).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Detail {
    detail: String,
}

/// api.py-style success body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Success {
    code: i64,
    message: String,
}

/// api_v2-style success body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct V2Success {
    message: String,
}

// ---------------------------------------------------------------- building the document

#[derive(Clone, Copy)]
enum ErrShape {
    Api2,
    V2,
    OpenAi,
}

fn schema_ref<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(T::name()))
}

fn json_response(desc: &str, schema: RefOr<Schema>) -> utoipa::openapi::Response {
    ResponseBuilder::new().description(desc).content("application/json", ContentBuilder::new().schema(Some(schema)).build()).build()
}

fn binary(media: &str) -> RefOr<Schema> {
    RefOr::T(Schema::Object(ObjectBuilder::new().schema_type(Type::String).content_media_type(media).build()))
}

fn header(desc: &str) -> utoipa::openapi::header::Header {
    utoipa::openapi::header::HeaderBuilder::new().schema(String::schema()).description(Some(desc)).build()
}

/// 200 with synthesized audio in the given media types, and the headers gsv adds.
fn audio_response(media: &[&str], extra: Option<(&str, RefOr<Schema>)>) -> utoipa::openapi::Response {
    let mut b = ResponseBuilder::new()
        .description("Synthesized audio (PCM16 mono at the model's rate, 32 kHz); complete with Content-Length, or chunked when streaming")
        .header("X-GSV-Seed", header("the seed used (send it back as `seed` to reproduce the audio)"))
        .header("X-GSV-Sample-Rate", header("sample rate of the audio"))
        .header("X-GSV-Timing", header("complete responses: frontend, reference, prefill, steps, decode, ttfa, total (ms), rtf, reference_cached, ..."))
        .header("X-Request-Id", header("request id (also in the log)"));
    for m in media {
        b = b.content(*m, ContentBuilder::new().schema(Some(binary(m))).build());
    }
    if let Some((m, s)) = extra {
        b = b.content(m, ContentBuilder::new().schema(Some(s)).build());
    }
    b.build()
}

fn error_schema(shape: ErrShape) -> RefOr<Schema> {
    match shape {
        ErrShape::Api2 => schema_ref::<Api2Error>(),
        ErrShape::V2 => schema_ref::<V2Error>(),
        ErrShape::OpenAi => schema_ref::<OpenAiError>(),
    }
}

/// The error responses of a route: the statuses gsv answers and the body of the route's shape.
fn with_errors(mut op: OperationBuilder, shape: ErrShape, codes: &[u16]) -> OperationBuilder {
    for &c in codes {
        let desc = match c {
            400 => "Bad request: missing or invalid field, unsupported language, unreadable or out-of-range reference",
            401 => "Missing or wrong API key (`Authorization: Bearer KEY`)",
            403 => "A path outside --ref-root, or a read-only voice library",
            404 => "Unknown path, model or voice",
            405 => "Method not allowed",
            409 => "Conflict: the voice exists, or is set by the server's flags",
            413 => "Request body too large (--max-body, --max-upload)",
            429 => "Server busy: every worker busy and --max-queue requests waiting",
            500 => "Internal fault: a generic message with the request id (details only in the log)",
            503 => "Shutting down, or no worker can serve",
            504 => "Took longer than --timeout-s",
            _ => "Error",
        };
        // unknown paths and methods get FastAPI's body on api2/api_v2 routes, as upstream
        let schema = match (c, shape) {
            (404 | 405, ErrShape::Api2 | ErrShape::V2) => RefOr::T(Schema::OneOf(
                utoipa::openapi::schema::OneOfBuilder::new().item(schema_ref::<Detail>()).item(error_schema(shape)).build(),
            )),
            _ => error_schema(shape),
        };
        op = op.response(c.to_string(), json_response(desc, schema));
    }
    op
}

/// The fields of an object schema as query parameters (GET routes take the same fields as the JSON body).
fn query_params(schema: RefOr<Schema>) -> Vec<Parameter> {
    let RefOr::T(Schema::Object(obj)) = schema else { return vec![] };
    obj.properties
        .iter()
        .map(|(name, prop)| {
            let desc = match prop {
                RefOr::T(Schema::Object(o)) => o.description.clone(),
                RefOr::T(Schema::Array(a)) => a.description.clone(),
                RefOr::T(Schema::OneOf(o)) => o.description.clone(),
                _ => None,
            };
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(if obj.required.contains(name) { Required::True } else { Required::False })
                .description(desc)
                .schema(Some(prop.clone()))
                .build()
        })
        .collect()
}

fn json_body(schema: RefOr<Schema>) -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .description(Some("JSON object (read as JSON whatever the Content-Type, as api2 does); numbers may be sent as strings"))
        .content("application/json", ContentBuilder::new().schema(Some(schema)).build())
        .required(Some(Required::True))
        .build()
}

fn op(id: &str, tag: &str, summary: &str) -> OperationBuilder {
    OperationBuilder::new().operation_id(Some(id)).tag(tag).summary(Some(summary))
}

const SYNTH_ERRORS: &[u16] = &[400, 401, 403, 404, 405, 413, 429, 500, 503, 504];
const ADMIN_ERRORS: &[u16] = &[400, 401, 403, 404, 405, 413, 500];

/// GET (query) and POST (JSON body) operations for a route whose fields are `T`.
fn get_post<T: ToSchema + PartialSchema>(id: &str, tag: &str, summary: &str, ok: utoipa::openapi::Response, shape: ErrShape, errors: &[u16]) -> Vec<(HttpMethod, OperationBuilder)> {
    let get = with_errors(op(&format!("{id}_get"), tag, summary).parameters(Some(query_params(T::schema()))).response("200", ok.clone()), shape, errors);
    let post = with_errors(op(&format!("{id}_post"), tag, summary).request_body(Some(json_body(schema_ref::<T>()))).response("200", ok), shape, errors);
    vec![(HttpMethod::Get, get), (HttpMethod::Post, post)]
}

/// The operations of one route. Exhaustive: a new [`RouteId`] does not compile until it is described here.
fn describe(route: &Route) -> Vec<(HttpMethod, OperationBuilder)> {
    let ok_api2 = || json_response("Success", schema_ref::<Success>());
    let ok_v2 = || json_response("Success", schema_ref::<V2Success>());
    match route.id {
        RouteId::Root => {
            let page = ("text/html", binary("text/html"));
            let mut ops = get_post::<Api2Request>("api2", "api2", "Synthesize (api2.py / api.py)", audio_response(&["audio/wav"], None), ErrShape::Api2, SYNTH_ERRORS);
            // GET / without a query from a browser (Accept: text/html) is the page
            let (m, get) = ops.remove(0);
            let get = get
                .description(Some("A browser asking for text/html with no query string gets the page instead (see /ui/{file})."))
                .response("200", audio_response(&["audio/wav"], Some(page)));
            ops.insert(0, (m, get));
            ops
        }
        RouteId::Tts => get_post::<TtsRequest>("tts", "api_v2", "Synthesize (api_v2.py)", audio_response(&["audio/wav", "audio/raw"], None), ErrShape::V2, SYNTH_ERRORS),
        RouteId::Speech => vec![(
            HttpMethod::Post,
            with_errors(
                op("speech", "openai", "Synthesize (OpenAI audio.speech)").request_body(Some(json_body(schema_ref::<SpeechRequest>()))).response("200", audio_response(&["audio/wav", "audio/pcm"], None)),
                ErrShape::OpenAi,
                SYNTH_ERRORS,
            ),
        )],
        RouteId::Models => vec![(HttpMethod::Get, with_errors(op("models", "openai", "Loaded models").response("200", json_response("Models", schema_ref::<ModelList>())), ErrShape::OpenAi, &[401, 500]))],
        RouteId::ChangeRefer => get_post::<ChangeReferRequest>("change_refer", "api2", "Replace the default reference (api.py)", ok_api2(), ErrShape::Api2, ADMIN_ERRORS),
        RouteId::SetModel => get_post::<SetModelRequest>("set_model", "api2", "Load another model (api.py)", ok_api2(), ErrShape::Api2, ADMIN_ERRORS),
        RouteId::Control => get_post::<ControlRequest>("control", "api2", "Stop or reload (api.py / api_v2)", ok_api2(), ErrShape::Api2, ADMIN_ERRORS),
        RouteId::SetGptWeights => get_post::<WeightsRequest>("set_gpt_weights", "api_v2", "Load another model (api_v2)", ok_v2(), ErrShape::V2, ADMIN_ERRORS),
        RouteId::SetSovitsWeights => get_post::<WeightsRequest>("set_sovits_weights", "api_v2", "Load another model (api_v2)", ok_v2(), ErrShape::V2, ADMIN_ERRORS),
        RouteId::SetReferAudio => get_post::<ReferAudioRequest>("set_refer_audio", "api_v2", "Replace the default reference's audio (api_v2)", ok_v2(), ErrShape::V2, ADMIN_ERRORS),
        RouteId::Health => vec![(
            HttpMethod::Get,
            op("health", "operations", "Liveness: asks the workers")
                .response("200", json_response("At least one worker can serve", schema_ref::<Health>()))
                .response("503", json_response("No worker can serve, or stopping", schema_ref::<Health>())),
        )],
        RouteId::Ready => vec![(
            HttpMethod::Get,
            op("ready", "operations", "Readiness: every worker serving, the models loaded (Kubernetes readiness probe)")
                .response("200", json_response("Ready to synthesise", schema_ref::<Health>()))
                .response("503", json_response("Not ready (starting, restarting a worker, stopping)", schema_ref::<Health>())),
        )],
        RouteId::Metrics => vec![(
            HttpMethod::Get,
            with_errors(
                op("metrics", "operations", "Prometheus metrics").response(
                    "200",
                    ResponseBuilder::new().description("Prometheus text format").content("text/plain", ContentBuilder::new().schema(Some(String::schema())).build()).build(),
                ),
                ErrShape::Api2,
                &[401],
            ),
        )],
        RouteId::Voices => vec![
            (HttpMethod::Get, with_errors(op("voices_list", "voices", "List voices").response("200", json_response("Voices", <Vec<Voice> as PartialSchema>::schema())), ErrShape::Api2, &[401, 500])),
            (
                HttpMethod::Post,
                with_errors(
                    op("voices_add", "voices", "Add a voice to the library (admin)")
                        .request_body(Some(
                            RequestBodyBuilder::new()
                                .content("multipart/form-data", ContentBuilder::new().schema(Some(schema_ref::<VoiceUpload>())).build())
                                .required(Some(Required::True))
                                .build(),
                        ))
                        .response("201", json_response("The new voice (Location: /voices/NAME)", schema_ref::<Voice>())),
                    ErrShape::Api2,
                    &[400, 401, 403, 409, 413, 500],
                ),
            ),
        ],
        RouteId::Voice => {
            let name = || ParameterBuilder::new().name("name").parameter_in(ParameterIn::Path).required(Required::True).schema(Some(String::schema())).build();
            vec![
                (HttpMethod::Get, with_errors(op("voice_get", "voices", "One voice").parameter(name()).response("200", json_response("The voice", schema_ref::<Voice>())), ErrShape::Api2, &[401, 404])),
                (
                    HttpMethod::Delete,
                    with_errors(op("voice_delete", "voices", "Delete a library voice (admin)").parameter(name()).response("200", json_response("Deleted", schema_ref::<Deleted>())), ErrShape::Api2, &[401, 403, 404, 409, 500]),
                ),
            ]
        }
        RouteId::OpenApi => vec![(HttpMethod::Get, op("openapi", "meta", "This description (OpenAPI 3.1)").response("200", json_response("OpenAPI document", RefOr::T(Schema::Object(ObjectBuilder::new().schema_type(Type::Object).build())))))],
        RouteId::Docs => vec![(HttpMethod::Get, op("docs", "meta", "API docs page (Swagger UI)").response("200", ResponseBuilder::new().description("HTML").content("text/html", ContentBuilder::new().schema(Some(binary("text/html"))).build()).build()))],
        RouteId::DocsAsset | RouteId::PageAsset => {
            let what = if route.id == RouteId::DocsAsset { "docs" } else { "page" };
            let file = ParameterBuilder::new().name("file").parameter_in(ParameterIn::Path).required(Required::True).schema(Some(String::schema())).build();
            vec![(
                HttpMethod::Get,
                op(&format!("{what}_asset"), "meta", &format!("A file of the {what} page"))
                    .parameter(file)
                    .response("200", ResponseBuilder::new().description("The file").content("application/octet-stream", ContentBuilder::new().schema(Some(binary("application/octet-stream"))).build()).build())
                    .response("404", json_response("No such file", schema_ref::<Detail>())),
            )]
        }
    }
}

fn components() -> utoipa::openapi::Components {
    let mut c = ComponentsBuilder::new();
    macro_rules! add {
        ($($t:ty),*) => { $( c = c.schema(<$t as ToSchema>::name(), <$t as PartialSchema>::schema()); )* };
    }
    add!(Api2Request, TtsRequest, SpeechRequest, ChangeReferRequest, SetModelRequest, WeightsRequest, ReferAudioRequest, ControlRequest, VoiceUpload);
    add!(Voice, Deleted, ModelEntry, ModelList, Health, Api2Error, V2Error, OpenAiErrorDetail, OpenAiError, Detail, Success, V2Success);
    c.security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer))).build()
}

/// The whole document.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for r in ROUTES {
        let mut item: Option<PathItem> = None;
        for (m, o) in describe(r) {
            let o = if r.public {
                o
            } else {
                // a key is needed only when the server has one: {} (none) or bearer
                o.security(SecurityRequirement::default()).security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            };
            let pi = PathItem::new(m, o.build());
            match &mut item {
                Some(i) => i.merge_operations(pi),
                None => item = Some(pi),
            }
        }
        if let Some(i) = item {
            paths = paths.path(r.path, i);
        }
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("gsv")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("GPT-SoVITS inference server: api2.py/api.py and api_v2.py routes, an OpenAI-style speech route, a voice library, health and metrics."))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components()))
        .build()
}

fn document_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| document().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")))
}

// ---------------------------------------------------------------- serving

const DOCS_HTML: &str = include_str!("../../web/docs.html");
const DOCS_INIT: &str = "window.ui = SwaggerUIBundle({ url: \"/openapi.json\", dom_id: \"#swagger-ui\", deepLinking: true });\n";

/// Where Swagger UI's files are, if they were installed.
fn docs_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("GSV_DOCS_DIR").map(PathBuf::from) {
        return d.join("swagger-ui-bundle.js").is_file().then_some(d);
    }
    let rel = PathBuf::from(".data/node/node_modules/swagger-ui-dist");
    let mut candidates = vec![rel.clone()];
    if let Some(exe) = std::env::current_exe().ok().and_then(|e| e.parent().map(|p| p.to_path_buf())) {
        candidates.extend(exe.ancestors().map(|a| a.join(&rel)));
    }
    candidates.push(PathBuf::from("/usr/share/gsv/swagger-ui"));
    candidates.into_iter().find(|d| d.join("swagger-ui-bundle.js").is_file())
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("map") => "application/json",
        _ => "application/octet-stream",
    }
}

pub(super) fn handle(m: Matched) -> Result<Response<Body>, HttpError> {
    match m.route.id {
        RouteId::OpenApi => Ok(super::full(200, "application/json", document_json())),
        RouteId::Docs => Ok(match docs_dir() {
            Some(_) => super::full(200, "text/html; charset=utf-8", DOCS_HTML),
            None => super::full(
                503,
                "text/html; charset=utf-8",
                "<!doctype html><meta charset=utf-8><title>gsv API docs</title><h1>API docs are not installed</h1>\
                 <p>The docs page uses Swagger UI from npm (<code>swagger-ui-dist</code>), installed by <code>scripts/setup</code> into \
                 <code>.data/node/</code> (or set <code>GSV_DOCS_DIR</code>). The description itself is always at \
                 <a href=\"/openapi.json\">/openapi.json</a>.</p>",
            ),
        }),
        RouteId::DocsAsset => {
            let name = m.param.unwrap_or_default();
            if name == "gsv-init.js" {
                return Ok(super::full(200, "text/javascript; charset=utf-8", DOCS_INIT));
            }
            if name.starts_with('.') || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                return Err(HttpError::NotFound);
            }
            let dir = docs_dir().ok_or(HttpError::NotFound)?;
            let bytes = std::fs::read(dir.join(&name)).map_err(|_| HttpError::NotFound)?;
            let mut r = super::full(200, content_type(&name), bytes);
            r.headers_mut().insert("cache-control", hyper::header::HeaderValue::from_static("public, max-age=3600"));
            Ok(r)
        }
        _ => Err(HttpError::NotFound),
    }
}

/// Methods of a route as OpenAPI writes them.
pub fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "get",
        Method::POST => "post",
        Method::DELETE => "delete",
        Method::PUT => "put",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_method_is_described() {
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), ROUTES.len());
        for r in ROUTES {
            let item = paths.get(r.path).unwrap_or_else(|| panic!("{} not described", r.path)).as_object().unwrap();
            let mut want: Vec<&str> = r.methods.iter().map(method_name).collect();
            let mut got: Vec<&str> = item.keys().map(String::as_str).collect();
            want.sort();
            got.sort();
            assert_eq!(want, got, "{}", r.path);
        }
    }

    /// Each key a handler reads (`p.str("k")`, `p.f64("k")`, ...) in routes.rs is a documented field of its route.
    #[test]
    fn every_field_the_handlers_read_is_documented() {
        let src = include_str!("routes.rs");
        let body_of = |f: &str| -> String {
            let start = src.find(&format!("fn {f}(")).unwrap_or_else(|| panic!("fn {f} not in routes.rs"));
            let rest = &src[start..];
            let end = ["\nfn ", "\nasync fn ", "\npub", "\n#["].iter().filter_map(|m| rest[1..].find(m)).min().map(|e| e + 1).unwrap_or(rest.len());
            rest[..end].to_string()
        };
        let keys = |body: &str| -> Vec<String> {
            let mut out = Vec::new();
            for pat in ["p.str(\"", "p.nonempty(\"", "p.f64(\"", "p.i64(\"", "p.bool(\"", "p.list(\"", "p.streaming_mode(\"", "p.0.get(\"", "p.0.contains_key(\"", "sampling(p, &mut r, \""] {
                for piece in body.split(pat).skip(1) {
                    if let Some(k) = piece.split('"').next() {
                        out.push(k.to_string());
                    }
                }
            }
            out
        };
        let sampling = keys(&body_of("sampling"));
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        let fields = |schema: &str| -> Vec<String> { doc["components"]["schemas"][schema]["properties"].as_object().unwrap_or_else(|| panic!("{schema}")).keys().cloned().collect() };
        let cases: &[(&str, &str, bool)] = &[
            ("api2_request", "Api2Request", true),
            ("v2_request", "TtsRequest", true),
            ("openai_request", "SpeechRequest", false),
            ("change_refer", "ChangeReferRequest", false),
            ("set_model", "SetModelRequest", false),
            ("set_weights", "WeightsRequest", false),
            ("set_refer_audio", "ReferAudioRequest", false),
            ("control", "ControlRequest", false),
        ];
        for (f, schema, uses_sampling) in cases {
            let documented = fields(schema);
            let mut read = keys(&body_of(f));
            if *uses_sampling {
                read.extend(sampling.iter().cloned());
            }
            assert!(!read.is_empty() || *f == "control", "{f}: no keys found (the scan is broken)");
            for k in read {
                assert!(documented.contains(&k), "{f} reads `{k}`, which {schema} does not document");
            }
        }
    }

    #[test]
    fn defaults_are_in_the_document() {
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        let p = &doc["components"]["schemas"]["Api2Request"]["properties"];
        assert_eq!(p["repetition_penalty"]["default"], 1.35);
        assert_eq!(p["cut"]["default"], 5);
        let q = doc["paths"]["/tts"]["get"]["parameters"].as_array().unwrap();
        let t = q.iter().find(|x| x["name"] == "text").unwrap();
        assert_eq!((t["in"].as_str(), t["required"].as_bool()), (Some("query"), Some(true)));
        assert!(q.iter().any(|x| x["name"] == "voice"));
    }
}
