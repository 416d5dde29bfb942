//! The daemon's configuration (DESIGN.md §6): compiled defaults, then `concierge.toml`, then
//! `CONCIERGE_<SECTION>__<KEY>` environment variables, then flags. Unknown keys are errors that
//! name the key; any secret may be given as `<key>_file` (Docker secrets); lists in environment
//! variables are comma-separated. The key names are a contract: extend, never rename.

mod layers;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use concierge_infra::layered_config::Secret;
pub use layers::{Flags, load};

/// Everything `concierge serve` reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub storage: Storage,
    pub auth: Auth,
    pub models: Models,
    pub aircall: Aircall,
    pub guesty: Guesty,
    pub rocketchat: RocketChat,
    pub llm: Llm,
    pub answers: Answers,
    pub search: Search,
    pub qdrant: Qdrant,
    pub firestore: Firestore,
    pub cluster: Cluster,
    pub log: Log,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` (coloured only on a terminal) or `json` (one object per line); `--log-format`
    /// wins over it.
    pub format: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: "text".to_owned(),
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address to listen on: an IP address and port, or a host name and port (resolved once at
    /// start; IPv4 preferred), e.g. `127.0.0.1:8080`, `localhost:8080`.
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Connections served at once; more are closed when accepted.
    pub max_connections: usize,
    /// A request's head (and, on a keep-alive connection, the wait for the next one) must
    /// arrive within this; then the connection is closed.
    pub header_timeout_ms: u64,
    /// A request's body must arrive within this, else 408.
    pub body_timeout_ms: u64,
    /// Largest request line and headers, else 431.
    pub max_header_bytes: usize,
}

/// `ip:port`, or `host:port` resolved (the first IPv4 address, else the first one).
fn listen_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    use std::net::ToSocketAddrs;
    let text = String::deserialize(d)?;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let shape = || {
        serde::de::Error::custom(format!(
            "listen {text:?} is not an IP address and port (e.g. 127.0.0.1:8080) or a host name and port (e.g. localhost:8080)"
        ))
    };
    if !text.contains(':') {
        return Err(shape());
    }
    let addrs: Vec<SocketAddr> = text.to_socket_addrs().map_err(|_| shape())?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(shape)
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            max_connections: 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_header_bytes: 32 * 1024,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Where the store and the indexes live.
    pub data_dir: PathBuf,
    /// Writes are refused with 507 (the store stays sound, writes resume by themselves) while
    /// the data disk has less free space than this; 0 turns the check off.
    pub min_free_bytes: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            data_dir: PathBuf::from("./data"),
            min_free_bytes: concierge_engine::DEFAULT_MIN_FREE_BYTES,
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Static bearer tokens with every scope (secret).
    pub api_tokens: Vec<Secret>,
    /// Tokens that may only read: search, ask, get documents, status, metrics (secret).
    pub read_tokens: Vec<Secret>,
    /// Tokens that may read and write documents and checkpoints (secret).
    pub write_tokens: Vec<Secret>,
    /// Tokens with every scope, as `api_tokens` (secret).
    pub admin_tokens: Vec<Secret>,
    /// OIDC issuer whose access tokens (JWTs) are accepted too, exactly as tokens carry it in
    /// `iss` (Keycloak: `https://host/realms/<realm>`).
    pub oidc_issuer: Option<String>,
    /// The API's client id, expected in `aud`.
    pub oidc_audience: Option<String>,
    /// Also accept a token whose `azp` is the audience when `aud` lacks it (Keycloak without an
    /// audience mapper). Off by default.
    pub oidc_accept_azp: bool,
    /// A dotted path to more roles in the token (an array, or a space-separated string), read
    /// besides Keycloak's `realm_access.roles` and `resource_access.<audience>.roles`.
    pub oidc_roles_claim: Option<String>,
    /// Roles that grant `read`, `write` and `admin`.
    pub oidc_read_roles: Vec<String>,
    pub oidc_write_roles: Vec<String>,
    pub oidc_admin_roles: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    pub oidc_leeway_seconds: u64,
    /// How often the issuer's keys are fetched again, seconds.
    pub oidc_refresh_seconds: u64,
    /// The least time between two fetches, also when tokens name unknown keys, seconds.
    pub oidc_min_refresh_seconds: u64,
    /// The console's client id at the issuer (a public client with PKCE, the console's URL
    /// as its redirect URI and web origin): offers "Sign in with single sign-on" on `/`.
    pub oidc_console_client_id: Option<String>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            api_tokens: Vec::new(),
            read_tokens: Vec::new(),
            write_tokens: Vec::new(),
            admin_tokens: Vec::new(),
            oidc_issuer: None,
            oidc_audience: None,
            oidc_accept_azp: false,
            oidc_roles_claim: None,
            oidc_read_roles: vec!["concierge-read".to_owned()],
            oidc_write_roles: vec!["concierge-write".to_owned()],
            oidc_admin_roles: vec!["concierge-admin".to_owned()],
            oidc_leeway_seconds: 30,
            oidc_refresh_seconds: 600,
            oidc_min_refresh_seconds: 10,
            oidc_console_client_id: None,
        }
    }
}

