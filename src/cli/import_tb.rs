//! `trainlens import-tb LOGDIR`: TensorBoard event files become runs, in
//! the database directly or through a running server (`--server`), once or
//! while training writes them (`--follow`).
//!
//! Each directory under LOGDIR that holds event files is one run, named —
//! and keyed (`run_key`) — by its path relative to LOGDIR (LOGDIR's own
//! name for the files directly in it). Its files are read in name order
//! (their names start with the creation time), each from where the last
//! import stopped: the state file (`LOGDIR/.trainlens-tb-state.json`, or
//! `--state`) keeps, per target database or server, per run, the run's id,
//! each file's byte offset after its last complete record and the plugin
//! of each tag. The state is only a shortcut: a record read twice lands on
//! its own (key, step) and replaces itself, so a lost state file, or a
//! crash between a write and the state's update, re-imports without
//! duplicates. A run the target no longer has (a new database at the same
//! URL) is imported again from the start.
//!
//! A record whose CRC does not match is skipped with a warning naming the
//! file and byte offset; an incomplete last record is not imported (with a
//! warning, or silently under `--follow`, where it is a record being
//! written) and is read again next time. Writes are all or nothing per
//! batch (every file of a run read in one poll, up to [`FLUSH_BYTES`]), and
//! the offsets advance only after the write.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use uuid::Uuid;

use super::printable;
use super::remote::Remote;
use crate::ingest::{self, Limits};
use crate::model::NewRun;
use crate::record::{Record, RunRecord, Value};
use crate::store::Store;
use crate::tensorboard::framing::{End, Frame, Reader};
use crate::tensorboard::mapping::{self, Accumulator, TagPlugins};
use crate::tensorboard::{self as tb};

#[derive(Debug, Args)]
pub struct ImportTbArgs {
    /// A TensorBoard log directory: every directory under it that holds
    /// event files (`events.out.tfevents.*`) is one run.
    pub logdir: PathBuf,
    /// The project the runs go into.
    #[arg(long, default_value = "default")]
    pub project: String,
    /// Keep importing what training appends (new files, new records) until
    /// Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Seconds between two looks at the log directory under `--follow`.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub interval: f64,
    /// Where to keep what was imported already (per-file byte offsets).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Send to a running server (e.g. http://127.0.0.1:8080) instead of
    /// writing into the database directly.
    #[arg(long, env = "TRAINLENS_SERVER")]
    pub server: Option<String>,
}

/// Name of the state file in the log directory.
pub const STATE_FILE: &str = ".trainlens-tb-state.json";
/// Bytes of event records read before the run's batch is written: bounds
/// memory on logdirs of many images.
const FLUSH_BYTES: usize = 256 << 20;
/// Bytes of a file read at once (a longer record is read whole).
const WINDOW_BYTES: u64 = 64 << 20;
/// Largest NDJSON request sent to a server (it takes 32 MiB).
const CHUNK_BYTES: usize = 4 << 20;
/// Warnings printed per file and poll before they are only counted.
const MAX_WARNINGS: usize = 20;

/// What was imported already, per target and run.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// `TARGET PROJECT/RUN_KEY` → the run's state (TARGET: a hash of the
    /// database URL or the server URL, so no credentials are written).
    #[serde(default)]
    runs: BTreeMap<String, RunState>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct RunState {
    #[serde(default)]
    run_id: Option<Uuid>,
    /// File name → byte offset after its last record read.
    #[serde(default)]
    files: BTreeMap<String, u64>,
    #[serde(default)]
    tags: TagPlugins,
}

/// Where the runs go.
enum Target {
    Local(Store, Limits),
    Remote(Remote),
}

/// One directory of event files.
#[derive(Debug, Clone, PartialEq)]
struct RunDir {
    name: String,
    files: Vec<(String, PathBuf)>,
}

