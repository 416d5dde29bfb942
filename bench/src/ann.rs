//! `concierge-bench ann`: the dense index (the engine's segments and their walk) on a file of vectors,
//! beside the exact scan and the peers (hnswlib, FAISS HNSW and flat) on the same files, in the
//! same run: build time, memory per vector, and single-thread queries/s against recall@k over an
//! ef_search sweep; then the same with filters matching 50 %, 10 % and 1 % of the vectors, with
//! recall against the filtered exact answer.
//!
//! Each vector gets a label 0..100 from a hash of its row number; a filter at selectivity s keeps
//! the labels below 100·s. Our index filters the way the engine's dense leg does (filtered HNSW,
//! or an exact scan of the matching vectors when few match); the peers use their own filter APIs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, ensure};
use concierge_engine::{AnnIndex, BruteForce, HnswParams};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plot::{Series, recall_throughput};
use crate::progress::Progress;
use crate::run_info::RunInfo;
use crate::vectors_file;

/// Arguments of `concierge-bench ann`.
#[derive(Debug, Clone, clap::Args)]
pub struct AnnArgs {
    /// The indexed vectors (`.npy` float32 or `.fvecs`); `bench/data/prepare.sh` makes the default.
    #[arg(long, default_value = "bench/data/wordnet/base.npy")]
    pub base: PathBuf,
    /// The query vectors (`.npy` float32 or `.fvecs`).
    #[arg(long, default_value = "bench/data/wordnet/queries.npy")]
    pub queries: PathBuf,
    /// Neighbours per query (recall is recall@k).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// HNSW links per node.
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    /// HNSW ef_construction.
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// ef_search values of the unfiltered sweep.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,16,24,32,48,64,96,128,192,256,384,512"
    )]
    pub efs: Vec<usize>,
    /// ef_search values of the filtered sweeps.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    pub filter_efs: Vec<usize>,
    /// Filter selectivities (fraction of the vectors a filter keeps); `--selectivities none` skips them.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.1,0.01", value_parser = selectivity)]
    pub selectivities: Vec<Selectivity>,
    /// Threads for building the graphs (ours and the peers'); queries always run on one.
    #[arg(long, default_value_t = 2)]
    pub build_threads: usize,
    /// Peers to run (`bench/peers/<name>_ann.py`); `none` for none.
    #[arg(long, value_delimiter = ',', default_value = "hnswlib,faiss")]
    pub peers: Vec<String>,
    /// Python for the peers: `auto` (bench/.venv, else python3), a path, or `none`.
    #[arg(long, default_value = "auto")]
    pub python: String,
    /// Where ground truth is cached.
    #[arg(long, default_value = "bench/data/cache")]
    pub cache: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "bench/out/ann")]
    pub out: PathBuf,
}

/// A `--selectivities` entry: a fraction, or `none`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selectivity(pub Option<f64>);

/// The filter fractions to measure (`none` entries dropped).
fn fractions(args: &AnnArgs) -> Vec<f64> {
    args.selectivities.iter().filter_map(|s| s.0).collect()
}

fn selectivity(text: &str) -> Result<Selectivity, String> {
    if text.trim() == "none" {
        return Ok(Selectivity(None));
    }
    let s: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a fraction (e.g. 0.1) or `none`"))?;
    if !(s > 0.0 && s < 1.0) {
        return Err(format!("selectivity {s} is not within (0, 1)"));
    }
    Ok(Selectivity(Some(s)))
}

/// One measured point (the JSON row every library reports, peers included).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub library: String,
    /// The fraction of vectors the filter keeps; `None` unfiltered.
    pub selectivity: Option<f64>,
    /// `None` for exact scans.
    pub ef_search: Option<usize>,
    /// recall@k (k = `params.k`, 10 by default).
    pub recall_at_10: f64,
    pub qps: f64,
    pub build_s: f64,
    pub bytes_per_vector: f64,
}

/// The exact answers of one filter (or none), shared with the peers.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TruthSet {
    selectivity: Option<f64>,
    /// Labels below this pass.
    below: u8,
    /// The fraction that actually passes.
    matching: f64,
    truth: Vec<Vec<u64>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Truth {
    k: usize,
    sets: Vec<TruthSet>,
}

