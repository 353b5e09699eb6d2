//! Expectations of `gsv synth --batch` jobs (CI smoke tests), their JUnit XML report, and the fixture rewrite.
//!
//! A job line may carry (all optional): `expect_sha256` (sha256 of the WAV file the job writes; only meaningful
//! for a seeded job on the bundle it was recorded with, `expect_bundle`), `min_s` / `max_s` (audio duration
//! bounds in seconds), `expect_error` (`true`, or text the error message must contain), `name` (the test case
//! name in reports). [`check`] turns a job's outcome into a [`Verdict`]; [`junit`] writes the report CI systems
//! display (an unmet expectation is a `<failure>`, a job that could not run an `<error>`); [`rewrite_line`]
//! puts a new `expect_sha256` (and `expect_bundle`) into a job line, keeping everything else of the line as it was.

/// What a job line expects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expect {
    pub sha256: Option<String>,
    pub bundle: Option<String>,
    pub min_s: Option<f64>,
    pub max_s: Option<f64>,
    /// `Some("")`: any error; `Some(text)`: an error whose message contains `text`.
    pub error: Option<String>,
}

impl Expect {
    /// From a job's JSON object (unknown keys are the job's business).
    pub fn from_json(v: &serde_json::Value) -> Result<Expect, String> {
        let mut e = Expect::default();
        let str_field = |k: &str| -> Result<Option<String>, String> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("{k} must be a string")),
            }
        };
        let num_field = |k: &str| -> Result<Option<f64>, String> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(n) => n.as_f64().filter(|x| x.is_finite() && *x >= 0.0).map(Some).ok_or_else(|| format!("{k} must be a number of seconds")),
            }
        };
        e.sha256 = str_field("expect_sha256")?.map(|s| s.to_ascii_lowercase());
        if let Some(s) = &e.sha256 {
            if s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err("expect_sha256 must be 64 hex digits".into());
            }
        }
        e.bundle = str_field("expect_bundle")?;
        e.min_s = num_field("min_s")?;
        e.max_s = num_field("max_s")?;
        e.error = match v.get("expect_error") {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => None,
            Some(serde_json::Value::Bool(true)) => Some(String::new()),
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => return Err("expect_error must be true or a string".into()),
        };
        Ok(e)
    }

    pub fn is_empty(&self) -> bool {
        *self == Expect::default()
    }
}

/// What a job produced.
pub enum Outcome<'a> {
    /// Audio: the sha256 of the WAV bytes, its duration, the identity of the bundle that made it.
    Audio { sha256: &'a str, seconds: f64, bundle: &'a str },
    /// The job could not run or synthesis failed (the full error chain).
    Error(&'a str),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    /// An unmet expectation.
    Failure(String),
    /// A job that could not run and did not expect to fail.
    Error(String),
}

/// The verdict of one job. With `updating` (`--update-fixtures`), a sha256 mismatch is not a failure: the
/// expectation is being rewritten.
pub fn check(e: &Expect, o: &Outcome, updating: bool) -> Verdict {
    match o {
        Outcome::Error(msg) => match &e.error {
            Some(want) if msg.contains(want.as_str()) => Verdict::Pass,
            Some(want) => Verdict::Failure(format!("expected an error containing {want:?}, got: {msg}")),
            None => Verdict::Error(msg.to_string()),
        },
        Outcome::Audio { sha256, seconds, bundle } => {
            if let Some(want) = &e.error {
                let what = if want.is_empty() { "an error".to_string() } else { format!("an error containing {want:?}") };
                return Verdict::Failure(format!("expected {what}, got {seconds:.2} s of audio"));
            }
            let mut problems = Vec::new();
            if let Some(min) = e.min_s.filter(|m| seconds < m) {
                problems.push(format!("audio is {seconds:.2} s, expected at least {min} s"));
            }
            if let Some(max) = e.max_s.filter(|m| seconds > m) {
                problems.push(format!("audio is {seconds:.2} s, expected at most {max} s"));
            }
            if let Some(want) = e.sha256.as_deref().filter(|w| *w != *sha256 && !updating) {
                let why = match &e.bundle {
                    Some(b) if b != bundle => format!(" (recorded on bundle {}, this is {}: run with --update-fixtures after checking the audio)", short(b), short(bundle)),
                    _ => " (run with --update-fixtures after an intended change)".to_string(),
                };
                problems.push(format!("audio sha256 {sha256}, expected {want}{why}"));
            }
            if problems.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Failure(problems.join("; "))
            }
        }
    }
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// `line` (one JSON object) with `expect_sha256` and `expect_bundle` set to the given values: existing values are
/// replaced in place, missing keys are added before the closing brace; everything else stays byte for byte.
pub fn rewrite_line(line: &str, sha256: &str, bundle: &str) -> String {
    let mut out = line.to_string();
    for (k, v) in [("expect_sha256", sha256), ("expect_bundle", bundle)] {
        out = set_string_key(&out, k, v);
    }
    out
}

