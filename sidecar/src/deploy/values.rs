//! Values per environment: a small `KEY=VALUE` file (`deploy/env/production.env`; the same
//! file `docker stack deploy` can be given with `set -a; . FILE`), `--set KEY=VALUE` on top,
//! and the `${KEY}` interpolation of the stack files with them (compose's syntax: `${KEY}`,
//! `$KEY`, `${KEY:-default}`, `${KEY-default}`, `${KEY:?message}`, `${KEY?message}`, `$$`).
//! Unlike compose, a variable that is not set and has no default is an error, not "".

use std::collections::BTreeMap;
use std::path::Path;

/// The values of one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values(BTreeMap<String, String>);

impl Values {
    /// Reads a values file.
    pub fn read(path: &Path) -> Result<Values, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("values file {}: {e}", path.display()))?;
        Values::parse(&text).map_err(|e| format!("values file {}: {e}", path.display()))
    }

    /// Parses `KEY=VALUE` lines (blank lines and `#` comments skipped, `export ` allowed,
    /// one pair of surrounding quotes removed).
    pub fn parse(text: &str) -> Result<Values, String> {
        let mut values = Values::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            values
                .set(line)
                .map_err(|e| format!("line {}: {e}", n + 1))?;
        }
        Ok(values)
    }

    /// Adds one `KEY=VALUE` (a later value for a key replaces the earlier one).
    pub fn set(&mut self, pair: &str) -> Result<(), String> {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))?;
        let key = key.trim();
        let valid = !key.is_empty()
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !key.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "{key:?} is not a variable name (letters, digits and _)"
            ));
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        self.0.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Replaces every variable in `text`.
    pub fn interpolate(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('$') {
                out.push('$');
                rest = after;
            } else if let Some(inner) = rest.strip_prefix('{') {
                let end = closing_brace(inner)
                    .ok_or_else(|| format!("{text:?}: a `${{` is never closed"))?;
                out.push_str(&self.expand(&inner[..end])?);
                rest = &inner[end + 1..];
            } else {
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                if len == 0 {
                    return Err(format!(
                        "{text:?}: a lone `$` (write `$$` for a dollar sign)"
                    ));
                }
                out.push_str(&self.expand(&rest[..len])?);
                rest = &rest[len..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// One `${…}` body: `NAME`, `NAME:-default`, `NAME-default`, `NAME:?message`, `NAME?message`.
    fn expand(&self, body: &str) -> Result<String, String> {
        let name_len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let (name, op) = body.split_at(name_len);
        if name.is_empty() {
            return Err(format!("${{{body}}}: no variable name"));
        }
        let value = self.get(name);
        let (empty_counts, op) = match op.strip_prefix(':') {
            Some(op) => (true, op),
            None => (false, op),
        };
        let unset = value.is_none_or(|v| empty_counts && v.is_empty());
        if let Some(default) = op.strip_prefix('-') {
            return if unset {
                self.interpolate(default)
            } else {
                Ok(value.unwrap_or_default().to_owned())
            };
        }
        if let Some(message) = op.strip_prefix('?') {
            return match value {
                Some(v) if !unset => Ok(v.to_owned()),
                _ => Err(format!("{name} is required: {message}")),
            };
        }
        if !op.is_empty() {
            return Err(format!("${{{body}}}: unknown form (use :-, -, :? or ?)"));
        }
        value.map(str::to_owned).ok_or_else(|| {
            format!("{name} is not set (set it in the values file or with --set {name}=…)")
        })
    }
}

/// Where the `}` closing a `${` is (nested `${…}` in defaults counted).
fn closing_brace(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values::parse("# production\nTAG=1.4.2\nexport HOST='chat.example.com'\nEMPTY=\n")
            .expect("parses")
    }

    #[test]
    fn variables_expand_in_every_compose_form() {
        let v = values();
        let cases = [
            ("concierge:${TAG}", "concierge:1.4.2"),
            ("$HOST/x", "chat.example.com/x"),
            ("${MISSING:-fallback}", "fallback"),
            ("${EMPTY:-fallback}", "fallback"),
            ("${EMPTY-fallback}", ""),
            ("${MISSING:-${TAG}}", "1.4.2"),
            ("cost $$5", "cost $5"),
        ];
        for (text, want) in cases {
            assert_eq!(v.interpolate(text).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn a_variable_without_a_value_or_default_is_an_error_naming_it() {
        let v = values();
        let e = v.interpolate("image: ${NOPE}").expect_err("unset");
        assert!(
            e.contains("NOPE is not set") && e.contains("--set NOPE="),
            "{e}"
        );
        let e = v.interpolate("${EMPTY:?give the host}").expect_err("empty");
        assert!(e.contains("EMPTY is required: give the host"), "{e}");
        assert!(v.interpolate("${TAG").is_err());
        assert!(v.interpolate("a $ b").is_err());
    }

    #[test]
    fn a_bad_line_is_refused_with_its_number() {
        let e = Values::parse("A=1\nnot a pair\n").expect_err("bad");
        assert!(e.starts_with("line 2:"), "{e}");
        let e = Values::parse("1A=x\n").expect_err("bad name");
        assert!(e.contains("not a variable name"), "{e}");
        let mut v = values();
        v.set("TAG=2.0.0").expect("set");
        assert_eq!(v.get("TAG"), Some("2.0.0"));
    }
}