#[derive(Debug, Serialize)]
struct Params {
    base: String,
    queries: String,
    count: usize,
    query_count: usize,
    dim: usize,
    k: usize,
    m: usize,
    ef_construction: usize,
    build_threads: usize,
    efs: Vec<usize>,
    filter_efs: Vec<usize>,
    selectivities: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct PeerStatus {
    peer: String,
    versions: serde_json::Value,
    skipped: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    run: RunInfo,
    params: Params,
    rows: Vec<Row>,
    peers: Vec<PeerStatus>,
}

/// Our dense index as the engine serves it: its builder makes the segment its walk searches.
const OURS: &str = "concierge";
/// The frozen segment walked over int8 codes, its candidates rescored with the f32 vectors
/// (its bytes: the segment's own structure).
const INT8: &str = "concierge-int8";
const EXACT: &str = "exact";

/// The filter label of row `i`: a fixed hash, uniform over 0..100.
pub fn label(i: usize) -> u8 {
    let mut x = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x % 100) as u8
}

fn rss_bytes() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<f64>().ok())
        })
        .map_or(0.0, |pages| pages * 4096.0)
}

/// recall@k of `found` against `truth`.
pub fn recall(found: &[Vec<u64>], truth: &[Vec<u64>]) -> f64 {
    let hit: usize = found
        .iter()
        .zip(truth)
        .map(|(f, t)| f.iter().filter(|id| t.contains(id)).count())
        .sum();
    let all: usize = truth.iter().map(Vec::len).sum();
    hit as f64 / all.max(1) as f64
}

fn file_digest(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes))[..16].to_owned())
}

/// Base vectors, query vectors, dimension.
type Inputs = (Vec<Vec<f32>>, Vec<Vec<f32>>, usize);

fn load_inputs(args: &AnnArgs) -> anyhow::Result<Inputs> {
    let missing = |p: &Path| {
        format!(
            "{} is missing: run bench/data/prepare.sh (WordNet vectors) or pass --base/--queries",
            p.display()
        )
    };
    ensure!(args.base.is_file(), missing(&args.base));
    ensure!(args.queries.is_file(), missing(&args.queries));
    let base = vectors_file::read(&args.base)?;
    let queries = vectors_file::read(&args.queries)?;
    ensure!(
        base.dim == queries.dim,
        "the base vectors have {} dimensions, the queries {}",
        base.dim,
        queries.dim
    );
    ensure!(base.rows.len() > args.k, "fewer base vectors than k");
    ensure!(!queries.rows.is_empty(), "no queries");
    ensure!(args.k > 0, "k must be at least 1");
    // The index and the peers use cosine as the dot product of unit vectors.
    let unit = |rows: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
        rows.into_iter()
            .map(|mut v| {
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if n > 0.0 && (n - 1.0).abs() > 1e-3 {
                    v.iter_mut().for_each(|x| *x /= n);
                }
                v
            })
            .collect()
    };
    Ok((unit(base.rows), unit(queries.rows), base.dim))
}

