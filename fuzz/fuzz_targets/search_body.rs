//! A `POST /v1/search` body: parsed with the fusion defaults, validated as the engine does,
//! and its filter translated into the Qdrant filter a `qdrant` backend sends.
#![no_main]

use concierge_daemon::http::search::search_request;
use concierge_daemon::qdrant::search::qdrant_filter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((request, _)) = search_request(data, concierge_engine::Fusion::default()) else {
        return;
    };
    let Ok(terms) = request.validate() else {
        return;
    };
    let translated = qdrant_filter(&request.filter, &terms);
    let must = translated["must"].as_array().map_or(0, Vec::len);
    let expected = usize::from(!request.filter.source.is_empty())
        + usize::from(!request.filter.kind.is_empty())
        + terms.len()
        + usize::from(request.filter.updated_at.is_some());
    assert_eq!(must, expected, "every condition translated, none invented");
});
