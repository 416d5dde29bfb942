//! `concierge-bench backup`: backup and restore throughput of `concierge-sidecar` beside the
//! `restic` binary, on the same generated tree (about 1 GB by default, mixed: incompressible
//! binaries, compressible text, duplicated blocks, many small files), to a local repository and
//! to an S3-compatible server (`moto_server` on loopback), in the same run: the first backup,
//! an unchanged second one, and a restore (checked byte for byte against the source). Every
//! figure is the wall time of the command a user would run (process start and the password's
//! key derivation included, for both tools), so MB/s = source bytes / that time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use concierge_tests::Moto;
use serde::Serialize;

use crate::progress::Progress;

/// Arguments of `concierge-bench backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Size of the generated tree, MB.
    #[arg(long, default_value_t = 1024)]
    pub size_mb: u64,
    /// `local`, `s3` or both (comma-separated).
    #[arg(long, default_value = "local,s3")]
    pub targets: String,
    /// Scratch directory (the tree, the local repositories, the restores); default: a temporary
    /// directory, removed afterwards.
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// The `restic` binary to compare with.
    #[arg(long, default_value = "/usr/bin/restic")]
    pub restic: PathBuf,
    /// The `concierge-sidecar` binary (default: beside this one).
    #[arg(long)]
    pub sidecar: Option<PathBuf>,
    /// Where the report goes.
    #[arg(long, default_value = "bench/out/backup")]
    pub out: PathBuf,
}

const PASSWORD: &str = "bench password";

#[derive(Debug, Clone, Serialize)]
struct Row {
    tool: String,
    target: String,
    first_s: f64,
    first_mb_s: f64,
    second_s: f64,
    second_mb_s: f64,
    restore_s: f64,
    restore_mb_s: f64,
    /// Repository size after both backups (local repositories only).
    repo_mb: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    run: crate::run_info::RunInfo,
    tree_mb: f64,
    files: usize,
    restic_version: String,
    rows: Vec<Row>,
}

/// A xorshift stream: incompressible bytes, deterministic.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Writes the mixed tree: 45 % large incompressible files, 20 % a large file made of repeated
/// blocks (deduplication), 20 % medium text files (compression), 15 % small files (per-file cost).
fn make_tree(root: &Path, size_mb: u64) -> anyhow::Result<(u64, usize)> {
    let total = size_mb * 1_000_000;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut written = 0u64;
    let mut files = 0usize;
    let pb = Progress::new(
        usize::try_from(size_mb).unwrap_or(usize::MAX),
        "writing the tree (MB)",
    );
    let write =
        |path: PathBuf, bytes: &[u8], written: &mut u64, files: &mut usize| -> anyhow::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, bytes)?;
            *written += bytes.len() as u64;
            *files += 1;
            pb.set_position(*written / 1_000_000);
            Ok(())
        };
    // Large incompressible files, 64 MB each.
    let mut buf = vec![0u8; 64_000_000];
    let mut i = 0;
    while written < total * 45 / 100 {
        let n = (total * 45 / 100 - written).min(buf.len() as u64) as usize;
        noise.fill(&mut buf[..n]);
        write(
            root.join(format!("media/recording-{i:03}.bin")),
            &buf[..n],
            &mut written,
            &mut files,
        )?;
        i += 1;
    }
    // One large file of 1 MB blocks drawn from 16 distinct ones.
    let mut blocks = vec![vec![0u8; 1_000_000]; 16];
    for b in &mut blocks {
        noise.fill(b);
    }
    let dedup_target = total * 20 / 100;
    let mut dedup = Vec::with_capacity(dedup_target as usize);
    let mut k = 0u64;
    while (dedup.len() as u64) < dedup_target {
        k = k
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        dedup.extend_from_slice(&blocks[(k >> 60) as usize]);
    }
    dedup.truncate(dedup_target as usize);
    write(
        root.join("images/disk.img"),
        &dedup,
        &mut written,
        &mut files,
    )?;
    drop(dedup);
    // Medium text files, ~2 MB each: booking and call logs.
    let lines = [
        "2026-11-30T14:02:11Z call 48213 inbound +33 6 12 34 56 78 answered by Maria, 3m12s, guest asked about late check-in\n",
        "2026-11-30T14:05:40Z reservation HM-5521 confirmed: 3 nights, 2 guests, Rue de Rivoli 12, door code sent\n",
        "2026-11-30T14:07:02Z conversation 9921: the wifi password is on the fridge; towels are in the hall cupboard\n",
    ];
    let text_target = written + total * 20 / 100;
    let mut j = 0;
    while written < text_target {
        let mut t = String::with_capacity(2_000_000);
        let mut n = j;
        while t.len() < 2_000_000 {
            t.push_str(lines[n % 3]);
            t.push_str(&format!("seq {n}\n"));
            n += 7;
        }
        let cut = t.len().min((text_target - written) as usize);
        write(
            root.join(format!("logs/{:02}/day-{j:04}.log", j % 20)),
            &t.as_bytes()[..cut],
            &mut written,
            &mut files,
        )?;
        j += 1;
    }
    // Small files (1-16 KB), some empty, in many directories.
    let mut s = 0u64;
    let mut small = vec![0u8; 16_384];
    while written < total {
        let size = if s.is_multiple_of(50) {
            0
        } else {
            1024 + (s * 2_654_435_761 % 15_360) as usize
        };
        let size = size.min((total - written) as usize);
        noise.fill(&mut small[..size]);
        write(
            root.join(format!("docs/{:03}/note-{s:06}.dat", s % 300)),
            &small[..size],
            &mut written,
            &mut files,
        )?;
        s += 1;
    }
    pb.finish();
    Ok((written, files))
}

