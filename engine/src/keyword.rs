//! The keyword index on tantivy: BM25 over each chunk's title and text with English stemming,
//! with the filter fields (source, kind, metadata terms, `updated_at`) indexed beside them.
//! One long-lived writer; the indexer commits on a timer or a count with the change-log
//! sequence in the commit payload, then reloads the reader (manual reload: read-your-writes).

use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::{Error, Result};
use crate::filter::{DocAttrs, Filter};

const WRITER_HEAP_BYTES: usize = 48 * 1024 * 1024;
/// The analyzer of the text fields (tantivy's English stemming); [`crate::sparse`] uses it too.
pub(crate) const TOKENIZER: &str = "en_stem";

#[derive(Debug, Clone, Copy)]
struct Fields {
    chunk_id: Field,
    doc_id: Field,
    source: Field,
    kind: Field,
    meta: Field,
    updated_at: Field,
    title: Field,
    text: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_opts = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        chunk_id: b.add_u64_field(
            "chunk_id",
            NumericOptions::default().set_indexed().set_stored(),
        ),
        doc_id: b.add_text_field("doc_id", STRING | STORED),
        source: b.add_text_field("source", STRING),
        kind: b.add_text_field("kind", STRING),
        meta: b.add_text_field("meta", STRING),
        updated_at: b.add_i64_field("updated_at", NumericOptions::default().set_indexed()),
        title: b.add_text_field("title", text_opts.clone()),
        text: b.add_text_field("text", text_opts),
    };
    (b.build(), fields)
}

/// A chunk found by the keyword leg.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeywordHit {
    pub chunk_id: u64,
    pub doc_id: String,
    /// BM25 score.
    pub score: f32,
}

/// A chunk as the keyword index sees it.
#[derive(Debug, Clone)]
pub(crate) struct KeywordChunk<'a> {
    pub chunk_id: u64,
    pub title: &'a str,
    pub text: &'a str,
}

/// The tantivy index with its writer and reader.
pub(crate) struct KeywordIndex {
    index: Index,
    fields: Fields,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    /// Changes applied to the writer (not necessarily committed).
    applied_seq: AtomicU64,
    /// Changes committed and visible to searches.
    committed_seq: AtomicU64,
    pending: AtomicU64,
}

impl std::fmt::Debug for KeywordIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeywordIndex")
            .field("committed_seq", &self.committed_seq)
            .finish_non_exhaustive()
    }
}

impl KeywordIndex {
    /// Opens the index in `dir`, creating an empty one when the directory is empty or missing.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let (schema, fields) = schema();
        let exists = dir.join("meta.json").exists();
        let index = if exists {
            Index::open_in_dir(dir)?
        } else {
            Index::create_in_dir(dir, schema.clone())?
        };
        if index.schema() != schema {
            return Err(Error::Keyword(tantivy::TantivyError::SchemaError(
                "the keyword index was written with another schema".to_owned(),
            )));
        }
        let seq = match index.load_metas()?.payload {
            Some(payload) => payload
                .trim()
                .parse::<u64>()
                .map_err(|_| Error::corrupt("keyword index commit payload", payload))?,
            None => 0,
        };
        let writer = index.writer_with_num_threads(1, WRITER_HEAP_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(KeywordIndex {
            index,
            fields,
            writer: Mutex::new(writer),
            reader,
            applied_seq: AtomicU64::new(seq),
            committed_seq: AtomicU64::new(seq),
            pending: AtomicU64::new(0),
        })
    }

    /// Sequence included in the last commit (what searches see).
    pub fn committed_seq(&self) -> u64 {
        self.committed_seq.load(Ordering::Acquire)
    }

    /// Sequence of the last change handed to the writer.
    pub fn applied_seq(&self) -> u64 {
        self.applied_seq.load(Ordering::Acquire)
    }

    pub fn set_applied_seq(&self, seq: u64) {
        self.applied_seq.fetch_max(seq, Ordering::AcqRel);
    }

