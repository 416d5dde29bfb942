//! Cron expressions, evaluated in UTC, on `croner`: `minute hour day-of-month month
//! day-of-week` (Vixie cron's five fields), optionally with a sixth field in front for seconds.
//! Each field takes `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`; months and
//! weekdays take their English names (`jan`, `mon`); Sunday is 0 or 7. The macros `@yearly`,
//! `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly` are accepted. As in Vixie cron,
//! when both the day of the month and the day of the week are restricted, a day matching either
//! runs. An expression that never matches (`0 0 30 2 *`) is refused when it is parsed.

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};

/// A parsed expression.
#[derive(Debug, Clone)]
pub struct Cron {
    text: String,
    cron: croner::Cron,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Cron {}

const SHAPE: &str =
    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first)";

impl Cron {
    /// Parses an expression; refuses one that never matches (`0 0 30 2 *`).
    pub fn parse(text: &str) -> Result<Cron, String> {
        let trimmed = text.trim();
        let expanded = if trimmed.eq_ignore_ascii_case("@midnight") {
            "0 0 * * *"
        } else {
            trimmed
        };
        let fields = expanded.split_whitespace().count();
        if !expanded.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!("{text:?} has {fields} fields; {SHAPE}"));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(expanded)
            .map_err(|e| format!("{text:?}: {}", explain(&parser, expanded, &e)))?;
        let parsed = Cron {
            text: trimmed.to_owned(),
            cron,
        };
        if parsed.next_after(0).is_none() {
            return Err(format!("{text:?} never matches a date"));
        }
        Ok(parsed)
    }

    /// The first matching moment strictly after `after` (Unix seconds, UTC); `None` if there is
    /// none.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start: DateTime<Utc> = DateTime::from_timestamp(after, 0)?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|t| t.timestamp())
    }
}

/// croner's error with the field at fault named: each field is tried alone (the others `*`).
fn explain(parser: &CronParser, expanded: &str, error: &croner::errors::CronError) -> String {
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    let names: &[&str] = if fields.len() == 6 {
        &[
            "second",
            "minute",
            "hour",
            "day of month",
            "month",
            "day of week",
        ]
    } else {
        &["minute", "hour", "day of month", "month", "day of week"]
    };
    let detail = error
        .to_string()
        .trim_start_matches("Component error: ")
        .trim_end_matches('.')
        .to_lowercase();
    for (i, field) in fields.iter().enumerate() {
        let alone: Vec<&str> = (0..fields.len())
            .map(|j| if i == j { *field } else { "*" })
            .collect();
        if parser.parse(&alone.join(" ")).is_err() {
            let name = names.get(i).copied().unwrap_or("field");
            return format!("{name}: {field:?}: {detail}");
        }
    }
    format!("{detail} ({SHAPE})")
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierge_infra::utc::rfc3339;

    /// 2026-12-02T01:30:00Z, a Wednesday.
    const NOW: i64 = 1_796_175_000;

    fn next(expr: &str, after: i64) -> String {
        rfc3339(
            Cron::parse(expr)
                .expect("parses")
                .next_after(after)
                .expect("matches"),
        )
    }

    #[test]
    fn the_default_schedules_fire_at_their_hour_in_utc() {
        assert_eq!(rfc3339(NOW), "2026-12-02T01:30:00Z");
        assert_eq!(next("0 2 * * *", NOW), "2026-12-02T02:00:00Z");
        assert_eq!(next("0 8 * * *", NOW), "2026-12-02T08:00:00Z");
        // Exactly at the moment: the next one, not the same.
        assert_eq!(next("30 1 * * *", NOW), "2026-12-03T01:30:00Z");
    }

    #[test]
    fn lists_ranges_steps_and_names() {
        assert_eq!(next("*/15 * * * *", NOW), "2026-12-02T01:45:00Z");
        assert_eq!(next("0 9-17/4 * * mon-fri", NOW), "2026-12-02T09:00:00Z");
        assert_eq!(next("0 0 1 jan,jul *", NOW), "2027-01-01T00:00:00Z");
        assert_eq!(next("0 3 * * sun", NOW), "2026-12-06T03:00:00Z");
        assert_eq!(next("0 3 * * 7", NOW), "2026-12-06T03:00:00Z");
        assert_eq!(next("5/20 * * * *", NOW), "2026-12-02T01:45:00Z");
        assert_eq!(next("@monthly", NOW), "2027-01-01T00:00:00Z");
    }

    #[test]
    fn restricted_day_of_month_and_day_of_week_match_either() {
        // The 15th, or any Friday: Friday 2026-12-04 comes first.
        assert_eq!(next("0 0 15 * fri", NOW), "2026-12-04T00:00:00Z");
        // Only the day of the month restricted.
        assert_eq!(next("0 0 15 * *", NOW), "2026-12-15T00:00:00Z");
        // Leap day.
        assert_eq!(next("0 0 29 2 *", NOW), "2028-02-29T00:00:00Z");
    }

    #[test]
    fn a_sixth_field_in_front_counts_seconds() {
        assert_eq!(next("*/10 * * * * *", NOW + 3), "2026-12-02T01:30:10Z");
        assert_eq!(next("* * * * * *", NOW), "2026-12-02T01:30:01Z");
    }

    #[test]
    fn mistakes_are_named() {
        for (expr, says) in [
            ("0 2 * *", "has 4 fields"),
            ("60 * * * *", "minute: \"60\""),
            ("0 2 * * funday", "day of week: \"funday\""),
            ("0 2 5-1 * *", "day of month: \"5-1\""),
            ("*/0 * * * *", "minute: \"*/0\""),
            ("0 0 * * * * 2027", "has 7 fields"),
            ("0 0 30 2 *", "never matches"),
        ] {
            let e = Cron::parse(expr).expect_err(expr);
            assert!(e.contains(says), "{expr}: {e}");
        }
    }
}
