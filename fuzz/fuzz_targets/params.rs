//! Request parameters as the server reads them: a query string or a JSON body, then every typed getter on every key
//! (strings, numbers, integers, lists, booleans, api_v2's streaming_mode) and the parsers of language codes and cut
//! methods on every string value. In: byte 0 picks query or JSON. Must not panic.
#![no_main]

use gsv::engine::{Api2Cut, V2Cut};
use gsv::http::params::Params;
use gsv::text::Language;
use libfuzzer_sys::fuzz_target;

const KEYS: [&str; 12] = ["text", "text_language", "refer_wav_path", "top_k", "top_p", "temperature", "speed", "seed", "inp_refs", "streaming_mode", "stream", "cut_punc"];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let p = if sel & 1 == 0 {
        Params::from_query(Some(&String::from_utf8_lossy(rest)))
    } else {
        match Params::from_json(rest) {
            Ok(p) => p,
            Err(_) => return,
        }
    };
    let keys: Vec<String> = p.0.keys().cloned().chain(KEYS.iter().map(|k| k.to_string())).collect();
    for k in &keys {
        let _ = p.nonempty(k);
        let _ = p.f64(k);
        let _ = p.i64(k);
        let _ = p.list(k);
        let _ = p.bool(k);
        let _ = p.streaming_mode(k);
        if let Some(s) = p.str(k) {
            let _ = Language::from_api(&s);
            let _ = Language::from_code(&s);
            let _ = Api2Cut::from_punctuation(&s);
            let _ = V2Cut::parse(&s);
        }
        if let Ok(Some(n)) = p.i64(k) {
            let _ = Api2Cut::from_number(n);
        }
    }
});
