//! candle's own thread pool for element-wise work, which an embedder cannot configure.
//!
//! candle 0.11 runs large element-wise operations on a global "barrier pool" sized by the
//! `CANDLE_NUM_THREADS` environment variable (default: every core), read once, beside whatever
//! pool the caller computes on. Measured: a "1 thread" embedder used 1.35 cores. Binaries call
//! [`confine_candle_elementwise_threads`] first thing in `main`, so that work stays on the
//! embedder's threads and `EmbedderConfig::threads` is the whole story.

/// Sets `CANDLE_NUM_THREADS=1` unless the operator set it.
///
/// # Safety
/// Changes the process environment: call it before any other thread exists (first thing in
/// `main`), as `std::env::set_var` requires.
#[allow(unsafe_code)]
pub unsafe fn confine_candle_elementwise_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: the caller guarantees no other thread exists yet.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}