    /// Changes not yet committed.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the chunks of `doc_id` (delete term + adds in the same commit). Idempotent.
    pub fn apply(
        &self,
        doc_id: &str,
        state: Option<(&DocAttrs, Vec<KeywordChunk<'_>>)>,
    ) -> Result<()> {
        let f = self.fields;
        let writer = self.writer();
        writer.delete_term(Term::from_field_text(f.doc_id, doc_id));
        if let Some((attrs, chunks)) = state {
            for chunk in chunks {
                let mut doc = TantivyDocument::default();
                doc.add_u64(f.chunk_id, chunk.chunk_id);
                doc.add_text(f.doc_id, doc_id);
                doc.add_text(f.source, &attrs.source);
                doc.add_text(f.kind, &attrs.kind);
                for term in &attrs.meta_terms {
                    doc.add_text(f.meta, term);
                }
                doc.add_i64(f.updated_at, attrs.updated_at);
                doc.add_text(f.title, chunk.title);
                doc.add_text(f.text, chunk.text);
                writer.add_document(doc)?;
            }
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Commits everything applied, recording `seq` in the payload, and makes it searchable.
    pub fn commit(&self, seq: u64) -> Result<()> {
        {
            let mut writer = self.writer();
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&seq.to_string());
            prepared.commit()?;
        }
        self.reader.reload()?;
        self.pending.store(0, Ordering::Release);
        self.committed_seq.fetch_max(seq, Ordering::AcqRel);
        self.applied_seq.fetch_max(seq, Ordering::AcqRel);
        Ok(())
    }

    /// The query's terms as the index tokenises them (lower-cased, stemmed).
    fn terms(&self, query: &str) -> Result<Vec<String>> {
        let mut analyzer = self.index.tokenizer_for_field(self.fields.text)?;
        let mut stream = analyzer.token_stream(query);
        let mut out = Vec::new();
        while stream.advance() {
            let t = stream.token().text.clone();
            if !out.contains(&t) {
                out.push(t);
            }
        }
        Ok(out)
    }

    fn text_query(&self, terms: &[String]) -> BooleanQuery {
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for t in terms {
            clauses.push((
                Occur::Should,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.text, t),
                    IndexRecordOption::WithFreqs,
                )),
            ));
            clauses.push((
                Occur::Should,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.title, t),
                    IndexRecordOption::WithFreqs,
                )),
            ));
        }
        BooleanQuery::new(clauses)
    }

    /// Best chunks for `query` among those passing `filter`, up to `limit` chunks.
    pub fn search(
        &self,
        query: &str,
        limit: usize,
        filter: &Filter,
        meta_terms: &[String],
    ) -> Result<Vec<KeywordHit>> {
        let terms = self.terms(query)?;
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, Box::new(self.text_query(&terms)))];
        let any_of = |field: Field, values: &[String]| -> Box<dyn Query> {
            let inner = BooleanQuery::new(
                values
                    .iter()
                    .map(|v| {
                        (
                            Occur::Should,
                            Box::new(TermQuery::new(
                                Term::from_field_text(field, v),
                                IndexRecordOption::Basic,
                            )) as Box<dyn Query>,
                        )
                    })
                    .collect(),
            );
            Box::new(ConstScoreQuery::new(Box::new(inner), 0.0))
        };
        if !filter.source.is_empty() {
            clauses.push((Occur::Must, any_of(f.source, &filter.source)));
        }
        if !filter.kind.is_empty() {
            clauses.push((Occur::Must, any_of(f.kind, &filter.kind)));
        }
        for term in meta_terms {
            clauses.push((Occur::Must, any_of(f.meta, std::slice::from_ref(term))));
        }
        if let Some(range) = filter.updated_at {
            let lower = range.gte.map_or(Bound::Unbounded, |v| {
                Bound::Included(Term::from_field_i64(f.updated_at, v))
            });
            let upper = range.lt.map_or(Bound::Unbounded, |v| {
                Bound::Excluded(Term::from_field_i64(f.updated_at, v))
            });
            clauses.push((
                Occur::Must,
                Box::new(ConstScoreQuery::new(
                    Box::new(RangeQuery::new(lower, upper)),
                    0.0,
                )),
            ));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit).order_by_score())?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let chunk_id = doc.get_first(f.chunk_id).and_then(|v| v.as_u64());
            let doc_id = doc
                .get_first(f.doc_id)
                .and_then(|v| v.as_str().map(str::to_owned));
            if let (Some(chunk_id), Some(doc_id)) = (chunk_id, doc_id) {
                hits.push(KeywordHit {
                    chunk_id,
                    doc_id,
                    score,
                });
            }
        }
        Ok(hits)
    }

    /// A snippet of `text` with the query's terms highlighted (`<b>`...`</b>`), at most
    /// `max_chars` long; the text's beginning when no term occurs in it.
    pub fn snippet(&self, query: &str, text: &str, max_chars: usize) -> Result<Snippet> {
        // Every query term counts (not only those the index has seen): a dense-only hit is
        // highlighted the same way.
        let terms: std::collections::BTreeMap<String, f32> =
            self.terms(query)?.into_iter().map(|t| (t, 1.0)).collect();
        let tokenizer = self.index.tokenizer_for_field(self.fields.text)?;
        let generator = SnippetGenerator::new(terms, tokenizer, self.fields.text, max_chars);
        let snippet = generator.snippet(text);
        if snippet.is_empty() {
            let end = text
                .char_indices()
                .nth(max_chars)
                .map_or(text.len(), |(i, _)| i);
            return Ok(Snippet {
                text: text[..end].to_owned(),
                highlighted: Vec::new(),
            });
        }
        Ok(Snippet {
            text: snippet.fragment().to_owned(),
            highlighted: snippet
                .highlighted()
                .iter()
                .map(|r| (r.start, r.end))
                .collect(),
        })
    }

    /// Number of chunks visible to searches.
    /// The mean number of indexed terms per chunk in the text and the title fields (what BM25
    /// normalises lengths by); `None` while the index is empty.
    pub fn average_terms(&self) -> Option<(f32, f32)> {
        let searcher = self.reader.searcher();
        let docs = searcher.num_docs();
        if docs == 0 {
            return None;
        }
        let mut tokens = [0u64; 2];
        for segment in searcher.segment_readers() {
            for (slot, field) in [self.fields.text, self.fields.title]
                .into_iter()
                .enumerate()
            {
                tokens[slot] += segment
                    .inverted_index(field)
                    .map_or(0, |index| index.total_num_tokens());
            }
        }
        Some((
            tokens[0] as f32 / docs as f32,
            tokens[1] as f32 / docs as f32,
        ))
    }

    pub fn num_chunks(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// File-name prefixes of the committed segments (for copying a consistent snapshot).
    pub fn committed_segment_prefixes(&self) -> Result<Vec<String>> {
        Ok(self
            .index
            .load_metas()?
            .segments
            .iter()
            .map(|s| s.id().uuid_string())
            .collect())
    }
}