pub async fn import_tb(global: &super::Global, args: ImportTbArgs) -> anyhow::Result<()> {
    if !args.logdir.is_dir() {
        bail!("{} is not a directory", args.logdir.display());
    }
    ingest::validate_name("project", &args.project)
        .map_err(|e| anyhow::anyhow!("--project: {e}"))?;
    if !(args.interval.is_finite() && args.interval > 0.0) {
        bail!("--interval must be a positive number of seconds");
    }
    let (target, target_id) = match &args.server {
        Some(server) => (Target::Remote(Remote::new(server)?), hash_id(server)),
        None => (
            Target::Local(global.open_store().await?, global.limits.clone()),
            hash_id(&global.database_url),
        ),
    };
    let state_path = args
        .state
        .clone()
        .unwrap_or_else(|| args.logdir.join(STATE_FILE));
    let mut importer = Importer {
        target,
        target_id,
        project: args.project.clone(),
        follow: args.follow,
        state: load_state(&state_path),
        state_path,
        state_warned: false,
        verified: HashSet::new(),
    };
    let result = if args.follow {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        eprintln!(
            "following {} (Ctrl-C stops)",
            printable(&args.logdir.display().to_string())
        );
        loop {
            tokio::select! {
                r = importer.poll(&args.logdir) => {
                    if let Err(e) = r {
                        eprintln!("error: {} (trying again)", printable(&format!("{e:#}")));
                    }
                }
                _ = &mut ctrl_c => break Ok(()),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(args.interval)) => {}
                _ = &mut ctrl_c => break Ok(()),
            }
        }
    } else {
        importer.poll(&args.logdir).await
    };
    if let Target::Local(store, _) = &importer.target {
        store.close().await;
    }
    result
}

fn hash_id(s: &str) -> String {
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..8])
}

fn load_state(path: &Path) -> State {
    let Ok(text) = std::fs::read_to_string(path) else {
        return State::default();
    };
    serde_json::from_str(&text).unwrap_or_else(|e| {
        eprintln!(
            "warning: {}: unreadable ({e}); importing everything again (nothing is duplicated)",
            printable(&path.display().to_string())
        );
        State::default()
    })
}

struct Importer {
    target: Target,
    target_id: String,
    project: String,
    follow: bool,
    state: State,
    state_path: PathBuf,
    state_warned: bool,
    /// Runs whose id in the state was checked against the target.
    verified: HashSet<String>,
}

/// What one file read gave.
struct FileRead {
    offset: u64,
    bytes: usize,
}

impl Importer {
    /// One look at the log directory: every run with something new.
    async fn poll(&mut self, logdir: &Path) -> anyhow::Result<()> {
        let dirs = discover(logdir)?;
        let mut failed = 0;
        for dir in &dirs {
            if let Err(e) = self.import_dir(dir).await {
                failed += 1;
                eprintln!("{}: {}", printable(&dir.name), printable(&format!("{e:#}")));
            }
        }
        if dirs.is_empty() && !self.follow {
            bail!("no event files (*tfevents*) under {}", logdir.display());
        }
        if failed > 0 {
            bail!("{failed} of {} runs failed to import", dirs.len());
        }
        Ok(())
    }

