//! Filters as the dense index checks them per point: a live slot carries its document's id and
//! its filter attributes, source and kind as small integers ([`Names`]), and a query's
//! [`Filter`] is compiled once into a [`SlotFilter`] of those integers. A check is then a read of
//! the slot table and a few comparisons; only metadata terms are looked up in the document's
//! attributes. A graph walk checks every point it would return, and the exact scan every slot.

use std::collections::HashMap;
use std::sync::Arc;

use crate::filter::{DocAttrs, Filter, TimeRange};

/// Source and kind names, each given a number the first time it is seen.
#[derive(Debug, Default)]
pub(crate) struct Names {
    ids: HashMap<String, u32>,
}

impl Names {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        self.ids.insert(name.to_owned(), id);
        id
    }

    /// The numbers of the names in `wanted` (a name never seen matches nothing).
    fn ids_of(&self, wanted: &[String]) -> Vec<u32> {
        wanted
            .iter()
            .filter_map(|name| self.ids.get(name).copied())
            .collect()
    }
}

/// A live slot's document: its id and filter attributes.
#[derive(Debug, Clone)]
pub(crate) struct SlotDoc {
    pub id: Arc<str>,
    /// Shared with the document's entry; read only for metadata terms.
    pub attrs: Arc<DocAttrs>,
    source: u32,
    kind: u32,
    updated_at: i64,
}

impl SlotDoc {
    pub fn new(id: Arc<str>, attrs: Arc<DocAttrs>, names: &mut Names) -> Self {
        SlotDoc {
            source: names.id(&attrs.source),
            kind: names.id(&attrs.kind),
            updated_at: attrs.updated_at,
            id,
            attrs,
        }
    }
}

/// A query's filter, compiled against the index's [`Names`].
#[derive(Debug)]
pub(crate) struct SlotFilter<'a> {
    /// `None`: any source.
    sources: Option<Vec<u32>>,
    kinds: Option<Vec<u32>>,
    updated_at: Option<TimeRange>,
    meta_terms: &'a [String],
}

impl<'a> SlotFilter<'a> {
    pub fn new(filter: &Filter, meta_terms: &'a [String], names: &Names) -> Self {
        let ids = |wanted: &[String]| (!wanted.is_empty()).then(|| names.ids_of(wanted));
        SlotFilter {
            sources: ids(&filter.source),
            kinds: ids(&filter.kind),
            updated_at: filter.updated_at,
            meta_terms,
        }
    }

    /// Keeps everything.
    pub fn is_empty(&self) -> bool {
        self.sources.is_none()
            && self.kinds.is_none()
            && self.updated_at.is_none()
            && self.meta_terms.is_empty()
    }

    /// Does the slot's document pass? The same answer as [`Filter::matches`] on its attributes.
    pub fn matches(&self, doc: &SlotDoc) -> bool {
        if self
            .sources
            .as_ref()
            .is_some_and(|s| !s.contains(&doc.source))
            || self.kinds.as_ref().is_some_and(|k| !k.contains(&doc.kind))
        {
            return false;
        }
        if let Some(range) = self.updated_at
            && (range.gte.is_some_and(|gte| doc.updated_at < gte)
                || range.lt.is_some_and(|lt| doc.updated_at >= lt))
        {
            return false;
        }
        self.meta_terms
            .iter()
            .all(|t| doc.attrs.meta_terms.binary_search(t).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NAMES: [&str; 3] = ["aircall", "guesty", "call"];

    fn attrs(source: usize, kind: usize, updated_at: i64, terms: &[usize]) -> DocAttrs {
        let mut meta_terms: Vec<String> = terms.iter().map(|t| format!("k\u{1}{t}")).collect();
        meta_terms.sort();
        meta_terms.dedup();
        DocAttrs {
            source: NAMES[source].to_owned(),
            kind: NAMES[kind].to_owned(),
            updated_at,
            meta_terms,
        }
    }

    proptest! {
        #[test]
        fn a_compiled_filter_answers_as_the_filter_does(
            docs in prop::collection::vec((0..3usize, 0..3usize, 0..10i64, prop::collection::vec(0..3usize, 0..3)), 1..20),
            sources in prop::collection::vec(0..3usize, 0..3),
            kinds in prop::collection::vec(0..3usize, 0..3),
            unknown in any::<bool>(),
            range in prop::option::of((prop::option::of(0..10i64), prop::option::of(0..10i64))),
            terms in prop::collection::vec(0..4usize, 0..2),
        ) {
            let mut names = Names::default();
            let slots: Vec<(DocAttrs, SlotDoc)> = docs
                .iter()
                .enumerate()
                .map(|(i, (s, k, at, t))| {
                    let a = attrs(*s, *k, *at, t);
                    let slot = SlotDoc::new(Arc::from(i.to_string().as_str()), Arc::new(a.clone()), &mut names);
                    (a, slot)
                })
                .collect();
            let mut filter = Filter {
                source: sources.iter().map(|s| NAMES[*s].to_owned()).collect(),
                kind: kinds.iter().map(|k| NAMES[*k].to_owned()).collect(),
                updated_at: range.map(|(gte, lt)| TimeRange { gte, lt }),
                ..Filter::default()
            };
            if unknown {
                filter.kind.push("never-seen".to_owned());
            }
            let meta_terms: Vec<String> = terms.iter().map(|t| format!("k\u{1}{t}")).collect();
            let compiled = SlotFilter::new(&filter, &meta_terms, &names);
            for (a, slot) in &slots {
                prop_assert_eq!(compiled.matches(slot), filter.matches(a, &meta_terms));
            }
        }
    }
}
