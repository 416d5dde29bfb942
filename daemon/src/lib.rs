//! The daemon's library: everything `concierge` runs, so the binary (`main.rs`) is only its
//! command line, and the fuzz targets (`fuzz/`) reach the parsers they feed.

pub mod aircall_api;
pub mod answers;
pub mod backup_status;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod firestore;
pub mod http;
pub mod oidc;
pub mod outbound;
pub mod qdrant;
pub mod rocketchat;
pub mod verify;
pub mod webhooks;
pub mod workers;
