//! The black-box tests, one binary: each module starts the real binaries (`concierge`,
//! `concierge-sidecar`) on ephemeral ports through the harness in `concierge-tests` (`src/lib.rs`).
//! One binary instead of one per file: the harness and its dependencies are linked once.

mod answers;
mod api;
mod backup;
mod cli;
mod connections;
mod console;
mod contract;
mod deploy;
mod disk_full;
mod ephemeral;
mod fetch;
mod firestore;
mod ingest;
mod llm;
mod oidc;
mod operators;
mod qdrant;
mod retention;
mod secrets;
mod serve;
mod swarm;
mod transcripts;
mod webhooks;