/// A fragment of a chunk with the byte ranges that matched the query.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snippet {
    /// The fragment.
    pub text: String,
    /// Byte ranges of `text` that matched the query.
    pub highlighted: Vec<(usize, usize)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(kind: &str) -> DocAttrs {
        DocAttrs {
            source: "guesty".into(),
            kind: kind.into(),
            updated_at: 10,
            meta_terms: vec!["listing\u{1}L1".into()],
        }
    }

    fn chunk<'a>(id: u64, text: &'a str) -> KeywordChunk<'a> {
        KeywordChunk {
            chunk_id: id,
            title: "",
            text,
        }
    }

    #[test]
    fn stemmed_terms_and_rare_codes_are_found_and_commits_record_their_sequence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = KeywordIndex::open(dir.path()).expect("opens");
        idx.apply(
            "guesty:reservation:1",
            Some((
                &attrs("reservation"),
                vec![chunk(
                    1,
                    "The guests were cleaning the kitchen. Code HMXK4Q.",
                )],
            )),
        )
        .expect("applies");
        idx.apply(
            "guesty:reservation:2",
            Some((
                &attrs("reservation"),
                vec![chunk(2, "Late checkout requested")],
            )),
        )
        .expect("applies");
        assert!(
            idx.search("cleaned", 5, &Filter::default(), &[])
                .expect("searches")
                .is_empty(),
            "visible before commit"
        );
        idx.commit(7).expect("commits");
        let hits = idx
            .search("cleaned kitchens", 5, &Filter::default(), &[])
            .expect("searches");
        assert_eq!(hits[0].doc_id, "guesty:reservation:1");
        let hits = idx
            .search("hmxk4q?", 5, &Filter::default(), &[])
            .expect("searches");
        assert_eq!(hits.len(), 1);
        drop(idx);
        let idx = KeywordIndex::open(dir.path()).expect("reopens");
        assert_eq!(idx.committed_seq(), 7);
        assert_eq!(idx.num_chunks(), 2);
    }

    #[test]
    fn the_mean_field_lengths_are_what_bm25_normalises_by() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = KeywordIndex::open(dir.path()).expect("opens");
        assert_eq!(idx.average_terms(), None);
        let titled = KeywordChunk {
            chunk_id: 2,
            title: "Pool heater",
            text: "one two three four five six",
        };
        idx.apply(
            "guesty:listing:1",
            Some((&attrs("listing"), vec![chunk(1, "one two")])),
        )
        .expect("applies");
        idx.apply("guesty:listing:2", Some((&attrs("listing"), vec![titled])))
            .expect("applies");
        idx.commit(1).expect("commits");
        assert_eq!(idx.average_terms(), Some((4.0, 1.0)));
    }

    #[test]
    fn updates_replace_chunks_and_filters_apply() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = KeywordIndex::open(dir.path()).expect("opens");
        idx.apply(
            "guesty:reservation:1",
            Some((&attrs("reservation"), vec![chunk(1, "pool heating broken")])),
        )
        .expect("applies");
        idx.apply(
            "guesty:listing:2",
            Some((&attrs("listing"), vec![chunk(2, "pool towels")])),
        )
        .expect("applies");
        idx.commit(1).expect("commits");
        idx.apply(
            "guesty:reservation:1",
            Some((&attrs("reservation"), vec![chunk(3, "wifi password")])),
        )
        .expect("applies");
        idx.commit(2).expect("commits");
        let hits = idx
            .search("pool", 5, &Filter::default(), &[])
            .expect("searches");
        assert_eq!(hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>(), [2]);
        let only_res = Filter {
            kind: vec!["reservation".into()],
            ..Filter::default()
        };
        assert!(
            idx.search("pool", 5, &only_res, &[])
                .expect("searches")
                .is_empty()
        );
        let meta = ["listing\u{1}L2".to_owned()];
        assert!(
            idx.search("wifi", 5, &Filter::default(), &meta)
                .expect("searches")
                .is_empty()
        );
        let old = Filter {
            updated_at: Some(crate::filter::TimeRange {
                gte: None,
                lt: Some(10),
            }),
            ..Filter::default()
        };
        assert!(
            idx.search("wifi", 5, &old, &[])
                .expect("searches")
                .is_empty()
        );
    }

    #[test]
    fn snippets_highlight_query_terms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = KeywordIndex::open(dir.path()).expect("opens");
        let s = idx
            .snippet("door code", "The guest asked for the door code twice.", 100)
            .expect("snippet");
        let marked: Vec<&str> = s.highlighted.iter().map(|(a, b)| &s.text[*a..*b]).collect();
        assert_eq!(marked, ["door", "code"]);
    }
}
