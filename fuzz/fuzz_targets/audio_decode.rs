//! Reference decoding on arbitrary bytes (WAV through hound, every container and codec symphonia and libopus read),
//! then the 16 kHz HuBERT input and the 32 kHz signal for what decodes. In: byte 0 picks the extension hint, the rest
//! is the file. Must not panic, and no decode may return more than the 60 s cap.
//!
//! Third-party demuxers do panic on some inputs (found here: symphonia-format-mkv 0.5.5 `read_vint` subtracts with
//! overflow on a truncated EBML size). gsv catches those inside `decode_bytes` (`decode_symphonia_guarded`: the file
//! is refused as malformed, a 400), so a caught panic is not a crash: libfuzzer-sys's panic hook aborts on every
//! panic, caught or not, and is replaced here by a silent one. A panic that escapes `decode_bytes` still aborts
//! (libfuzzer-sys wraps the target in `catch_unwind` and aborts on an unwind).
#![no_main]

use gsv::reference::{decode_bytes, hubert_input, max_decode_frames, vits_input};
use libfuzzer_sys::fuzz_target;

const HINTS: [Option<&str>; 10] = [None, Some("wav"), Some("mp3"), Some("flac"), Some("ogg"), Some("m4a"), Some("webm"), Some("opus"), Some("aac"), Some("mka")];

static QUIET_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    QUIET_HOOK.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Some((&sel, bytes)) = data.split_first() else { return };
    let hint = HINTS[sel as usize % HINTS.len()];
    if let Ok(a) = decode_bytes(bytes, hint) {
        assert!(a.sample_rate > 0 && !a.samples.is_empty());
        assert!(a.samples.len() <= max_decode_frames(a.sample_rate), "{} frames at {} Hz past the cap", a.samples.len(), a.sample_rate);
        if a.duration_secs() <= 11.0 {
            let _ = hubert_input(&a);
            let _ = vits_input(&a, 32_000);
        }
    }
});
