//! The page for people: `web/index.html`, `web/app.js`, `web/style.css`, compiled into the binary (no CDN, works
//! offline). `GET /` answers it to a browser (a request that accepts `text/html` and has no query string); every
//! other request to `/` is api2's (contract unchanged). `GET /ui/{file}` serves its two other files.

use hyper::{Method, Request, Response};

use super::error::HttpError;
use super::Body;

const INDEX: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/style.css");

/// Same-origin only: the page loads nothing from elsewhere and plays audio it built itself (blob:, MediaStream).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// A browser asking for a page: `GET /` with no query string and `text/html` in `Accept`. api2 clients send a
/// query (GET) or a body (POST) and do not ask for HTML.
pub(super) fn wants_page<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET
        && req.uri().path() == "/"
        && req.uri().query().is_none_or(str::is_empty)
        && req.headers().get_all("accept").iter().filter_map(|v| v.to_str().ok()).any(|v| v.split(',').any(|t| t.trim().split(';').next() == Some("text/html")))
}

fn file(content_type: &str, body: &'static str) -> Response<Body> {
    let mut r = super::full(200, content_type, body);
    let h = r.headers_mut();
    h.insert("cache-control", hyper::header::HeaderValue::from_static("no-cache"));
    h.insert("x-content-type-options", hyper::header::HeaderValue::from_static("nosniff"));
    h.insert("content-security-policy", hyper::header::HeaderValue::from_static(CSP));
    r
}

pub(super) fn index() -> Response<Body> {
    file("text/html; charset=utf-8", INDEX)
}

pub(super) fn asset(name: &str) -> Result<Response<Body>, HttpError> {
    match name {
        "app.js" => Ok(file("text/javascript; charset=utf-8", APP_JS)),
        "style.css" => Ok(file("text/css; charset=utf-8", STYLE)),
        "index.html" => Ok(index()),
        _ => Err(HttpError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, accept: Option<&str>, method: Method) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(a) = accept {
            b = b.header("accept", a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_browsers_without_a_query_get_the_page() {
        let html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(wants_page(&req("/", Some(html), Method::GET)));
        assert!(wants_page(&req("/?", Some("text/html"), Method::GET)));
        // api2 clients: a query, a POST, no Accept, */* (curl, requests), JSON
        assert!(!wants_page(&req("/?text=hi&text_language=zh", Some(html), Method::GET)));
        assert!(!wants_page(&req("/", Some(html), Method::POST)));
        assert!(!wants_page(&req("/", None, Method::GET)));
        assert!(!wants_page(&req("/", Some("*/*"), Method::GET)));
        assert!(!wants_page(&req("/", Some("application/json"), Method::GET)));
        assert!(!wants_page(&req("/tts", Some(html), Method::GET)));
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        for src in INDEX.split("src=\"").skip(1).chain(INDEX.split("href=\"").skip(1)) {
            let url = src.split('"').next().unwrap_or("");
            assert!(url.starts_with('/') || url.starts_with("data:"), "{url} is not same-origin");
            assert!(!url.starts_with("//"), "{url}");
        }
        assert!(!APP_JS.contains("http://") && !APP_JS.contains("https://"), "app.js reaches out");
    }
}