impl Auth {
    /// Whether any way in is configured: a static token or an OIDC issuer (else the API is
    /// open, on loopback only).
    pub fn has_tokens(&self) -> bool {
        !(self.api_tokens.is_empty()
            && self.read_tokens.is_empty()
            && self.write_tokens.is_empty()
            && self.admin_tokens.is_empty()
            && self.oidc_issuer.is_none())
    }

    /// The OIDC verifier's settings; `None` when no issuer is configured.
    pub fn oidc(&self) -> Result<Option<crate::oidc::OidcSettings>, String> {
        let (issuer, audience) = match (&self.oidc_issuer, &self.oidc_audience) {
            (None, None) => return Ok(None),
            (Some(i), Some(a)) if !i.is_empty() && !a.is_empty() => (i, a),
            _ => {
                return Err(
                    "auth.oidc_issuer and auth.oidc_audience go together: set both (the audience is the API's client id)"
                        .to_owned(),
                );
            }
        };
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(format!(
                "auth.oidc_issuer {issuer:?}: an http(s) URL, e.g. https://sso.example.com/realms/ops"
            ));
        }
        if self.oidc_min_refresh_seconds == 0 || self.oidc_refresh_seconds == 0 {
            return Err(
                "auth.oidc_refresh_seconds and auth.oidc_min_refresh_seconds must be at least 1"
                    .to_owned(),
            );
        }
        Ok(Some(crate::oidc::OidcSettings {
            issuer: issuer.clone(),
            audience: audience.clone(),
            accept_azp: self.oidc_accept_azp,
            leeway: std::time::Duration::from_secs(self.oidc_leeway_seconds),
            refresh_every: std::time::Duration::from_secs(self.oidc_refresh_seconds),
            min_refresh_interval: std::time::Duration::from_secs(self.oidc_min_refresh_seconds),
            roles_claim: self.oidc_roles_claim.clone().filter(|c| !c.is_empty()),
        }))
    }
}

/// `[models]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Models {
    /// Directory holding the models.
    pub dir: PathBuf,
    /// Embedding model, a directory under `dir`.
    pub embedder: String,
}

impl Default for Models {
    fn default() -> Self {
        Models {
            dir: PathBuf::from("models/weights"),
            embedder: "all-MiniLM-L6-v2".to_owned(),
        }
    }
}

impl Models {
    /// The embedder's directory.
    pub fn embedder_dir(&self) -> PathBuf {
        self.dir.join(&self.embedder)
    }
}

/// `[aircall]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Aircall {
    /// Webhook tokens accepted in the body's `token` (secret).
    pub tokens: Vec<Secret>,
    /// Aircall REST API base.
    pub api_base: String,
    /// API id (basic auth user).
    pub api_id: Option<String>,
    /// API token (secret).
    pub api_token: Option<Secret>,
}

