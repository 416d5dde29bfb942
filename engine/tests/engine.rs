//! Black-box tests of the engine with real RocksDB, tantivy, hnsw_rs and the real model.

mod engine {
    pub mod common;
    mod consumers;
    mod durability;
    mod hybrid;
    mod property;
    mod recovery;
}
