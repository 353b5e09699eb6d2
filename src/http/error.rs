//! Errors of the HTTP layer and the one place where they become a status code and a body.
//!
//! Every handler returns `Result<Response, HttpError>`. [`HttpError::kind`] says what kind of failure it is: the
//! engine's [`ErrorKind`] (engine errors decide their own kind by variant, never by message text) or one of the
//! few kinds only HTTP has; [`HttpError::status`] is the single `match` from kind to status, and [`error_body`]
//! writes the body in the shape of the route that failed ([`Shape`]): api2/api.py routes
//! `{"code":N,"message":M}`, api_v2 routes `{"message":M}` (plus `"Exception"` for synthesis failures, as api_v2
//! does), OpenAI routes `{"error":{"message","type","code"}}`. Internal faults answer 500 with a generic message
//! and the request id; the details go to the log only, so bodies never carry internal paths or backtraces.

use crate::engine::{EngineError, ErrorKind};
use crate::gpt::GptError;
use crate::text::TextError;

/// api2's one documented error body, byte for byte (contract §2.3).
pub const NO_DEFAULT_REFERENCE: &str = r#"{"code":400,"message":"未指定参考音频且接口无预设"}"#;

/// Body shape of the route that answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// api2.py / api.py: `{"code":400,"message":"..."}`.
    Api2,
    /// api_v2.py: `{"message":"..."}`.
    V2,
    /// OpenAI: `{"error":{"message":"...","type":"...","code":...}}`.
    OpenAi,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// api2: no complete reference in the request and no complete default.
    #[error("未指定参考音频且接口无预设")]
    NoDefaultReference,
    /// The request is wrong; the message is safe to show.
    #[error("{0}")]
    BadRequest(String),
    /// A wrong value of a named parameter (OpenAI's error object names it in `param`); otherwise as `BadRequest`.
    #[error("{message}")]
    Invalid { param: &'static str, message: String },
    /// api_v2 `tts failed` (a client-side synthesis error, shown in `Exception`).
    #[error("tts failed: {0}")]
    TtsFailed(String),
    /// api_v2 setters: `{"message":"change gpt weight failed","Exception":...}`.
    #[error("{what}: {detail}")]
    ChangeFailed { what: &'static str, detail: String },
    #[error("missing or wrong API key")]
    Unauthorized,
    /// A path outside the allowed roots.
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    /// Something the request names does not exist (a voice); the message is safe to show.
    #[error("{0}")]
    Missing(String),
    /// The request conflicts with what exists (a voice name already taken).
    #[error("{0}")]
    Conflict(String),
    /// OpenAI: unknown `model`.
    #[error("{0}")]
    UnknownModel(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The request body did not arrive within `--body-timeout-s`.
    #[error("请求体接收超时 / the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    /// From the engine: admission (overloaded), deadline (timeout), shutting down, and every synthesis failure.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A fault of the server; the detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What kind of failure an [`HttpError`] is: an engine kind, or one only HTTP has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Engine(ErrorKind),
    Unauthorized,
    MethodNotAllowed,
    TooLarge,
    BodyTimeout,
    Conflict,
}

impl Kind {
    /// Label of `gsv_failures_total{kind}`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Engine(k) => k.name(),
            Kind::Unauthorized => "unauthorized",
            Kind::MethodNotAllowed => "method_not_allowed",
            Kind::TooLarge => "too_large",
            Kind::BodyTimeout => "body_timeout",
            Kind::Conflict => "conflict",
        }
    }

    /// THE mapping from kind to HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Kind::Engine(ErrorKind::Validation | ErrorKind::Unsupported) => 400,
            Kind::Unauthorized => 401,
            Kind::Engine(ErrorKind::Forbidden) => 403,
            Kind::Engine(ErrorKind::NotFound) => 404,
            Kind::MethodNotAllowed => 405,
            Kind::BodyTimeout => 408,
            Kind::Conflict => 409,
            Kind::TooLarge => 413,
            Kind::Engine(ErrorKind::Overloaded) => 429,
            // nobody reads it: the client went away (nginx's "client closed request")
            Kind::Engine(ErrorKind::Cancelled) => 499,
            Kind::Engine(ErrorKind::Internal) => 500,
            Kind::Engine(ErrorKind::Unavailable) => 503,
            Kind::Engine(ErrorKind::Timeout) => 504,
        }
    }
}

