//! How both programs log: to stderr (stdout carries command output), filtered by `RUST_LOG`
//! (else the command's default level), as text — coloured only on a terminal, never into a
//! journal or a file — or as JSON lines (one object per event, with its span's fields, e.g. the
//! caller of a request), for log collectors.

use std::io::IsTerminal;
use std::str::FromStr;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "log format must be \"text\" or \"json\", got {other:?}"
            )),
        }
    }
}

/// Starts logging for the process (once).
pub fn init(default_level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_in_any_case_and_anything_else_is_refused_with_the_choices() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!(" text".parse::<LogFormat>(), Ok(LogFormat::Text));
        let e = "xml".parse::<LogFormat>().err().unwrap_or_default();
        assert!(e.contains("\"text\" or \"json\""), "{e}");
    }
}
