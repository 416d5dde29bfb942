//! A model directory on disk: which files it must hold and what its small JSON files say.
//!
//! The layout is Hugging Face's: `config.json`, `tokenizer.json`, `model.safetensors`, and for
//! sentence-transformers models `sentence_bert_config.json` (the token limit) and
//! `1_Pooling/config.json` (the pooling mode). The last two are optional; without them the limit is
//! the model's position count and the pooling is the mean.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ModelError;

/// The files of one model, found in one directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

impl ModelDir {
    /// A model directory; nothing is read yet, but the three required files must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let dir = Self {
            path: path.as_ref().to_path_buf(),
        };
        for file in [dir.config_path(), dir.tokenizer_path(), dir.weights_path()] {
            if !file.is_file() {
                return Err(ModelError::MissingFile { path: file });
            }
        }
        Ok(dir)
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's identifier: the directory's name (e.g. `all-MiniLM-L6-v2`).
    pub fn model_id(&self) -> String {
        self.path
            .canonicalize()
            .ok()
            .as_deref()
            .unwrap_or(&self.path)
            .file_name()
            .map_or_else(
                || "unnamed-model".to_string(),
                |name| name.to_string_lossy().into_owned(),
            )
    }

    /// `config.json`: the architecture.
    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.json")
    }

    /// `tokenizer.json`: the Hugging Face tokenizer.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.path.join("tokenizer.json")
    }

    /// `model.safetensors`: the weights.
    pub fn weights_path(&self) -> PathBuf {
        self.path.join("model.safetensors")
    }

    /// Reads and parses a JSON file of the directory.
    pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<T, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ModelError::Config {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The token limit sentence-transformers applies (`sentence_bert_config.json`), if the
    /// directory says one.
    pub fn max_seq_length(&self) -> Result<Option<usize>, ModelError> {
        let path = self.path.join("sentence_bert_config.json");
        if !path.is_file() {
            return Ok(None);
        }
        Ok(self.read_json::<SentenceBertConfig>(&path)?.max_seq_length)
    }

    /// Checks that the pooling the model was trained with (`1_Pooling/config.json`) is mean
    /// pooling, the only one implemented; a directory without the file is taken as mean pooling.
    pub fn check_mean_pooling(&self) -> Result<(), ModelError> {
        let path = self.path.join("1_Pooling").join("config.json");
        if !path.is_file() {
            return Ok(());
        }
        let pooling: PoolingConfig = self.read_json(&path)?;
        let others = pooling.pooling_mode_cls_token
            || pooling.pooling_mode_max_tokens
            || pooling.pooling_mode_mean_sqrt_len_tokens;
        if pooling.pooling_mode_mean_tokens && !others {
            Ok(())
        } else {
            Err(ModelError::Unsupported {
                path: self.path.clone(),
                reason:
                    "only mean pooling is implemented (1_Pooling/config.json asks for another mode)"
                        .into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("concierge-model-dir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    fn touch_required(dir: &Path) {
        for file in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::write(dir.join(file), b"{}").expect("write file");
        }
    }

    #[test]
    fn a_missing_file_is_named_with_the_fetch_hint() {
        let dir = scratch("missing");
        std::fs::write(dir.join("config.json"), b"{}").expect("write");
        let err = ModelDir::open(&dir).expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("tokenizer.json"), "{text}");
        assert!(text.contains("models/fetch.sh"), "{text}");
    }

    #[test]
    fn max_seq_length_comes_from_sentence_bert_config() {
        let dir = scratch("maxlen");
        touch_required(&dir);
        let model = ModelDir::open(&dir).expect("open");
        assert_eq!(model.max_seq_length().expect("read"), None);
        std::fs::write(
            dir.join("sentence_bert_config.json"),
            br#"{"max_seq_length": 256, "do_lower_case": false}"#,
        )
        .expect("write");
        assert_eq!(model.max_seq_length().expect("read"), Some(256));
    }

    #[test]
    fn a_malformed_config_names_its_file() {
        let dir = scratch("malformed");
        touch_required(&dir);
        std::fs::write(dir.join("sentence_bert_config.json"), b"{not json").expect("write");
        let err = ModelDir::open(&dir)
            .expect("open")
            .max_seq_length()
            .expect_err("must fail");
        assert!(
            err.to_string().contains("sentence_bert_config.json"),
            "{err}"
        );
    }

    #[test]
    fn cls_pooling_is_refused() {
        let dir = scratch("pooling");
        touch_required(&dir);
        std::fs::create_dir_all(dir.join("1_Pooling")).expect("mkdir");
        let model = ModelDir::open(&dir).expect("open");
        std::fs::write(
            dir.join("1_Pooling/config.json"),
            br#"{"pooling_mode_mean_tokens": true}"#,
        )
        .expect("write");
        assert!(model.check_mean_pooling().is_ok());
        std::fs::write(
            dir.join("1_Pooling/config.json"),
            br#"{"pooling_mode_cls_token": true}"#,
        )
        .expect("write");
        assert!(matches!(
            model.check_mean_pooling(),
            Err(ModelError::Unsupported { .. })
        ));
    }

    #[test]
    fn the_model_id_is_the_directory_name() {
        let dir = scratch("id").join("all-MiniLM-L6-v2");
        std::fs::create_dir_all(&dir).expect("mkdir");
        touch_required(&dir);
        assert_eq!(
            ModelDir::open(&dir).expect("open").model_id(),
            "all-MiniLM-L6-v2"
        );
    }
}