impl HttpError {
    pub fn kind(&self) -> Kind {
        match self {
            HttpError::NoDefaultReference
            | HttpError::BadRequest(_)
            | HttpError::Invalid { .. }
            | HttpError::TtsFailed(_)
            | HttpError::ChangeFailed { .. } => {
                Kind::Engine(ErrorKind::Validation)
            }
            HttpError::Unauthorized => Kind::Unauthorized,
            HttpError::Forbidden(_) => Kind::Engine(ErrorKind::Forbidden),
            HttpError::NotFound | HttpError::UnknownModel(_) | HttpError::Missing(_) => Kind::Engine(ErrorKind::NotFound),
            HttpError::Conflict(_) => Kind::Conflict,
            HttpError::MethodNotAllowed => Kind::MethodNotAllowed,
            HttpError::BodyTooLarge(_) => Kind::TooLarge,
            HttpError::BodyTimeout(_) => Kind::BodyTimeout,
            HttpError::Engine(e) => Kind::Engine(e.kind()),
            HttpError::Internal(_) => Kind::Engine(ErrorKind::Internal),
        }
    }

    pub fn status(&self) -> u16 {
        self.kind().status()
    }

    /// The message a client may see (no internal detail for 5xx).
    pub fn public_message(&self, request_id: &str) -> String {
        if self.status() == 500 {
            return format!("内部错误 / internal error (request id {request_id})");
        }
        match self {
            HttpError::Engine(e) => engine_message(e),
            other => other.to_string(),
        }
    }
}

/// Client-facing text of an engine error: Chinese as api2 writes its messages, then English.
fn engine_message(e: &EngineError) -> String {
    match e {
        EngineError::Text(TextError::TextTooShort) => "有效文字数太少，至少输入4个字符 / text too short: at least 4 characters are needed".into(),
        EngineError::Text(TextError::EmptyText) => "没有可合成的文字 / no text to synthesize".into(),
        EngineError::Text(TextError::UnknownLanguage(l)) => format!("不支持的语言 / unsupported language: {l}"),
        EngineError::Text(TextError::Unsupported(l)) => format!("暂不支持该语言 / language not supported yet: {l}"),
        EngineError::Text(t) => format!("文本处理失败 / text: {t}"),
        EngineError::Reference(crate::reference::ReferenceError::Duration { secs, .. }) => {
            format!("参考音频在3~10秒范围外，请更换！ / reference audio must be 3-10 s long, got {secs:.2} s")
        }
        EngineError::Reference(crate::reference::ReferenceError::Io { source, .. }) => {
            format!("无法读取参考音频 / cannot read the reference audio: {}", io_kind(source))
        }
        EngineError::Reference(crate::reference::ReferenceError::Forbidden) => "参考音频路径不在允许的目录内 / reference path is outside the allowed folders".into(),
        EngineError::Reference(crate::reference::ReferenceError::NotRegular(kind)) => {
            format!("参考音频不是普通文件 / the reference is not a regular file (a {kind})")
        }
        EngineError::Reference(crate::reference::ReferenceError::TooLarge { max }) => {
            format!("参考音频文件过大 / the reference file is larger than {max} bytes (--max-ref-bytes)")
        }
        EngineError::Reference(crate::reference::ReferenceError::TooLong { max_secs }) => {
            format!("参考音频在3~10秒范围外，请更换！ / reference audio must be 3-10 s long, got more than {max_secs} s")
        }
        EngineError::Reference(r) => format!("参考音频无法解码 / reference audio: {r}"),
        EngineError::Gpt(GptError::EmptyGeneration) => "模型没有生成任何内容 / the model generated no audio for this text".into(),
        EngineError::Invalid(m) => format!("参数错误 / bad request: {m}"),
        EngineError::Timeout(s) => format!("处理超时 / request took longer than {s} s"),
        EngineError::Overloaded(n) => format!("服务器繁忙，请稍后再试 / server busy: {n} requests already waiting"),
        other => other.to_string(),
    }
}

fn io_kind(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "file not found",
        std::io::ErrorKind::PermissionDenied => "permission denied",
        _ if e.raw_os_error() == Some(21) => "is a directory",
        _ => "read error",
    }
}

