//! Chunk records in the `chunks` column family and their vectors in `vectors`: what a rebuild
//! reads instead of re-embedding, and what search hits are hydrated from.
//!
//! Keys: `d<doc id>\0<ordinal u32 BE>` → chunk record; `i<chunk id u64 BE>` → `<doc id>\0<ordinal>`;
//! `vectors`: `<chunk id u64 BE>` → f32 LE values.

use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{Store, StoredDoc, cf, decode_json, decode_vector, encode_vector, put_json};

/// A document's chunks with their vectors, as a rebuild reads them.
pub(crate) type ChunksWithVectors = Vec<(ChunkRecord, Vec<f32>)>;

/// A stored chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChunkRecord {
    pub id: u64,
    pub ordinal: u32,
    pub text: String,
}

fn doc_prefix(doc_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(doc_id.len() + 6);
    key.push(b'd');
    key.extend_from_slice(doc_id.as_bytes());
    key.push(0);
    key
}

fn doc_key(doc_id: &str, ordinal: u32) -> Vec<u8> {
    let mut key = doc_prefix(doc_id);
    key.extend_from_slice(&ordinal.to_be_bytes());
    key
}

fn id_key(chunk_id: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = b'i';
    key[1..].copy_from_slice(&chunk_id.to_be_bytes());
    key
}

/// The chunks currently stored for a document, in order.
pub(crate) fn chunks_of(store: &Store, doc_id: &str) -> Result<Vec<ChunkRecord>> {
    let prefix = doc_prefix(doc_id);
    let mut out = Vec::new();
    for item in store.db().iterator_cf(
        &store.cf(cf::CHUNKS),
        IteratorMode::From(&prefix, Direction::Forward),
    ) {
        let (key, value) = item?;
        if !key.starts_with(&prefix) {
            break;
        }
        out.push(decode_json("chunk record", &value)?);
    }
    Ok(out)
}

/// Adds to `batch` what replaces `old` chunks of `doc_id` by `new` ones (with their vectors).
pub(crate) fn replace(
    store: &Store,
    batch: &mut WriteBatch,
    doc_id: &str,
    old: &[ChunkRecord],
    new: &[(ChunkRecord, &[f32])],
) -> Result<()> {
    let chunks = store.cf(cf::CHUNKS);
    let vectors = store.cf(cf::VECTORS);
    for o in old {
        if !new.iter().any(|(n, _)| n.id == o.id) {
            batch.delete_cf(&vectors, o.id.to_be_bytes());
            batch.delete_cf(&chunks, id_key(o.id));
        }
        if !new.iter().any(|(n, _)| n.ordinal == o.ordinal) {
            batch.delete_cf(&chunks, doc_key(doc_id, o.ordinal));
        }
    }
    for (record, vector) in new {
        put_json(batch, &chunks, doc_key(doc_id, record.ordinal), record)?;
        let mut back = doc_id.as_bytes().to_vec();
        back.push(0);
        back.extend_from_slice(&record.ordinal.to_be_bytes());
        batch.put_cf(&chunks, id_key(record.id), back);
        batch.put_cf(&vectors, record.id.to_be_bytes(), encode_vector(vector));
    }
    Ok(())
}

/// Stored vectors for chunk ids (None where missing).
pub(crate) fn vectors(store: &Store, ids: &[u64], dim: usize) -> Result<Vec<Option<Vec<f32>>>> {
    let cf = store.cf(cf::VECTORS);
    let keys: Vec<_> = ids.iter().map(|id| (&cf, id.to_be_bytes())).collect();
    store
        .db()
        .multi_get_cf(keys)
        .into_iter()
        .map(|r| match r? {
            Some(bytes) => Ok(Some(decode_vector(&bytes, dim)?)),
            None => Ok(None),
        })
        .collect()
}

/// The text of a chunk by id (for hydrating hits).
pub(crate) fn chunk_text(store: &Store, chunk_id: u64) -> Result<Option<ChunkRecord>> {
    let Some(back) = store.get(cf::CHUNKS, &id_key(chunk_id))? else {
        return Ok(None);
    };
    // `<doc id>\0<ordinal: 4 bytes>`: the ordinal's bytes may be zero, so split from the end.
    if back.len() < 6 || back[back.len() - 5] != 0 {
        return Err(Error::corrupt("chunk back-reference", "malformed"));
    }
    let split = back.len() - 5;
    let doc_id = std::str::from_utf8(&back[..split])
        .map_err(|e| Error::corrupt("chunk back-reference", e))?;
    let ordinal: [u8; 4] = back[split + 1..]
        .try_into()
        .map_err(|_| Error::corrupt("chunk back-reference", "bad ordinal"))?;
    store.get_json(cf::CHUNKS, &doc_key(doc_id, u32::from_be_bytes(ordinal)))
}