/// The exact answers (computed and cached, or read back) and the exact scan's queries/s per set.
fn exact(
    args: &AnnArgs,
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    dim: usize,
) -> anyhow::Result<(Truth, Vec<Row>)> {
    let key = format!(
        "truth-{}-{}-k{}-{}.json",
        file_digest(&args.base)?,
        file_digest(&args.queries)?,
        args.k,
        fractions(args)
            .iter()
            .map(|s| format!("{s}"))
            .collect::<Vec<_>>()
            .join("_")
    );
    let cache = args.cache.join(key);
    let cached: Option<Truth> = std::fs::read(&cache)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut sets = Vec::new();
    let mut rows = Vec::new();
    let filters: Vec<Option<f64>> = std::iter::once(None)
        .chain(fractions(args).into_iter().map(Some))
        .collect();
    for (n, selectivity) in filters.into_iter().enumerate() {
        let below = selectivity.map_or(100, |s| (s * 100.0).round().clamp(1.0, 99.0) as u8);
        let mut scan = BruteForce::new(dim);
        let mut matching = 0usize;
        for (i, v) in base.iter().enumerate() {
            if label(i) < below {
                scan.push(i as u64, v);
                matching += 1;
            }
        }
        // With cached answers, the scan is timed on a sample (its speed does not vary per query).
        let known = cached.as_ref().and_then(|c| c.sets.get(n)).cloned();
        let timed = if known.is_some() {
            queries.len().min(200)
        } else {
            queries.len()
        };
        let what = match selectivity {
            None => "exact scan".to_owned(),
            Some(s) => format!("exact scan, {:.0} %", s * 100.0),
        };
        let pb = Progress::new(timed, &what);
        let started = Instant::now();
        let answers: Vec<Vec<u64>> = queries[..timed]
            .iter()
            .map(|q| {
                pb.inc(1);
                scan.search(q, args.k)
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect()
            })
            .collect();
        let qps = timed as f64 / started.elapsed().as_secs_f64();
        pb.finish();
        rows.push(Row {
            library: EXACT.into(),
            selectivity,
            ef_search: None,
            recall_at_10: 1.0,
            qps,
            build_s: 0.0,
            bytes_per_vector: (dim * 4) as f64,
        });
        sets.push(known.unwrap_or(TruthSet {
            selectivity,
            below,
            matching: matching as f64 / base.len() as f64,
            truth: answers,
        }));
    }
    let truth = Truth { k: args.k, sets };
    if cached.is_none() {
        std::fs::create_dir_all(&args.cache)?;
        std::fs::write(&cache, serde_json::to_vec(&truth)?)?;
    }
    Ok((truth, rows))
}

