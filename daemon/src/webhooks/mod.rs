//! Webhook payloads turned into documents. Each source's module verifies nothing (the HTTP layer
//! does) and does no I/O: it maps a payload, plus the document already stored for the same
//! entity, to the merged document to upsert. Merging is what makes unordered, repeated
//! deliveries safe: fields carry the time of the event that set them, an older event only
//! fills fields that are still missing, and `updated_at` never goes backwards.

pub mod aircall;
pub mod guesty;
pub mod svix;

use serde_json::{Map, Value};

/// What a webhook asks the store to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Upsert this document (already merged with the stored one).
    Upsert(concierge_engine::Document),
    /// A known source but an event we do not index: keep the raw body only.
    KeepRaw { reason: String },
}

impl Action {
    /// The document to write, for [`concierge_engine::Engine::update`] (`None`: keep raw).
    pub fn into_upsert(self) -> Option<concierge_engine::Document> {
        match self {
            Action::Upsert(doc) => Some(doc),
            Action::KeepRaw { reason } => {
                tracing::info!(%reason, "webhook event kept raw");
                None
            }
        }
    }
}

/// Merges `patch` into `stored` metadata: a patch at least as new as the stored fields
/// overwrites them; an older one only fills missing fields. `clock` names the metadata key that
/// holds the time (ms) of the fields' latest event.
pub fn merge_fields(
    stored: &Map<String, Value>,
    patch: Map<String, Value>,
    patch_ms: i64,
    clock: &str,
) -> Map<String, Value> {
    let stored_ms = stored
        .get(clock)
        .and_then(Value::as_i64)
        .unwrap_or(i64::MIN);
    let mut out = stored.clone();
    let newer = patch_ms >= stored_ms;
    for (k, v) in patch {
        if v.is_null() {
            continue;
        }
        if newer || !out.contains_key(&k) {
            out.insert(k, v);
        }
    }
    if newer {
        out.insert(clock.to_owned(), Value::from(patch_ms));
    }
    out
}

/// `2026-11-21T18:02:10.000Z` (or with an offset) as milliseconds since the epoch.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', ' '])?;
    let mut d = date.split('-');
    let (y, mo, da): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (time, offset_min) =
        if let Some(t) = rest.strip_suffix('Z').or_else(|| rest.strip_suffix('z')) {
            (t, 0)
        } else {
            let at = rest.rfind(['+', '-'])?;
            let (t, off) = rest.split_at(at);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let (oh, om) = off[1..]
                .split_once(':')
                .unwrap_or((&off[1..3.min(off.len())], "0"));
            (
                t,
                sign * (oh.parse::<i64>().ok()? * 60 + om.parse::<i64>().ok()?),
            )
        };
    let mut t = time.split(':');
    let (h, mi): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let sec_text = t.next().unwrap_or("0");
    let (sec, frac) = sec_text.split_once('.').unwrap_or((sec_text, ""));
    let sec: i64 = sec.parse().ok()?;
    let ms: i64 = if frac.is_empty() {
        0
    } else {
        format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3_600 + mi * 60 + sec - offset_min * 60) * 1_000) + ms)
}

/// Unix seconds as an ISO date-time (UTC) for text.
pub fn iso_from_secs(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60
    )
}

/// A string field, if present and non-empty.
pub fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rfc3339_parses_with_fractions_and_offsets() {
        assert_eq!(
            parse_rfc3339_ms("2026-01-01T00:00:00Z"),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-21T18:02:10.000Z"),
            Some(1_795_284_130_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-01-01T01:00:00+01:00"),
            Some(1_767_225_600_000)
        );
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.5Z"), Some(500));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        assert_eq!(parse_rfc3339_ms("2026-13-01T00:00:00Z"), None);
        assert_eq!(iso_from_secs(1_767_225_700), "2026-01-01 00:01 UTC");
    }

    #[test]
    fn an_older_patch_only_fills_missing_fields() {
        let stored = json!({"status": "canceled", "t": 200})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let older = json!({"status": "confirmed", "guest": "Ana"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let merged = merge_fields(&stored, older, 100, "t");
        assert_eq!(merged["status"], "canceled");
        assert_eq!(merged["guest"], "Ana");
        assert_eq!(merged["t"], 200);
        let newer = json!({"status": "checked_in"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let merged = merge_fields(&merged, newer, 300, "t");
        assert_eq!(
            (merged["status"].as_str(), merged["t"].as_i64()),
            (Some("checked_in"), Some(300))
        );
    }
}
