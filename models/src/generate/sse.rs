//! Server-sent events, read from a byte stream (the WHATWG event-stream format): `data:` lines
//! joined by newlines until a blank line ends the event, `event:` names it, `:` lines are
//! comments, a final event without its blank line still counts.

use std::io::BufRead;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name, if any.
    pub event: Option<String>,
    /// The `data:` lines, joined by `\n`.
    pub data: String,
}

/// Reads events one at a time.
#[derive(Debug)]
pub struct SseReader<R> {
    reader: R,
}

impl<R: BufRead> SseReader<R> {
    pub fn new(reader: R) -> Self {
        SseReader { reader }
    }

    /// The next event, or `None` at the end of the stream.
    pub fn next_event(&mut self) -> std::io::Result<Option<SseEvent>> {
        let mut event = None;
        let mut data: Option<String> = None;
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Ok(data.map(|data| SseEvent { event, data }));
            }
            let l = line.trim_end_matches(['\n', '\r']);
            if l.is_empty() {
                if let Some(data) = data.take() {
                    return Ok(Some(SseEvent { event, data }));
                }
                event = None;
                continue;
            }
            if l.starts_with(':') {
                continue;
            }
            let (field, value) = match l.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (l, ""),
            };
            match field {
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                "event" => event = Some(value.to_owned()),
                _ => {} // id, retry and unknown fields: not used here
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<SseEvent> {
        let mut r = SseReader::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(e) = r.next_event().expect("read") {
            out.push(e);
        }
        out
    }

    #[test]
    fn events_are_split_at_blank_lines_and_multi_line_data_is_joined() {
        let events = all(
            ": keep-alive\n\ndata: {\"a\":1}\n\nevent: error\ndata: line one\ndata: line two\r\n\r\ndata: [DONE]",
        );
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].data, "{\"a\":1}");
        assert_eq!(events[1].event.as_deref(), Some("error"));
        assert_eq!(events[1].data, "line one\nline two");
        assert_eq!(events[2].data, "[DONE]");
    }

    #[test]
    fn a_stream_of_only_comments_has_no_events() {
        assert!(all(": ping\n\n: ping\n\n").is_empty());
    }
}
