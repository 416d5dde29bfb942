//! Concierge on a real single-node Docker swarm: the image `deploy/image.sh` builds (no
//! registry: `docker import` of our binaries and the libraries they link), deployed by
//! `concierge-sidecar deploy apply`, runs as a service whose exec health check, `concierge
//! healthcheck` — there is no shell or curl in the image — turns healthy, which verify sees.

use std::process::Command;
use std::time::{Duration, Instant};

use concierge_tests::{Swarm, binary, deploy_dir, model_dir};

#[test]
fn concierges_own_image_runs_as_a_swarm_service_whose_health_check_turns_healthy() {
    let swarm = Swarm::start();
    let bin_dir = binary("concierge")
        .parent()
        .expect("the binaries' directory")
        .to_path_buf();
    let built = Command::new(deploy_dir().join("image.sh"))
        .args([
            "--tag",
            "concierge:test",
            "--docker-host",
            &swarm.host,
            "--bin-dir",
        ])
        .arg(&bin_dir)
        .output()
        .expect("run deploy/image.sh");
    assert!(built.status.success(), "{built:?}");
    // `image.sh: concierge:test sha256:…, N MiB`: the image's size for the numbers.
    eprint!("{}", String::from_utf8_lossy(&built.stderr));
    let stack_dir = swarm.dir().join("stack");
    std::fs::create_dir_all(&stack_dir).expect("stack dir");
    let stack = stack_dir.join("stack.yml");
    std::fs::write(
        &stack,
        format!(
            r#"version: "3.8"
services:
  concierge:
    image: concierge:test
    environment:
      CONCIERGE_AUTH__API_TOKENS: test-token
    volumes:
      - type: bind
        source: {models}
        target: /models
        read_only: true
    healthcheck:
      test: ["CMD", "/usr/local/bin/concierge", "healthcheck"]
      interval: 1s
      timeout: 3s
      retries: 90
      start_period: 2s
    stop_grace_period: 30s
    deploy:
      endpoint_mode: dnsrr
      update_config: {{failure_action: rollback, monitor: 7m}}
"#,
            models = model_dir()
                .parent()
                .expect("the models directory")
                .display()
        ),
    )
    .expect("write the stack");
    let config = swarm.dir().join("sidecar.toml");
    std::fs::write(
        &config,
        format!(
            "[deploy]\nstack_dir = {:?}\nstack = \"t\"\ndocker_host = {:?}\nstate_dir = {:?}\nverify_timeout = \"120s\"\nverify_settle = \"1s\"\n",
            stack_dir.display().to_string(),
            swarm.host,
            swarm.dir().join("state").display().to_string()
        ),
    )
    .expect("write the sidecar's configuration");
    let started = Instant::now();
    let deployed = Command::new(binary("concierge-sidecar"))
        .arg("--config")
        .arg(&config)
        .args(["deploy", "apply"])
        .output()
        .expect("run concierge-sidecar deploy apply");
    let out = String::from_utf8_lossy(&deployed.stdout);
    assert!(deployed.status.success(), "{deployed:?}");
    assert!(out.contains("t_concierge: healthy"), "{out}");
    eprintln!(
        "numbers: apply+verify of Concierge's image {:?}",
        started.elapsed()
    );
    let container = swarm.wait_healthy("t_concierge", Duration::from_secs(10));
    // It is the daemon answering: the health check's own output is its /readyz body.
    let log = swarm.docker(&[
        "inspect",
        "--format",
        "{{range .State.Health.Log}}{{.Output}}{{end}}",
        &container,
    ]);
    let text = String::from_utf8_lossy(&log.stdout);
    assert!(
        text.contains("\"status\":\"ready\"") && text.contains("all-MiniLM-L6-v2"),
        "{text}"
    );
    // Runs as its own user, not root.
    let user = swarm.docker(&["inspect", "--format", "{{.Config.User}}", &container]);
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "10001:10001");
}