fn json_escape(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Status and compact JSON body of an error in the given shape.
pub fn error_body(err: &HttpError, shape: Shape, request_id: &str) -> (u16, String) {
    let status = err.status();
    if let HttpError::NoDefaultReference = err {
        if shape == Shape::Api2 {
            return (400, NO_DEFAULT_REFERENCE.to_string());
        }
    }
    let msg = err.public_message(request_id);
    let body = match shape {
        Shape::Api2 => format!("{{\"code\":{status},\"message\":{}}}", json_escape(&msg)),
        Shape::V2 => match err {
            HttpError::TtsFailed(detail) => format!("{{\"message\":\"tts failed\",\"Exception\":{}}}", json_escape(detail)),
            HttpError::ChangeFailed { what, detail } => format!("{{\"message\":{},\"Exception\":{}}}", json_escape(what), json_escape(detail)),
            HttpError::Engine(_) if status == 400 => format!("{{\"message\":\"tts failed\",\"Exception\":{}}}", json_escape(&msg)),
            _ if status == 500 => format!("{{\"message\":\"tts failed\",\"Exception\":{}}}", json_escape(&msg)),
            _ => format!("{{\"message\":{}}}", json_escape(&msg)),
        },
        // OpenAI's error object: message, type, param, code (the SDK maps the status to its exception class)
        Shape::OpenAi => {
            let typ = match status {
                429 => "rate_limit_error",
                s if s >= 500 => "server_error",
                _ => "invalid_request_error",
            };
            let code = match (err, status) {
                (HttpError::UnknownModel(_), _) => Some("model_not_found"),
                (HttpError::Unauthorized, _) => Some("invalid_api_key"),
                (_, 429) => Some("rate_limit_exceeded"),
                (_, 504) => Some("timeout"),
                _ => None,
            };
            let param = match err {
                HttpError::Invalid { param, .. } => Some(*param),
                HttpError::UnknownModel(_) => Some("model"),
                _ => None,
            };
            let v = serde_json::json!({"error": {"message": msg, "type": typ, "param": param, "code": code}});
            serde_json::to_string(&v).unwrap_or_default()
        }
    };
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_api2_body() {
        let (s, b) = error_body(&HttpError::NoDefaultReference, Shape::Api2, "x");
        assert_eq!(s, 400);
        assert_eq!(b.len(), 64);
        assert_eq!(b, "{\"code\":400,\"message\":\"未指定参考音频且接口无预设\"}");
    }

    #[test]
    fn internal_errors_hide_detail() {
        let e = HttpError::Internal("/secret/path/model.onnx broke".into());
        for shape in [Shape::Api2, Shape::V2, Shape::OpenAi] {
            let (s, b) = error_body(&e, shape, "rid-1");
            assert_eq!(s, 500);
            assert!(!b.contains("/secret"), "{b}");
            assert!(b.contains("rid-1"));
        }
    }

    #[test]
    fn kinds_decide_status() {
        use crate::reference::ReferenceError;
        let e = |x: EngineError| HttpError::Engine(x).status();
        assert_eq!(e(EngineError::Overloaded(3)), 429);
        assert_eq!(e(EngineError::Timeout(2)), 504);
        assert_eq!(e(EngineError::ShuttingDown), 503);
        assert_eq!(e(EngineError::Panicked("x".into())), 500);
        assert_eq!(e(EngineError::Text(TextError::Unsupported("ko".into()))), 400);
        assert_eq!(e(EngineError::Text(TextError::Tokenizer("x".into()))), 500);
        assert_eq!(e(EngineError::Reference(ReferenceError::EmptyAudio)), 400);
        // an internal fault whose message reads like a client's is still internal
        assert_eq!(e(EngineError::Internal("cannot read x".into())), 500);
        assert_eq!(e(EngineError::Bundle(crate::bundle::BundleError::Io { path: "tokenizer.json".into(), msg: "x".into() })), 500);
        assert_eq!(HttpError::Forbidden("x".into()).status(), 403);
        assert_eq!(HttpError::BodyTooLarge(1).status(), 413);
        let (s, b) = error_body(&HttpError::Engine(EngineError::Overloaded(1)), Shape::Api2, "r");
        assert_eq!((s, b.as_str()), (429, r#"{"code":429,"message":"服务器繁忙，请稍后再试 / server busy: 1 requests already waiting"}"#));
        let (s, b) = error_body(&HttpError::Engine(EngineError::Panicked("boom at /secret".into())), Shape::Api2, "rid-9");
        assert_eq!(s, 500);
        assert!(b.contains("rid-9") && !b.contains("secret"), "{b}");
    }

    #[test]
    fn v2_shapes() {
        let (s, b) = error_body(&HttpError::BadRequest("text is required".into()), Shape::V2, "r");
        assert_eq!((s, b.as_str()), (400, r#"{"message":"text is required"}"#));
        let (_, b) = error_body(&HttpError::Engine(EngineError::Text(TextError::TextTooShort)), Shape::V2, "r");
        assert!(b.starts_with(r#"{"message":"tts failed","Exception":"#), "{b}");
    }
}
