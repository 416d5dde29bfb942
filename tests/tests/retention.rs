//! Retention: on a synthetic history of nightly snapshots over 14 months with missed nights, the
//! snapshots `concierge-sidecar` keeps under 7 daily / 4 weekly / 12 monthly are exactly those
//! the real `restic forget --dry-run` keeps on a copy of the same repository.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use concierge_sidecar::{Bars, Config, Repo, keep_options, load_config};
use concierge_tests::temp_dir;

fn config(repo: &Path, pw: &Path) -> Config {
    load_config(
        None,
        vec![
            (
                "CONCIERGE_SIDECAR_REPOSITORY__LOCATION".to_owned(),
                repo.display().to_string(),
            ),
            (
                "CONCIERGE_SIDECAR_REPOSITORY__PASSWORD_FILE".to_owned(),
                pw.display().to_string(),
            ),
        ],
    )
    .expect("config")
}

/// A new repository in `dir/repo` (password file `dir/pw`) and an empty source `dir/src`.
fn fresh_repository(dir: &Path) -> (Config, Repo, PathBuf) {
    let (repo_dir, pw, source) = (dir.join("repo"), dir.join("pw"), dir.join("src"));
    std::fs::write(&pw, "pw\n").expect("write");
    std::fs::create_dir_all(&source).expect("mkdir");
    let cfg = config(&repo_dir, &pw);
    let repo = Repo::init(&cfg, Bars::quiet()).expect("init");
    (cfg, repo, source)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

#[test]
fn the_snapshots_we_keep_are_exactly_those_restic_keeps_over_fourteen_months_with_a_gap() {
    let dir = temp_dir();
    let (cfg, mut repo, source) = fresh_repository(dir.path());
    let (repo_dir, pw) = (dir.path().join("repo"), dir.path().join("pw"));
    // Every night at 02:00 UTC from 2025-01-01 to 2026-02-15, except 2026-02-10, -11 and -12.
    let first = 1_735_696_800; // 2025-01-01T02:00:00Z
    let last = 1_771_120_800; // 2026-02-15T02:00:00Z
    let gap = [1_770_688_800, 1_770_775_200, 1_770_861_600]; // 2026-02-10/11/12 02:00
    let second_day = 1_771_034_400; // 2026-02-14 02:00
    let mut second: Option<String> = None;
    let mut made = 0;
    for (n, t) in (first..=last).step_by(86_400).enumerate() {
        if gap.contains(&t) {
            continue;
        }
        std::fs::write(source.join("night.txt"), format!("night {n}\n")).expect("write");
        repo.backup(
            std::slice::from_ref(&source),
            &[],
            "nightly-host",
            &[],
            Some(t),
        )
        .expect("backup");
        made += 1;
        if t == second_day {
            // A second snapshot that day (a manual run at 14:00).
            std::fs::write(source.join("night.txt"), "manual run\n").expect("write");
            let s = repo
                .backup(
                    std::slice::from_ref(&source),
                    &[],
                    "nightly-host",
                    &[],
                    Some(t + 12 * 3600),
                )
                .expect("backup");
            second = Some(s.snapshot_id);
            made += 1;
        }
    }
    assert_eq!(made, 409);

    let copy = dir.path().join("copy");
    copy_dir(&repo_dir, &copy);
    let out = Command::new("/usr/bin/restic")
        .args(["--no-cache", "-r"])
        .arg(&copy)
        .arg("--password-file")
        .arg(&pw)
        .args([
            "forget",
            "--keep-daily",
            "7",
            "--keep-weekly",
            "4",
            "--keep-monthly",
            "12",
            "--dry-run",
            "--json",
        ])
        .env("HOME", dir.path())
        .output()
        .expect("restic is not installed: run scripts/test-tools.sh (./test.sh does)");
    assert!(
        out.status.success(),
        "restic forget: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let groups: serde_json::Value = serde_json::from_slice(&out.stdout).expect("restic JSON");
    let theirs: BTreeSet<String> = groups
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["keep"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();

    // `now` does not matter to count-based rules; use the day after the last night.
    let decisions = repo
        .forget(&keep_options(&cfg), last + 86_400, true)
        .expect("forget plan");
    assert_eq!(decisions.len(), 409);
    let ours: BTreeSet<String> = decisions
        .iter()
        .filter(|d| d.keep)
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(ours.len(), 20, "7 daily + 2 more weekly + 11 more monthly");
    assert_eq!(ours, theirs, "our keep set differs from restic's");
    // The policy is full: of the two snapshots of 2026-02-14 the newer one is the day's.
    let second = second.expect("second snapshot");
    assert!(
        ours.contains(&second),
        "the 14:00 snapshot of 2026-02-14 is kept"
    );
    let morning = decisions
        .iter()
        .find(|d| d.time.starts_with("2026-02-14T02:00"))
        .expect("the 02:00 snapshot of 2026-02-14");
    assert!(!morning.keep, "{morning:?}");

    // Applying it really removes the others, and restic sees the same repository.
    let removed = repo
        .forget(&keep_options(&cfg), last + 86_400, false)
        .expect("forget");
    assert_eq!(removed.iter().filter(|d| !d.keep).count(), 409 - 20);
    assert_eq!(repo.snapshots().expect("snapshots").len(), 20);
}

/// restic 0.16+ documents (`restic forget --help`): "If there are not enough snapshots to keep
/// one for each duration related --keep-{within-,}* option, the oldest snapshot in the group is
/// kept additionally." Its `ApplyPolicy` does it per rule: walking newest first, a rule with
/// slots left keeps a snapshot that starts a new period *or is the group's oldest*. So with two
/// snapshots on one day and a policy far from full, the newer fills the day's daily slot and the
/// older is kept too, by the same rules (daily, weekly, monthly). Debian's restic 0.14 predates
/// this and removes the older one; rustic_core follows 0.16+, and so do we.
#[test]
fn two_snapshots_on_one_day_keep_the_newer_as_the_day_and_the_older_while_the_policy_is_not_full() {
    let dir = temp_dir();
    let (cfg, mut repo, source) = fresh_repository(dir.path());
    let morning = 1_771_034_400; // 2026-02-14 02:00 UTC
    let mut ids = Vec::new();
    for (n, t) in [morning, morning + 12 * 3600].into_iter().enumerate() {
        std::fs::write(source.join("f.txt"), format!("run {n}\n")).expect("write");
        let s = repo
            .backup(std::slice::from_ref(&source), &[], "h", &[], Some(t))
            .expect("backup");
        ids.push(s.snapshot_id);
    }
    let decisions = repo
        .forget(&keep_options(&cfg), morning + 86_400, true)
        .expect("forget plan");
    assert_eq!(decisions.len(), 2);
    let of = |id: &str| decisions.iter().find(|d| d.id == id).expect("decided");
    let (older, newer) = (of(&ids[0]), of(&ids[1]));
    for d in [newer, older] {
        assert!(
            d.keep,
            "both are kept while the policy is not full: {decisions:?}"
        );
        for rule in ["daily", "weekly", "monthly"] {
            assert!(d.reasons.iter().any(|r| r.contains(rule)), "{rule}: {d:?}");
        }
    }
}