    async fn import_dir(&mut self, dir: &RunDir) -> anyhow::Result<()> {
        let state_key = format!("{} {}/{}", self.target_id, self.project, dir.name);
        let mut run = self.state.runs.get(&state_key).cloned().unwrap_or_default();
        if !self.verified.contains(&state_key) {
            if let Some(id) = run.run_id
                && !self.run_exists(id).await?
            {
                eprintln!(
                    "{}: run {id} is not in the target any more: importing it again from the start",
                    printable(&dir.name)
                );
                run = RunState::default();
            }
            self.verified.insert(state_key.clone());
        }
        let max_bins = match &self.target {
            Target::Local(_, l) => l.max_histogram_bins,
            Target::Remote(_) => Limits::default().max_histogram_bins,
        };
        let mut work = DirImport {
            dir,
            state_key,
            run,
            acc: Accumulator::default(),
            pending: BTreeMap::new(),
            total: Totals::default(),
        };
        let mut read_bytes = 0;
        let t0 = std::time::Instant::now();
        for (name, path) in &dir.files {
            let from = work.run.files.get(name).copied().unwrap_or(0);
            let read = self.read_file(path, from, &mut work.run.tags, max_bins, &mut work.acc)?;
            read_bytes += read.bytes;
            if read.offset != from {
                work.pending.insert(name.clone(), read.offset);
            }
            if read_bytes >= FLUSH_BYTES {
                self.flush(&mut work).await?;
                read_bytes = 0;
            }
        }
        tracing::debug!(run = %dir.name, seconds = t0.elapsed().as_secs_f64(), "read");
        if !work.acc.is_empty() || !work.pending.is_empty() || work.run.run_id.is_none() {
            self.flush(&mut work).await?;
        }
        let DirImport { run, total, .. } = work;
        if total.files > 0 || !total.skipped.is_empty() {
            let id = run.run_id.map(|i| i.to_string()).unwrap_or_default();
            println!(
                "{}: run {id}: {} scalars, {} histograms, {} images{} from {} files",
                printable(&dir.name),
                total.points,
                total.histograms,
                total.images,
                if total.config { ", config" } else { "" },
                total.files
            );
            for (reason, n) in &total.skipped {
                eprintln!(
                    "warning: {}: skipped {n} values: {}",
                    printable(&dir.name),
                    printable(reason)
                );
            }
        }
        Ok(())
    }

    /// Reads `path` from `from` up to its last complete record into `acc`.
    fn read_file(
        &self,
        path: &Path,
        from: u64,
        tags: &mut TagPlugins,
        max_bins: usize,
        acc: &mut Accumulator,
    ) -> anyhow::Result<FileRead> {
        let shown = printable(&path.display().to_string());
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {shown}"))?;
        let len = file
            .metadata()
            .with_context(|| format!("reading {shown}"))?
            .len();
        let mut offset = from;
        if len < from {
            eprintln!(
                "warning: {shown}: shorter ({len} bytes) than already imported ({from}): reading it again from the start"
            );
            offset = 0;
        }
        let mut warnings = 0;
        let mut bytes = 0;
        let mut items = Vec::new();
        let mut window = WINDOW_BYTES;
        while offset < len {
            let want = (len - offset).min(window);
            let mut buf = Vec::with_capacity(want as usize);
            file.seek(SeekFrom::Start(offset))?;
            (&mut file)
                .take(want)
                .read_to_end(&mut buf)
                .with_context(|| format!("reading {shown}"))?;
            let mut reader = Reader::new(&buf, offset);
            for frame in reader.by_ref() {
                let warning = match frame {
                    Frame::Record { data, .. } => {
                        bytes += data.len();
                        mapping::map_record(data, tags, max_bins, &mut items);
                        for item in items.drain(..) {
                            acc.push(item, self.limits());
                        }
                        continue;
                    }
                    Frame::BadData { offset, len } => format!(
                        "corrupt record at byte {offset} ({len} bytes of data, CRC mismatch): skipped"
                    ),
                    Frame::BadHeader { offset, resumed } => format!(
                        "corrupt record header at byte {offset} (length CRC mismatch): skipped {} bytes",
                        resumed - offset
                    ),
                };
                warnings += 1;
                if warnings <= MAX_WARNINGS {
                    eprintln!("warning: {shown}: {warning}");
                }
            }
            let resume = reader.resume_offset();
            match reader.end() {
                Some(End::Truncated {
                    offset: at,
                    need,
                    have,
                }) => {
                    if at + need <= len {
                        // Cut by the window, not the file: read on from it.
                        window = window.max(need);
                    } else {
                        if !self.follow {
                            eprintln!(
                                "warning: {shown}: incomplete record at byte {at} ({have} of {need} bytes): not imported (a later import reads it when it is complete)"
                            );
                        }
                        offset = resume;
                        break;
                    }
                }
                Some(End::Clean) | None => {}
            }
            offset = resume;
        }
        if warnings > MAX_WARNINGS {
            eprintln!(
                "warning: {shown}: {} more corrupt records skipped",
                warnings - MAX_WARNINGS
            );
        }
        Ok(FileRead { offset, bytes })
    }

