//! A small blocking S3 client for what a restic repository needs: put, ranged get, delete,
//! paginated ListObjectsV2, head/create bucket. SigV4-signed, path-style or virtual-hosted,
//! no checksum, ACL, tagging or SSE headers (R2 refuses them). Throttling (429, 503 SlowDown),
//! server errors and transport failures are retried with exponential backoff and jitter; every
//! operation here is idempotent, so a retry never duplicates anything.

use std::time::Duration;

use concierge_infra::retry::{self, Attempt, Backoff, Policy};

use super::sigv4::{EMPTY_SHA256, Request, Signer, sha256_hex, uri_encode};
use super::xml;

/// Where and how to reach the bucket.
#[derive(Clone)]
pub struct S3Config {
    /// `https://<account>.r2.cloudflarestorage.com`, `http://127.0.0.1:5000`, ...
    pub endpoint: String,
    pub bucket: String,
    /// `auto` for R2.
    pub region: String,
    /// `https://endpoint/bucket/key` (true) or `https://bucket.endpoint/key`.
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Per request.
    pub timeout: Duration,
    /// Attempts per operation (1 = no retry).
    pub attempts: u32,
    /// First backoff; doubled per attempt, capped at 20 s.
    pub backoff: Duration,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("{what}: not found (404 {code})")]
    NotFound { what: String, code: String },
    #[error(
        "{what}: access denied ({status} {code}: {message}); check the repository's access_key_id / secret_access_key and the bucket name"
    )]
    Denied {
        what: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{what}: the server answered {status} {code}: {message}")]
    Status {
        what: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{what}: cannot reach {endpoint} after {attempts} attempt(s): {detail}")]
    Unreachable {
        what: String,
        endpoint: String,
        attempts: u32,
        detail: String,
    },
    #[error("invalid S3 configuration: {0}")]
    Config(String),
    #[error("{what}: unexpected answer: {detail}")]
    Protocol { what: String, detail: String },
}

impl S3Error {
    /// A transient failure worth retrying.
    fn retryable(&self) -> bool {
        match self {
            S3Error::Status { status, .. } => *status == 429 || *status >= 500,
            S3Error::Unreachable { .. } => true,
            S3Error::NotFound { .. }
            | S3Error::Denied { .. }
            | S3Error::Config(_)
            | S3Error::Protocol { .. } => false,
        }
    }
}

/// The client.
#[derive(Debug)]
pub struct S3Client {
    config: S3Config,
    signer: Signer,
    agent: ureq::Agent,
    /// `scheme://authority` of the requests.
    origin: String,
    /// The `Host` header (signed).
    host: String,
    /// `/bucket` for path-style, empty otherwise.
    bucket_path: String,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

fn amz_date_now() -> String {
    concierge_infra::utc::basic_iso(concierge_infra::utc::now_secs())
}

impl S3Client {
    /// Checks the configuration; no request is made.
    pub fn new(config: S3Config) -> Result<Self, S3Error> {
        let (scheme, rest) = config.endpoint.split_once("://").ok_or_else(|| {
            S3Error::Config(format!(
                "endpoint {:?} must start with https:// or http://",
                config.endpoint
            ))
        })?;
        if scheme != "https" && scheme != "http" {
            return Err(S3Error::Config(format!(
                "endpoint {:?} must use https or http",
                config.endpoint
            )));
        }
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(S3Error::Config(format!(
                "endpoint {:?} must be scheme://host[:port] without a path (the bucket is configured on its own)",
                config.endpoint
            )));
        }
        let authority = match (scheme, authority.rsplit_once(':')) {
            ("https", Some((h, "443"))) | ("http", Some((h, "80"))) => h.to_owned(),
            _ => authority.to_owned(),
        };
        if config.bucket.is_empty()
            || !config
                .bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(S3Error::Config(format!(
                "bucket {:?} must be lowercase letters, digits, '-' or '.'",
                config.bucket
            )));
        }
        if config.access_key_id.is_empty() || config.secret_access_key.is_empty() {
            return Err(S3Error::Config(
                "access_key_id and secret_access_key are required".into(),
            ));
        }
        let (host, bucket_path) = if config.path_style {
            (authority.clone(), format!("/{}", config.bucket))
        } else {
            (format!("{}.{authority}", config.bucket), String::new())
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(S3Client {
            signer: Signer::new(
                &config.access_key_id,
                &config.secret_access_key,
                &config.region,
            ),
            origin: format!("{scheme}://{host}"),
            host,
            bucket_path,
            agent,
            config,
        })
    }

    /// `endpoint/bucket`, for messages.
    pub fn location(&self) -> String {
        format!(
            "{}/{}",
            self.config.endpoint.trim_end_matches('/'),
            self.config.bucket
        )
    }

    fn path(&self, key: &str) -> String {
        if key.is_empty() {
            if self.bucket_path.is_empty() {
                "/".to_owned()
            } else {
                self.bucket_path.clone()
            }
        } else {
            format!("{}/{}", self.bucket_path, uri_encode(key, true))
        }
    }

    /// One signed request; (status, headers of interest, body).
    fn once(
        &self,
        method: &str,
        key: &str,
        query: &[(String, String)],
        extra: &[(String, String)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        let path = self.path(key);
        let payload = if body.is_empty() {
            EMPTY_SHA256.to_owned()
        } else {
            sha256_hex(body)
        };
        let date = amz_date_now();
        let mut headers = vec![
            ("host".to_owned(), self.host.clone()),
            ("x-amz-content-sha256".to_owned(), payload.clone()),
            ("x-amz-date".to_owned(), date.clone()),
        ];
        headers.extend(extra.iter().cloned());
        let authorization = self.signer.authorization(
            &Request {
                method,
                path: &path,
                query,
                headers: &headers,
                payload_sha256: &payload,
            },
            &date,
        );
        let query_string = Signer::canonical_query(query);
        let url = if query_string.is_empty() {
            format!("{}{path}", self.origin)
        } else {
            format!("{}{path}?{query_string}", self.origin)
        };
        let builder = ureq::http::Request::builder().method(method).uri(&url);
        let builder = headers
            .iter()
            .filter(|(k, _)| k != "host")
            .fold(builder, |b, (k, v)| b.header(k.as_str(), v.as_str()))
            .header("authorization", authorization);
        let request = builder.body(body.to_vec()).map_err(|e| e.to_string())?;
        let mut response = self.agent.run(request).map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok((status, bytes))
    }

    /// A request with retries; the body of a 2xx answer, or the error.
    // The arguments are the parts of one S3 request; a struct for them would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        what: &str,
        method: &str,
        key: &str,
        query: &[(String, String)],
        extra: &[(String, String)],
        body: &[u8],
        ok: &[u16],
    ) -> Result<Vec<u8>, S3Error> {
        let policy = Policy::new(
            self.config.attempts,
            Backoff::new(self.config.backoff, Duration::from_secs(20)),
        );
        policy.run(
            |attempt| {
                let err = match self.once(method, key, query, extra, body) {
                    Ok((status, bytes)) if (200..300).contains(&status) || ok.contains(&status) => {
                        return Attempt::Done(bytes);
                    }
                    Ok((status, bytes)) => self.status_error(what, status, &bytes),
                    Err(detail) => S3Error::Unreachable {
                        what: what.to_owned(),
                        endpoint: self.config.endpoint.clone(),
                        attempts: attempt,
                        detail,
                    },
                };
                if err.retryable() {
                    tracing::warn!(%what, attempt, error = %err, "S3 request failed; retrying");
                    Attempt::Retry {
                        error: err,
                        after: None,
                    }
                } else {
                    Attempt::Fatal(err)
                }
            },
            retry::sleep,
        )
    }

    fn status_error(&self, what: &str, status: u16, body: &[u8]) -> S3Error {
        let text = String::from_utf8_lossy(body);
        let code = xml::first(&text, "Code").unwrap_or_default();
        let message =
            xml::first(&text, "Message").unwrap_or_else(|| text.chars().take(200).collect());
        let what = what.to_owned();
        match status {
            404 => S3Error::NotFound { what, code },
            401 | 403 => S3Error::Denied {
                what,
                status,
                code,
                message,
            },
            _ => S3Error::Status {
                what,
                status,
                code,
                message,
            },
        }
    }

    /// Stores an object (replacing it).
    pub fn put(&self, key: &str, body: &[u8]) -> Result<(), S3Error> {
        let extra = [(
            "content-type".to_owned(),
            "application/octet-stream".to_owned(),
        )];
        self.call(&format!("PUT {key}"), "PUT", key, &[], &extra, body, &[])
            .map(drop)
    }

    /// Reads an object, or `length` bytes of it from `offset`.
    pub fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>, S3Error> {
        let extra: Vec<(String, String)> = range
            .filter(|(_, len)| *len > 0)
            .map(|(offset, len)| {
                (
                    "range".to_owned(),
                    format!("bytes={offset}-{}", offset + len - 1),
                )
            })
            .into_iter()
            .collect();
        let bytes = self.call(&format!("GET {key}"), "GET", key, &[], &extra, &[], &[])?;
        if let Some((_, len)) = range
            && len > 0
            && bytes.len() as u64 != len
        {
            return Err(S3Error::Protocol {
                what: format!("GET {key}"),
                detail: format!("asked for {len} bytes, got {}", bytes.len()),
            });
        }
        Ok(bytes)
    }

    /// Deletes an object (deleting a missing one succeeds, as S3 defines it).
    pub fn delete(&self, key: &str) -> Result<(), S3Error> {
        self.call(
            &format!("DELETE {key}"),
            "DELETE",
            key,
            &[],
            &[],
            &[],
            &[404],
        )
        .map(drop)
    }

    /// Every object under `prefix`, following continuation tokens.
    pub fn list(&self, prefix: &str) -> Result<Vec<Object>, S3Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type".to_owned(), "2".to_owned()),
                ("prefix".to_owned(), prefix.to_owned()),
                ("max-keys".to_owned(), "1000".to_owned()),
            ];
            if let Some(t) = &token {
                query.push(("continuation-token".to_owned(), t.clone()));
            }
            let what = format!("LIST {prefix}");
            let body = self.call(&what, "GET", "", &query, &[], &[], &[])?;
            let text = String::from_utf8_lossy(&body);
            for contents in xml::all(&text, "Contents") {
                let key = xml::first(contents, "Key").ok_or_else(|| S3Error::Protocol {
                    what: what.clone(),
                    detail: "an entry without <Key>".into(),
                })?;
                let size = xml::first(contents, "Size")
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or_else(|| S3Error::Protocol {
                        what: what.clone(),
                        detail: format!("no valid <Size> for {key}"),
                    })?;
                out.push(Object { key, size });
            }
            let truncated = xml::first(&text, "IsTruncated").is_some_and(|t| t.trim() == "true");
            token = xml::first(&text, "NextContinuationToken");
            if !truncated {
                return Ok(out);
            }
            if token.is_none() {
                return Err(S3Error::Protocol {
                    what,
                    detail: "a truncated listing without NextContinuationToken".into(),
                });
            }
        }
    }

    /// Does the bucket exist (and may we use it)?
    pub fn bucket_exists(&self) -> Result<bool, S3Error> {
        match self.call("HEAD bucket", "HEAD", "", &[], &[], &[], &[]) {
            Ok(_) => Ok(true),
            Err(S3Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates the bucket (R2 accepts the region `auto` as its location).
    pub fn create_bucket(&self) -> Result<(), S3Error> {
        let region = self.config.region.as_str();
        let body = if region.is_empty() || region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            )
        };
        self.call("CREATE bucket", "PUT", "", &[], &[], body.as_bytes(), &[])
            .map(drop)
    }
}
