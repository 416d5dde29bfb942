//! Request extractors that fail with our problem bodies, not the framework's text: JSON bodies
//! (415 wrong content type, 413 too large, 400 malformed, 422 well-formed but invalid).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;

/// A JSON request body.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse(&bytes).map(JsonBody)
    }
}

/// 415 unless the request says it is JSON (`application/json` or a `+json` type).
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "expected Content-Type: application/json, got {content_type:?}"
        )))
    }
}

/// Parses JSON: syntax errors are 400, shape errors (missing or unknown fields, wrong types) 422,
/// and so is an object with the same key twice, at any depth (which one would count is a guess).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax errors are left to the parse below, which words them.
    if let Err(e) = serde::de::DeserializeSeed::deserialize(
        UniqueKeys,
        &mut serde_json::Deserializer::from_slice(bytes),
    ) && !e.is_syntax()
        && !e.is_eof()
    {
        return Err(ApiError::Unprocessable(format!("invalid request: {e}")));
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => ApiError::BadRequest(format!("malformed JSON: {e}")),
        serde_json::error::Category::Data => {
            ApiError::Unprocessable(format!("invalid request: {e}"))
        }
    })
}

/// Walks a JSON document and fails on an object that repeats a key.
struct UniqueKeys;

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueKeys)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !seen.insert(key.clone().into_owned()) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            map.next_value_seed(UniqueKeys)?;
        }
        Ok(())
    }
}

/// The raw request body (webhook signatures are over the exact bytes), with our problem bodies
/// for oversized or unreadable requests.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config.server.max_body_bytes;
        let timeout = std::time::Duration::from_millis(state.config.server.body_timeout_ms);
        // A body that never comes (or comes a byte at a time) does not hold the connection.
        let read = tokio::time::timeout(timeout, Bytes::from_request(req, state))
            .await
            .map_err(|_| ApiError::RequestTimeout(state.config.server.body_timeout_ms))?;
        read.map(RawBody).map_err(|r| {
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(limit)
            } else {
                ApiError::BadRequest(r.body_text())
            }
        })
    }
}

/// Middleware: a request head larger than `server.max_header_bytes` gets a 431 problem. (hyper
/// itself answers a bare 431 only beyond its buffer, about 400 KB.)
pub async fn refuse_large_head(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    let limit = state.config.server.max_header_bytes;
    let size: usize = request.uri().to_string().len()
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if size > limit {
        return Err(ApiError::HeadTooLarge(limit));
    }
    Ok(next.run(request).await)
}

/// Middleware: a declared `Content-Length` over `server.max_body_bytes` is refused with 413
/// before anything reads the body — so a client that sent `Expect: 100-continue` gets the 413
/// instead of `100 Continue`.
pub async fn refuse_declared_oversize(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    let limit = state.config.server.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge(limit));
    }
    Ok(next.run(request).await)
}
