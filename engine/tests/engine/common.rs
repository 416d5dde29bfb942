//! The harness: a temporary data directory, the real embedder (loaded once per process), an
//! embedder wrapper that counts and can fail on demand, and helpers to wait for the indexes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use concierge_engine::{Document, Engine, EngineConfig, IndexState, IngestRequest};
use concierge_models::{BertEmbedder, Embedder, EmbedderConfig, ModelError};

pub fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/weights/all-MiniLM-L6-v2")
}

/// The real all-MiniLM-L6-v2 embedder, loaded once.
pub fn real_embedder() -> Arc<BertEmbedder> {
    static EMBEDDER: OnceLock<Arc<BertEmbedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            let dir = model_dir();
            assert!(
                dir.join("model.safetensors").is_file(),
                "the model is missing: run models/fetch.sh ({})",
                dir.display()
            );
            Arc::new(BertEmbedder::load(&dir, &EmbedderConfig::default()).expect("the model loads"))
        })
        .clone()
}

/// The real embedder, counting the texts it embeds and failing on texts containing `fail_on`.
#[derive(Debug)]
pub struct CountingEmbedder {
    inner: Arc<BertEmbedder>,
    pub texts: AtomicUsize,
    pub fail_on: Option<&'static str>,
}

impl CountingEmbedder {
    pub fn new(fail_on: Option<&'static str>) -> Arc<Self> {
        Arc::new(CountingEmbedder {
            inner: real_embedder(),
            texts: AtomicUsize::new(0),
            fail_on,
        })
    }

    pub fn embedded(&self) -> usize {
        self.texts.load(Ordering::SeqCst)
    }
}

impl Embedder for CountingEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if let Some(marker) = self.fail_on
            && texts.iter().any(|t| t.contains(marker))
        {
            return Err(ModelError::Unsupported {
                path: PathBuf::from("(test)"),
                reason: format!("refusing text with {marker}"),
            });
        }
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        self.inner.embed(texts)
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

pub fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.commit_interval = Duration::from_millis(100);
    c.min_seq_timeout = Duration::from_secs(60);
    c
}

pub fn open(dir: &Path) -> Engine {
    Engine::open(config(dir), real_embedder()).expect("the engine opens")
}

pub fn doc(id: &str, title: &str, text: &str, updated_at: i64) -> Document {
    Document::new(id, title, text, updated_at).expect("a valid document")
}

pub fn put(engine: &Engine, d: Document) -> u64 {
    engine.ingest(IngestRequest::upsert(d)).expect("ingest").seq
}

/// Waits until both indexes are ready and include everything durable.
pub fn wait_indexed(engine: &Engine) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = engine.status().expect("status");
        let want = engine.durable_seq();
        if s.dense.state == IndexState::Ready
            && s.keyword.state == IndexState::Ready
            && s.dense.seq.is_some_and(|q| q >= want)
            && s.keyword.seq.is_some_and(|q| q >= want)
        {
            return;
        }
        assert!(Instant::now() < deadline, "indexes did not catch up: {s:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Hotel-operations sentences: enough variety for meaning and keyword queries.
pub const SENTENCES: &[&str] = &[
    "The guest reported that the air conditioning in the bedroom is not cooling.",
    "Check-in instructions were sent with the lockbox code for the front door.",
    "A reservation for four nights was cancelled because of a family emergency.",
    "The cleaner found a broken wine glass in the kitchen after checkout.",
    "The caller asked whether pets are allowed in the apartment.",
    "Parking is available in the underground garage for a daily fee.",
    "The Wi-Fi password is printed on the card next to the router.",
    "A late checkout until two in the afternoon was approved.",
    "The hot water boiler needs a technician visit on Monday.",
    "The guest requested an extra set of towels and a baby cot.",
    "Noise complaints from the neighbours about a party on Saturday night.",
    "The booking was paid by bank transfer and the invoice was issued.",
    "The elevator in building B is out of service until Friday.",
    "Airport pickup was arranged for the arriving family at nine.",
    "The dishwasher leaks water onto the floor when it runs.",
    "The host called to confirm the cleaning schedule for next week.",
];
