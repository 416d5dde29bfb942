//! The models crate's integration tests, one binary: real weights (fetched by `models/fetch.sh`).

mod embedder;
mod generators;