impl Default for Aircall {
    fn default() -> Self {
        Aircall {
            tokens: Vec::new(),
            api_base: "https://api.aircall.io".to_owned(),
            api_id: None,
            api_token: None,
        }
    }
}

/// `[guesty]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Guesty {
    /// Svix signing secret, `whsec_...` (secret).
    pub secret: Option<Secret>,
    /// Guesty Open API base.
    pub api_base: String,
    /// OAuth client id.
    pub client_id: Option<String>,
    /// OAuth client secret (secret).
    pub client_secret: Option<Secret>,
}

impl Default for Guesty {
    fn default() -> Self {
        Guesty {
            secret: None,
            api_base: "https://open-api.guesty.com".to_owned(),
            client_id: None,
            client_secret: None,
        }
    }
}

/// `[rocketchat]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RocketChat {
    /// Outgoing-webhook token (secret).
    pub token: Option<Secret>,
    /// RocketChat server base URL.
    pub api_base: Option<String>,
    /// Bot user id.
    pub user_id: Option<String>,
    /// Bot auth token (secret).
    pub auth_token: Option<Secret>,
    /// Time budget for a synchronous reply.
    pub reply_budget_ms: u64,
}

impl Default for RocketChat {
    fn default() -> Self {
        RocketChat {
            token: None,
            api_base: None,
            user_id: None,
            auth_token: None,
            reply_budget_ms: 8_000,
        }
    }
}

/// `[llm]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Llm {
    /// `extractive`, `openai` or `local`; unset with `base_url` set means `openai`.
    pub provider: Option<String>,
    /// OpenAI-compatible API base (e.g. Groq's).
    pub base_url: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// API key (secret).
    pub api_key: Option<Secret>,
    /// Request timeout.
    pub timeout_ms: u64,
}

impl Default for Llm {
    fn default() -> Self {
        Llm {
            provider: None,
            base_url: None,
            model: None,
            api_key: None,
            timeout_ms: 20_000,
        }
    }
}

/// `[answers]`: how `/v1/ask` and the RocketChat bot answer (an extension of DESIGN.md §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Answers {
    /// Passages retrieved per question (1..=20).
    pub passages: usize,
    /// Passages less similar to the question (cosine of the embeddings) are not used; with none
    /// left the answer says it does not know.
    pub min_similarity: f32,
    /// Longest answer, in tokens (LLM generators).
    pub max_tokens: u32,
    /// Link to an Aircall call, `{id}` replaced by the call id.
    pub aircall_call_link: String,
    /// Link to a Guesty reservation, `{id}` replaced by the reservation id.
    pub guesty_reservation_link: String,
    /// Link to a Guesty listing, `{id}` replaced by the listing id.
    pub guesty_listing_link: String,
    /// Link to a Guesty guest conversation, `{id}` replaced by the conversation id.
    pub guesty_conversation_link: String,
}

impl Default for Answers {
    fn default() -> Self {
        Answers {
            passages: 5,
            min_similarity: 0.3,
            max_tokens: 400,
            aircall_call_link: "https://dashboard.aircall.io/conversations/{id}".to_owned(),
            guesty_reservation_link: "https://app.guesty.com/reservations/{id}".to_owned(),
            guesty_listing_link: "https://app.guesty.com/properties/{id}".to_owned(),
            guesty_conversation_link: "https://app.guesty.com/inbox/{id}".to_owned(),
        }
    }
}

/// `[search]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Search {
    /// `local` (embedded indexes) or `qdrant`.
    pub backend: String,
    /// RRF `k`.
    pub rrf_k: f32,
    /// Weight of the dense leg.
    pub dense_weight: f32,
    /// Weight of the keyword leg.
    pub keyword_weight: f32,
    /// Chunks written since the dense index's frozen segment was made are scanned exactly by
    /// every search; once this many are, they are folded into a new segment.
    pub dense_freeze_after: usize,
    /// ...or this long after the last fold, when the indexer is idle.
    pub dense_freeze_interval_ms: u64,
}

