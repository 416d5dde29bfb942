//! Cron expressions, evaluated in UTC: `minute hour day-of-month month day-of-week` (Vixie
//! cron's five fields), optionally with a sixth field in front for seconds. Each field takes
//! `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`; months and weekdays take
//! their English names (`jan`, `mon`); Sunday is 0 or 7. The macros `@yearly`, `@monthly`,
//! `@weekly`, `@daily` (`@midnight`) and `@hourly` are accepted. As in Vixie cron, when both the
//! day of the month and the day of the week are restricted, a day matching either runs.

use concierge_infra::utc::civil;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_any: bool,
    weekdays_any: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field's set of values as a bit mask.
fn field(text: &str, name: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Month names start at 1, weekday names at 0.
            return Ok(u32::try_from(i).unwrap_or(0) + min);
        }
        let n: u32 = s
            .parse()
            .map_err(|_| format!("{name}: {s:?} is not a number{}", hint(names)))?;
        // Day of the week 7 is Sunday, as in Vixie cron.
        let top = if name == "day of week" { 7 } else { max };
        if n < min || n > top {
            return Err(format!("{name}: {n} is outside {min}-{top}"));
        }
        Ok(n)
    };
    let mut mask = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("{name}: step {s:?} is not a number"))?;
                if step == 0 {
                    return Err(format!("{name}: a step of 0 never advances"));
                }
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("{name}: range {range:?} runs backwards"));
            }
            (a, b)
        } else if item.contains('/') {
            // `5/15`: from 5 to the end, every 15.
            (value(range)?, max)
        } else {
            let v = value(range)?;
            (v, v)
        };
        let mut v = lo;
        while v <= hi {
            mask |= 1 << if name == "day of week" { v % 7 } else { v };
            v += step;
        }
    }
    Ok(mask)
}

fn hint(names: &[&str]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" or a name ({}...)", names[..3].join(", "))
    }
}

impl Cron {
    /// Parses an expression; refuses one that never matches (`0 0 30 2 *`).
    pub fn parse(text: &str) -> Result<Cron, String> {
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "{text:?} has {n} fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
                ));
            }
        };
        let cron = Cron {
            seconds: field(seconds, "second", 0, 59, &[])?,
            minutes: field(rest[0], "minute", 0, 59, &[])?,
            hours: field(rest[1], "hour", 0, 23, &[])?,
            days: field(rest[2], "day of month", 1, 31, &[])?,
            months: field(rest[3], "month", 1, 12, &MONTHS)?,
            weekdays: field(rest[4], "day of week", 0, 6, &WEEKDAYS)?,
            days_any: rest[2].starts_with('*'),
            weekdays_any: rest[4].starts_with('*'),
        };
        if cron.next_after(0).is_none() {
            return Err(format!("{text:?} never matches a date"));
        }
        Ok(cron)
    }

    fn day_matches(&self, day: i64) -> bool {
        let date = civil(day.saturating_mul(86_400));
        let (month, dom, weekday) = (date.month, date.day, date.weekday);
        if self.months & (1 << month) == 0 {
            return false;
        }
        let by_dom = self.days & (1 << dom) != 0;
        let by_dow = self.weekdays & (1 << weekday) != 0;
        match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (true, false) => by_dow,
            (false, true) => by_dom,
            (false, false) => by_dom || by_dow,
        }
    }

    /// The first second of the day at or after `from` (seconds since midnight) that matches.
    fn time_of_day_from(&self, from: i64) -> Option<i64> {
        let (fh, fm, fs) = (from / 3600, from % 3600 / 60, from % 60);
        for h in fh..24 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            let m0 = if h == fh { fm } else { 0 };
            for m in m0..60 {
                if self.minutes & (1 << m) == 0 {
                    continue;
                }
                let s0 = if h == fh && m == fm { fs } else { 0 };
                if let Some(s) = (s0..60).find(|s| self.seconds & (1 << s) != 0) {
                    return Some(h * 3600 + m * 60 + s);
                }
            }
        }
        None
    }

    /// The first matching moment strictly after `after` (Unix seconds, UTC); `None` if there is
    /// none in the next five years.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = after + 1;
        let first = start.div_euclid(86_400);
        (first..first + 5 * 366).find_map(|day| {
            let from = if day == first {
                start.rem_euclid(86_400)
            } else {
                0
            };
            if !self.day_matches(day) {
                return None;
            }
            self.time_of_day_from(from).map(|t| day * 86_400 + t)
        })
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
            ("60 * * * *", "minute: 60 is outside 0-59"),
            ("0 2 * * funday", "day of week: \"funday\" is not a number"),
            ("0 2 5-1 * *", "runs backwards"),
            ("*/0 * * * *", "step of 0"),
            ("0 0 30 2 *", "never matches"),
        ] {
            let e = Cron::parse(expr).expect_err(expr);
            assert!(e.contains(says), "{expr}: {e}");
        }
    }
}
