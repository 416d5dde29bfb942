//! Aircall transcripts, after the acknowledgement: `transcription.created` is kept raw and
//! answered at once; this worker fetches the transcript from the Aircall API and merges it into
//! the call's document (one [`Engine::update`]). At start it resumes every kept event whose call
//! still has no transcript, so an acknowledged event is never lost to a restart or an API outage.

use std::sync::Arc;
use std::time::Duration;

use concierge_engine::{Engine, Updated};

use super::Workers;
use crate::aircall_api::AircallApi;
use crate::config::Aircall as AircallConfig;
use crate::webhooks::aircall;

/// Fetches transcripts in the background.
#[derive(Debug, Clone)]
pub struct TranscriptFetcher {
    engine: Arc<Engine>,
    api: Option<AircallApi>,
    workers: Workers,
    /// First retry delay (doubling, or the API's `Retry-After`).
    retry_base: Duration,
}

impl TranscriptFetcher {
    /// A fetcher for the configured API; without `aircall.api_id`/`api_token` it only logs.
    pub fn new(engine: Arc<Engine>, aircall: &AircallConfig, workers: Workers) -> Self {
        let api = match (&aircall.api_id, &aircall.api_token) {
            (Some(api_id), Some(api_token)) => Some(AircallApi {
                base: aircall.api_base.clone(),
                api_id: api_id.clone(),
                api_token: api_token.clone(),
            }),
            _ => None,
        };
        TranscriptFetcher {
            engine,
            api,
            workers,
            retry_base: Duration::from_millis(500),
        }
    }

    /// Starts fetching the transcript of `call_id` (announced at `event_ms`). A failure is
    /// logged; the kept event makes the next start try again.
    pub fn fetch(&self, call_id: i64, event_ms: i64) {
        let Some(api) = self.api.clone() else {
            tracing::warn!(
                call_id,
                "a transcript is ready but aircall.api_id / aircall.api_token are not configured; the event is kept"
            );
            return;
        };
        let this = self.clone();
        self.workers.spawn("transcript", async move {
            let stop = this.workers.cancelled_token();
            let base = this.retry_base;
            let fetched = this
                .workers
                .blocking("transcript fetch", move || {
                    api.fetch(call_id, base, &|| stop.is_cancelled())
                })
                .await;
            let transcription = match fetched {
                Some(Ok(t)) => t,
                Some(Err(e)) => {
                    tracing::error!(call_id, error = %e, "giving up on an Aircall transcript until the next start");
                    return;
                }
                None => return,
            };
            let engine = this.engine.clone();
            let stored = this
                .workers
                .blocking("transcript merge", move || {
                    engine.update(&aircall::call_doc_id(call_id), None, |stored| {
                        aircall::with_transcript(call_id, stored, &transcription, event_ms)
                            .map(Some)
                    })
                })
                .await;
            match stored {
                Some(Ok(Ok(Updated::Written(receipt)))) => {
                    tracing::info!(call_id, seq = receipt.seq, "transcript added to its call");
                }
                Some(Ok(Ok(Updated::Kept))) | None => {}
                Some(Ok(Err(reason))) => {
                    tracing::error!(call_id, %reason, "the transcript could not be merged")
                }
                Some(Err(e)) => tracing::error!(call_id, error = %e, "storing a transcript failed"),
            }
        });
    }

    /// At start: fetches the transcripts of kept `transcription.created` events whose call has
    /// none yet (the daemon stopped before the fetch ended, or the API failed).
    pub fn resume(&self) {
        let this = self.clone();
        self.workers.spawn("transcript resume", async move {
            let engine = this.engine.clone();
            let pending = this
                .workers
                .blocking("transcript scan", move || pending(&engine))
                .await;
            match pending {
                Some(Ok(list)) => {
                    for (call_id, event_ms) in list {
                        this.fetch(call_id, event_ms);
                    }
                }
                Some(Err(e)) => tracing::error!(error = %e, "scanning kept Aircall events"),
                None => {}
            }
        });
    }
}

/// Kept transcription events whose call has no transcript: `(call id, event ms)`.
fn pending(engine: &Engine) -> concierge_engine::Result<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    for (_, body) in engine.raw_events("aircall")? {
        let Ok(envelope) = serde_json::from_slice::<aircall::Envelope>(&body) else {
            continue;
        };
        if let Some(call_id) = envelope.transcription_call_id() {
            let has = engine
                .get(&aircall::call_doc_id(call_id))?
                .is_some_and(|d| d.metadata.contains_key("transcript_ms"));
            if !has {
                out.push((call_id, envelope.timestamp.saturating_mul(1_000)));
            }
        }
    }
    Ok(out)
}