pub fn run(args: &AnnArgs) -> anyhow::Result<()> {
    let run = RunInfo::now();
    let (base, queries, dim) = load_inputs(args)?;
    eprintln!(
        "ann: {} vectors of {dim} dimensions, {} queries, k = {}",
        base.len(),
        queries.len(),
        args.k
    );
    let (truth, mut rows) = exact(args, &base, &queries, dim)?;

    rayon_threads(args.build_threads);
    let params = HnswParams {
        m: args.m,
        ef_construction: args.ef_construction,
        ef_search: 64,
    };
    let before = rss_bytes();
    let index = AnnIndex::new(dim, params, base.len());
    let pb = Progress::new(base.len(), "inserting");
    let started = Instant::now();
    for (c, chunk) in base.chunks(5_000).enumerate() {
        index.insert_parallel_labelled(
            chunk
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let id = c * 5_000 + i;
                    (id as u64, i64::from(label(id)), v.clone())
                })
                .collect(),
        );
        pb.inc(chunk.len() as u64);
    }
    pb.finish();
    // The build ends with the frozen segment the searches walk (as the indexer makes it).
    let frozen_at = Instant::now();
    let pb = Progress::new(base.len(), "building the segment");
    index.freeze_reporting(&|n| pb.inc(n as u64))?;
    pb.finish();
    let freeze_s = frozen_at.elapsed().as_secs_f64();
    let build_s = started.elapsed().as_secs_f64();
    eprintln!("ann: built in {build_s:.1} s, of which {freeze_s:.2} s building the segment");
    let bytes_per_vector = (rss_bytes() - before) / base.len() as f64;
    for set in &truth.sets {
        let efs = if set.selectivity.is_none() {
            &args.efs
        } else {
            &args.filter_efs
        };
        let pb = Progress::new(efs.len(), &sweep_label(set.selectivity));
        for &ef in efs {
            let started = Instant::now();
            let mut found = Vec::with_capacity(queries.len());
            for q in &queries {
                let hits = if set.selectivity.is_none() {
                    index.search(q, args.k, ef)?
                } else {
                    index.search_label_below(q, args.k, ef, i64::from(set.below))?
                };
                found.push(hits.into_iter().map(|(id, _)| id).collect::<Vec<_>>());
            }
            let qps = queries.len() as f64 / started.elapsed().as_secs_f64();
            rows.push(Row {
                library: OURS.into(),
                selectivity: set.selectivity,
                ef_search: Some(ef),
                recall_at_10: recall(&found, &set.truth),
                qps,
                build_s,
                bytes_per_vector,
            });
            pb.inc(1);
        }
        pb.finish();
    }
    // Unfiltered, at the same ef values: the segment walked over int8 codes.
    if let (Some(frozen), Some(set)) = (
        index.frozen(),
        truth.sets.iter().find(|s| s.selectivity.is_none()),
    ) {
        // The int8 codes are made on first use: not inside a timed sweep.
        if let Some(q) = queries.first() {
            frozen.search_int8(q, args.k, args.k);
        }
        let pb = Progress::new(args.efs.len(), "int8 walk");
        for &ef in &args.efs {
            let started = Instant::now();
            let found: Vec<Vec<u64>> = queries
                .iter()
                .map(|q| {
                    frozen
                        .search_int8(q, args.k, ef)
                        .into_iter()
                        .map(|(id, _)| id)
                        .collect()
                })
                .collect();
            let qps = queries.len() as f64 / started.elapsed().as_secs_f64();
            rows.push(Row {
                library: INT8.into(),
                selectivity: None,
                ef_search: Some(ef),
                recall_at_10: recall(&found, &set.truth),
                qps,
                build_s,
                bytes_per_vector: frozen.bytes() as f64 / base.len() as f64,
            });
            pb.inc(1);
        }
        pb.finish();
    }
    drop(index);

    let mut peers = Vec::new();
    for peer in args.peers.iter().filter(|p| p.as_str() != "none") {
        match run_peer(args, peer, &truth, base.len()) {
            Ok((peer_rows, versions)) => {
                rows.extend(peer_rows);
                peers.push(PeerStatus {
                    peer: peer.clone(),
                    versions,
                    skipped: None,
                });
            }
            Err(reason) => {
                eprintln!("{peer} peer skipped: {reason:#}");
                peers.push(PeerStatus {
                    peer: peer.clone(),
                    versions: serde_json::Value::Null,
                    skipped: Some(format!("{reason:#}")),
                });
            }
        }
    }

    let report = Report {
        run,
        params: Params {
            base: args.base.display().to_string(),
            queries: args.queries.display().to_string(),
            count: base.len(),
            query_count: queries.len(),
            dim,
            k: args.k,
            m: args.m,
            ef_construction: args.ef_construction,
            build_threads: args.build_threads,
            efs: args.efs.clone(),
            filter_efs: args.filter_efs.clone(),
            selectivities: fractions(args),
        },
        rows,
        peers,
    };
    write_report(args, &report, &truth)
}

fn sweep_label(selectivity: Option<f64>) -> String {
    selectivity.map_or("ef sweep".to_owned(), |s| {
        format!("ef sweep, {:.0} %", s * 100.0)
    })
}

fn rayon_threads(n: usize) {
    // The global pool is what the segment builder inserts on.
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
    {
        eprintln!("rayon global pool already set: {e}");
    }
}