    fn limits(&self) -> &Limits {
        static DEFAULT: std::sync::OnceLock<Limits> = std::sync::OnceLock::new();
        match &self.target {
            Target::Local(_, l) => l,
            Target::Remote(_) => DEFAULT.get_or_init(Limits::default),
        }
    }

    async fn run_exists(&self, id: Uuid) -> anyhow::Result<bool> {
        match &self.target {
            Target::Local(store, _) => Ok(store.get_run(id).await?.is_some()),
            Target::Remote(remote) => {
                let path = format!("/api/v1/runs/{id}");
                let resp = remote
                    .get(&path)
                    .send()
                    .await
                    .with_context(|| format!("asking {}", remote.url(&path)))?;
                match resp.status() {
                    s if s.is_success() => Ok(true),
                    reqwest::StatusCode::NOT_FOUND => Ok(false),
                    s => bail!(
                        "{}",
                        super::remote::error_message(s, &resp.text().await.unwrap_or_default())
                    ),
                }
            }
        }
    }

    /// Writes what `acc` holds into the run, then records the offsets.
    async fn flush(&mut self, work: &mut DirImport<'_>) -> anyhow::Result<()> {
        let DirImport {
            dir,
            state_key,
            run,
            acc,
            pending,
            total,
        } = work;
        let acc = std::mem::take(acc);
        let record = RunRecord {
            name: dir.name.clone(),
            project: self.project.clone(),
            config: serde_json::Value::Object(acc.config.clone()),
            tags: Vec::new(),
            run_key: Some(dir.name.clone()),
        };
        ingest::validate_run(&record, self.limits())?;
        let t0 = std::time::Instant::now();
        let id = match &self.target {
            Target::Local(store, _) => {
                store
                    .import_run(&NewRun::from(record), &acc.batch)
                    .await?
                    .run
                    .id
            }
            Target::Remote(remote) => send(remote, &record, &acc).await?,
        };
        tracing::debug!(run = %dir.name, seconds = t0.elapsed().as_secs_f64(), "written");
        run.run_id = Some(id);
        total.files += pending.len();
        run.files.append(pending);
        total.points += acc.batch.point_count();
        total.histograms += acc.batch.histograms.len();
        total.images += acc.batch.images.len();
        total.config |= !acc.config.is_empty();
        for (reason, n) in acc.skipped {
            *total.skipped.entry(reason).or_default() += n;
        }
        self.state.runs.insert(state_key.clone(), run.clone());
        self.save_state();
        Ok(())
    }

    fn save_state(&mut self) {
        let text = serde_json::to_string_pretty(&self.state).expect("the state serialises");
        let tmp = self.state_path.with_extension("json.tmp");
        let written =
            std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.state_path));
        if let Err(e) = written
            && !self.state_warned
        {
            self.state_warned = true;
            eprintln!(
                "warning: cannot write {} ({e}): a later import reads everything again (nothing is duplicated; use --state FILE)",
                printable(&self.state_path.display().to_string())
            );
        }
    }
}

/// One run directory's import under way: what was read and not written
/// yet, and what was written so far.
struct DirImport<'d> {
    dir: &'d RunDir,
    state_key: String,
    run: RunState,
    acc: Accumulator,
    /// File name → offset read into `acc`, recorded once it is written.
    pending: BTreeMap<String, u64>,
    total: Totals,
}

#[derive(Default)]
struct Totals {
    files: usize,
    points: usize,
    histograms: usize,
    images: usize,
    config: bool,
    skipped: BTreeMap<String, u64>,
}

