//! Keeps the OIDC issuer's keys fresh: fetched right after the start (the start never waits
//! for the issuer), again every `auth.oidc_refresh_seconds`, and every
//! `auth.oidc_min_refresh_seconds` while none could be fetched, so an issuer that was down at
//! start is picked up by itself. Ends when the daemon begins to shut down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Workers;
use crate::oidc::Oidc;

/// How often the loop looks at the clock (and at the shutdown flag).
const TICK: Duration = Duration::from_millis(500);

pub fn keep_fresh(workers: &Workers, oidc: Arc<Oidc>, shutting_down: Arc<AtomicBool>) {
    let tracked = workers.clone();
    workers.spawn("oidc keys", async move {
        while !shutting_down.load(Ordering::Acquire) {
            let missing = oidc.status().keys == 0;
            if (missing || oidc.refresh_due()) && oidc.may_refresh() {
                let o = oidc.clone();
                tracked
                    .blocking("oidc keys fetch", move || {
                        let _ = o.refresh();
                    })
                    .await;
            }
            tokio::time::sleep(TICK).await;
        }
    });
}