/// Every stored document's chunks with vectors, read from one consistent snapshot, together
/// with the change-log sequence they reflect. Calls `each` once per document.
pub(crate) fn scan_all(
    store: &Store,
    dim: usize,
    each: &mut dyn FnMut(StoredDoc, ChunksWithVectors) -> Result<()>,
) -> Result<u64> {
    let snapshot = store.db().snapshot();
    let seq = match snapshot.get_cf(&store.cf(cf::META), crate::store::meta_key::CHUNKS_SEQ)? {
        Some(bytes) => crate::store::decode_u64("chunks_seq", &bytes)?,
        None => 0,
    };
    let vectors_cf = store.cf(cf::VECTORS);
    let docs_cf = store.cf(cf::DOCS);
    let mut emit = |id: String, chunks: Vec<(ChunkRecord, Vec<f32>)>| -> Result<()> {
        match snapshot.get_cf(&docs_cf, id.as_bytes())? {
            Some(bytes) => {
                let stored: StoredDoc = decode_json("document", &bytes)?;
                if stored.deleted {
                    Ok(())
                } else {
                    each(stored, chunks)
                }
            }
            None => Ok(()),
        }
    };
    let mut current: Option<(String, ChunksWithVectors)> = None;
    for item in snapshot.iterator_cf(
        &store.cf(cf::CHUNKS),
        IteratorMode::From(b"d", Direction::Forward),
    ) {
        let (key, value) = item?;
        if key.first() != Some(&b'd') {
            break;
        }
        // `d<doc id>\0<ordinal: 4 bytes>`.
        if key.len() < 7 || key[key.len() - 5] != 0 {
            return Err(Error::corrupt("chunk key", "malformed"));
        }
        let split = key.len() - 5;
        let doc_id =
            std::str::from_utf8(&key[1..split]).map_err(|e| Error::corrupt("chunk key", e))?;
        let record: ChunkRecord = decode_json("chunk record", &value)?;
        let vector = match snapshot.get_cf(&vectors_cf, record.id.to_be_bytes())? {
            Some(bytes) => decode_vector(&bytes, dim)?,
            None => {
                return Err(Error::corrupt(
                    "vectors",
                    format!("chunk {} of {doc_id} has no vector", record.id),
                ));
            }
        };
        match &mut current {
            Some((id, chunks)) if id == doc_id => chunks.push((record, vector)),
            _ => {
                if let Some((id, chunks)) = current.take() {
                    emit(id, chunks)?;
                }
                current = Some((doc_id.to_owned(), vec![(record, vector)]));
            }
        }
    }
    if let Some((id, chunks)) = current.take() {
        emit(id, chunks)?;
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ModelStamp;

    #[test]
    fn chunks_round_trip_by_document_and_by_id_whatever_bytes_their_ordinals_have() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            dir.path(),
            &ModelStamp {
                id: "m".into(),
                dim: 2,
            },
        )
        .expect("opens");
        let records: Vec<ChunkRecord> = [0u32, 1, 256]
            .iter()
            .map(|o| ChunkRecord {
                id: 100 + u64::from(*o),
                ordinal: *o,
                text: format!("chunk {o}"),
            })
            .collect();
        let mut batch = WriteBatch::default();
        let new: Vec<(ChunkRecord, &[f32])> = records
            .iter()
            .map(|r| (r.clone(), &[0.6f32, 0.8][..]))
            .collect();
        replace(&store, &mut batch, "a:b:1", &[], &new).expect("batch");
        store.write(batch).expect("write");
        assert_eq!(chunks_of(&store, "a:b:1").expect("chunks"), records);
        for r in &records {
            assert_eq!(chunk_text(&store, r.id).expect("lookup").as_ref(), Some(r));
        }
        assert_eq!(
            vectors(&store, &[100, 999], 2).expect("vectors"),
            vec![Some(vec![0.6, 0.8]), None]
        );
        // Replacing drops chunks that are gone, with their vectors.
        let mut batch = WriteBatch::default();
        replace(&store, &mut batch, "a:b:1", &records, &new[..1]).expect("batch");
        store.write(batch).expect("write");
        assert_eq!(chunks_of(&store, "a:b:1").expect("chunks"), records[..1]);
        assert_eq!(vectors(&store, &[101], 2).expect("vectors"), vec![None]);
        assert!(chunk_text(&store, 101).expect("lookup").is_none());
    }
}
