//! Who made a request: put into the request's extensions by the auth layer (for handlers) and
//! into the response's (for the access log, which runs outside that layer).

/// Who made a request, for the log and the handlers (request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `token` (a static token) or `oidc`.
    pub via: &'static str,
    /// The OIDC subject, or which configured token (`auth.read_tokens[0]`), never the token.
    pub subject: Option<String>,
    pub username: Option<String>,
}
