// Concierge's console: plain DOM, no dependencies. The token lives in sessionStorage and goes
// only into the Authorization header; data is written with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "concierge.token";
const PKCE_KEY = "concierge.pkce";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && problem.detail) || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    signOut("Your sign-in is no longer accepted: sign in again.");
    throw new ApiError(401, null);
  }
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch (_) { /* not a problem body */ }
    throw new ApiError(response.status, problem);
  }
  return response;
}

// ---- sign-in -------------------------------------------------------------------------------

function showApp(signedIn) {
  $("sign-in").hidden = signedIn;
  $("app").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  if (signedIn) refreshHealth();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showApp(false);
  $("sign-in-error").textContent = message || "";
}

async function signInWith(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    await api("GET", "/v1/admin/status");
    $("sign-in-error").textContent = "";
    showApp(true);
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("sign-in-error").textContent = `Sign-in refused: ${e.message}`;
  }
}

const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

async function oidcDiscovery(issuer) {
  const response = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (!response.ok) throw new Error(`the issuer's discovery answered ${response.status}`);
  return response.json();
}

async function oidcStart(config) {
  const discovery = await oidcDiscovery(config.issuer);
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state }));
  const url = new URL(discovery.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code", client_id: config.client_id, redirect_uri: redirectUri(),
    scope: config.scope || "openid", state, code_challenge: challenge, code_challenge_method: "S256",
  }).toString();
  location.assign(url.toString());
}

const redirectUri = () => `${location.origin}/`;

async function oidcFinish(config, params) {
  const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
  sessionStorage.removeItem(PKCE_KEY);
  // The code leaves the address bar at once, whatever happens next.
  history.replaceState(null, "", "/");
  if (!saved || saved.state !== params.get("state")) throw new Error("the sign-in answer does not match this tab's request");
  const discovery = await oidcDiscovery(config.issuer);
  const response = await fetch(discovery.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code", code: params.get("code"), redirect_uri: redirectUri(),
      client_id: config.client_id, code_verifier: saved.verifier,
    }),
  });
  const tokens = await response.json();
  if (!response.ok || !tokens.access_token) throw new Error(tokens.error_description || tokens.error || `the token endpoint answered ${response.status}`);
  await signInWith(tokens.access_token);
}

// ---- health --------------------------------------------------------------------------------

function card(title, rows, state) {
  const list = el("dl");
  for (const [k, v] of rows) list.append(el("dt", {}, k), el("dd", {}, v));
  return el("div", { class: "card" }, el("h3", {}, title, state ? " " : null,
    state ? el("span", { class: state.ok ? "ok" : "bad" }, state.text) : null), list);
}

function indexCard(name, index, durable) {
  const ready = index.state.state === "ready";
  const rows = [["chunks", index.chunks ?? "—"], ["sequence", index.seq ?? "—"],
    ["lag (entries)", index.seq === null ? "—" : Math.max(0, durable - index.seq)]];
  if (index.rebuild) rows.push(["rebuilt", `${index.rebuild.done} / ${index.rebuild.total} documents`]);
  if (index.state.detail) rows.push(["why", index.state.detail]);
  return card(`${name} index`, rows, { ok: ready, text: ready ? "ready" : "rebuilding" });
}

