//! The RocksDB store: opening it with its column families and format version, synced write
//! batches that poison the store when they fail, and the key/value encodings of every record.
//! Not for: deciding what to write (see `ingest`, `changelog`, `indexer`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rocksdb::{
    BlockBasedOptions, BoundColumnFamily, Cache, ColumnFamilyDescriptor, DBCompressionType,
    IteratorMode, Options, WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};

use crate::document::Document;
use crate::error::{Error, Result};

type Db = rocksdb::DBWithThreadMode<rocksdb::MultiThreaded>;

/// The on-disk format this build reads and writes. Bump it (with a migration or a clear
/// error) whenever a key or value encoding changes.
pub const FORMAT_VERSION: u32 = 1;
/// Memtables of all column families together, bytes.
const MEMTABLE_BUDGET: usize = 64 << 20;
/// The block cache all column families share, bytes.
const BLOCK_CACHE: usize = 32 << 20;

/// Column families (DESIGN.md §3).
pub(crate) mod cf {
    pub const DOCS: &str = "docs";
    pub const CHUNKS: &str = "chunks";
    pub const VECTORS: &str = "vectors";
    pub const CHANGELOG: &str = "changelog";
    pub const CURSORS: &str = "cursors";
    pub const EVENTS: &str = "events";
    pub const DEADLETTER: &str = "deadletter";
    pub const META: &str = "meta";
    pub const ALL: [&str; 8] = [
        DOCS, CHUNKS, VECTORS, CHANGELOG, CURSORS, EVENTS, DEADLETTER, META,
    ];
}

/// Keys in the `meta` column family.
pub(crate) mod meta_key {
    pub const FORMAT_VERSION: &[u8] = b"format_version";
    pub const MODEL: &[u8] = b"model";
    /// Highest change-log sequence ever trimmed (so sequences never restart after a full trim).
    pub const TRIMMED_THROUGH: &[u8] = b"trimmed_through";
    /// Highest change-log sequence whose chunks and vectors are in `chunks`/`vectors`.
    pub const CHUNKS_SEQ: &[u8] = b"chunks_seq";
}

/// A document as stored in `docs`: deletes leave a tombstone so that an older upsert arriving
/// late cannot bring the document back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredDoc {
    pub doc: Document,
    pub deleted: bool,
    /// Change-log sequence of the last applied change.
    pub seq: u64,
}

/// The embedding model the vectors were made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ModelStamp {
    pub id: String,
    pub dim: usize,
}

