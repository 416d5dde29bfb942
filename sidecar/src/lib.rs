//! `concierge-sidecar`'s library: configuration, the S3 client and rustic_core backend, the
//! backup repository, status records and run reports, alerts, the daemon's admin API, the
//! Hetzner client and the temporary backup server, cron expressions and the scheduler.

pub mod alert;
pub mod config;
pub mod cron;
pub mod daemon_client;
pub mod ephemeral;
pub mod hetzner;
pub mod progress;
pub mod reports;
pub mod repository;
pub mod run;
pub mod s3;
pub mod schedule;
pub mod status;
pub mod time;
