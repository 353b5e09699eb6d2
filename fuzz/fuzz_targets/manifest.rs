//! Bundle manifests on arbitrary bytes: serde parsing, then every self-check of `Manifest::validate`, then the graph
//! contracts of a manifest that passed. Must not panic (a bad bundle is an error at load, never a crash).
#![no_main]

use gsv::bundle::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = serde_json::from_slice::<Manifest>(data) {
        if m.validate().is_ok() {
            let _ = gsv::engine::graph_contracts(&m);
        }
    }
});
