//! The text frontend on arbitrary text: cutting (api2's methods 0-5, api_v2's cut0-cut5, the transcript's
//! preprocessing) and phonemisation (normalisation, language segments, G2P) in every language code, v1 and v2 symbol
//! tables. In: byte 0 picks the language and table, the rest is the text (UTF-8, lossy). Must not panic; phone ids
//! must be inside the symbol table.
#![no_main]

use gsv::text::{cut, FrontendData, Language, SymbolTable, SymbolVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    // bounded work per input (the server caps text at --max-text; segments are short)
    if text.chars().count() > 400 {
        return;
    }
    let fd = FrontendData::global().expect("text frontend data (.data/frontend; run scripts/setup)");
    let lang = Language::ALL[sel as usize % Language::ALL.len()];
    let version = if sel & 0x80 != 0 { SymbolVersion::V1 } else { SymbolVersion::V2 };
    let code = lang.code();
    for m in 0..=5u8 {
        let _ = cut::api2_segments(&text, code, m);
    }
    for m in ["cut0", "cut1", "cut2", "cut3", "cut4", "cut5"] {
        let _ = cut::pre_seg_text(&text, code, m);
    }
    let _ = cut::api2_prompt(&text, code);
    if let Ok(p) = gsv::text::phonemize_with(fd, &text, code, version) {
        let n = SymbolTable::builtin(version).symbols().len() as i64;
        assert!(p.phone_ids.iter().all(|&id| (0..n).contains(&id)), "phone id outside the symbol table");
    }
});
