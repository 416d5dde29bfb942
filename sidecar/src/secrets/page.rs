//! `secrets serve`: the secrets page (the seed's Secrets UI). One page of plain HTML: sign in
//! with `[secrets] admin_token` and the name and email the commits carry; the list of secrets
//! (no values); a form to set a new value — write-only, a value is never sent back — which is
//! encrypted, committed in the deploy repository with the signed-in identity as author, and
//! answered with the resulting `deploy plan`.
//!
//! Protection: a session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` unless turned off
//! for loopback), a CSRF token per session on every form, cross-origin POSTs refused, a body
//! limit, no caching, a strict Content-Security-Policy, and no value or token in any log line.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

use tiny_http::{Header, Method, Request as HttpRequest, Response, Server};
use zeroize::Zeroizing;

use super::sessions::{Identity, Sessions, same};
use crate::deploy::{DeployError, Request};

/// The largest form accepted.
const MAX_BODY: usize = 64 * 1024;
const COOKIE: &str = "concierge_secrets";

/// Serves the page until `stop` is set; the address it listens on is logged.
pub fn serve(req: &Request<'_>, stop: &AtomicBool) -> Result<(), DeployError> {
    let c = req.secrets;
    if c.admin_token.is_empty() {
        return Err(DeployError::Config(
            "secrets serve needs secrets.admin_token (or secrets.admin_token_file)".into(),
        ));
    }
    let server = Server::http(&c.listen)
        .map_err(|e| DeployError::Config(format!("secrets.listen {}: {e}", c.listen)))?;
    let addr = server
        .server_addr()
        .to_ip()
        .map_or_else(|| c.listen.clone(), |a| a.to_string());
    tracing::info!(%addr, "the secrets page is listening");
    eprintln!("secrets page on http://{addr}/");
    let mut sessions = Sessions::new(c.session_ttl.get());
    while !stop.load(Ordering::Relaxed) {
        let request = match server.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "secrets page: accept failed");
                continue;
            }
        };
        let method = request.method().clone();
        let path = request.url().split('?').next().unwrap_or("/").to_owned();
        let status = handle(req, &mut sessions, request, &method, &path);
        // The path and status only: never a form field.
        tracing::info!(%method, %path, status, "secrets page");
    }
    Ok(())
}

/// The status sent.
type Answer = u16;

