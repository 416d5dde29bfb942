//! Guesty webhooks (Svix-signed, checked by the HTTP layer) → one document per reservation
//! (`guesty:reservation:<id>`), per listing (`guesty:listing:<id>`) and per guest conversation
//! (`guesty:conversation:<id>`). Legacy reservation events carry the whole reservation; the v2
//! ones are lean and are merged into what is stored.

use serde_json::{Map, Value, json};

use super::{Action, merge_fields, text};
use concierge_engine::Document;
use concierge_infra::utc::parse_rfc3339_ms;

/// The entity a payload is about: its document id, or why it is only kept raw.
pub fn target(body: &Value) -> Result<Option<String>, String> {
    let event = text(body, &["event"]).ok_or("the body has no `event`")?;
    let id = match event {
        "reservation.new" | "reservation.updated" => Some(format!(
            "guesty:reservation:{}",
            text(body, &["reservation", "_id"]).ok_or("reservation._id is missing")?
        )),
        "reservation.created.v2" | "reservation.updated.v2" => Some(format!(
            "guesty:reservation:{}",
            text(body, &["data", "reservationId"]).ok_or("data.reservationId is missing")?
        )),
        "listing.new" | "listing.updated" => Some(format!(
            "guesty:listing:{}",
            text(body, &["listing", "_id"]).ok_or("listing._id is missing")?
        )),
        "reservation.messageReceived" | "reservation.messageSent" => Some(format!(
            "guesty:conversation:{}",
            text(body, &["conversation", "_id"]).ok_or("conversation._id is missing")?
        )),
        _ => None,
    };
    Ok(id)
}

/// Maps a verified payload (with the stored document of its entity) to what to store.
/// `delivered_ms` is the Svix timestamp, used when the payload has no time of its own.
pub fn action(
    body: &Value,
    stored: Option<&Document>,
    delivered_ms: i64,
) -> Result<Action, String> {
    let Some(id) = target(body)? else {
        return Ok(Action::KeepRaw {
            reason: format!(
                "event {} is kept but not indexed",
                text(body, &["event"]).unwrap_or("?")
            ),
        });
    };
    let event = text(body, &["event"]).unwrap_or_default();
    let stored_meta = stored.map(|d| d.metadata.clone()).unwrap_or_default();
    let (meta, event_ms) = match event {
        "reservation.new" | "reservation.updated" => {
            let r = &body["reservation"];
            let ms = text(r, &["lastUpdatedAt"])
                .and_then(parse_rfc3339_ms)
                .unwrap_or(delivered_ms);
            (
                merge_fields(&stored_meta, reservation_fields(r), ms, "reservation_ms"),
                ms,
            )
        }
        "reservation.created.v2" | "reservation.updated.v2" => {
            let d = &body["data"];
            let ms = text(d, &["publishedAt"])
                .and_then(parse_rfc3339_ms)
                .unwrap_or(delivered_ms);
            let mut patch = Map::new();
            for (from, to) in [
                ("status", "status"),
                ("confirmationCode", "confirmation_code"),
                ("unitId", "listing_id"),
                ("checkInDateLocalized", "check_in"),
                ("checkOutDateLocalized", "check_out"),
            ] {
                if let Some(v) = d.get(from).filter(|v| !v.is_null()) {
                    patch.insert(to.to_owned(), v.clone());
                }
            }
            (merge_fields(&stored_meta, patch, ms, "reservation_ms"), ms)
        }
        "listing.new" | "listing.updated" => {
            let l = &body["listing"];
            let ms = text(l, &["lastUpdatedAt"])
                .and_then(parse_rfc3339_ms)
                .unwrap_or(delivered_ms);
            (
                merge_fields(&stored_meta, listing_fields(l), ms, "listing_ms"),
                ms,
            )
        }
        _ => {
            let m = &body["message"];
            let ms = text(m, &["createdAt"])
                .and_then(parse_rfc3339_ms)
                .unwrap_or(delivered_ms);
            (conversation_fields(stored_meta, body), ms)
        }
    };
    let updated_at = stored.map_or(event_ms, |d| d.updated_at.max(event_ms));
    let (title, text_body) = render(&id, &meta);
    let mut doc = Document::new(id, title, text_body, updated_at).map_err(|e| e.to_string())?;
    doc.metadata = meta;
    Ok(Action::Upsert(doc))
}