/// Every file under `root`: relative path -> (size, SHA-256 of the whole content).
fn digest_tree(root: &Path) -> anyhow::Result<BTreeMap<String, (u64, [u8; 32])>> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let path = e.path();
            if e.file_type()?.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path)?;
                let rel = path.strip_prefix(root)?.display().to_string();
                out.insert(
                    rel,
                    (bytes.len() as u64, sha2::Sha256::digest(&bytes).into()),
                );
            }
        }
    }
    Ok(out)
}

fn dir_size(root: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => total += e.metadata().map_or(0, |m| m.len()),
                Err(_) => {}
            }
        }
    }
    total
}

/// Runs a command, failing with its output when it fails; its wall time in seconds.
fn timed(what: &str, command: &mut Command) -> anyhow::Result<f64> {
    let t = Instant::now();
    let out = command.output()?;
    let s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "{what} failed ({:?}): {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(s)
}

/// How one tool is driven.
trait Tool {
    fn name(&self) -> &'static str;
    fn init(&self) -> anyhow::Result<()>;
    fn backup(&self) -> anyhow::Result<f64>;
    fn restore(&self, target: &Path) -> anyhow::Result<f64>;
}

struct Sidecar {
    binary: PathBuf,
    env: Vec<(String, String)>,
    home: PathBuf,
}

impl Sidecar {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.args(args).env("HOME", &self.home).env("RUST_LOG", "warn");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
}

impl Tool for Sidecar {
    fn name(&self) -> &'static str {
        "concierge-sidecar"
    }
    fn init(&self) -> anyhow::Result<()> {
        timed(
            "concierge-sidecar backup init",
            &mut self.command(&["backup", "init"]),
        )
        .map(drop)
    }
    fn backup(&self) -> anyhow::Result<f64> {
        timed(
            "concierge-sidecar backup run",
            &mut self.command(&["backup", "run"]),
        )
    }
    fn restore(&self, target: &Path) -> anyhow::Result<f64> {
        let t = target.display().to_string();
        timed(
            "concierge-sidecar backup restore",
            &mut self.command(&["backup", "restore", "latest", "--target", &t]),
        )
    }
}

struct Restic {
    binary: PathBuf,
    repo: String,
    password_file: PathBuf,
    source: PathBuf,
    env: Vec<(String, String)>,
    home: PathBuf,
}

impl Restic {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.args(["-r", &self.repo, "--password-file"])
            .arg(&self.password_file)
            .args(args)
            .env("HOME", &self.home);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
}

impl Tool for Restic {
    fn name(&self) -> &'static str {
        "restic"
    }
    fn init(&self) -> anyhow::Result<()> {
        timed("restic init", &mut self.command(&["init"])).map(drop)
    }
    fn backup(&self) -> anyhow::Result<f64> {
        let src = self.source.display().to_string();
        timed(
            "restic backup",
            &mut self.command(&["backup", "--host", "bench", &src]),
        )
    }
    fn restore(&self, target: &Path) -> anyhow::Result<f64> {
        let t = target.display().to_string();
        timed(
            "restic restore",
            &mut self.command(&["restore", "latest", "--target", &t]),
        )
    }
}

