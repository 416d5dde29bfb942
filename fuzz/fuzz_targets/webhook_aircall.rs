//! An Aircall webhook body: parsed as the route parses it, then merged into nothing and into
//! the document the first merge made (out-of-order events meet a stored call).
#![no_main]

use concierge_daemon::http::extract::parse;
use concierge_daemon::webhooks::aircall::{Envelope, action};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = parse::<Envelope>(data) else {
        return;
    };
    let _ = envelope.idempotency_key();
    let _ = envelope.call_id();
    let _ = envelope.transcription_call_id();
    if let Ok(first) = action(&envelope, None) {
        if let Some(doc) = first.into_upsert() {
            // The merge of the same event into what it made changes nothing harmful.
            let _ = action(&envelope, Some(&doc));
        }
    }
});