impl Search {
    /// The fusion of hybrid searches these settings ask for.
    pub fn fusion(&self) -> concierge_engine::Fusion {
        concierge_engine::Fusion {
            k: self.rrf_k,
            dense_weight: self.dense_weight,
            keyword_weight: self.keyword_weight,
            ..concierge_engine::Fusion::default()
        }
    }
}

impl Default for Search {
    fn default() -> Self {
        Search {
            backend: "local".to_owned(),
            rrf_k: 60.0,
            dense_weight: 1.0,
            keyword_weight: 1.0,
            dense_freeze_after: 4_096,
            dense_freeze_interval_ms: 10_000,
        }
    }
}

/// `[qdrant]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Qdrant {
    pub url: Option<String>,
    /// API key (secret).
    pub api_key: Option<Secret>,
    pub collection: Option<String>,
    /// The longest one request to Qdrant may take, milliseconds; a slower one is retried like
    /// an outage.
    pub timeout_ms: u64,
}

impl Default for Qdrant {
    fn default() -> Self {
        Qdrant {
            url: None,
            api_key: None,
            collection: None,
            timeout_ms: 30_000,
        }
    }
}

impl Qdrant {
    /// Where chunks are synced; `None` when Qdrant sync is off (no url).
    pub fn target(&self) -> Result<Option<crate::qdrant::QdrantTarget>, String> {
        let Some(url) = self.url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "qdrant.url {url:?}: an http:// or https:// address, e.g. http://127.0.0.1:6333"
            ));
        }
        let collection = self
            .collection
            .clone()
            .unwrap_or_else(|| "concierge_chunks".into());
        if collection.is_empty()
            || !collection
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "qdrant.collection {collection:?}: letters, digits, '_' and '-' only"
            ));
        }
        Ok(Some(crate::qdrant::QdrantTarget {
            url: url.trim_end_matches('/').to_owned(),
            api_key: self
                .api_key
                .as_ref()
                .filter(|k| !k.is_empty())
                .map(|k| k.expose().to_owned()),
            collection,
            timeout: std::time::Duration::from_millis(match self.timeout_ms {
                0 => return Err("qdrant.timeout_ms must be at least 1".to_owned()),
                ms => ms,
            }),
        }))
    }
}

/// `[cluster]`: one primary (the default) owns the store and takes every write; replicas keep
/// no store, search and answer through Qdrant and forward writes to `primary_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// `primary` or `replica`.
    pub role: String,
    /// The primary's base URL, e.g. `http://concierge-primary:8080` (replicas).
    pub primary_url: Option<String>,
    /// The bearer token a replica forwards writes with (secret; needs the primary's `write`
    /// scope, `admin` for deletes).
    pub primary_token: Option<Secret>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            role: "primary".to_owned(),
            primary_url: None,
            primary_token: None,
        }
    }
}

impl Cluster {
    pub fn is_replica(&self) -> bool {
        self.role == "replica"
    }
}

/// `[firestore]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Firestore {
    pub project_id: Option<String>,
    pub database: Option<String>,
    pub credentials_file: Option<PathBuf>,
    /// `host:port` of the Firestore emulator (as `FIRESTORE_EMULATOR_HOST`): plain HTTP,
    /// `Bearer owner`, no token exchange.
    pub emulator_host: Option<String>,
    /// The collection documents are written to (default `concierge_documents`).
    pub collection: Option<String>,
    /// Firestore's REST endpoint with `credentials_file` (default
    /// `https://firestore.googleapis.com`).
    pub api_base: Option<String>,
}

