//! Request parameters from a query string or a JSON body, read the way FastAPI reads them.
//!
//! Query strings: `+` is a space, `%XX` escapes are decoded, a repeated key keeps its last value (list
//! parameters such as `inp_refs` keep all of them). JSON bodies are parsed whatever the Content-Type and must
//! be an object. Typed getters accept a JSON number or a string holding one (query values are strings).

use serde_json::{Map, Value};

use super::error::HttpError;
use crate::text::Language;

/// Keys whose repeated query values are collected into a list.
const LIST_KEYS: &[&str] = &["inp_refs", "aux_ref_audio_paths"];

#[derive(Debug, Default, Clone)]
pub struct Params(pub Map<String, Value>);

impl Params {
    pub fn from_query(q: Option<&str>) -> Params {
        let mut m = Map::new();
        for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
            let k = k.into_owned();
            let v = Value::String(v.into_owned());
            if LIST_KEYS.contains(&k.as_str()) {
                match m.get_mut(&k) {
                    Some(Value::Array(a)) => a.push(v),
                    _ => {
                        m.insert(k, Value::Array(vec![v]));
                    }
                }
            } else {
                m.insert(k, v);
            }
        }
        Params(m)
    }

    pub fn from_json(body: &[u8]) -> Result<Params, HttpError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(Params(m)),
            Ok(_) => Err(HttpError::BadRequest("请求体必须是 JSON 对象 / the body must be a JSON object".into())),
            Err(e) => Err(HttpError::BadRequest(format!("请求体不是合法的 JSON / invalid JSON body: {e}"))),
        }
    }

    /// A string value (numbers and booleans as their text); missing or null -> None.
    pub fn str(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A non-empty string value.
    pub fn nonempty(&self, key: &str) -> Option<String> {
        self.str(key).filter(|s| !s.is_empty())
    }

    pub fn f64(&self, key: &str) -> Result<Option<f64>, HttpError> {
        let bad = || HttpError::BadRequest(format!("参数 {key} 必须是数字 / {key} must be a number"));
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_f64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse::<f64>().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    pub fn i64(&self, key: &str) -> Result<Option<i64>, HttpError> {
        let bad = || HttpError::BadRequest(format!("参数 {key} 必须是整数 / {key} must be an integer"));
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A list of strings: a JSON array of strings, a repeated query key, or one string.
    pub fn list(&self, key: &str) -> Result<Vec<String>, HttpError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::String(s)) if s.is_empty() => Ok(vec![]),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(a)) => a
                .iter()
                .filter(|v| !matches!(v, Value::String(s) if s.is_empty()))
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(HttpError::BadRequest(format!("{key} must be a list of paths"))),
                })
                .collect(),
            Some(_) => Err(HttpError::BadRequest(format!("{key} must be a list of paths"))),
        }
    }

    /// api_v2's `streaming_mode`: false/0 = off, true/1 = per fragment, 2, 3.
    pub fn streaming_mode(&self, key: &str) -> Result<u8, HttpError> {
        let bad = || HttpError::BadRequest("the value of streaming_mode must be 0, 1, 2, 3(int) or true/false(bool)".into());
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(0),
            Some(Value::Bool(b)) => Ok(*b as u8),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v @ 0..=3) => Ok(v as u8),
                _ => Err(bad()),
            },
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "false" | "0" | "" => Ok(0),
                "true" | "1" => Ok(1),
                "2" => Ok(2),
                "3" => Ok(3),
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
        }
    }

    /// A boolean (true/false, 1/0, yes/no).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, HttpError> {
        let bad = || HttpError::BadRequest(format!("{key} must be true or false"));
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) => Ok(Some(n.as_f64().unwrap_or(0.0) != 0.0)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Some(true)),
                "false" | "0" | "no" | "off" | "" => Ok(Some(false)),
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
        }
    }
}

/// api_v2's accepted `text_lang` / `prompt_lang` codes by model version.
pub fn v2_languages(version: &str) -> &'static [Language] {
    use Language::*;
    if version == "v1" {
        &[Auto, En, Zh, Ja, AllZh, AllJa]
    } else {
        &[Auto, AutoYue, En, Zh, Ja, Yue, Ko, AllZh, AllJa, AllYue, AllKo]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let p = Params::from_query(Some("text=a+b%E4%BD%A0&text=last&inp_refs=x&inp_refs=y&top_k=3"));
        assert_eq!(p.str("text").as_deref(), Some("last"));
        assert_eq!(p.list("inp_refs").unwrap(), vec!["x", "y"]);
        assert_eq!(p.i64("top_k").unwrap(), Some(3));
        assert_eq!(Params::from_query(Some("text=a+b%E4%BD%A0")).str("text").as_deref(), Some("a b你"));
    }

    #[test]
    fn json_must_be_object() {
        assert!(Params::from_json(b"[1]").is_err());
        assert!(Params::from_json(b"{").is_err());
        let p = Params::from_json(br#"{"speed": "1.5", "streaming_mode": true}"#).unwrap();
        assert_eq!(p.f64("speed").unwrap(), Some(1.5));
        assert_eq!(p.streaming_mode("streaming_mode").unwrap(), 1);
        assert!(Params::from_json(br#"{"streaming_mode": 7}"#).unwrap().streaming_mode("streaming_mode").is_err());
    }

    #[test]
    fn languages_and_cuts() {
        use crate::engine::Api2Cut;
        assert_eq!(Language::from_api("ZH"), Some(Language::Zh));
        assert_eq!(Language::from_api("中文"), Some(Language::AllZh));
        assert_eq!(Language::from_api("fr"), None);
        assert!(v2_languages("v1").contains(&Language::AllJa) && !v2_languages("v1").contains(&Language::Ko));
        assert_eq!(Api2Cut::from_punctuation("。"), Some(Api2Cut::ChinesePeriod));
        assert_eq!(Api2Cut::from_punctuation(",。"), Some(Api2Cut::Punctuation));
        assert_eq!(Api2Cut::from_punctuation(""), None);
    }
}
