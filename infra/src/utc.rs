//! UTC time for the programs' edges, on `jiff`: RFC 3339 instants as APIs send them, epoch
//! seconds and milliseconds, and the text forms documents and S3 signing need.
//! Nothing here knows time zones other than UTC (offsets in parsed text are applied).

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::Timestamp;

/// Milliseconds since the epoch of an RFC 3339 instant (`2026-11-21T18:02:10.000Z`,
/// `2026-01-01T01:00:00+01:00`, a space instead of `T`); `None` if it is not a valid one
/// (an impossible date such as `2026-02-31` included).
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    text.trim()
        .parse::<Timestamp>()
        .ok()
        .map(Timestamp::as_millisecond)
}

/// Seconds since the epoch of an RFC 3339 instant (fractions dropped); `None` if invalid.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    text.trim()
        .parse::<Timestamp>()
        .ok()
        .map(Timestamp::as_second)
}

/// `2026-12-01T02:00:00Z` for epoch seconds (clamped to the years jiff supports).
pub fn rfc3339(secs: i64) -> String {
    format_secs(secs, "%Y-%m-%dT%H:%M:%SZ")
}

/// `2026-12-01T02:00:00.123Z` for epoch milliseconds (Firestore's timestamps).
pub fn rfc3339_ms(ms: i64) -> String {
    let t = Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    });
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `2026-01-01 00:01 UTC`, the form people read in document text.
pub fn minutes_text(secs: i64) -> String {
    format_secs(secs, "%Y-%m-%d %H:%M UTC")
}

/// `20261201T020000Z` (ISO 8601 basic, as AWS SigV4 wants it).
pub fn basic_iso(secs: i64) -> String {
    format_secs(secs, "%Y%m%dT%H%M%SZ")
}

fn format_secs(secs: i64, format: &str) -> String {
    timestamp(secs).strftime(format).to_string()
}

fn timestamp(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(if secs < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_with_fractions_and_offsets_and_refuses_impossible_dates() {
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
        assert_eq!(
            parse_rfc3339("2026-12-01T02:00:00+00:00"),
            Some(1_796_090_400)
        );
        assert_eq!(parse_rfc3339("2026-12-01 02:00:00Z"), Some(1_796_090_400));
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-31T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn instants_format_in_utc() {
        assert_eq!(rfc3339(1_796_090_400), "2026-12-01T02:00:00Z");
        assert_eq!(minutes_text(1_767_225_700), "2026-01-01 00:01 UTC");
        assert_eq!(basic_iso(1_796_090_400), "20261201T020000Z");
        assert_eq!(parse_rfc3339(&rfc3339(-86_400)), Some(-86_400));
    }
}
