//! Test-only fault injection, compiled into debug builds only (the binary `cargo test` builds and the HTTP
//! integration tests run); in release builds every hook is an empty function.
//!
//! * `GSV_TEST_PANIC_TEXT=MARK`: a job whose text contains `MARK` panics inside its worker (the supervision test).
//! * `GSV_TEST_FAIL_REBUILD=1`: once any job has panicked, every later engine load in the pool fails, so the
//!   worker stays broken (the "no worker can serve" test).
//! * `GSV_TEST_STALL_TEXT=MARK` (+ `GSV_TEST_STALL_MS`, default 60000): a job whose text contains `MARK` blocks its
//!   worker that long without looking at its cancel flag — a call that does not return (the wedged-worker tests).

#[cfg(debug_assertions)]
mod imp {
    use std::sync::atomic::{AtomicBool, Ordering};

    static PANICKED: AtomicBool = AtomicBool::new(false);

    fn var(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    pub fn before_job(text: &str) {
        if let Some(mark) = var("GSV_TEST_STALL_TEXT") {
            if text.contains(&mark) {
                let ms = var("GSV_TEST_STALL_MS").and_then(|v| v.parse().ok()).unwrap_or(60_000u64);
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
        }
        if let Some(mark) = var("GSV_TEST_PANIC_TEXT") {
            if text.contains(&mark) {
                PANICKED.store(true, Ordering::SeqCst);
                panic!("test fault: job text contains {mark:?}");
            }
        }
    }

    pub fn load_refused() -> bool {
        PANICKED.load(Ordering::SeqCst) && var("GSV_TEST_FAIL_REBUILD").is_some()
    }
}

#[cfg(not(debug_assertions))]
mod imp {
    #[inline(always)]
    pub fn before_job(_text: &str) {}
    #[inline(always)]
    pub fn load_refused() -> bool {
        false
    }
}

/// Called in the worker, inside the job's `catch_unwind`, before the engine runs.
pub fn before_job(text: &str) {
    imp::before_job(text)
}

/// Whether the pool must fail this engine load (debug builds, `GSV_TEST_FAIL_REBUILD`).
pub fn load_refused() -> bool {
    imp::load_refused()
}