/// The open RocksDB database.
pub(crate) struct Store {
    db: Db,
    path: PathBuf,
    sync: WriteOptions,
    poison: Mutex<Option<String>>,
    opts: Options,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if missing) the store at `path`, checks its format version and records
    /// or checks the embedding model.
    pub fn open(path: &Path, model: &ModelStamp) -> Result<Self> {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.enable_statistics();
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(5);
        // RocksDB's own info log (the `LOG` file beside the data) only at FATAL: on a full disk
        // its first failed append marks the file's writer failed, and Debian's librocksdb keeps
        // its assertions, so the next message logged (the error handler reporting that very
        // failure) aborted the process (`WritableFileWriter::AssertFalseAndGetStatusForPrevError`,
        // found with gdb under ENOSPC). Errors reach us as statuses and are logged with tracing.
        opts.set_log_level(rocksdb::LogLevel::Fatal);
        opts.set_stats_dump_period_sec(0);
        // Memory: one memtable budget for all eight families (unbounded, each could hold
        // 2 × 64 MB) and one block cache shared by them (by default each has its own 8 MB).
        opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
        let cache = Cache::new_lru_cache(BLOCK_CACHE)?;
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        let cfs = cf::ALL.iter().map(|name| {
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(DBCompressionType::Lz4);
            cf_opts.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db = Db::open_cf_descriptors(&opts, path, cfs)?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        let store = Store {
            db,
            path: path.to_owned(),
            sync,
            poison: Mutex::new(None),
            opts,
        };
        store.check_format()?;
        store.check_model(model)?;
        Ok(store)
    }

    /// Writes every memtable to disk, so the next open has no write-ahead log to replay into
    /// memory (called at close).
    pub fn flush_all(&self) -> Result<()> {
        for name in cf::ALL {
            self.db.flush_cf(&self.cf(name))?;
        }
        Ok(())
    }

    fn check_format(&self) -> Result<()> {
        match self.get(cf::META, meta_key::FORMAT_VERSION)? {
            Some(bytes) => {
                let found = bytes
                    .as_slice()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| Error::corrupt("meta format_version", "not 4 bytes"))?;
                if found != FORMAT_VERSION {
                    return Err(Error::FormatVersion {
                        path: self.path.clone(),
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
                Ok(())
            }
            None => {
                let has_data = self
                    .db
                    .iterator_cf(&self.cf(cf::DOCS), IteratorMode::Start)
                    .next()
                    .is_some();
                if has_data {
                    return Err(Error::corrupt(
                        "meta",
                        "documents are present but the format version is missing",
                    ));
                }
                let mut batch = WriteBatch::default();
                batch.put_cf(
                    &self.cf(cf::META),
                    meta_key::FORMAT_VERSION,
                    FORMAT_VERSION.to_be_bytes(),
                );
                self.write(batch)
            }
        }
    }

    fn check_model(&self, model: &ModelStamp) -> Result<()> {
        match self.get_json::<ModelStamp>(cf::META, meta_key::MODEL)? {
            Some(stored) if stored == *model => Ok(()),
            Some(stored) => Err(Error::ModelMismatch {
                stored: stored.id,
                stored_dim: stored.dim,
                configured: model.id.clone(),
                configured_dim: model.dim,
            }),
            None => {
                let mut batch = WriteBatch::default();
                put_json(&mut batch, &self.cf(cf::META), meta_key::MODEL, model)?;
                self.write(batch)
            }
        }
    }

    pub fn cf(&self, name: &str) -> std::sync::Arc<BoundColumnFamily<'_>> {
        // Every name in `cf::ALL` is created at open, so the handle always exists.
        #[allow(clippy::expect_used)]
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Writes a batch and syncs the WAL before returning. Concurrent callers share fsyncs
    /// (RocksDB's group commit) because nothing here serialises them. A failure poisons the
    /// store: every later write is refused until it is reopened.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.check_poison()?;
        if let Err(e) = self.db.write_opt(batch, &self.sync) {
            let cause = e.to_string();
            tracing::error!(error = %cause, "a synced write failed: the store refuses writes until restart");
            if let Ok(mut p) = self.poison.lock() {
                p.get_or_insert(cause.clone());
            }
            return Err(Error::Poisoned { cause });
        }
        Ok(())
    }

    /// `Err(Poisoned)` once a write has failed.
    pub fn check_poison(&self) -> Result<()> {
        match self.poison.lock() {
            Ok(p) => match p.as_ref() {
                Some(cause) => Err(Error::Poisoned {
                    cause: cause.clone(),
                }),
                None => Ok(()),
            },
            Err(_) => Err(Error::Poisoned {
                cause: "a writer panicked".to_owned(),
            }),
        }
    }

    /// Marks the store poisoned (used by tests and by callers that detect lost durability).
    pub fn poison(&self, cause: impl Into<String>) {
        if let Ok(mut p) = self.poison.lock() {
            p.get_or_insert(cause.into());
        }
    }

    pub fn get(&self, cf_name: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(&self.cf(cf_name), key)?)
    }

    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        cf_name: &str,
        key: &[u8],
    ) -> Result<Option<T>> {
        match self.get(cf_name, key)? {
            Some(bytes) => Ok(Some(decode_json(cf_name, &bytes)?)),
            None => Ok(None),
        }
    }

    pub fn get_u64(&self, cf_name: &str, key: &[u8]) -> Result<Option<u64>> {
        match self.get(cf_name, key)? {
            Some(bytes) => Ok(Some(decode_u64(cf_name, &bytes)?)),
            None => Ok(None),
        }
    }

    pub fn get_doc(&self, id: &str) -> Result<Option<StoredDoc>> {
        self.get_json(cf::DOCS, id.as_bytes())
    }

    /// Several documents at once (one RocksDB multi-get).
    pub fn get_docs<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Option<StoredDoc>>> {
        let cf = self.cf(cf::DOCS);
        let keys: Vec<_> = ids.into_iter().map(|id| (&cf, id.as_bytes())).collect();
        self.db
            .multi_get_cf(keys)
            .into_iter()
            .map(|r| match r? {
                Some(bytes) => Ok(Some(decode_json(cf::DOCS, &bytes)?)),
                None => Ok(None),
            })
            .collect()
    }

    /// RocksDB's statistics dump (`rocksdb.wal.synced COUNT : n`, ...).
    pub fn statistics(&self) -> Option<String> {
        self.opts.get_statistics()
    }

    /// A consistent on-disk copy of the whole database (hard links where possible).
    pub fn checkpoint(&self, target: &Path) -> Result<()> {
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db)?;
        checkpoint.create_checkpoint(target)?;
        Ok(())
    }
}

pub(crate) fn put_json<T: Serialize>(
    batch: &mut WriteBatch,
    cf: &impl rocksdb::AsColumnFamilyRef,
    key: impl AsRef<[u8]>,
    value: &T,
) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::corrupt("encoding a record", e))?;
    batch.put_cf(cf, key, bytes);
    Ok(())
}

pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::corrupt(what, e))
}

pub(crate) fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| Error::corrupt(what, format!("expected 8 bytes, found {}", bytes.len())))
}

/// Vectors are stored as little-endian f32s.
pub(crate) fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn decode_vector(bytes: &[u8], dim: usize) -> Result<Vec<f32>> {
    if bytes.len() != dim * 4 {
        return Err(Error::corrupt(
            "vectors",
            format!("expected {} bytes, found {}", dim * 4, bytes.len()),
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> ModelStamp {
        ModelStamp {
            id: "test-model".into(),
            dim: 4,
        }
    }

    #[test]
    fn a_store_written_by_another_format_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path(), &stamp()).expect("opens");
            let mut batch = WriteBatch::default();
            batch.put_cf(
                &store.cf(cf::META),
                meta_key::FORMAT_VERSION,
                99u32.to_be_bytes(),
            );
            store.write(batch).expect("writes");
        }
        let err = Store::open(dir.path(), &stamp()).expect_err("must refuse");
        assert!(
            matches!(
                err,
                Error::FormatVersion {
                    found: 99,
                    expected: FORMAT_VERSION,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_store_built_with_another_model_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Store::open(dir.path(), &stamp()).expect("opens"));
        let err = Store::open(
            dir.path(),
            &ModelStamp {
                id: "other".into(),
                dim: 8,
            },
        )
        .expect_err("must refuse");
        assert!(matches!(err, Error::ModelMismatch { .. }), "{err}");
    }

    #[test]
    fn a_poisoned_store_refuses_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &stamp()).expect("opens");
        store.poison("disk on fire");
        let err = store.write(WriteBatch::default()).expect_err("refused");
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }

    #[test]
    fn vectors_round_trip_and_bad_lengths_are_corrupt() {
        let v = [0.5f32, -1.0, 3.25];
        assert_eq!(decode_vector(&encode_vector(&v), 3).expect("decodes"), v);
        assert!(decode_vector(&[0u8; 5], 3).is_err());
    }
}
