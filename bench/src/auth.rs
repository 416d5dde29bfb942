//! `concierge-bench auth`: what verifying a bearer token costs per request, in one run on the
//! real daemon over HTTP — a static token (constant-time comparison) beside OIDC access tokens
//! (RS256 and ES256 JWTs, keys already cached) from a Keycloak-shaped issuer in-process
//! (`concierge_tests::OidcIssuer`), the same token again (remembered after its first
//! verification) and a new token each time (the full signature check). Each request is `GET /openapi.json` (a fixed document, so
//! the route itself costs next to nothing) on one keep-alive connection; the kinds take turns
//! in rounds, so they see the same minutes of this machine. Reported: p50/p99 per kind and
//! what a JWT adds over the static token.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use concierge_tests::{OidcIssuer, SigningKey};
use serde::Serialize;
use serde_json::{Value, json};

use crate::daemon_process::{DaemonProcess, percentile};
use crate::http_client::Connection;
use crate::run_info::RunInfo;

/// Arguments of `concierge-bench auth`.
#[derive(Debug, clap::Args)]
pub struct AuthArgs {
    /// Requests per kind and round.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Rounds (the kinds take turns in each).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// The model directory (the daemon loads it at start).
    #[arg(long, default_value = "models/weights/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "bench/out/auth")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Row {
    kind: &'static str,
    requests: usize,
    p50_us: f64,
    p99_us: f64,
    /// p50 over the static token's p50.
    added_p50_us: f64,
    added_p99_us: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    run: RunInfo,
    rows: Vec<Row>,
}

const STATIC_TOKEN: &str = "bench-static-token";

pub fn run(args: &AuthArgs) -> anyhow::Result<()> {
    let run = RunInfo::now();
    anyhow::ensure!(
        args.requests > 0 && args.rounds > 0,
        "--requests and --rounds must be at least 1"
    );
    let rsa = SigningKey::rsa("rsa-1");
    let ec = SigningKey::ec("ec-1");
    let issuer = OidcIssuer::start_on(0, vec![rsa.jwk().clone(), ec.jwk().clone()]);
    let data = tempfile::tempdir()?;
    let daemon = DaemonProcess::start(
        &data.path().join("data"),
        &args.model_dir,
        &[
            ("CONCIERGE_AUTH__API_TOKENS", STATIC_TOKEN),
            ("CONCIERGE_AUTH__OIDC_ISSUER", issuer.issuer.as_str()),
            ("CONCIERGE_AUTH__OIDC_AUDIENCE", "concierge"),
        ],
    )?;
    // The keys are fetched right after the start.
    let mut c = Connection::new(&daemon.address);
    let auth = format!("Bearer {STATIC_TOKEN}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = c.request("GET", "/v1/admin/status", "", &[("Authorization", &auth)])?;
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        if v["oidc"]["state"] == "ready" {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the daemon never fetched the issuer's keys: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut claims = issuer.claims("concierge", &["concierge-read"], &[]);
    claims["exp"] = json!(claims["exp"].as_i64().unwrap_or(0) + 3600);
    let rs256 = json!({"alg": "RS256", "kid": "rsa-1"});
    let es256 = json!({"alg": "ES256", "kid": "ec-1"});
    // A token per request (a distinct `jti`), signed before the clock starts: what a token
    // costs the first time the daemon sees it.
    let fresh = |key: &SigningKey, header: &Value, round: usize| -> Vec<String> {
        (0..args.requests)
            .map(|i| {
                let mut c = claims.clone();
                c["jti"] = json!(format!("{round}-{i}"));
                key.sign(header, &c)
            })
            .collect()
    };
    let kinds: [&'static str; 5] = [
        "static token",
        "OIDC RS256 (2048-bit), the same token again",
        "OIDC ES256 (P-256), the same token again",
        "OIDC RS256 (2048-bit), a new token each time",
        "OIDC ES256 (P-256), a new token each time",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let progress = crate::progress::Progress::new(args.rounds * kinds.len(), "rounds × kinds");
    for round in 0..args.rounds {
        let tokens: [Vec<String>; 5] = [
            vec![STATIC_TOKEN.to_owned()],
            vec![rsa.sign(&rs256, &claims)],
            vec![ec.sign(&es256, &claims)],
            fresh(&rsa, &rs256, round),
            fresh(&ec, &es256, round),
        ];
        for (i, kind) in kinds.iter().enumerate() {
            let headers: Vec<String> = tokens[i].iter().map(|t| format!("Bearer {t}")).collect();
            for n in 0..args.requests {
                let header = &headers[n % headers.len()];
                let t = Instant::now();
                let (status, body) =
                    c.request("GET", "/openapi.json", "", &[("Authorization", header)])?;
                samples[i].push(t.elapsed().as_secs_f64() * 1e6);
                anyhow::ensure!(
                    status == 200,
                    "{kind}: GET /openapi.json answered {status}: {}",
                    body.chars().take(200).collect::<String>()
                );
            }
            progress.inc(1);
        }
    }
    progress.finish();
    daemon.stop().context("stopping the daemon")?;
    let mut rows = Vec::new();
    let (mut base50, mut base99) = (0.0, 0.0);
    for (kind, mut s) in kinds.iter().zip(samples) {
        s.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&s, 0.5), percentile(&s, 0.99));
        if rows.is_empty() {
            (base50, base99) = (p50, p99);
        }
        rows.push(Row {
            kind,
            requests: s.len(),
            p50_us: p50,
            p99_us: p99,
            added_p50_us: p50 - base50,
            added_p99_us: p99 - base99,
        });
    }
    let report = Report { run, rows };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("auth.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    let mut md = format!(
        "# Bearer token verification on the real daemon: `GET /openapi.json` over one keep-alive connection\n\n{}\n\n\
         {} requests per kind in {} interleaved rounds; keys cached (fetched once at start). A token \
         verified once is remembered until its `exp` (by SHA-256): \"the same token again\" is a \
         client's usual case, \"a new token each time\" the full signature check.\n\n\
         | token | requests | p50 µs | p99 µs | added p50 µs | added p99 µs |\n|---|---:|---:|---:|---:|---:|\n",
        report.run.markdown_line(),
        args.requests,
        args.rounds
    );
    for r in &report.rows {
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:+.0} | {:+.0} |\n",
            r.kind, r.requests, r.p50_us, r.p99_us, r.added_p50_us, r.added_p99_us
        ));
    }
    std::fs::write(args.out.join("auth.md"), &md)?;
    println!("{md}");
    Ok(())
}