fn reservation_fields(r: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<&Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            m.insert(k.to_owned(), v.clone());
        }
    };
    put("confirmation_code", r.get("confirmationCode"));
    put("status", r.get("status"));
    put("source", r.get("source"));
    put("platform", r.pointer("/integration/platform"));
    put("listing_id", r.get("listingId"));
    put("listing", r.pointer("/listing/nickname"));
    put("guest_id", r.get("guestId"));
    put("guest", r.pointer("/guest/fullName"));
    put("guest_email", r.pointer("/guest/email"));
    put("guest_phone", r.pointer("/guest/phone"));
    put("check_in", r.get("checkInDateLocalized"));
    put("check_out", r.get("checkOutDateLocalized"));
    put("planned_arrival", r.get("plannedArrival"));
    put("planned_departure", r.get("plannedDeparture"));
    put("nights", r.get("nightsCount"));
    put("guests", r.get("guestsCount"));
    put("currency", r.pointer("/money/currency"));
    put("total_paid", r.pointer("/money/totalPaid"));
    put("balance_due", r.pointer("/money/balanceDue"));
    m
}

fn listing_fields(l: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, p) in [
        ("nickname", "/nickname"),
        ("title", "/title"),
        ("city", "/address/city"),
        ("country", "/address/country"),
        ("accommodates", "/accommodates"),
        ("bedrooms", "/bedrooms"),
        ("summary", "/publicDescription/summary"),
    ] {
        if let Some(v) = l.pointer(p).filter(|v| !v.is_null()) {
            m.insert(k.to_owned(), v.clone());
        }
    }
    m
}

/// Adds the message to the stored thread (deduplicated by message id, in time order).
fn conversation_fields(mut meta: Map<String, Value>, body: &Value) -> Map<String, Value> {
    let m = &body["message"];
    for (k, v) in [
        ("reservation_id", body.get("reservationId")),
        ("guest", body.pointer("/conversation/guest/fullName")),
        ("with", body.pointer("/conversation/conversationWith")),
        (
            "platform",
            body.pointer("/conversation/integration/platform"),
        ),
    ] {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            meta.insert(k.to_owned(), v.clone());
        }
    }
    let mut messages: Vec<Value> = meta
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let id = text(m, &["_id"]).unwrap_or_default().to_owned();
    if !messages
        .iter()
        .any(|x| x.get("id").and_then(Value::as_str) == Some(id.as_str()))
    {
        let from = match text(m, &["type"]) {
            Some("fromGuest") => "Guest",
            Some("fromHost") => "Host",
            Some(other) => other,
            None => "Message",
        };
        messages.push(json!({"id": id, "at": text(m, &["createdAt"]).unwrap_or_default(), "from": from, "body": text(m, &["body"]).unwrap_or_default()}));
        messages.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
    }
    meta.insert("messages".into(), Value::Array(messages));
    meta
}

fn render(id: &str, meta: &Map<String, Value>) -> (String, String) {
    let s = |k: &str| match meta.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(v @ Value::Number(_)) => v.to_string(),
        _ => String::new(),
    };
    let line = |label: &str, k: &str| {
        if s(k).is_empty() {
            None
        } else {
            Some(format!("{label}: {}.", s(k)))
        }
    };
    if id.starts_with("guesty:reservation:") {
        let title = format!(
            "Reservation {} — {} at {}",
            s("confirmation_code"),
            if s("guest").is_empty() {
                "guest".to_owned()
            } else {
                s("guest")
            },
            if s("listing").is_empty() {
                s("listing_id")
            } else {
                s("listing")
            }
        );
        let lines: Vec<String> = [
            line("Status", "status"),
            line("Guest", "guest"),
            line("Listing", "listing"),
            line("Check-in", "check_in"),
            line("Check-out", "check_out"),
            line("Planned arrival", "planned_arrival"),
            line("Planned departure", "planned_departure"),
            line("Nights", "nights"),
            line("Guests", "guests"),
            line("Booked through", "source"),
            line("Balance due", "balance_due").map(|l| format!("{l} {}", s("currency"))),
            line("Guest email", "guest_email"),
            line("Guest phone", "guest_phone"),
        ]
        .into_iter()
        .flatten()
        .collect();
        (title, lines.join("\n"))
    } else if id.starts_with("guesty:listing:") {
        let title = format!(
            "Listing {}",
            if s("nickname").is_empty() {
                s("title")
            } else {
                s("nickname")
            }
        );
        let lines: Vec<String> = [
            line("Title", "title"),
            line("City", "city"),
            line("Country", "country"),
            line("Sleeps", "accommodates"),
            line("Bedrooms", "bedrooms"),
            Some(s("summary")).filter(|x| !x.is_empty()),
        ]
        .into_iter()
        .flatten()
        .collect();
        (title, lines.join("\n"))
    } else {
        let title = format!(
            "Conversation with {}",
            if s("guest").is_empty() {
                s("with")
            } else {
                s("guest")
            }
        );
        let messages = meta
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let lines: Vec<String> = messages
            .iter()
            .map(|m| {
                format!(
                    "{} ({}): {}",
                    m["from"].as_str().unwrap_or(""),
                    m["at"].as_str().unwrap_or(""),
                    m["body"].as_str().unwrap_or("")
                )
            })
            .collect();
        (title, lines.join("\n"))
    }
}
