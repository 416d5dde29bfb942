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
    /// Threads the embedder computes on (default: every core). Each embeds its own share of the
    /// texts, so a bulk load drains about that many times faster.
    #[arg(long, default_value_t = all_cores())]
    pub threads: usize,
}

/// The cores this process may run on (1 when that cannot be read).
fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

impl ModelArgs {
    /// The directory the embedder loads from.
    pub fn dir(&self) -> PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(|| self.models_dir.join(&self.embedder))
    }
}