/// Runs `bench/peers/<peer>_ann.py` on the same files; its rows and package versions.
fn run_peer(
    args: &AnnArgs,
    peer: &str,
    truth: &Truth,
    count: usize,
) -> anyhow::Result<(Vec<Row>, serde_json::Value)> {
    let python = crate::peer::python(&args.python).context("--python none")?;
    let script = crate::peer::peers_dir().join(format!("{peer}_ann.py"));
    ensure!(script.is_file(), "no peer script {}", script.display());
    let dir = tempfile::tempdir()?;
    let (truth_file, labels_file) = (dir.path().join("truth.json"), dir.path().join("labels.u8"));
    std::fs::write(&truth_file, serde_json::to_vec(truth)?)?;
    std::fs::write(&labels_file, (0..count).map(label).collect::<Vec<u8>>())?;
    let join = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    eprintln!("running the {peer} peer with {} ...", python.display());
    let out = Command::new(&python)
        .arg(&script)
        .arg("--base")
        .arg(&args.base)
        .arg("--queries")
        .arg(&args.queries)
        .arg("--truth")
        .arg(&truth_file)
        .arg("--labels")
        .arg(&labels_file)
        .args(["--m", &args.m.to_string()])
        .args(["--ef-construction", &args.ef_construction.to_string()])
        .args(["--efs", &join(&args.efs)])
        .args(["--filter-efs", &join(&args.filter_efs)])
        .args(["--threads-build", &args.build_threads.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", python.display()))?;
    match out.status.code() {
        Some(0) => {}
        Some(3) => {
            anyhow::bail!("its Python packages are not installed (run bench/peers/setup.sh)")
        }
        _ => anyhow::bail!("the peer failed ({})", out.status),
    }
    #[derive(Deserialize)]
    struct PeerOut {
        rows: Vec<Row>,
        versions: serde_json::Value,
    }
    let p: PeerOut = serde_json::from_slice(&out.stdout).context("reading the peer's JSON")?;
    Ok((p.rows, p.versions))
}

/// Queries/s of the fastest point of `library` reaching `target` recall, with its ef.
fn qps_at(
    rows: &[Row],
    library: &str,
    selectivity: Option<f64>,
    target: f64,
) -> Option<(f64, Option<usize>)> {
    rows.iter()
        .filter(|r| {
            r.library == library && r.selectivity == selectivity && r.recall_at_10 >= target
        })
        .map(|r| (r.qps, r.ef_search))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

fn libraries(rows: &[Row]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.library) {
            out.push(r.library.clone());
        }
    }
    out
}

fn filter_name(selectivity: Option<f64>) -> String {
    selectivity.map_or("none".to_owned(), |s| format!("{:.0} %", s * 100.0))
}

/// The Markdown report.
fn markdown(r: &Report, truth: &Truth) -> String {
    let p = &r.params;
    let mut md = format!(
        "# Dense index: {} vectors of {} dimensions, {} queries, recall@{}\n\n{}\n\nM = {}, ef_construction = {}, graphs built on {} threads; every query alone on one thread. \
         Ratio: queries/s against hnswlib's at the same recall target.\n\n",
        p.count,
        p.dim,
        p.query_count,
        p.k,
        r.run.markdown_line(),
        p.m,
        p.ef_construction,
        p.build_threads
    );
    let targets = [0.90, 0.95, 0.99];
    for set in &truth.sets {
        let sel = set.selectivity;
        md.push_str(&format!(
            "## Filter: {} (matching {:.1} % of the vectors)\n\n| library | build (s) | bytes / vector | q/s @ recall 0.90 | q/s @ 0.95 | q/s @ 0.99 | best recall | × hnswlib @ 0.95 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
            filter_name(sel),
            set.matching * 100.0
        ));
        let hnswlib95 = qps_at(&r.rows, "hnswlib", sel, 0.95).map(|(q, _)| q);
        for lib in libraries(&r.rows) {
            let mine: Vec<&Row> = r
                .rows
                .iter()
                .filter(|x| x.library == lib && x.selectivity == sel)
                .collect();
            let Some(first) = mine.first() else { continue };
            let best = mine.iter().map(|x| x.recall_at_10).fold(0.0, f64::max);
            let cell = |t: f64| {
                qps_at(&r.rows, &lib, sel, t).map_or("not reached".to_owned(), |(q, ef)| match ef {
                    Some(ef) => format!("{q:.0} (ef {ef})"),
                    None => format!("{q:.0}"),
                })
            };
            let ratio = match (qps_at(&r.rows, &lib, sel, 0.95), hnswlib95) {
                (Some((q, _)), Some(h)) => format!("{:.2}×", q / h),
                _ => "–".to_owned(),
            };
            md.push_str(&format!(
                "| {lib} | {:.1} | {:.0} | {} | {} | {} | {best:.4} | {ratio} |\n",
                first.build_s,
                first.bytes_per_vector,
                cell(targets[0]),
                cell(targets[1]),
                cell(targets[2])
            ));
        }
        md.push('\n');
    }
    for peer in &r.peers {
        if let Some(reason) = &peer.skipped {
            md.push_str(&format!("{} peer skipped: {reason}\n\n", peer.peer));
        }
    }
    md.push_str("## Every point\n\n| library | filter | ef_search | recall@k | q/s |\n|---|---|---:|---:|---:|\n");
    for row in &r.rows {
        md.push_str(&format!(
            "| {} | {} | {} | {:.4} | {:.0} |\n",
            row.library,
            filter_name(row.selectivity),
            row.ef_search.map_or("exact".to_owned(), |e| e.to_string()),
            row.recall_at_10,
            row.qps
        ));
    }
    md
}

fn write_report(args: &AnnArgs, r: &Report, truth: &Truth) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    std::fs::write(args.out.join("ann.json"), serde_json::to_vec_pretty(r)?)?;
    let md = markdown(r, truth);
    std::fs::write(args.out.join("ann.md"), &md)?;
    for set in &truth.sets {
        let series: Vec<Series> = libraries(&r.rows)
            .into_iter()
            .map(|lib| Series {
                points: r
                    .rows
                    .iter()
                    .filter(|x| x.library == lib && x.selectivity == set.selectivity)
                    .map(|x| (x.recall_at_10, x.qps))
                    .collect(),
                label: lib,
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        let (name, title) = match set.selectivity {
            None => ("ann.svg".to_owned(), String::new()),
            Some(s) => (
                format!("ann-filtered-{:.0}.svg", s * 100.0),
                format!(", filter keeps {:.0} %", s * 100.0),
            ),
        };
        recall_throughput(
            &args.out.join(name),
            &format!(
                "recall@{} vs queries/s, {} vectors, one thread{title}",
                r.params.k, r.params.count
            ),
            &format!("recall@{}", r.params.k),
            "queries per second (log)",
            &series,
        )?;
    }
    println!("{md}");
    eprintln!(
        "wrote {}/ann.{{json,md,svg}} and ann-filtered-*.svg",
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_uniform_enough_for_the_selectivities() {
        let n = 100_000;
        for below in [50u8, 10, 1] {
            let matching = (0..n).filter(|i| label(*i) < below).count() as f64 / n as f64;
            let want = f64::from(below) / 100.0;
            assert!(
                (matching - want).abs() < want * 0.1 + 0.001,
                "{below}: {matching}"
            );
        }
    }

    #[test]
    fn selectivities_are_fractions_or_none() {
        assert_eq!(selectivity("0.1"), Ok(Selectivity(Some(0.1))));
        assert_eq!(selectivity("none"), Ok(Selectivity(None)));
        assert!(selectivity("1.5").is_err());
        assert!(selectivity("").is_err());
    }

    #[test]
    fn recall_counts_the_true_neighbours_found() {
        let truth = vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]];
        let found = vec![vec![1, 2, 9, 10], vec![8, 7, 6, 5]];
        assert!((recall(&found, &truth) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn the_fastest_point_reaching_the_target_is_reported_with_its_ef() {
        let row = |ef, recall, qps| Row {
            library: "x".into(),
            selectivity: None,
            ef_search: Some(ef),
            recall_at_10: recall,
            qps,
            build_s: 1.0,
            bytes_per_vector: 1.0,
        };
        let rows = vec![
            row(16, 0.93, 5000.0),
            row(32, 0.96, 3000.0),
            row(64, 0.99, 1500.0),
        ];
        assert_eq!(qps_at(&rows, "x", None, 0.95), Some((3000.0, Some(32))));
        assert_eq!(qps_at(&rows, "x", None, 0.995), None);
        assert_eq!(qps_at(&rows, "x", Some(0.5), 0.9), None);
    }

    #[test]
    fn a_missing_vector_file_says_how_to_make_it() {
        let args = AnnArgs {
            base: "no/such/base.npy".into(),
            queries: "no/such/queries.npy".into(),
            k: 10,
            m: 16,
            ef_construction: 200,
            efs: vec![16],
            filter_efs: vec![16],
            selectivities: vec![Selectivity(Some(0.5))],
            build_threads: 1,
            peers: vec![],
            python: "none".into(),
            cache: "x".into(),
            out: "x".into(),
        };
        let err = load_inputs(&args).expect_err("missing");
        assert!(err.to_string().contains("bench/data/prepare.sh"), "{err}");
    }
}