/// First backup, unchanged second backup, restore (verified) of one tool on one target.
fn measure(
    tool: &dyn Tool,
    target: &str,
    source: &Path,
    want: &BTreeMap<String, (u64, [u8; 32])>,
    mb: f64,
    scratch: &Path,
    local_repo: Option<&Path>,
) -> anyhow::Result<Row> {
    eprintln!("backup bench: {} to {target}", tool.name());
    tool.init()?;
    let first_s = tool.backup()?;
    let second_s = tool.backup()?;
    let restore_dir = scratch.join(format!("restore-{}-{target}", tool.name()));
    let restore_s = tool.restore(&restore_dir)?;
    // Both tools restore the absolute source path under the target.
    let restored_root = restore_dir.join(source.strip_prefix("/")?);
    let got = digest_tree(&restored_root)?;
    anyhow::ensure!(
        &got == want,
        "{}'s restore from {target} differs from the source ({} files restored, {} expected)",
        tool.name(),
        got.len(),
        want.len()
    );
    std::fs::remove_dir_all(&restore_dir)?;
    Ok(Row {
        tool: tool.name().to_owned(),
        target: target.to_owned(),
        first_s,
        first_mb_s: mb / first_s,
        second_s,
        second_mb_s: mb / second_s,
        restore_s,
        restore_mb_s: mb / restore_s,
        repo_mb: local_repo.map(|p| dir_size(p) as f64 / 1e6),
    })
}

