//! The shape of a change-log consumer and the one driver that delivers batches to it.
//!
//! A consumer reads the change log from its own cursor (`cursors` column family) and applies
//! entries somewhere: the local indexes today ([`super::apply::Indexes`]); the Firestore and
//! Qdrant sync consumers take the same shape. Applying must be idempotent (after a crash the
//! same entries come again) and reconcile with the stored document rather than replay the
//! entry, so an entry delivered twice or late changes nothing.
//!
//! [`deliver`] owns what every consumer needs around that: a failing batch is retried with
//! backoff ([`concierge_infra::retry`], `max_attempts`, `retry_base`, `retry_cap`); if it keeps
//! failing, its entries are tried one by one and those that keep failing on their own go to the
//! dead letters (with the consumer's name, the attempts and the last error) so one bad
//! document never stops the rest. Stopping errors (the engine closing, a poisoned store, a data
//! disk short of space) end the delivery at once: the entries stay in the log for later.

use std::time::Duration;

use concierge_infra::retry::{self, Attempt, Backoff, Policy};

use crate::changelog::{self, ChangeEntry, DeadLetter};
use crate::error::{Error, Result};
use crate::shared::Shared;

/// A reader of the change log that applies its entries somewhere.
pub(crate) trait Consumer {
    /// Its name in the `cursors` column family and in dead letters.
    fn name(&self) -> &'static str;

    /// Applies a batch (idempotently: it may come again after a crash).
    fn apply(&mut self, entries: &[ChangeEntry]) -> Result<()>;

    /// `entry` went to the dead letters: move past it.
    fn skipped(&mut self, entry: &ChangeEntry);
}

/// How a run of attempts ended without success.
enum Failure {
    /// Stop delivering: the engine is closing or the store is poisoned.
    Stop(Error),
    /// The attempts are spent; the last error.
    Exhausted(Error),
}

/// Delivers `entries` to `consumer`: retries, then one by one with dead letters (module doc).
pub(crate) fn deliver(
    consumer: &mut impl Consumer,
    shared: &Shared,
    entries: &[ChangeEntry],
) -> Result<()> {
    let config = &shared.config;
    let policy = Policy::new(
        config.max_attempts,
        Backoff::new(config.retry_base, config.retry_cap),
    );
    match attempts(consumer, shared, policy, entries) {
        Ok(()) => return Ok(()),
        Err(Failure::Stop(e)) => return Err(e),
        Err(Failure::Exhausted(_)) => {}
    }
    // Find the entries that fail on their own.
    for entry in entries {
        match attempts(consumer, shared, policy, std::slice::from_ref(entry)) {
            Ok(()) => {}
            Err(Failure::Stop(e)) => return Err(e),
            Err(Failure::Exhausted(error)) => {
                tracing::error!(consumer = consumer.name(), seq = entry.seq, id = %entry.id, %error, "giving up on a change-log entry: moved to the dead letters");
                let letter = DeadLetter {
                    consumer: consumer.name().to_owned(),
                    entry: entry.clone(),
                    attempts: policy.attempts,
                    error: error.to_string(),
                    at_ms: concierge_infra::utc::now_ms(),
                };
                changelog::put_deadletter(&shared.store, &letter)?;
                consumer.skipped(entry);
            }
        }
    }
    Ok(())
}

fn attempts(
    consumer: &mut impl Consumer,
    shared: &Shared,
    policy: Policy,
    entries: &[ChangeEntry],
) -> std::result::Result<(), Failure> {
    policy.run(
        |attempt| match consumer.apply(entries) {
            Ok(()) => Attempt::Done(()),
            Err(e @ (Error::Poisoned { .. } | Error::Closed | Error::StorageFull { .. })) => {
                Attempt::Fatal(Failure::Stop(e))
            }
            Err(e) => {
                tracing::warn!(consumer = consumer.name(), error = %e, attempt, entries = entries.len(), "applying change-log entries failed; retrying");
                shared.record_error(Some(e.to_string()));
                Attempt::Retry {
                    error: Failure::Exhausted(e),
                    after: None,
                }
            }
        },
        |wait: Duration| {
            if retry::sleep_unless(wait, &|| shared.stopping()) {
                Ok(())
            } else {
                Err(Failure::Stop(Error::Closed))
            }
        },
    )
}
