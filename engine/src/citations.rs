//! Citation checking for generated answers, as the text streams: every `[n]`, `[n, m]` or
//! `[n-m]` marker is checked against the number of passages the generator was given; numbers
//! outside `1..=passages` are removed (a marker left with none is removed whole, with the space
//! before it when punctuation follows), and the valid ones are recorded in order. Text in
//! brackets that is not a list of numbers passes untouched. Works on any split of the text, so
//! a streamed answer and a whole one come out the same.

/// Longest marker considered (`[12, 13, 14]`); a longer bracket is ordinary text.
const MAX_MARKER: usize = 24;

/// The checker for one answer.
#[derive(Debug)]
pub(crate) struct CitationFilter {
    passages: usize,
    /// A `[` and what followed it while it may still be a marker.
    pending: String,
    /// Whitespace not yet written (dropped before punctuation after a removed marker).
    held_space: String,
    removed_last: bool,
    cited: Vec<usize>,
    removed: Vec<String>,
}

impl CitationFilter {
    pub fn new(passages: usize) -> Self {
        CitationFilter {
            passages,
            pending: String::new(),
            held_space: String::new(),
            removed_last: false,
            cited: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// Feeds generated text; returns what can be passed on now.
    pub fn push(&mut self, text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            self.feed(c, &mut out);
        }
        out
    }

    /// Ends the answer; returns the rest of the text.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        let pending = std::mem::take(&mut self.pending);
        for c in pending.chars() {
            self.emit(c, &mut out);
        }
        self.held_space.clear();
        out
    }

    /// Valid passage numbers cited, in order of first citation.
    pub fn cited(&self) -> &[usize] {
        &self.cited
    }

    /// Markers (or numbers in them) that were removed, as written.
    pub fn removed(&self) -> &[String] {
        &self.removed
    }

    fn feed(&mut self, c: char, out: &mut String) {
        if !self.pending.is_empty() {
            if c.is_ascii_digit() || matches!(c, ',' | ' ' | '-') {
                self.pending.push(c);
                if self.pending.len() > MAX_MARKER {
                    self.flush_pending(out);
                }
                return;
            }
            if c == ']' {
                self.pending.push(c);
                self.close_marker(out);
                return;
            }
            self.flush_pending(out);
        }
        if c == '[' {
            self.pending.push(c);
        } else {
            self.emit(c, out);
        }
    }

    fn flush_pending(&mut self, out: &mut String) {
        let pending = std::mem::take(&mut self.pending);
        let mut chars = pending.chars();
        if let Some(open) = chars.next() {
            self.emit(open, out);
        }
        // What followed the `[` may itself start a marker (`[[1]`).
        for c in chars {
            self.feed(c, out);
        }
    }

    fn emit(&mut self, c: char, out: &mut String) {
        if c.is_whitespace() {
            self.held_space.push(c);
            return;
        }
        let drop_space = self.removed_last && matches!(c, '.' | ',' | ';' | ':' | '!' | '?' | ')');
        if !drop_space {
            out.push_str(&self.held_space);
        }
        self.held_space.clear();
        self.removed_last = false;
        out.push(c);
    }

    fn close_marker(&mut self, out: &mut String) {
        let marker = std::mem::take(&mut self.pending);
        let inner = &marker[1..marker.len() - 1];
        let Some(numbers) = parse_numbers(inner) else {
            // `[]`, `[,]`, `[1--2]`: not a citation.
            for c in marker.chars() {
                self.emit(c, out);
            }
            return;
        };
        let (valid, invalid): (Vec<usize>, Vec<usize>) = numbers
            .into_iter()
            .partition(|n| (1..=self.passages).contains(n));
        if !invalid.is_empty() {
            self.removed.push(marker.clone());
        }
        if valid.is_empty() {
            self.removed_last = true;
            return;
        }
        for n in &valid {
            if !self.cited.contains(n) {
                self.cited.push(*n);
            }
        }
        let text = if invalid.is_empty() {
            marker
        } else {
            format!(
                "[{}]",
                valid
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        for c in text.chars() {
            self.emit(c, out);
        }
    }
}

/// `1`, `1, 2`, `1-3` → the numbers; `None` if it is not such a list.
fn parse_numbers(inner: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in inner.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a || b - a > 20 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, passages: usize) -> (String, Vec<usize>, Vec<String>) {
        let mut f = CitationFilter::new(passages);
        let mut out = f.push(text);
        out.push_str(&f.finish());
        (out, f.cited().to_vec(), f.removed().to_vec())
    }

    #[test]
    fn a_citation_beyond_the_passages_given_is_removed_with_its_space() {
        let (out, cited, removed) = check("The boiler broke [1]. A plumber came [7].", 3);
        assert_eq!(out, "The boiler broke [1]. A plumber came.");
        assert_eq!(cited, [1]);
        assert_eq!(removed, ["[7]"]);
    }

    #[test]
    fn lists_and_ranges_keep_their_valid_numbers() {
        let (out, cited, _) = check("Both called [2, 9] and [1-3].", 3);
        assert_eq!(out, "Both called [2] and [1-3].");
        assert_eq!(cited, [2, 1, 3]);
        let (out, _, removed) = check("Zero is no passage [0][3]", 3);
        assert_eq!(out, "Zero is no passage [3]");
        assert_eq!(removed, ["[0]"]);
    }

    #[test]
    fn brackets_that_are_not_citations_pass_untouched() {
        let (out, cited, removed) = check("He said [sic] and [] and [1 or 2] then [", 3);
        assert_eq!(out, "He said [sic] and [] and [1 or 2] then [");
        assert!(cited.is_empty() && removed.is_empty());
    }

    #[test]
    fn any_split_of_a_streamed_answer_gives_the_same_text() {
        let text = "Late check-in was approved [2]; the guest called twice [4][1]. See [12]!";
        let whole = check(text, 3);
        for step in 1..6 {
            let mut f = CitationFilter::new(3);
            let mut out = String::new();
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(step) {
                out.push_str(&f.push(&piece.iter().collect::<String>()));
            }
            out.push_str(&f.finish());
            assert_eq!(out, whole.0, "split every {step} chars");
            assert_eq!(f.cited(), whole.1.as_slice());
        }
        assert_eq!(
            whole.0,
            "Late check-in was approved [2]; the guest called twice [1]. See!"
        );
    }
}