pub fn run(args: &BackupArgs) -> anyhow::Result<()> {
    let sidecar = match &args.sidecar {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("concierge-sidecar"))
            .ok_or_else(|| anyhow::anyhow!("cannot locate concierge-sidecar"))?,
    };
    anyhow::ensure!(
        sidecar.is_file(),
        "{} is missing: cargo build --workspace --bins",
        sidecar.display()
    );
    anyhow::ensure!(
        args.restic.is_file(),
        "{} is missing: apt-get install restic (scripts/test-tools.sh)",
        args.restic.display()
    );
    let targets: Vec<&str> = args
        .targets
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    for t in &targets {
        anyhow::ensure!(
            matches!(*t, "local" | "s3"),
            "unknown target {t:?} (local, s3)"
        );
    }
    let temp = tempfile::tempdir()?;
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    let work = std::fs::canonicalize(&work)?;
    let source = work.join("tree");
    if source.exists() {
        std::fs::remove_dir_all(&source)?;
    }
    let (bytes, files) = make_tree(&source, args.size_mb)?;
    let mb = bytes as f64 / 1e6;
    let want = digest_tree(&source)?;
    let password_file = work.join("password");
    std::fs::write(&password_file, PASSWORD)?;
    let restic_version = Command::new(&args.restic)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();

    let mut rows = Vec::new();
    for target in targets {
        let moto = (target == "s3").then(Moto::start);
        for name in ["concierge-sidecar", "restic"] {
            let repo_dir = work.join(format!("repo-{name}-{target}"));
            if repo_dir.exists() {
                std::fs::remove_dir_all(&repo_dir)?;
            }
            let home = work.join(format!("home-{name}-{target}"));
            std::fs::create_dir_all(&home)?;
            let bucket = format!("bench-{}", if name == "restic" { "restic" } else { "ours" });
            let tool: Box<dyn Tool> = if name == "restic" {
                let (repo, env) = match &moto {
                    Some(m) => (
                        format!("s3:{}/{bucket}/repo", m.endpoint),
                        vec![
                            ("AWS_ACCESS_KEY_ID".to_owned(), "bench".to_owned()),
                            (
                                "AWS_SECRET_ACCESS_KEY".to_owned(),
                                "bench-secret".to_owned(),
                            ),
                            ("AWS_DEFAULT_REGION".to_owned(), "us-east-1".to_owned()),
                        ],
                    ),
                    None => (repo_dir.display().to_string(), Vec::new()),
                };
                Box::new(Restic {
                    binary: args.restic.clone(),
                    repo,
                    password_file: password_file.clone(),
                    source: source.clone(),
                    env,
                    home,
                })
            } else {
                let mut env = vec![
                    (
                        "CONCIERGE_SIDECAR_REPOSITORY__PASSWORD_FILE".to_owned(),
                        password_file.display().to_string(),
                    ),
                    (
                        "CONCIERGE_SIDECAR_BACKUP__SOURCES".to_owned(),
                        source.display().to_string(),
                    ),
                    (
                        "CONCIERGE_SIDECAR_BACKUP__HOST".to_owned(),
                        "bench".to_owned(),
                    ),
                    (
                        "CONCIERGE_SIDECAR_STATUS__FILE".to_owned(),
                        home.join("status.json").display().to_string(),
                    ),
                ];
                match &moto {
                    Some(m) => env.extend([
                        (
                            "CONCIERGE_SIDECAR_REPOSITORY__LOCATION".to_owned(),
                            format!("s3://{bucket}/repo"),
                        ),
                        (
                            "CONCIERGE_SIDECAR_REPOSITORY_S3__ENDPOINT".to_owned(),
                            m.endpoint.clone(),
                        ),
                        (
                            "CONCIERGE_SIDECAR_REPOSITORY_S3__ACCESS_KEY_ID".to_owned(),
                            "bench".to_owned(),
                        ),
                        (
                            "CONCIERGE_SIDECAR_REPOSITORY_S3__SECRET_ACCESS_KEY".to_owned(),
                            "bench-secret".to_owned(),
                        ),
                    ]),
                    None => env.push((
                        "CONCIERGE_SIDECAR_REPOSITORY__LOCATION".to_owned(),
                        repo_dir.display().to_string(),
                    )),
                }
                Box::new(Sidecar {
                    binary: sidecar.clone(),
                    env,
                    home,
                })
            };
            let local = moto.is_none().then_some(repo_dir.as_path());
            rows.push(measure(
                tool.as_ref(),
                target,
                &source,
                &want,
                mb,
                &work,
                local,
            )?);
            if repo_dir.exists() {
                std::fs::remove_dir_all(&repo_dir)?;
            }
        }
    }
    std::fs::remove_dir_all(&source)?;

    let report = Report {
        run: crate::run_info::RunInfo::now(),
        tree_mb: mb,
        files,
        restic_version,
        rows,
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("backup.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    let mut md = format!(
        "# Backup and restore throughput ({:.0} MB mixed tree, {} files; {})\n\n{}\n\n| tool | target | first backup s (MB/s) | unchanged second s (MB/s) | restore s (MB/s) | repository MB |\n|---|---|---:|---:|---:|---:|\n",
        report.tree_mb,
        report.files,
        report.restic_version,
        report.run.markdown_line()
    );
    for r in &report.rows {
        md.push_str(&format!(
            "| {} | {} | {:.1} ({:.0}) | {:.1} ({:.0}) | {:.1} ({:.0}) | {} |\n",
            r.tool,
            r.target,
            r.first_s,
            r.first_mb_s,
            r.second_s,
            r.second_mb_s,
            r.restore_s,
            r.restore_mb_s,
            r.repo_mb.map_or("-".to_owned(), |m| format!("{m:.0}"))
        ));
    }
    md.push_str("\nWall time of each command (process start and key derivation included, for both tools); MB/s = source MB / time. Restores are checked file by file (SHA-256) against the source. `s3` is `moto_server` on loopback.\n");
    std::fs::write(args.out.join("backup.md"), &md)?;
    let bars: Vec<(String, f64)> = report
        .rows
        .iter()
        .flat_map(|r| {
            [
                (format!("{} {} 1st", short(&r.tool), r.target), r.first_mb_s),
                (
                    format!("{} {} 2nd", short(&r.tool), r.target),
                    r.second_mb_s,
                ),
                (
                    format!("{} {} restore", short(&r.tool), r.target),
                    r.restore_mb_s,
                ),
            ]
        })
        .collect();
    crate::plot::bars(
        &args.out.join("backup.svg"),
        "Backup and restore throughput (MB/s, higher is better)",
        "MB/s",
        &bars,
    )?;
    println!("{md}");
    Ok(())
}

fn short(tool: &str) -> &str {
    if tool == "restic" { "restic" } else { "ours" }
}