async function refreshHealth() {
  const box = $("health");
  try {
    const s = await (await api("GET", "/v1/admin/status")).json();
    const cards = el("div", { class: "cards" });
    cards.append(indexCard("Dense", s.dense, s.durable_seq), indexCard("Keyword", s.keyword, s.durable_seq));
    for (const c of s.consumers) {
      cards.append(card(`Consumer ${c.name}`, [["lag (entries)", c.lag], ["lag (seconds)", c.lag_seconds.toFixed(1)]],
        { ok: c.lag === 0, text: c.lag === 0 ? "caught up" : "behind" }));
    }
    for (const sync of s.sync) {
      cards.append(card(`Sync ${sync.name}`, [["written", sync.written], ["retries", sync.retries],
        ["dead letters", sync.dead_letters], ["last error", sync.last_error || "none"]],
        { ok: sync.state === "ok", text: sync.state }));
    }
    const last = s.backup && s.backup.last_success;
    cards.append(card("Backups", [["last success", last ? last.finished_at : "none reported"],
      ["last run", s.backup && s.backup.last_run ? s.backup.last_run.outcome : "none reported"]],
      { ok: Boolean(last), text: last ? "ok" : "unknown" }));
    cards.append(card("Store", [["durable sequence", s.durable_seq], ["documents", s.documents.total],
      ["dead letters", s.dead_letters], ["poisoned", s.poisoned || "no"]],
      { ok: !s.poisoned && s.dead_letters === 0, text: s.poisoned ? "poisoned" : (s.dead_letters ? "dead letters" : "ok") }));
    box.replaceChildren(cards);
  } catch (e) {
    if (e.status !== 401) box.replaceChildren(el("p", { class: "error" }, `Status unavailable: ${e.message}`));
  }
}

// ---- search --------------------------------------------------------------------------------

// The snippet with its highlighted byte ranges as <mark>.
function snippet(s) {
  const span = el("span");
  if (!s) return span;
  const bytes = new TextEncoder().encode(s.text);
  const dec = new TextDecoder();
  let at = 0;
  for (const [from, to] of s.highlighted) {
    if (from < at || to > bytes.length) continue;
    span.append(dec.decode(bytes.slice(at, from)), el("mark", {}, dec.decode(bytes.slice(from, to))));
    at = to;
  }
  span.append(dec.decode(bytes.slice(at)));
  return span;
}

const leg = (l) => (l ? `#${l.rank} (${l.score.toFixed(3)})` : "—");

async function search(event) {
  event.preventDefault();
  $("search-error").textContent = "";
  try {
    const body = { query: $("query").value, mode: $("mode").value, k: 10 };
    const result = await (await api("POST", "/v1/search", body)).json();
    const rows = result.hits.map((h, i) => el("tr", {},
      el("td", {}, i + 1),
      el("td", {}, el("strong", {}, h.document.title || h.document.id), el("br"), el("small", {}, h.document.id)),
      el("td", {}, h.score.toFixed(4)), el("td", { class: "leg-dense" }, leg(h.dense)),
      el("td", { class: "leg-keyword" }, leg(h.keyword)), el("td", {}, snippet(h.chunk && h.chunk.snippet))));
    const table = el("table", {}, el("caption", {}, `${result.hits.length} hits in ${result.took_ms.toFixed(1)} ms`
      + (result.degraded.length ? ` (without ${result.degraded.join(", ")})` : "")),
    el("thead", {}, el("tr", {}, ...["#", "Document", "Fused", "Dense rank (score)", "Keyword rank (score)", "Best passage"]
      .map((t) => el("th", { scope: "col" }, t)))), el("tbody", {}, ...rows));
    $("search-results").replaceChildren(el("div", { class: "table-wrap" }, table));
  } catch (e) {
    $("search-error").textContent = e.message;
  }
}

// ---- ask -----------------------------------------------------------------------------------

function showSources(answer) {
  const list = $("sources");
  list.replaceChildren(...answer.sources.map((s) => {
    const title = s.title || s.id;
    const safe = s.link && /^https?:\/\//.test(s.link);
    return el("li", { value: s.number || 1 },
      safe ? el("a", { href: s.link, rel: "noopener noreferrer", target: "_blank" }, title) : el("strong", {}, title),
      ` (${s.id})`, s.cited ? " — cited" : "", el("br"), el("small", {}, s.snippet));
  }));
}