/// Sends the run line and the records to `POST /api/v1/import` in chunks of
/// whole lines, each led by the run line (its `run_key` makes every chunk
/// land in the same run). Answers the run's id.
async fn send(remote: &Remote, run: &RunRecord, acc: &Accumulator) -> anyhow::Result<Uuid> {
    let mut head = serde_json::to_vec(&Record::Run(run.clone())).expect("a run line serialises");
    head.push(b'\n');
    let mut body = head.clone();
    let mut id = None;
    let mut sent_any = false;
    let lines = ndjson_lines(acc);
    for line in lines.chain(std::iter::once(Vec::new())) {
        let last = line.is_empty();
        if (last && (!sent_any || body.len() > head.len()))
            || (!last && body.len() > head.len() && body.len() + line.len() > CHUNK_BYTES)
        {
            let req = remote
                .post("/api/v1/import")
                .header("content-type", "application/x-ndjson")
                .body(std::mem::replace(&mut body, head.clone()));
            let answer = remote.json(req).await?;
            sent_any = true;
            id = answer["id"].as_str().and_then(|s| s.parse().ok());
        }
        body.extend_from_slice(&line);
    }
    id.context("the server's answer has no run id")
}

#[derive(Serialize)]
struct ScalarLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    step: u64,
    key: &'a str,
    value: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<f64>,
}

/// The records of `acc` as NDJSON lines (each with its newline).
fn ndjson_lines(acc: &Accumulator) -> impl Iterator<Item = Vec<u8>> + '_ {
    let line = |mut v: Vec<u8>| {
        v.push(b'\n');
        v
    };
    let scalars = acc.batch.scalars.iter().flat_map(move |(key, points)| {
        points.iter().map(move |p| {
            line(
                serde_json::to_vec(&ScalarLine {
                    kind: "scalar",
                    step: p.step,
                    key,
                    value: Value(p.value),
                    time: p.time,
                })
                .expect("a scalar serialises"),
            )
        })
    });
    let histograms = acc.batch.histograms.iter().map(move |h| {
        line(serde_json::to_vec(&Record::Histogram(h.clone())).expect("a histogram serialises"))
    });
    let images = acc.batch.images.iter().map(move |i| {
        line(serde_json::to_vec(&Record::Image(i.clone())).expect("an image serialises"))
    });
    scalars.chain(histograms).chain(images)
}

/// The directories under `logdir` that hold event files, as runs: sorted by
/// name, each with its event files sorted by name. Symlinked directories
/// are not followed (a loop would never end).
fn discover(logdir: &Path) -> anyhow::Result<Vec<RunDir>> {
    let root_name = std::fs::canonicalize(logdir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tensorboard".to_string());
    let mut out = Vec::new();
    let mut stack = vec![(logdir.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if dir == logdir => {
                return Err(e).with_context(|| format!("reading {}", logdir.display()));
            }
            Err(e) => {
                eprintln!("warning: {}: {e}", printable(&dir.display().to_string()));
                continue;
            }
        };
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                let mut sub = rel.clone();
                sub.push(name);
                stack.push((entry.path(), sub));
            } else if tb::is_event_file(&name) && !name.starts_with(".trainlens") {
                files.push((name, entry.path()));
            }
        }
        if !files.is_empty() {
            files.sort();
            let name = if rel.is_empty() {
                root_name.clone()
            } else {
                rel.join("/")
            };
            out.push(RunDir { name, files });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_directory_with_event_files_is_a_run_named_by_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("logs");
        for d in ["logs/a", "logs/b/c", "logs/empty"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        for f in [
            "logs/events.out.tfevents.1.host",
            "logs/a/events.out.tfevents.2.host",
            "logs/a/events.out.tfevents.1.host",
            "logs/a/notes.txt",
            "logs/b/c/events.out.tfevents.3.host.v2",
        ] {
            std::fs::write(tmp.path().join(f), b"").unwrap();
        }
        let runs = discover(&root).unwrap();
        let names: Vec<_> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b/c", "logs"]);
        let files: Vec<_> = runs[0].files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            files,
            ["events.out.tfevents.1.host", "events.out.tfevents.2.host"]
        );
    }

    #[test]
    fn the_target_is_kept_as_a_hash_without_credentials() {
        let id = hash_id("postgres://user:secret@db/x");
        assert_eq!(id.len(), 16);
        assert!(!id.contains("secret"));
        assert_ne!(id, hash_id("sqlite://other.db"));
    }
}