fn handle(
    req: &Request<'_>,
    sessions: &mut Sessions,
    mut request: HttpRequest,
    method: &Method,
    path: &str,
) -> Answer {
    let secure = req.secrets.secure_cookies;
    let session_id = cookie(&request, COOKIE);
    let signed_in = session_id.as_deref().and_then(|id| {
        sessions
            .get(id)
            .map(|(who, csrf)| (id.to_owned(), who.clone(), csrf.to_owned()))
    });
    let reply = |request: HttpRequest, status: u16, body: String, extra: Vec<Header>| -> Answer {
        let mut response = Response::from_string(body).with_status_code(status);
        for h in security_headers().into_iter().chain(extra) {
            response.add_header(h);
        }
        let _ = request.respond(response);
        status
    };
    if *method == Method::Post && !same_origin(&request) {
        return reply(
            request,
            403,
            page("Refused", "<p>A form from another site was refused.</p>"),
            Vec::new(),
        );
    }
    match (method, path) {
        (Method::Get, "/") => match &signed_in {
            None => reply(request, 200, login_page(None), Vec::new()),
            Some((_, who, csrf)) => {
                let body = list_page(req, who, csrf, None);
                reply(request, 200, body, Vec::new())
            }
        },
        (Method::Post, "/login") => {
            let form = match read_form(&mut request) {
                Ok(f) => f,
                Err(e) => return reply(request, 413, refused(&e), Vec::new()),
            };
            let token = field(&form, "token").unwrap_or_default();
            if !same(&token, req.secrets.admin_token.expose()) {
                tracing::warn!("secrets page: a sign-in with a wrong token");
                std::thread::sleep(std::time::Duration::from_millis(500));
                return reply(request, 401, login_page(Some("Wrong token.")), Vec::new());
            }
            let identity = match Identity::new(
                &field(&form, "name").unwrap_or_default(),
                &field(&form, "email").unwrap_or_default(),
            ) {
                Ok(i) => i,
                Err(e) => return reply(request, 400, login_page(Some(&e)), Vec::new()),
            };
            match sessions.start(identity) {
                Ok(id) => {
                    let cookie = format!(
                        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                        req.secrets.session_ttl.get().as_secs(),
                        if secure { "; Secure" } else { "" }
                    );
                    reply(
                        request,
                        303,
                        String::new(),
                        vec![header("Set-Cookie", &cookie), header("Location", "/")],
                    )
                }
                Err(e) => reply(
                    request,
                    500,
                    page("Error", &format!("<p>{}</p>", escape(&e))),
                    Vec::new(),
                ),
            }
        }
        (Method::Post, "/logout" | "/set") => {
            let Some((id, who, csrf)) = signed_in else {
                return reply(request, 401, login_page(Some("Sign in first.")), Vec::new());
            };
            let form = match read_form(&mut request) {
                Ok(f) => f,
                Err(e) => return reply(request, 413, refused(&e), Vec::new()),
            };
            if !field(&form, "csrf").is_some_and(|t| same(&t, &csrf)) {
                tracing::warn!(%path, "secrets page: a form without its CSRF token was refused");
                return reply(
                    request,
                    403,
                    page(
                        "Refused",
                        "<p>The form's CSRF token is missing or wrong: reload the page.</p>",
                    ),
                    Vec::new(),
                );
            }
            if path == "/logout" {
                sessions.end(&id);
                let clear = format!(
                    "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
                    if secure { "; Secure" } else { "" }
                );
                return reply(
                    request,
                    303,
                    String::new(),
                    vec![header("Set-Cookie", &clear), header("Location", "/")],
                );
            }
            let name = field(&form, "name").unwrap_or_default();
            let value = Zeroizing::new(field(&form, "value").unwrap_or_default());
            if value.is_empty() {
                let body = list_page(
                    req,
                    &who,
                    &csrf,
                    Some(Err(format!("No value given for {name}."))),
                );
                return reply(request, 400, body, Vec::new());
            }
            match super::save_and_commit(req, &name, value.as_bytes(), &who) {
                Ok(saved) => {
                    tracing::info!(secret = %name, commit = %saved.commit, author = %who.author(), "secrets page: a secret was set");
                    let body = list_page(req, &who, &csrf, Some(Ok(saved)));
                    reply(request, 200, body, Vec::new())
                }
                Err(e) => {
                    let body = list_page(req, &who, &csrf, Some(Err(e.to_string())));
                    reply(request, 400, body, Vec::new())
                }
            }
        }
        (_, "/" | "/login" | "/logout" | "/set") => reply(
            request,
            405,
            page("Not allowed", "<p>Method not allowed.</p>"),
            vec![header("Allow", "GET, POST")],
        ),
        _ => reply(
            request,
            404,
            page("Not found", "<p>Nothing here.</p>"),
            Vec::new(),
        ),
    }
}

/// A header of ours (names and values are ASCII we write, never input).
fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("an ASCII header")
}

fn security_headers() -> Vec<Header> {
    vec![
        header("Content-Type", "text/html; charset=utf-8"),
        header("Cache-Control", "no-store"),
        header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        header("X-Content-Type-Options", "nosniff"),
        header("X-Frame-Options", "DENY"),
        // Not `no-referrer`: with it a browser's form POST says `Origin: null`, which the
        // cross-origin check (rightly) refuses.
        header("Referrer-Policy", "same-origin"),
    ]
}

fn cookie(request: &HttpRequest, name: &str) -> Option<String> {
    request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Cookie"))
        .flat_map(|h| {
            h.value
                .as_str()
                .split(';')
                .map(str::trim)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

/// A POST whose `Origin` (when sent) is this host.
fn same_origin(request: &HttpRequest) -> bool {
    let get = |n: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(n))
            .map(|h| h.value.as_str().to_owned())
    };
    match (get("Origin"), get("Host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            let origin_host = origin.split("://").nth(1).unwrap_or("");
            origin_host == host
        }
        (Some(_), None) => false,
    }
}

fn read_form(request: &mut HttpRequest) -> Result<Vec<(String, Zeroizing<String>)>, String> {
    let mut body = Zeroizing::new(Vec::new());
    request
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("reading the form: {e}"))?;
    if body.len() > MAX_BODY {
        return Err(format!("the form is larger than {} KiB", MAX_BODY / 1024));
    }
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (url_decode(k), Zeroizing::new(url_decode(v)))
        })
        .collect())
}

