//! A Guesty webhook body after its signature: the target document, the merge into nothing and
//! into what it made; and the Svix check over the same bytes.
#![no_main]

use concierge_daemon::http::extract::parse;
use concierge_daemon::webhooks::{guesty, svix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = b"concierge-fuzz-secret-32-bytes!!";
    let _ = svix::verify(
        key,
        Some("msg_1"),
        Some("1700000000"),
        Some("v1,AAAA"),
        data,
        1_700_000_000,
    );
    let Ok(payload) = parse::<serde_json::Value>(data) else {
        return;
    };
    let _ = guesty::target(&payload);
    if let Ok(first) = guesty::action(&payload, None, 1_700_000_000_000) {
        if let Some(doc) = first.into_upsert() {
            let _ = guesty::action(&payload, Some(&doc), 1_700_000_000_001);
        }
    }
});
