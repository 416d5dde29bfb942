//! Aircall webhooks → one document per call (`aircall:call:<id>`), updated as events arrive:
//! who, when, direction, duration, tags, comments, voicemail, transcript. The body's `token` is
//! the only proof of origin (checked by the HTTP layer in constant time).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Action, merge_fields, text};
use concierge_engine::Document;
use concierge_infra::utc::minutes_text;

/// Events that carry the call object and update the call's document.
pub const CALL_EVENTS: &[&str] = &[
    "call.created",
    "call.ringing_on_agent",
    "call.agent_declined",
    "call.answered",
    "call.transferred",
    "call.external_transferred",
    "call.unsuccessful_transfer",
    "call.hungup",
    "call.ended",
    "call.hold",
    "call.unhold",
    "call.ivr_option_selected",
    "call.comm_assets_generated",
    "call.voicemail_left",
    "call.assigned",
    "call.archived",
    "call.tagged",
    "call.untagged",
    "call.commented",
];

/// The envelope of every Aircall webhook.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub event: String,
    /// Unix seconds.
    pub timestamp: i64,
    pub token: String,
    #[serde(default)]
    pub data: Value,
}

impl Envelope {
    /// Aircall has no event id: a delivery is identified by event, resource id and time.
    pub fn idempotency_key(&self) -> String {
        let id = self
            .data
            .get("id")
            .map(Value::to_string)
            .unwrap_or_default();
        format!("aircall:{}:{id}:{}", self.event, self.timestamp)
    }

    /// The call a `transcription.created` event is about.
    pub fn transcription_call_id(&self) -> Option<i64> {
        if self.event != "transcription.created" {
            return None;
        }
        self.data
            .get("call_id")
            .or_else(|| self.data.get("id"))
            .and_then(Value::as_i64)
            .filter(|id| *id > 0)
    }

    /// The call this event updates, if it is a call event.
    pub fn call_id(&self) -> Option<i64> {
        if !CALL_EVENTS.contains(&self.event.as_str()) {
            return None;
        }
        self.data
            .get("id")
            .and_then(Value::as_i64)
            .filter(|id| *id > 0)
    }
}

/// The document id of a call.
pub fn call_doc_id(call_id: i64) -> String {
    format!("aircall:call:{call_id}")
}

/// Maps an event (with the stored document of its call, if any) to what to store.
pub fn action(envelope: &Envelope, stored: Option<&Document>) -> Result<Action, String> {
    if !CALL_EVENTS.contains(&envelope.event.as_str()) {
        return Ok(Action::KeepRaw {
            reason: format!("event {} is kept but not indexed", envelope.event),
        });
    }
    let call_id = envelope
        .data
        .get("id")
        .and_then(Value::as_i64)
        .filter(|id| *id > 0)
        .ok_or("data.id (the call id) is missing or not a positive whole number")?;
    let event_ms = envelope.timestamp.saturating_mul(1_000);
    let patch = call_fields(&envelope.data);
    Ok(Action::Upsert(merged(call_id, stored, patch, event_ms)?))
}

/// A transcript fetched from the Aircall API (`{"transcription": {"content": {"utterances":
/// [...]}}}`), merged into its call's document. The transcript has its own clock, so call events
/// and the transcript never overwrite each other.
pub fn with_transcript(
    call_id: i64,
    stored: Option<&Document>,
    transcription: &Value,
    event_ms: i64,
) -> Result<Document, String> {
    let utterances = transcription
        .pointer("/transcription/content/utterances")
        .and_then(Value::as_array)
        .ok_or("the transcription has no content.utterances")?;
    let lines: Vec<Value> = utterances
        .iter()
        .filter_map(|u| {
            let t = text(u, &["text"])?;
            let who = match text(u, &["participant_type"]) {
                Some("internal") => "Agent",
                Some("external") => "Caller",
                _ => "Speaker",
            };
            Some(Value::from(format!("{who}: {t}")))
        })
        .collect();
    let mut patch = Map::new();
    patch.insert("transcript".into(), Value::Array(lines));
    patch.insert("call_id".into(), Value::from(call_id));
    let stored_meta = stored.map(|d| d.metadata.clone()).unwrap_or_default();
    let meta = merge_fields(&stored_meta, patch, event_ms, "transcript_ms");
    render(
        call_id,
        meta,
        stored.map_or(event_ms, |d| d.updated_at.max(event_ms)),
    )
}

