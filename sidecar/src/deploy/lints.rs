//! What a plan warns about before anything is applied: the ways a Swarm deployment fails
//! quietly (`../shared/real-components.md` §2).

use serde::Serialize;

use super::desired::{Desired, DesiredService};
use concierge_infra::layered_config::TextDuration;

/// One warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lint {
    pub service: String,
    /// Stable name of the rule (`no-healthcheck`, `monitor-shorter-than-health-check`,
    /// `no-automatic-rollback`, `mutable-image-tag`).
    pub rule: &'static str,
    pub message: String,
}

/// Every lint of the desired state, service by service.
pub fn check(desired: &Desired) -> Vec<Lint> {
    desired.services.iter().flat_map(service).collect()
}

fn service(s: &DesiredService) -> Vec<Lint> {
    let mut out = Vec::new();
    let lint = |rule, message: String| Lint {
        service: s.name.clone(),
        rule,
        message,
    };
    match s.health {
        None => out.push(lint(
            "no-healthcheck",
            "no health check in the stack file: Swarm calls a task running as soon as its process starts, so neither its update monitor nor verify can see a broken release".into(),
        )),
        Some(h) => {
            if s.monitor < h.window() {
                out.push(lint(
                    "monitor-shorter-than-health-check",
                    format!(
                        "update_config.monitor is {} but the health check can take {} to fail (start_period + retries × (interval + timeout)): Swarm finishes the update before the check can fail, and automatic rollback never fires; set monitor to at least {}",
                        TextDuration::from_millis(s.monitor.as_millis() as u64),
                        TextDuration::from_millis(h.window().as_millis() as u64),
                        TextDuration::from_millis(h.window().as_millis() as u64),
                    ),
                ));
            }
        }
    }
    if s.failure_action != "rollback" {
        out.push(lint(
            "no-automatic-rollback",
            format!(
                "update_config.failure_action is {:?}: a failed update stays half-done until someone acts; use rollback",
                s.failure_action
            ),
        ));
    }
    if mutable_tag(&s.image) {
        out.push(lint(
            "mutable-image-tag",
            format!(
                "image {:?} has no fixed version (no tag, or `latest`): two nodes can run different code and a rollback may not restore the old one; pin a version tag or a digest",
                s.image
            ),
        ));
    }
    out
}

/// No tag, or `latest`, and no digest.
fn mutable_tag(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    // The tag is after the last ':' that comes after the last '/' (a registry port is not a tag).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::compose;
    use crate::deploy::desired;
    use crate::deploy::values::Values;

    fn lints(text: &str) -> Vec<(String, &'static str)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("stack.yml");
        std::fs::write(&f, text).expect("write");
        let stack = compose::read(&[f], &Values::default()).expect("stack");
        let d = desired::build("s", &stack, &desired::tests::plain_sources()).expect("desired");
        check(&d).into_iter().map(|l| (l.service, l.rule)).collect()
    }

    #[test]
    fn each_quiet_failure_is_named_and_a_careful_service_has_none() {
        let found = lints(
            r#"
services:
  bare:
    image: registry:5000/app
  hasty:
    image: app:latest
    healthcheck: {test: ["CMD", "true"], interval: 10s, timeout: 5s, retries: 3, start_period: 20s}
    deploy:
      update_config: {failure_action: rollback, monitor: 30s}
  careful:
    image: app:1.4.2
    healthcheck: {test: ["CMD", "true"], interval: 2s, timeout: 1s, retries: 3}
    deploy:
      update_config: {failure_action: rollback, monitor: 10s}
"#,
        );
        let want = [
            ("s_bare".to_owned(), "no-healthcheck"),
            ("s_bare".to_owned(), "no-automatic-rollback"),
            ("s_bare".to_owned(), "mutable-image-tag"),
            // 20 s + 3 × 15 s = 65 s > 30 s.
            ("s_hasty".to_owned(), "monitor-shorter-than-health-check"),
            ("s_hasty".to_owned(), "mutable-image-tag"),
        ];
        assert_eq!(found, want);
    }

    #[test]
    fn the_production_stack_reads_with_its_values_and_has_no_lints() {
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let mut values = Values::read(&deploy.join("env/production.env")).expect("values");
        // The secrets are decrypted at deploy time (git-crypt); any content does here.
        let secrets = tempfile::tempdir().expect("tempdir");
        let stack_text = std::fs::read_to_string(deploy.join("stack.yml")).expect("stack");
        for line in stack_text.lines() {
            if let Some(rest) = line.split("${SECRETS_DIR}/").nth(1) {
                let name = rest.split('"').next().expect("a name");
                std::fs::write(secrets.path().join(name), "x").expect("secret");
            }
        }
        values
            .set(&format!("SECRETS_DIR={}", secrets.path().display()))
            .expect("set");
        let stack = compose::read(&[deploy.join("stack.yml")], &values).expect("the stack reads");
        let d = desired::build("concierge", &stack, &desired::tests::plain_sources())
            .expect("the stack builds");
        let names: Vec<&str> = d.services.iter().map(|s| s.name.as_str()).collect();
        for want in [
            "concierge_traefik",
            "concierge_seaweedfs",
            "concierge_netdata",
            "concierge_mongodb",
            "concierge_rocketchat",
            "concierge_keycloak",
            "concierge_keycloak-db",
            "concierge_concierge",
            "concierge_concierge-replica",
            "concierge_sidecar",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert_eq!(check(&d), vec![], "the production stack has no lints");
        let primary = d
            .services
            .iter()
            .find(|s| s.name == "concierge_concierge")
            .expect("primary");
        assert_eq!(
            primary.spec["TaskTemplate"]["Placement"]["Constraints"][0],
            "node.labels.concierge.primary == true"
        );
        assert_eq!(
            primary.spec["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"],
            30_000_000_000u64
        );
        let replica = d
            .services
            .iter()
            .find(|s| s.name == "concierge_concierge-replica")
            .expect("replica");
        assert_eq!(replica.spec["Mode"]["Replicated"]["Replicas"], 2);
        // A replica: no store, Qdrant to search, the primary to write to.
        let env: Vec<&str> = replica.spec["TaskTemplate"]["ContainerSpec"]["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str())
            .collect();
        for want in [
            "CONCIERGE_CLUSTER__ROLE=replica",
            "CONCIERGE_CLUSTER__PRIMARY_URL=http://concierge:8080",
            "CONCIERGE_SEARCH__BACKEND=qdrant",
        ] {
            assert!(env.contains(&want), "{want} in {env:?}");
        }
        // `$$` in the stack is a literal dollar for the shell in the container.
        let keycloak = d
            .services
            .iter()
            .find(|s| s.name == "concierge_keycloak")
            .expect("keycloak");
        let args = keycloak.spec["TaskTemplate"]["ContainerSpec"]["Args"][0]
            .as_str()
            .expect("args");
        assert!(
            args.contains("\"$(cat /run/secrets/keycloak_db_password)\""),
            "{args}"
        );
    }

    #[test]
    fn a_registry_port_is_not_a_tag_and_a_digest_is_fixed() {
        assert!(mutable_tag("registry:5000/app"));
        assert!(!mutable_tag("registry:5000/app:1.2"));
        assert!(!mutable_tag("app@sha256:abc"));
        assert!(mutable_tag("app"));
    }
}
