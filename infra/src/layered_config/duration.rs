//! Durations as people write them in configuration: `"90s"`, `"30m"`, `"26h"`, `"7d"`,
//! `"250ms"` or a combination (`"1h30m"`). Parsed once, when the configuration is read.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A [`Duration`] read from and written as text (`"1h30m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TextDuration(Duration);

impl TextDuration {
    pub const fn from_secs(secs: u64) -> Self {
        TextDuration(Duration::from_secs(secs))
    }
    pub const fn from_millis(ms: u64) -> Self {
        TextDuration(Duration::from_millis(ms))
    }
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<TextDuration> for Duration {
    fn from(d: TextDuration) -> Self {
        d.0
    }
}

impl std::str::FromStr for TextDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty duration (use e.g. 90s, 30m, 26h, 7d)".into());
        }
        let mut total_ms = 0u64;
        let mut number = String::new();
        let mut chars = t.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit_ms = match c {
                'm' if chars.peek() == Some(&'s') => {
                    chars.next();
                    1
                }
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                _ => {
                    return Err(format!(
                        "{text:?}: unknown unit {c:?} (use ms, s, m, h or d)"
                    ));
                }
            };
            let n: u64 = number
                .parse()
                .map_err(|_| format!("{text:?}: a number must come before {c:?}"))?;
            total_ms = total_ms.saturating_add(n.saturating_mul(unit_ms));
            number.clear();
        }
        if !number.is_empty() {
            return Err(format!(
                "{text:?}: the last number has no unit (ms, s, m, h or d)"
            ));
        }
        Ok(TextDuration(Duration::from_millis(total_ms)))
    }
}

impl fmt::Display for TextDuration {
    /// The shortest text that reads back to the same duration (`1h30m`, `250ms`, `0s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        if ms > 0 {
            write!(f, "{ms}ms")?;
        }
        Ok(())
    }
}

impl Serialize for TextDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TextDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Duration, String> {
        text.parse::<TextDuration>().map(TextDuration::get)
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse("26h"), Ok(Duration::from_secs(26 * 3600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse("26").is_err());
        assert!(parse("h").is_err());
        assert!(parse("3w").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn text_reads_back_to_the_same_duration() {
        for ms in [0, 1, 250, 1_000, 90_000, 5_400_000, 93_600_000, 86_400_001] {
            let d = TextDuration::from_millis(ms);
            assert_eq!(d.to_string().parse::<TextDuration>(), Ok(d), "{d}");
        }
        assert_eq!(TextDuration::from_secs(5400).to_string(), "1h30m");
    }
}