fn call_fields(data: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            m.insert(k.to_owned(), v);
        }
    };
    put("call_id", data.get("id").cloned());
    put("direction", data.get("direction").cloned());
    put("status", data.get("status").cloned());
    put(
        "missed_call_reason",
        data.get("missed_call_reason").cloned(),
    );
    put("started_at", data.get("started_at").cloned());
    put("answered_at", data.get("answered_at").cloned());
    put("ended_at", data.get("ended_at").cloned());
    put("duration", data.get("duration").cloned());
    put("raw_digits", data.get("raw_digits").cloned());
    put("agent", text(data, &["user", "name"]).map(Value::from));
    put("line", text(data, &["number", "name"]).map(Value::from));
    put(
        "line_digits",
        text(data, &["number", "digits"]).map(Value::from),
    );
    put(
        "contact",
        text(data, &["contact", "name"])
            .or_else(|| text(data, &["contact", "first_name"]))
            .map(Value::from),
    );
    put(
        "voicemail",
        data.get("voicemail").map(|v| Value::Bool(!v.is_null())),
    );
    put("archived", data.get("archived").cloned());
    if let Some(tags) = data.get("tags").and_then(Value::as_array) {
        put(
            "tags",
            Some(Value::Array(
                tags.iter()
                    .filter_map(|t| text(t, &["name"]).map(Value::from))
                    .collect(),
            )),
        );
    }
    if let Some(comments) = data.get("comments").and_then(Value::as_array) {
        let list = comments
            .iter()
            .filter_map(|c| {
                let content = text(c, &["content"])?;
                let by = text(c, &["posted_by", "name"]).unwrap_or("API");
                Some(Value::from(format!("{by}: {content}")))
            })
            .collect();
        put("comments", Some(Value::Array(list)));
    }
    m
}

fn merged(
    call_id: i64,
    stored: Option<&Document>,
    patch: Map<String, Value>,
    event_ms: i64,
) -> Result<Document, String> {
    let stored_meta = stored.map(|d| d.metadata.clone()).unwrap_or_default();
    let meta = merge_fields(&stored_meta, patch, event_ms, "call_event_ms");
    let updated_at = stored.map_or(event_ms, |d| d.updated_at.max(event_ms));
    render(call_id, meta, updated_at)
}

fn render(call_id: i64, meta: Map<String, Value>, updated_at: i64) -> Result<Document, String> {
    let s = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let n = |k: &str| meta.get(k).and_then(Value::as_i64);
    let direction = s("direction");
    let who = if s("contact").is_empty() {
        s("raw_digits")
    } else {
        format!("{} ({})", s("contact"), s("raw_digits"))
    };
    let title = format!(
        "{} call {} {}{}",
        if direction == "outbound" {
            "Outbound"
        } else {
            "Inbound"
        },
        if direction == "outbound" {
            "to"
        } else {
            "from"
        },
        if who.is_empty() {
            "unknown number".to_owned()
        } else {
            who.clone()
        },
        if s("line").is_empty() {
            String::new()
        } else {
            format!(" on {}", s("line"))
        }
    );
    let mut lines = Vec::new();
    if let Some(t) = n("started_at") {
        lines.push(format!("Started {}.", minutes_text(t)));
    }
    if !s("agent").is_empty() {
        lines.push(format!("Agent: {}.", s("agent")));
    }
    match (n("answered_at"), s("missed_call_reason")) {
        (Some(_), _) => lines.push("The call was answered.".to_owned()),
        (None, reason) if !reason.is_empty() => {
            lines.push(format!("Missed call: {}.", reason.replace('_', " ")))
        }
        (None, _) => {}
    }
    if let Some(d) = n("duration").filter(|d| *d > 0) {
        lines.push(format!("Duration {d} seconds."));
    }
    if meta.get("voicemail").and_then(Value::as_bool) == Some(true) {
        lines.push("The caller left a voicemail.".to_owned());
    }
    let list = |k: &str| {
        meta.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let tags = list("tags");
    if !tags.is_empty() {
        lines.push(format!("Tags: {}.", tags.join(", ")));
    }
    for c in list("comments") {
        lines.push(format!("Comment by {c}"));
    }
    let transcript = list("transcript");
    if !transcript.is_empty() {
        lines.push("Transcript:".to_owned());
        lines.extend(transcript);
    }
    let mut doc = Document::new(call_doc_id(call_id), title, lines.join("\n"), updated_at)
        .map_err(|e| e.to_string())?;
    doc.metadata = meta;
    Ok(doc)
}
