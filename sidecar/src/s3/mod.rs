//! S3-compatible object storage (Cloudflare R2, AWS S3, moto): request signing, a small client,
//! and the rustic_core backend that stores a restic repository in a bucket.

pub mod backend;
pub mod client;
pub mod sigv4;
mod uploads;
mod xml;
