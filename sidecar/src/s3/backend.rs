//! A restic repository in an S3 bucket, as rustic_core's backend: the same object layout restic
//! uses (`<root>/config`, `keys/`, `snapshots/`, `index/`, `data/<2 hex>/<id>`), so `restic -r
//! s3:<endpoint>/<bucket>/<root>` reads what we write. Packs are uploaded in the background,
//! `connections` at a time (`uploads`); every other operation first waits for them.

use std::sync::Arc;

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use super::client::{S3Client, S3Error};
use super::uploads::Uploads;

/// The backend.
#[derive(Debug, Clone)]
pub struct S3Backend {
    client: Arc<S3Client>,
    /// Key prefix of the repository, without leading or trailing `/` (may be empty).
    root: String,
    uploads: Arc<Uploads>,
}

fn backend_error(err: S3Error) -> Box<RusticError> {
    let kind = match &err {
        S3Error::Denied { .. } => ErrorKind::Credentials,
        S3Error::Config(_) => ErrorKind::Configuration,
        S3Error::NotFound { .. }
        | S3Error::Status { .. }
        | S3Error::Unreachable { .. }
        | S3Error::Protocol { .. } => ErrorKind::Backend,
    };
    RusticError::with_source(kind, "S3 request failed", err)
}

impl S3Backend {
    /// `connections`: pack uploads in flight at a time.
    pub fn new(client: S3Client, root: &str, connections: usize) -> Self {
        let client = Arc::new(client);
        S3Backend {
            uploads: Arc::new(Uploads::new(Arc::clone(&client), connections)),
            client,
            root: root.trim_matches('/').to_owned(),
        }
    }

    /// Waits for the pending pack uploads (and reports the first that failed).
    fn settle(&self) -> RusticResult<()> {
        self.uploads.flush().map_err(backend_error)
    }

    fn prefix(&self) -> String {
        if self.root.is_empty() {
            String::new()
        } else {
            format!("{}/", self.root)
        }
    }

    /// The object key of a repository file.
    pub fn key(&self, tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        let hex = hex.as_str();
        match tpe {
            FileType::Config => format!("{}config", self.prefix()),
            FileType::Pack => format!("{}data/{}/{hex}", self.prefix(), &hex[..2]),
            FileType::Index | FileType::Key | FileType::Snapshot => {
                format!("{}{}/{hex}", self.prefix(), tpe.dirname())
            }
        }
    }
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        format!("s3:{}/{}", self.client.location(), self.root)
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.settle()?;
        if tpe == FileType::Config {
            let key = format!("{}config", self.prefix());
            let found = match self.client.list(&key) {
                Err(S3Error::NotFound { .. }) => Vec::new(),
                other => other.map_err(backend_error)?,
            };
            return Ok(found
                .into_iter()
                .filter(|o| o.key == key)
                .map(|o| (Id::default(), u32::try_from(o.size).unwrap_or(u32::MAX)))
                .collect());
        }
        let prefix = format!("{}{}/", self.prefix(), tpe.dirname());
        let objects = match self.client.list(&prefix) {
            // No bucket yet: no repository yet (`create` makes the bucket at init).
            Err(S3Error::NotFound { .. }) => Vec::new(),
            other => other.map_err(backend_error)?,
        };
        let mut out = Vec::with_capacity(objects.len());
        for o in objects {
            let name = o.key.rsplit('/').next().unwrap_or_default();
            // Anything that is not a repository file (a stray upload, a folder marker) is skipped.
            let Ok(id) = name.parse::<Id>() else {
                tracing::warn!(key = %o.key, "skipping an object that is not a repository file");
                continue;
            };
            let size = u32::try_from(o.size).map_err(|_| {
                RusticError::new(
                    ErrorKind::Backend,
                    "repository file {key} is larger than 4 GiB",
                )
                .attach_context("key", o.key.clone())
            })?;
            out.push((id, size));
        }
        Ok(out)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.settle()?;
        self.client
            .get(&self.key(tpe, id), None)
            .map(Bytes::from)
            .map_err(backend_error)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.settle()?;
        self.client
            .get(
                &self.key(tpe, id),
                Some((u64::from(offset), u64::from(length))),
            )
            .map(Bytes::from)
            .map_err(backend_error)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.key(tpe, id)
    }
}

impl WriteBackend for S3Backend {
    fn create(&self) -> RusticResult<()> {
        if !self.client.bucket_exists().map_err(backend_error)? {
            tracing::info!(bucket = %self.client.location(), "creating the bucket");
            self.client.create_bucket().map_err(backend_error)?;
        }
        Ok(())
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let parts = content.into_vec();
        let body: Vec<u8> = if parts.len() == 1 {
            parts[0].to_vec()
        } else {
            parts.iter().flat_map(|b| b.iter().copied()).collect()
        };
        if tpe == FileType::Pack {
            return self
                .uploads
                .put(self.key(tpe, id), body)
                .map_err(backend_error);
        }
        // An index or snapshot may name any pack written so far: they must all be stored first.
        self.settle()?;
        self.client
            .put(&self.key(tpe, id), &body)
            .map_err(backend_error)
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.settle()?;
        self.client
            .delete(&self.key(tpe, id))
            .map_err(backend_error)
    }
}
