//! A `POST /v1/documents` body: one document or a batch, checked as the route and the engine
//! check it. Whatever is accepted has ids of three parts and source and kind taken from them.
#![no_main]

use concierge_daemon::http::documents::upsert_request;
use concierge_engine::{DocumentId, Operation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = upsert_request(data) else {
        return;
    };
    for op in &request.operations {
        if let Operation::Upsert(doc) = op {
            let id = DocumentId::parse(&doc.id).expect("an accepted id parses");
            assert_eq!(id.source, doc.source);
            assert_eq!(id.kind, doc.kind);
        }
    }
});
