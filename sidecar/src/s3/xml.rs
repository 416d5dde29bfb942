//! Just enough XML for S3's answers: the text of the first or every `<Tag>…</Tag>` (no attributes
//! on those tags in S3's ListObjectsV2 and error documents), with entities decoded.

/// The decoded text inside the first `<tag>…</tag>`.
pub fn first(doc: &str, tag: &str) -> Option<String> {
    all(doc, tag).next().map(unescape)
}

/// The raw contents of every `<tag>…</tag>`, in order.
pub fn all<'a>(doc: &'a str, tag: &str) -> impl Iterator<Item = &'a str> + 'a {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = doc;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let len = rest[start..].find(&close)?;
        let inner = &rest[start..start + len];
        rest = &rest[start + len + close.len()..];
        Some(inner)
    })
}

/// Decodes the five named entities and numeric character references.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&tail[..=end]),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>repo/data/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>repo/data/ab/ab12</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;x&quot;</ETag><Size>1234</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>repo/a&amp;b</Key><Size>0</Size></Contents><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken></ListBucketResult>"#;

    #[test]
    fn a_listing_gives_keys_sizes_and_the_continuation_token() {
        let keys: Vec<String> = all(LISTING, "Contents")
            .filter_map(|c| first(c, "Key"))
            .collect();
        assert_eq!(keys, ["repo/data/ab/ab12", "repo/a&b"]);
        let sizes: Vec<String> = all(LISTING, "Contents")
            .filter_map(|c| first(c, "Size"))
            .collect();
        assert_eq!(sizes, ["1234", "0"]);
        assert_eq!(first(LISTING, "IsTruncated").as_deref(), Some("true"));
        assert_eq!(
            first(LISTING, "NextContinuationToken").as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
    }

    #[test]
    fn an_error_document_gives_code_and_message() {
        let e = "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(first(e, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(
            first(e, "Message").as_deref(),
            Some("The specified bucket does not exist")
        );
        assert_eq!(first(e, "Missing"), None);
    }

    #[test]
    fn entities_are_decoded_and_broken_ones_kept() {
        assert_eq!(
            unescape("a&lt;b&gt;&#65;&#x42;&apos;&bogus;&"),
            "a<b>AB'&bogus;&"
        );
    }
}
