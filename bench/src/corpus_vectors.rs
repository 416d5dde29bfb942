//! The corpus's vectors, embedded once by the real model and cached, and an embedder that answers
//! from them: so the benchmarks that load the engine at scale (`ann`, `scale`) measure indexing
//! and search, not embedding (which has its own benchmark). Also: loading the sentences as
//! documents, and waiting until an engine's indexes include everything durable.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use concierge_engine::{Document, Engine, IndexState, IngestRequest, Operation};
use concierge_models::{BertEmbedder, Embedder, ModelError};

use crate::corpus;
use crate::progress::Progress;

/// The vectors of `texts`, from the cache directory or embedded now (and cached).
pub fn vectors(
    cache: &Path,
    texts: &[String],
    embedder: &BertEmbedder,
) -> anyhow::Result<Vec<Vec<f32>>> {
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let path = cache.join(format!(
        "{}-{}-{}.f32",
        embedder.model_id(),
        texts.len(),
        corpus::digest(texts)
    ));
    if path.is_file() {
        eprintln!("vectors: cached in {}", path.display());
        return corpus::read_f32(&path, embedder.dim());
    }
    let pb = Progress::new(texts.len(), "embedding");
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(256) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        out.extend(embedder.embed(&refs)?);
        pb.inc(chunk.len() as u64);
    }
    pb.finish();
    corpus::write_f32(&path, &out)?;
    Ok(out)
}

/// The real embedder, answering from the precomputed corpus vectors when it can (the corpus was
/// embedded by this same model; embedding speed has its own benchmark).
pub struct CachedEmbedder {
    inner: BertEmbedder,
    cache: HashMap<String, Vec<f32>>,
}

impl CachedEmbedder {
    /// Answers `texts[i]` with `vectors[i]`, anything else with `inner`.
    pub fn new(inner: BertEmbedder, texts: &[String], vectors: &[Vec<f32>]) -> Self {
        CachedEmbedder {
            inner,
            cache: texts.iter().cloned().zip(vectors.iter().cloned()).collect(),
        }
    }
}

impl Embedder for CachedEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        let missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !self.cache.contains_key(*t))
            .collect();
        let mut fresh = self.inner.embed(&missing)?.into_iter();
        Ok(texts
            .iter()
            .map(|t| {
                self.cache
                    .get(*t)
                    .cloned()
                    .or_else(|| fresh.next())
                    .unwrap_or_default()
            })
            .collect())
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }
    fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        self.inner.count_tokens(text)
    }
}

/// Waits until both indexes are ready and include everything durable.
pub fn wait_ready(engine: &Engine, pb: Option<&Progress>) -> anyhow::Result<()> {
    loop {
        let s = engine.status()?;
        let want = engine.durable_seq();
        if let Some(pb) = pb {
            pb.set_position(s.dense.seq.unwrap_or(0).min(s.keyword.seq.unwrap_or(0)));
        }
        if s.dense.state == IndexState::Ready
            && s.keyword.state == IndexState::Ready
            && s.dense.seq >= Some(want)
            && s.keyword.seq >= Some(want)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ingests `texts` as one-sentence documents `bench:sentence:<i>`, 1 000 per synced batch.
pub fn ingest_all(engine: &Engine, texts: &[String], label: &str) -> anyhow::Result<()> {
    let pb = Progress::new(texts.len(), label);
    for (c, chunk) in texts.chunks(1_000).enumerate() {
        let operations = chunk
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Document::new(
                    format!("bench:sentence:{}", c * 1_000 + i),
                    "",
                    t.clone(),
                    1,
                )
                .map(Operation::Upsert)
            })
            .collect::<Result<Vec<_>, _>>()?;
        engine.ingest(IngestRequest {
            operations,
            idempotency_key: None,
        })?;
        pb.inc(chunk.len() as u64);
    }
    pb.finish();
    Ok(())
}
