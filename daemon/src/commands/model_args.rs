//! Where the embedding model is, as every command that loads it takes it.

use std::path::PathBuf;

/// The model location: `--model-dir`, or `--models-dir`/`--embedder` (`[models] dir`, `embedder`).
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// The model directory; overrides `--models-dir` and `--embedder`.
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// The directory holding the models (`[models] dir`).
    #[arg(long, env = "CONCIERGE_MODELS__DIR", default_value = "models/weights")]
    pub models_dir: PathBuf,
    /// The embedding model's name, a directory under `--models-dir` (`[models] embedder`).
    #[arg(
        long,
        env = "CONCIERGE_MODELS__EMBEDDER",
        default_value = "all-MiniLM-L6-v2"
    )]
    pub embedder: String,
    /// Threads the embedder computes on.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

impl ModelArgs {
    /// The directory the embedder loads from.
    pub fn dir(&self) -> PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(|| self.models_dir.join(&self.embedder))
    }
}