fn field(form: &[(String, Zeroizing<String>)], name: &str) -> Option<String> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string())
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space).
fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// HTML-escapes text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title} · Concierge secrets</title>
<style>body{{font:15px/1.4 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.3rem;text-align:left}}
code,pre{{font-size:13px}}pre{{background:#f6f6f6;padding:.5rem;overflow:auto}}.error{{color:#a00}}.ok{{color:#060}}
form.inline{{display:flex;gap:.3rem}}</style></head>
<body><h1>Concierge secrets</h1>
{body}
</body></html>"#,
        title = escape(title)
    )
}

/// The page for a form that was too large or unreadable.
fn refused(why: &str) -> String {
    page("Refused", &format!("<p>{}</p>", escape(why)))
}

fn login_page(message: Option<&str>) -> String {
    let note = message
        .map(|m| format!("<p class=\"error\" id=\"message\">{}</p>", escape(m)))
        .unwrap_or_default();
    page(
        "Sign in",
        &format!(
            r#"{note}<form method="post" action="/login" id="login">
<p><label>Admin token <input type="password" name="token" id="token" autocomplete="off" required></label></p>
<p><label>Your name <input name="name" id="name" required></label>
<label>Email <input type="email" name="email" id="email" required></label></p>
<p><button type="submit" id="sign-in">Sign in</button></p></form>"#
        ),
    )
}

fn list_page(
    req: &Request<'_>,
    who: &Identity,
    csrf: &str,
    outcome: Option<Result<super::Saved, String>>,
) -> String {
    let csrf = escape(csrf);
    let mut body = format!(
        r#"<p>Signed in as <strong id="who">{}</strong>.
<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{csrf}"><button type="submit">Sign out</button></form></p>"#,
        escape(&who.author())
    );
    match outcome {
        None => {}
        Some(Ok(saved)) => {
            body.push_str(&format!("<p class=\"ok\" id=\"message\">Saved and committed as <code id=\"commit\">{}</code>.</p>", escape(&saved.commit)));
            match saved.plan {
                Ok(md) => body.push_str(&format!(
                    "<h2>Deploy plan</h2><pre id=\"plan\">{}</pre>",
                    escape(&md)
                )),
                Err(e) => body.push_str(&format!(
                    "<p class=\"error\">The deploy plan could not be made: {}</p>",
                    escape(&e)
                )),
            }
        }
        Some(Err(e)) => body.push_str(&format!(
            "<p class=\"error\" id=\"message\">{}</p>",
            escape(&e)
        )),
    }
    match super::list(req) {
        Ok(list) => {
            body.push_str("<h2>Secrets</h2><table id=\"secrets\"><tr><th>Name</th><th>SHA-256</th><th>Docker secret</th><th>Services</th><th>In the swarm</th><th>New value</th></tr>");
            for s in list {
                let in_swarm = match s.in_swarm {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "?",
                };
                body.push_str(&format!(
                    r#"<tr><td>{name}</td><td><code>{hash}</code></td><td><code>{docker}</code></td><td>{services}</td><td>{in_swarm}</td>
<td><form method="post" action="/set" class="inline"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="name" value="{name}">
<input type="password" name="value" autocomplete="new-password" aria-label="new value of {name}" id="value-{name}"><button type="submit" id="save-{name}">Save</button></form></td></tr>"#,
                    name = escape(&s.name),
                    hash = escape(&s.sha256),
                    docker = escape(&s.docker_name),
                    services = escape(&s.services.join(", ")),
                ));
            }
            body.push_str("</table>");
        }
        Err(e) => body.push_str(&format!(
            "<p class=\"error\">The secrets cannot be listed: {}</p>",
            escape(&e.to_string())
        )),
    }
    page("Secrets", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_html_escapes() {
        assert_eq!(url_decode("a+b%21%3D%26"), "a b!=&");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz"), "%zz");
        assert_eq!(
            escape("<script>\"x\"&'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
    }
}