async function ask(event) {
  event.preventDefault();
  const out = $("answer");
  out.textContent = "";
  $("sources").replaceChildren();
  $("ask-error").textContent = "";
  try {
    const response = await api("POST", "/v1/ask", { question: $("question").value, stream: true });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const raw = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of raw.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        const payload = data.length ? JSON.parse(data.join("\n")) : {};
        if (name === "text") out.textContent += payload.text;
        else if (name === "restart") out.textContent = "";
        else if (name === "answer") { out.textContent = payload.answer; showSources(payload); }
        else if (name === "error") $("ask-error").textContent = payload.detail || "the answer failed";
      }
    }
  } catch (e) {
    $("ask-error").textContent = e.message;
  }
}

// ---- documents -----------------------------------------------------------------------------

let nextCursor = null;

async function listDocuments(event, cursor) {
  if (event) event.preventDefault();
  $("docs-error").textContent = "";
  const params = new URLSearchParams({ limit: "20" });
  if ($("docs-source").value) params.set("source", $("docs-source").value);
  if ($("docs-kind").value) params.set("kind", $("docs-kind").value);
  if (cursor) params.set("cursor", cursor);
  try {
    const page = await (await api("GET", `/v1/documents?${params}`)).json();
    nextCursor = page.next_cursor;
    $("docs-next").hidden = !nextCursor;
    const rows = page.documents.map((d) => {
      const open = el("button", { type: "button", class: "small" }, "view");
      open.addEventListener("click", () => viewDocument(d.id));
      return el("tr", {}, el("td", {}, d.id), el("td", {}, d.title), el("td", {}, new Date(d.updated_at).toISOString()),
        el("td", {}, d.version), el("td", {}, open));
    });
    $("docs").replaceChildren(el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, ...["Id", "Title", "Updated", "Version", ""].map((t) => el("th", { scope: "col" }, t)))),
      el("tbody", {}, ...rows))));
  } catch (e) {
    $("docs-error").textContent = e.message;
  }
}

async function viewDocument(id) {
  try {
    const doc = await (await api("GET", `/v1/documents/${encodeURIComponent(id)}`)).json();
    const view = $("doc-view");
    view.replaceChildren(el("h3", {}, doc.title || doc.id), el("pre", {}, JSON.stringify(doc, null, 2)));
    view.hidden = false;
  } catch (e) {
    $("docs-error").textContent = e.message;
  }
}

// ---- start ---------------------------------------------------------------------------------

async function start() {
  $("token-form").addEventListener("submit", (e) => { e.preventDefault(); signInWith($("token").value); $("token").value = ""; });
  $("sign-out").addEventListener("click", () => signOut(""));
  $("refresh").addEventListener("click", refreshHealth);
  $("search-form").addEventListener("submit", search);
  $("ask-form").addEventListener("submit", ask);
  $("docs-form").addEventListener("submit", (e) => listDocuments(e, null));
  $("docs-next").addEventListener("click", () => listDocuments(null, nextCursor));
  try {
    const v = await (await fetch("/version")).json();
    $("build").textContent = `${v.version} · ${v.role} · ${v.search_backend} · ${v.model}`;
  } catch (_) { /* the page works without it */ }
  let config = {};
  try { config = await (await fetch("/console/config")).json(); } catch (_) { /* token sign-in only */ }
  if (config.oidc) {
    $("oidc-box").hidden = false;
    $("oidc-sign-in").addEventListener("click", () => oidcStart(config.oidc).catch((e) => { $("sign-in-error").textContent = e.message; }));
    const params = new URLSearchParams(location.search);
    if (params.has("code") || params.has("error")) {
      if (params.has("error")) {
        history.replaceState(null, "", "/");
        $("sign-in-error").textContent = `Sign-in refused: ${params.get("error_description") || params.get("error")}`;
      } else {
        await oidcFinish(config.oidc, params).catch((e) => { $("sign-in-error").textContent = `Sign-in failed: ${e.message}`; });
        return;
      }
    }
  }
  showApp(Boolean(sessionStorage.getItem(TOKEN_KEY)));
  setInterval(() => { if (!$("app").hidden) refreshHealth(); }, 15000);
}

start();
