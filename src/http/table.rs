//! The route table: every path and method the server answers.
//!
//! [`lookup`] runs before any handler: a path that is not in [`ROUTES`] is 404 and a method a route does not list
//! is 405, whatever the handlers below would do. The OpenAPI document ([`super::openapi`]) is built by walking the
//! same table, with one description per [`RouteId`] in an exhaustive `match`, so every route the server answers is
//! described (a new route that is not in the table is never reached; one without a description does not compile).

use hyper::Method;

use super::error::HttpError;

/// Each route the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    /// api2.py / api.py `GET|POST /`; also the page for browsers (`Accept: text/html`, no query string).
    Root,
    Tts,
    Speech,
    Models,
    ChangeRefer,
    SetModel,
    Control,
    SetGptWeights,
    SetSovitsWeights,
    SetReferAudio,
    Health,
    Ready,
    Metrics,
    Voices,
    Voice,
    OpenApi,
    Docs,
    DocsAsset,
    PageAsset,
}

pub struct Route {
    pub id: RouteId,
    /// OpenAPI path template (`{name}` matches one path segment).
    pub path: &'static str,
    pub methods: &'static [Method],
    /// Answered without an API key (static files and descriptions; the API calls they make need one).
    pub public: bool,
}

const GP: &[Method] = &[Method::GET, Method::POST];
const G: &[Method] = &[Method::GET];
const P: &[Method] = &[Method::POST];

pub const ROUTES: &[Route] = &[
    Route { id: RouteId::Root, path: "/", methods: GP, public: false },
    Route { id: RouteId::Tts, path: "/tts", methods: GP, public: false },
    Route { id: RouteId::Speech, path: "/v1/audio/speech", methods: P, public: false },
    Route { id: RouteId::Models, path: "/v1/models", methods: G, public: false },
    Route { id: RouteId::ChangeRefer, path: "/change_refer", methods: GP, public: false },
    Route { id: RouteId::SetModel, path: "/set_model", methods: GP, public: false },
    Route { id: RouteId::Control, path: "/control", methods: GP, public: false },
    Route { id: RouteId::SetGptWeights, path: "/set_gpt_weights", methods: GP, public: false },
    Route { id: RouteId::SetSovitsWeights, path: "/set_sovits_weights", methods: GP, public: false },
    Route { id: RouteId::SetReferAudio, path: "/set_refer_audio", methods: GP, public: false },
    Route { id: RouteId::Health, path: "/health", methods: G, public: true },
    Route { id: RouteId::Ready, path: "/ready", methods: G, public: true },
    Route { id: RouteId::Metrics, path: "/metrics", methods: G, public: false },
    Route { id: RouteId::Voices, path: "/voices", methods: &[Method::GET, Method::POST], public: false },
    Route { id: RouteId::Voice, path: "/voices/{name}", methods: &[Method::GET, Method::DELETE], public: false },
    Route { id: RouteId::OpenApi, path: "/openapi.json", methods: G, public: true },
    Route { id: RouteId::Docs, path: "/docs", methods: G, public: true },
    Route { id: RouteId::DocsAsset, path: "/docs/{file}", methods: G, public: true },
    Route { id: RouteId::PageAsset, path: "/ui/{file}", methods: G, public: true },
];

/// A matched route and the value of its `{...}` segment, if it has one (percent-decoded).
pub struct Matched {
    pub route: &'static Route,
    pub param: Option<String>,
}

fn matches(template: &str, path: &str) -> Option<Option<String>> {
    match template.find('{') {
        None => (template == path).then_some(None),
        Some(i) => {
            let rest = path.strip_prefix(&template[..i])?;
            if rest.is_empty() || rest.contains('/') {
                return None;
            }
            let decoded: String = form_urlencoded::parse(format!("x={}", rest.replace('+', "%2B")).as_bytes()).next().map(|(_, v)| v.into_owned())?;
            Some(Some(decoded))
        }
    }
}

/// The route for `path`, or 404 (no such path) / 405 (the path exists, not with this method).
pub fn lookup(method: &Method, path: &str) -> Result<Matched, HttpError> {
    let mut path_known = false;
    for r in ROUTES {
        if let Some(param) = matches(r.path, path) {
            path_known = true;
            if r.methods.contains(method) {
                return Ok(Matched { route: r, param });
            }
        }
    }
    Err(if path_known { HttpError::MethodNotAllowed } else { HttpError::NotFound })
}

/// Metrics label of a path: its route's template (a fixed set), else `other`.
pub fn label(path: &str) -> &'static str {
    ROUTES.iter().find(|r| matches(r.path, path).is_some()).map(|r| r.path).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_template() {
        let m = lookup(&Method::GET, "/voices/ali%20ce").ok().unwrap();
        assert_eq!((m.route.id, m.param.as_deref()), (RouteId::Voice, Some("ali ce")));
        assert_eq!(lookup(&Method::DELETE, "/voices/x").ok().unwrap().route.id, RouteId::Voice);
        assert!(matches!(lookup(&Method::POST, "/voices/x"), Err(HttpError::MethodNotAllowed)));
        assert!(matches!(lookup(&Method::GET, "/voices/a/b"), Err(HttpError::NotFound)));
        assert!(matches!(lookup(&Method::GET, "/voices/"), Err(HttpError::NotFound)));
        assert!(matches!(lookup(&Method::GET, "/nope"), Err(HttpError::NotFound)));
        assert!(matches!(lookup(&Method::PUT, "/"), Err(HttpError::MethodNotAllowed)));
        assert_eq!(lookup(&Method::GET, "/ui/app.js").ok().unwrap().param.as_deref(), Some("app.js"));
        assert_eq!(label("/voices/abc"), "/voices/{name}");
        assert_eq!(label("/x"), "other");
    }

    #[test]
    fn paths_are_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            assert!(ROUTES[i + 1..].iter().all(|b| b.path != a.path), "{}", a.path);
        }
    }
}
