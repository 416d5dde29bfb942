//! `concierge-sidecar`'s library: configuration, the S3 client and rustic_core backend, the
//! backup repository, status records, alerts, and the daemon's checkpoint API.

pub mod alert;
pub mod config;
pub mod daemon_client;
pub mod progress;
pub mod repository;
pub mod run;
pub mod s3;
pub mod status;
pub mod time;
