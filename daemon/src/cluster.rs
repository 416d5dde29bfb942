//! A replica's way to the primary (`[cluster] role = "replica"`): every write it receives —
//! webhooks, `POST`/`DELETE /v1/documents`, RocketChat's outgoing webhook — is sent on to
//! `primary_url` as it came (method, path, query, body and the headers that carry proofs:
//! Aircall's body token, Guesty's Svix signature), with `primary_token` as the bearer, and the
//! primary's answer goes back to the caller as it is (its status, `seq`, problem body). The
//! replica acknowledges nothing the primary did not. The primary unreachable is a 503 saying so;
//! searches on the replica go on through Qdrant.

use std::time::Duration;

/// Headers never passed on: hop-by-hop ones, the length (recomputed), the caller's credentials
/// (the replica checked them; the primary gets `primary_token`).
const DROPPED: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "authorization",
    "expect",
];

/// Answer headers passed back to the caller.
const RELAYED: &[&str] = &[
    "content-type",
    "retry-after",
    "www-authenticate",
    "location",
];

/// The primary as a replica reaches it.
#[derive(Clone)]
pub struct Primary {
    url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Primary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Primary")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The primary's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why nothing came back from the primary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the primary ({url}) cannot be reached: {reason}")]
pub struct Unreachable {
    pub url: String,
    pub reason: String,
}

impl Primary {
    pub fn new(url: &str, token: Option<String>, timeout: Duration) -> Primary {
        Primary {
            url: url.trim_end_matches('/').to_owned(),
            token,
            agent: crate::outbound::agent(timeout),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends a request on (blocking) and returns the primary's answer.
    pub fn forward(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Forwarded, Unreachable> {
        let unreachable = |reason: String| Unreachable {
            url: self.url.clone(),
            reason,
        };
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.url));
        for (name, value) in headers {
            if !DROPPED.contains(&name.to_ascii_lowercase().as_str()) {
                request = request.header(name.as_str(), value.as_str());
            }
        }
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(body)
            .map_err(|e| unreachable(format!("building the request: {e}")))?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter(|(n, _)| RELAYED.contains(&n.as_str()))
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = response
            .body_mut()
            .read_to_vec()
            .map_err(|e| unreachable(format!("reading its answer: {e}")))?;
        Ok(Forwarded {
            status,
            headers,
            body,
        })
    }
}