impl Firestore {
    /// Where the write-behind goes; `None` when Firestore sync is off (no project).
    pub fn target(&self) -> Result<Option<crate::firestore::FirestoreTarget>, String> {
        let Some(project) = self.project_id.as_deref().filter(|p| !p.is_empty()) else {
            if self.emulator_host.is_some() || self.credentials_file.is_some() {
                return Err("firestore.emulator_host or credentials_file is set but firestore.project_id is not".into());
            }
            return Ok(None);
        };
        let collection = self
            .collection
            .clone()
            .unwrap_or_else(|| "concierge_documents".into());
        if collection.is_empty() || collection.contains('/') {
            return Err(format!(
                "firestore.collection {collection:?}: one collection id, no '/'"
            ));
        }
        let database = self.database.clone().unwrap_or_else(|| "(default)".into());
        match (&self.emulator_host, &self.credentials_file) {
            (Some(host), _) => Ok(Some(crate::firestore::FirestoreTarget {
                base: format!("http://{}", host.trim_start_matches("http://")),
                project_id: project.to_owned(),
                database,
                collection,
                auth: crate::firestore::Auth::Static("owner".into()),
            })),
            (None, Some(file)) => Ok(Some(crate::firestore::FirestoreTarget {
                base: self
                    .api_base
                    .clone()
                    .unwrap_or_else(|| "https://firestore.googleapis.com".into()),
                project_id: project.to_owned(),
                database,
                collection,
                auth: crate::firestore::Auth::Account(std::sync::Arc::new(
                    crate::firestore::token::TokenSource::from_file(file)?,
                )),
            })),
            (None, None) => Err(
                "firestore.project_id is set: give firestore.emulator_host (or credentials_file)"
                    .into(),
            ),
        }
    }
}

/// Keys whose values are secrets: they may come from `<key>_file` and are never logged.
pub const SECRET_KEYS: &[(&str, &str)] = &[
    ("auth", "api_tokens"),
    ("auth", "read_tokens"),
    ("auth", "write_tokens"),
    ("auth", "admin_tokens"),
    ("aircall", "tokens"),
    ("aircall", "api_token"),
    ("guesty", "secret"),
    ("guesty", "client_secret"),
    ("rocketchat", "token"),
    ("rocketchat", "auth_token"),
    ("llm", "api_key"),
    ("qdrant", "api_key"),
    ("cluster", "primary_token"),
];

/// An integer key's value within its range, or the message naming the key.
fn within(key: &str, value: u64, range: std::ops::RangeInclusive<u64>) -> Result<(), String> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(format!(
        "{key} must be within {}..={}, got {value}",
        range.start(),
        range.end()
    ))
}

