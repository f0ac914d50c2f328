//! Beagle and Minimac4 as child processes.
//!
//! Each engine runs in its own process group (so cancelling kills the JVM and everything it
//! started) with `PR_SET_PDEATHSIG`, so if the node dies, even by SIGKILL, its engines die with
//! it and a restarted node can re-run the job without two copies running at once. Output goes
//! to the job's log file; progress is parsed from what the engines print.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::config::EnginesSection;

/// Beagle's own default seed; passing it explicitly makes runs reproducible and comparable with
/// a direct `java -jar beagle.jar` call.
pub const BEAGLE_SEED: i64 = -99999;

/// Why an engine run failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{engine} failed ({status}); last lines of its log: {tail}")]
    Failed { engine: &'static str, status: String, tail: String },
    #[error("{engine} was killed (job cancelled or node stopping)")]
    Killed { engine: &'static str },
    #[error("log I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Lets another task kill the job's running engines' process groups (a chunked job runs several
/// at once) and keeps any later one from starting.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch {
    pgids: Arc<Mutex<HashSet<i32>>>,
    killed: Arc<std::sync::atomic::AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
}

impl KillSwitch {
    /// Kills the current engines (and keeps any later one from starting).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        for &pgid in self.pgids.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            // SAFETY: kill(2) on a process group this node created; no memory is involved.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        self.notify.notify_waiters();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Resolves once the switch is thrown (at once if it was).
    pub async fn killed(&self) {
        let notified = self.notify.notified();
        if self.is_killed() {
            return;
        }
        notified.await;
    }

    fn register(&self, pgid: i32) {
        self.pgids.lock().unwrap_or_else(|e| e.into_inner()).insert(pgid);
        if self.is_killed() {
            // SAFETY: as in `kill`.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }

    fn unregister(&self, pgid: i32) {
        self.pgids.lock().unwrap_or_else(|e| e.into_inner()).remove(&pgid);
    }
}

/// One engine invocation.
pub struct EngineRun<'a> {
    pub engine: &'static str,
    pub program: &'a Path,
    pub args: Vec<std::ffi::OsString>,
    pub stdout_to: Option<PathBuf>,
    pub log: &'a Path,
    pub kill: &'a KillSwitch,
}

impl EngineRun<'_> {
    /// Runs to completion, appending its output to the log and handing each line to `on_line`.
    pub async fn run(self, mut on_line: impl FnMut(&str)) -> Result<(), EngineError> {
        if self.kill.is_killed() {
            return Err(EngineError::Killed { engine: self.engine });
        }
        let mut log = tokio::fs::OpenOptions::new().create(true).append(true).open(self.log).await?;
        let shown: Vec<String> = self.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        log.write_all(format!("$ {} {}\n", self.program.display(), shown.join(" ")).as_bytes()).await?;
        let mut command = Command::new(self.program);
        command.args(&self.args).stdin(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true).process_group(0);
        match &self.stdout_to {
            Some(path) => {
                command.stdout(std::fs::File::create(path)?);
            }
            None => {
                command.stdout(Stdio::piped());
            }
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|source| EngineError::Spawn { program: self.program.display().to_string(), source })?;
        let pgid = child.id().map(|pid| pid as i32);
        if let Some(pgid) = pgid {
            self.kill.register(pgid);
        }
        let mut tail: std::collections::VecDeque<String> = Default::default();
        let stderr = child.stderr.take().map(|s| BufReader::new(s).lines());
        let stdout = child.stdout.take().map(|s| BufReader::new(s).lines());
        let (mut stderr, mut stdout) = (stderr, stdout);
        loop {
            let line = tokio::select! {
                l = async { match stderr.as_mut() { Some(s) => s.next_line().await, None => std::future::pending().await } } => match l? {
                    Some(l) => l,
                    None => { stderr = None; if stdout.is_none() { break } continue }
                },
                l = async { match stdout.as_mut() { Some(s) => s.next_line().await, None => std::future::pending().await } } => match l? {
                    Some(l) => l,
                    None => { stdout = None; if stderr.is_none() { break } continue }
                },
            };
            log.write_all(line.as_bytes()).await?;
            log.write_all(b"\n").await?;
            on_line(&line);
            tail.push_back(line);
            if tail.len() > 5 {
                tail.pop_front();
            }
        }
        let status = child.wait().await;
        if let Some(pgid) = pgid {
            self.kill.unregister(pgid);
        }
        let status = status?;
        log.flush().await?;
        if self.kill.is_killed() {
            return Err(EngineError::Killed { engine: self.engine });
        }
        if !status.success() {
            return Err(EngineError::Failed {
                engine: self.engine,
                status: status.to_string(),
                tail: tail.into_iter().collect::<Vec<_>>().join(" | "),
            });
        }
        Ok(())
    }
}

/// Beagle's arguments: phase (and impute, unless `impute` is false) `gt` against `reference`.
pub fn beagle_args(
    e: &EnginesSection,
    reference: &Path,
    gt: &Path,
    out_prefix: &Path,
    map: Option<&Path>,
    impute: bool,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec![
        format!("-Xmx{}", e.java_heap).into(),
        "-jar".into(),
        e.beagle_jar.clone().into(),
        format!("ref={}", reference.display()).into(),
        format!("gt={}", gt.display()).into(),
        format!("out={}", out_prefix.display()).into(),
        format!("nthreads={}", e.threads).into(),
        format!("seed={BEAGLE_SEED}").into(),
        format!("impute={impute}").into(),
        "gp=true".into(),
    ];
    if let Some(map) = map {
        args.push(format!("map={}", map.display()).into());
    }
    args
}

/// Where a Minimac4 run writes.
pub struct Minimac4Outputs<'a> {
    /// The dose VCF (`GT:DS:GP`, and `HDS` when `empirical` is asked for).
    pub dose: &'a Path,
    pub sites: &'a Path,
    /// `--empirical-output`: per typed site the panel has, the observed allele and each
    /// haplotype's dosage computed with the site hidden, which meta-imputation learns from.
    pub empirical: Option<&'a Path>,
}