fn set_string_key(line: &str, key: &str, value: &str) -> String {
    let quoted = format!("\"{key}\"");
    if let Some(kpos) = line.find(&quoted) {
        // "key" <ws> : <ws> "old"
        let after = &line[kpos + quoted.len()..];
        if let Some(colon) = after.find(':') {
            let rest = &after[colon + 1..];
            let ws = rest.len() - rest.trim_start().len();
            let vstart = kpos + quoted.len() + colon + 1 + ws;
            if line[vstart..].starts_with('"') {
                if let Some(close) = line[vstart + 1..].find('"') {
                    return format!("{}\"{value}\"{}", &line[..vstart], &line[vstart + 1 + close + 1..]);
                }
            }
        }
    }
    match line.rfind('}') {
        Some(end) => {
            let head = line[..end].trim_end();
            let sep = if head.ends_with('{') { "" } else { ", " };
            format!("{head}{sep}\"{key}\": \"{value}\"{}", &line[end..])
        }
        None => line.to_string(),
    }
}

/// One job in the report.
pub struct Case {
    pub name: String,
    pub line: usize,
    pub seconds: f64,
    pub verdict: Verdict,
    /// What the job printed (`ok line N: ...` or the error).
    pub output: String,
}

/// Text for XML: `&<>"'` escaped, characters XML 1.0 cannot hold replaced by U+FFFD.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// The JUnit XML report (the schema Jenkins, GitLab and GitHub reporters read): one `<testsuite>` for the batch
/// file, one `<testcase>` per job, `<failure>` for an unmet expectation, `<error>` for a job that could not run.
pub fn junit(suite: &str, file: &str, properties: &[(&str, String)], cases: &[Case], timestamp: &str) -> String {
    let failures = cases.iter().filter(|c| matches!(c.verdict, Verdict::Failure(_))).count();
    let errors = cases.iter().filter(|c| matches!(c.verdict, Verdict::Error(_))).count();
    let time: f64 = cases.iter().map(|c| c.seconds).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x += &format!(
        "<testsuites name=\"gsv synth --batch\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">\n",
        cases.len()
    );
    x += &format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{time:.3}\" timestamp=\"{}\">\n",
        xml_escape(suite),
        cases.len(),
        xml_escape(timestamp)
    );
    x += "    <properties>\n";
    for (k, v) in properties {
        x += &format!("      <property name=\"{}\" value=\"{}\"/>\n", xml_escape(k), xml_escape(v));
    }
    x += "    </properties>\n";
    let classname = format!("gsv.batch.{}", suite.trim_end_matches(".jsonl").replace(['.', ' '], "_"));
    for c in cases {
        x += &format!(
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\" file=\"{}\" line=\"{}\"",
            xml_escape(&c.name),
            xml_escape(&classname),
            c.seconds,
            xml_escape(file),
            c.line
        );
        match &c.verdict {
            Verdict::Pass => x += ">\n",
            Verdict::Failure(m) => x += &format!(">\n      <failure message=\"{}\" type=\"expectation\">{}</failure>\n", xml_escape(m), xml_escape(m)),
            Verdict::Error(m) => x += &format!(">\n      <error message=\"{}\" type=\"job\">{}</error>\n", xml_escape(m), xml_escape(m)),
        }
        x += &format!("      <system-out>{}</system-out>\n    </testcase>\n", xml_escape(&c.output));
    }
    x += "  </testsuite>\n</testsuites>\n";
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn expectations() {
        let e = Expect::from_json(&json!({"text": "x", "expect_sha256": A, "min_s": 1, "max_s": 3})).unwrap();
        let audio = |sha, s| Outcome::Audio { sha256: sha, seconds: s, bundle: "b1" };
        assert_eq!(check(&e, &audio(A, 2.0), false), Verdict::Pass);
        assert!(matches!(check(&e, &audio(B, 2.0), false), Verdict::Failure(m) if m.contains("expected aaaa")));
        assert_eq!(check(&e, &audio(B, 2.0), true), Verdict::Pass, "updating: the sha is rewritten");
        assert!(matches!(check(&e, &audio(A, 0.5), false), Verdict::Failure(m) if m.contains("at least 1")));
        assert!(matches!(check(&e, &audio(A, 3.5), true), Verdict::Failure(m) if m.contains("at most 3")), "bounds hold while updating");
        assert!(matches!(check(&e, &Outcome::Error("boom"), false), Verdict::Error(m) if m == "boom"));
        let e = Expect::from_json(&json!({"expect_error": "unknown language"})).unwrap();
        assert_eq!(check(&e, &Outcome::Error("line 3: unknown language \"xx\""), false), Verdict::Pass);
        assert!(matches!(check(&e, &Outcome::Error("other"), false), Verdict::Failure(_)));
        assert!(matches!(check(&e, &audio(A, 1.0), false), Verdict::Failure(m) if m.contains("expected an error containing")));
        assert_eq!(check(&Expect::from_json(&json!({"expect_error": true})).unwrap(), &Outcome::Error("x"), false), Verdict::Pass);
        let e = Expect::from_json(&json!({"expect_sha256": A, "expect_bundle": "other-bundle"})).unwrap();
        assert!(matches!(check(&e, &audio(B, 1.0), false), Verdict::Failure(m) if m.contains("recorded on bundle other-bundl")));
        for bad in [json!({"expect_sha256": "xyz"}), json!({"min_s": "1"}), json!({"expect_error": 3}), json!({"max_s": -1})] {
            assert!(Expect::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rewriting_keeps_the_line() {
        assert_eq!(rewrite_line(r#"{"text": "你好", "seed": 1}"#, "s1", "b1"), r#"{"text": "你好", "seed": 1, "expect_sha256": "s1", "expect_bundle": "b1"}"#);
        assert_eq!(
            rewrite_line(r#"{"expect_sha256":"old", "text": "x", "expect_bundle" : "ob", "seed": 2}  "#, "s2", "b2"),
            r#"{"expect_sha256":"s2", "text": "x", "expect_bundle" : "b2", "seed": 2}  "#
        );
        let l = rewrite_line(r#"{"text": "a \"quoted\" word", "seed": 3}"#, "s", "b");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!((v["text"].as_str(), v["expect_sha256"].as_str()), (Some("a \"quoted\" word"), Some("s")));
    }

    #[test]
    fn junit_report() {
        let cases = vec![
            Case { name: "line 1: a & b".into(), line: 1, seconds: 0.5, verdict: Verdict::Pass, output: "ok".into() },
            Case { name: "line 2".into(), line: 2, seconds: 0.25, verdict: Verdict::Failure("sha <x>".into()), output: "FAIL\u{1}".into() },
            Case { name: "line 3".into(), line: 3, seconds: 0.0, verdict: Verdict::Error("no".into()), output: String::new() },
        ];
        let x = junit("jobs.jsonl", "ci/jobs.jsonl", &[("bundle", "onnx/demo".into())], &cases, "2026-01-01T00:00:00Z");
        assert!(x.contains(r#"tests="3" failures="1" errors="1""#), "{x}");
        assert!(x.contains("line 1: a &amp; b") && x.contains("sha &lt;x&gt;") && x.contains("FAIL\u{fffd}"), "{x}");
        assert_eq!(x.matches("<testcase ").count(), 3);
        assert!(x.contains(r#"<failure message="sha &lt;x&gt;" type="expectation">"#));
    }
}