impl Config {
    /// Checks what types alone cannot; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.server.max_body_bytes < 1024 {
            return Err(format!(
                "server.max_body_bytes must be at least 1024, got {}",
                self.server.max_body_bytes
            ));
        }
        if self.server.max_connections == 0 {
            return Err("server.max_connections must be at least 1".to_owned());
        }
        for (key, ms) in [
            ("server.header_timeout_ms", self.server.header_timeout_ms),
            ("server.body_timeout_ms", self.server.body_timeout_ms),
        ] {
            if ms < 100 {
                return Err(format!("{key} must be at least 100, got {ms}"));
            }
        }
        if !matches!(self.search.backend.as_str(), "local" | "qdrant") {
            return Err(format!(
                "search.backend must be \"local\" or \"qdrant\", got {:?}",
                self.search.backend
            ));
        }
        self.firestore.target()?;
        self.qdrant.target()?;
        self.log
            .format
            .parse::<concierge_infra::logging::LogFormat>()
            .map_err(|e| format!("log.format: {e}"))?;
        if self.search.backend == "qdrant" && self.qdrant.url.is_none() {
            return Err("search.backend = \"qdrant\" needs qdrant.url".to_owned());
        }
        match self.cluster.role.as_str() {
            "primary" => {}
            "replica" => {
                if self.search.backend != "qdrant" {
                    return Err("cluster.role = \"replica\" keeps no store, so it searches through Qdrant: set search.backend = \"qdrant\" and qdrant.url (search.backend = \"local\" is for a primary)".to_owned());
                }
                match self.cluster.primary_url.as_deref() {
                    Some(u) if u.starts_with("http://") || u.starts_with("https://") => {}
                    Some(u) => {
                        return Err(format!(
                            "cluster.primary_url {u:?}: an http(s) URL, e.g. http://concierge-primary:8080"
                        ));
                    }
                    None => {
                        return Err("cluster.role = \"replica\" needs cluster.primary_url (where writes are forwarded)".to_owned());
                    }
                }
            }
            other => {
                return Err(format!(
                    "cluster.role must be \"primary\" or \"replica\", got {other:?}"
                ));
            }
        }
        if !(self.search.rrf_k.is_finite() && self.search.rrf_k >= 0.0) {
            return Err(format!(
                "search.rrf_k must be a non-negative number, got {}",
                self.search.rrf_k
            ));
        }
        for (key, w) in [
            ("search.dense_weight", self.search.dense_weight),
            ("search.keyword_weight", self.search.keyword_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(format!("{key} must be a non-negative number, got {w}"));
            }
        }
        within(
            "search.dense_freeze_after",
            self.search.dense_freeze_after as u64,
            1..=concierge_engine::MAX_DENSE_FREEZE_AFTER as u64,
        )?;
        within(
            "search.dense_freeze_interval_ms",
            self.search.dense_freeze_interval_ms,
            100..=86_400_000,
        )?;
        if let Some(p) = &self.llm.provider
            && !matches!(p.as_str(), "extractive" | "openai" | "local")
        {
            return Err(format!(
                "llm.provider must be \"extractive\", \"openai\" or \"local\", got {p:?}"
            ));
        }
        within(
            "answers.passages",
            self.answers.passages as u64,
            1..=concierge_engine::MAX_PASSAGES as u64,
        )?;
        if !(self.answers.min_similarity.is_finite()
            && (-1.0..=1.0).contains(&self.answers.min_similarity))
        {
            return Err(format!(
                "answers.min_similarity must be within -1..=1, got {}",
                self.answers.min_similarity
            ));
        }
        within(
            "answers.max_tokens",
            u64::from(self.answers.max_tokens),
            1..=8192,
        )?;
        if self.llm_provider() == "openai"
            && self
                .llm
                .model
                .as_deref()
                .is_none_or(|m| m.trim().is_empty())
        {
            return Err("llm.provider is \"openai\" but llm.model is not set (e.g. \"openai/gpt-oss-20b\"; model ids are retired over time, so there is no default)".to_owned());
        }
        if let Some(secret) = &self.guesty.secret
            && !secret.expose().starts_with("whsec_")
        {
            return Err(
                "guesty.secret must be the Svix signing secret, starting with \"whsec_\""
                    .to_owned(),
            );
        }
        for (key, tokens) in [
            ("auth.api_tokens", &self.auth.api_tokens),
            ("auth.read_tokens", &self.auth.read_tokens),
            ("auth.write_tokens", &self.auth.write_tokens),
            ("auth.admin_tokens", &self.auth.admin_tokens),
            ("aircall.tokens", &self.aircall.tokens),
        ] {
            if tokens.iter().any(|t| t.expose().trim().is_empty()) {
                return Err(format!("{key} contains an empty token"));
            }
        }
        self.auth.oidc()?;
        if !self.auth.has_tokens() && !self.server.listen.ip().is_loopback() {
            return Err(format!(
                "server.listen is {} but no API token (auth.api_tokens, read_tokens, write_tokens or admin_tokens) is configured, nor auth.oidc_issuer: concierge only listens on loopback without authentication",
                self.server.listen
            ));
        }
        Ok(())
    }

    /// The LLM provider in effect (DESIGN.md §6: `base_url` set and provider unset means openai).
    pub fn llm_provider(&self) -> &str {
        match (&self.llm.provider, &self.llm.base_url) {
            (Some(p), _) => p,
            (None, Some(_)) => "openai",
            (None, None) => "extractive",
        }
    }
}