/// Minimac4's arguments: impute phased `target` against `msav`, with the panel's PLINK map;
/// only in `region` (with its HMM seeing `overlap` bp past each end) when given.
pub fn minimac4_args(
    e: &EnginesSection,
    msav: &Path,
    target: &Path,
    out: &Minimac4Outputs<'_>,
    min_r2: f64,
    map: Option<&Path>,
    region: Option<(String, u64)>,
) -> Vec<std::ffi::OsString> {
    let format = if out.empirical.is_some() { "GT,DS,GP,HDS" } else { "GT,DS,GP" };
    let mut args: Vec<std::ffi::OsString> = vec![
        "-t".into(),
        e.threads.to_string().into(),
        "-f".into(),
        format.into(),
        "-O".into(),
        "vcf.gz".into(),
        "-o".into(),
        out.dose.into(),
        "-s".into(),
        out.sites.into(),
    ];
    if let Some(empirical) = out.empirical {
        args.push("-e".into());
        args.push(empirical.into());
    }
    if min_r2 > 0.0 {
        args.push("--min-r2".into());
        args.push(min_r2.to_string().into());
    }
    if let Some(map) = map {
        args.push("--map".into());
        args.push(map.into());
    }
    if let Some((region, overlap)) = region {
        args.extend(["--region".into(), region.into(), "--overlap".into(), overlap.to_string().into()]);
    }
    args.push(msav.into());
    args.push(target.into());
    args
}

/// Share of Beagle's phasing done, from its "Phasing iteration N" lines (burn-in + main).
pub fn beagle_phasing_progress(line: &str, iterations_seen: &mut u32) -> Option<f64> {
    if line.trim_start().starts_with("Phasing iteration") {
        *iterations_seen += 1;
        // Beagle 5.4 runs 3 burn-in and 12 main iterations by default.
        return Some((*iterations_seen as f64 / 15.0).min(1.0));
    }
    None
}

/// The first line an engine prints about itself (`beagle.22Jul22.46e.jar (version 5.4)`,
/// `minimac v4.1.2`), asked once per process, for the provenance of result files.
pub async fn engine_version(e: &EnginesSection, engine: &str) -> String {
    static BEAGLE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    static MINIMAC4: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let (cell, program, args): (_, &Path, Vec<std::ffi::OsString>) = match engine {
        "beagle" => (&BEAGLE, &e.java, vec!["-jar".into(), e.beagle_jar.clone().into()]),
        "minimac4" => (&MINIMAC4, &e.minimac4, vec!["--version".into()]),
        other => return other.to_string(),
    };
    cell.get_or_init(|| async {
        let out = Command::new(program).args(&args).stdin(Stdio::null()).kill_on_drop(true).output().await;
        let first = out.ok().and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
            text.lines().map(str::trim).find(|l| !l.is_empty()).map(String::from)
        });
        first.unwrap_or_else(|| format!("{engine} (version unknown)"))
    })
    .await
    .clone()
}
