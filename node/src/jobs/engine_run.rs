//! The engines over a job's chromosomes. Each chromosome is planned into chunks (see
//! [`crate::imputation::chunks`]); every chunk's engine tasks go to the node's executor, the
//! chunks of all chromosomes at once, so a whole-genome job keeps every slot busy; then each
//! chromosome's chunks are ligated into one engine output.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::JobsService;
use super::outputs::{JobFailure, chrom_prefix, progress};
use crate::imputation::chunks::Chunk;
use crate::imputation::engines::{KillSwitch, Minimac4Outputs, beagle_args, beagle_phasing_progress, minimac4_args};
use crate::imputation::executor::Task;
use crate::imputation::ligate::{LigationPart, ligate};
use crate::imputation::panels::PanelFiles;
use crate::imputation::tools;
use crate::store::jobs::JobRow;
use crate::tool_args;

/// Whether the job is a round of a meta-imputation, which runs with Minimac4, unchunked, and
/// keeps Minimac4's empirical file.
pub(super) fn is_meta(job: &JobRow) -> bool {
    fedimpute_protocol::jobs::META_MODES.contains(&job.mode.as_str())
}

/// The work files a meta-imputation round returns for a chromosome: the phased targets and
/// Minimac4's empirical file.
pub(super) fn meta_work_files(work: &Path, chrom: &str) -> (PathBuf, PathBuf) {
    let name = chrom_prefix(chrom);
    (work.join(format!("{name}.phased.vcf.gz")), work.join(format!("{name}.minimac4.empirical.vcf.gz")))
}

/// One chromosome of the job: its QC-passed input and its chunk plan.
pub(super) struct ChromosomeWork {
    pub chrom: String,
    pub filtered: PathBuf,
    pub chunks: Vec<Chunk>,
}

/// What a job's engine runs need to share.
pub(super) struct EngineJob<'a> {
    pub svc: &'a JobsService,
    pub job: &'a JobRow,
    pub kill: &'a KillSwitch,
    pub files: &'a PanelFiles,
    pub has_map: bool,
    pub work: &'a Path,
    /// The job's log: each task's log is appended to it when the task ends.
    pub log: &'a Path,
}

/// Progress of every unit (a chromosome's one run, or one chunk) in [0, 1].
struct Progress {
    units: Mutex<(Vec<f64>, f64)>,
}

impl EngineJob<'_> {
    /// Runs the engines over `chromosomes`; returns, in the same order, each chromosome's engine
    /// output (one VCF over the whole chromosome).
    pub(super) async fn run(&self, chromosomes: &[ChromosomeWork]) -> Result<Vec<PathBuf>, JobFailure> {
        let e = &self.svc.config.engines;
        for c in chromosomes {
            if c.chunks.iter().all(|k| k.excluded.is_some()) {
                let reasons: Vec<String> =
                    c.chunks.iter().filter_map(|k| Some(format!("{}: {}", k.region(), k.excluded.as_ref()?))).collect();
                return Err(JobFailure(format!(
                    "no chunk of chromosome {} can be imputed ({})",
                    c.chrom,
                    reasons.join("; ")
                )));
            }
            tools::run(&e.tabix, &tool_args!("-f", "-p", "vcf", c.filtered.as_os_str()), None).await?;
        }
        tokio::fs::create_dir_all(self.work.join("logs")).await?;

        // A chromosome that fits in one chunk runs whole, as without chunking.
        let units: Vec<(usize, Option<&Chunk>)> = chromosomes
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                if c.chunks.len() == 1 {
                    vec![(i, None)]
                } else {
                    c.chunks.iter().filter(|k| k.excluded.is_none()).map(|k| (i, Some(k))).collect()
                }
            })
            .collect();
        let tracker = Progress { units: Mutex::new((vec![0.0; units.len()], 0.0)) };
        let total = units.len();
        let runs = units.iter().enumerate().map(|(u, &(i, chunk))| {
            let tracker = &tracker;
            async move {
                let planned = chunk.or(chromosomes[i].chunks.first());
                let name = planned.map_or_else(|| chrom_prefix(&chromosomes[i].chrom), Chunk::name);
                let out = self.run_unit(&chromosomes[i], chunk, u, tracker, &name).await;
                let message = match &out {
                    Ok(_) => format!("chunk {name}: done ({} of {total})", tracker.set(u, 1.0)),
                    Err(_) => format!("chunk {name}: failed"),
                };
                progress(self.svc, &self.job.id, "imputing", 0.1 + 0.85 * tracker.mean(), Some(&message)).await;
                out.map(|parts| (i, chunk, parts))
            }
        });
        let finished = futures_util::future::join_all(runs).await;
        let mut per_chromosome: Vec<Vec<LigationPart>> = chromosomes.iter().map(|_| Vec::new()).collect();
        let mut whole: Vec<Option<PathBuf>> = chromosomes.iter().map(|_| None).collect();
        for result in finished {
            let (i, chunk, (records, phase_reference)) = result?;
            match chunk {
                None => whole[i] = Some(records),
                Some(chunk) => per_chromosome[i].push(LigationPart { chunk: chunk.clone(), records, phase_reference }),
            }
        }

        let mut outputs = Vec::with_capacity(chromosomes.len());
        for (i, c) in chromosomes.iter().enumerate() {
            if let Some(path) = whole[i].take() {
                outputs.push(path);
                continue;
            }
            let parts = std::mem::take(&mut per_chromosome[i]);
            let out = self.work.join(format!("{}.ligated.vcf.gz", chrom_prefix(&c.chrom)));
            progress(
                self.svc,
                &self.job.id,
                "ligating",
                0.95,
                Some(&format!("{}: ligating {} chunks", c.chrom, parts.len())),
            )
            .await;
            let target = out.clone();
            let ligated = tokio::task::spawn_blocking(move || ligate(&parts, &target))
                .await
                .map_err(|e| JobFailure(e.to_string()))??;
            tracing::debug!(job = %self.job.id, chrom = %c.chrom, records = ?ligated.records, swapped = ?ligated.swapped_at_boundary, "ligated");
            outputs.push(out);
        }
        Ok(outputs)
    }

    /// Runs one unit: returns its engine output and the phased file its haplotypes came from.
    async fn run_unit(
        &self,
        c: &ChromosomeWork,
        chunk: Option<&Chunk>,
        unit: usize,
        tracker: &Progress,
        chunk_name: &str,
    ) -> Result<(PathBuf, PathBuf), JobFailure> {
        let (svc, job) = (self.svc, self.job);
        let e = &svc.config.engines;
        let chunking = &svc.config.chunking;
        let name = chunk.map_or_else(|| chrom_prefix(&c.chrom), Chunk::name);
        let prefix = self.work.join(&name);
        let map = self.has_map.then(|| self.files.map_for(&c.chrom));
        let phasing_region = chunk.map(|k| k.extended_region(chunking.phasing_flank_bp));
        let beagle = |impute: bool, out: &Path| {
            let mut args = beagle_args(e, &self.files.bref3(&c.chrom), &c.filtered, out, map.as_deref(), impute);
            if let Some(region) = &phasing_region {
                args.push(format!("chrom={region}").into());
            }
            args
        };
        match job.engine.as_str() {
            "beagle" => {
                let task = self.new_task(&name, "beagle", "beagle", &e.java, beagle(true, &prefix));
                self.beagle_task(task, unit, tracker, 0.9, chunk_name).await?;
                let out = PathBuf::from(format!("{}.vcf.gz", prefix.display()));
                Ok((out.clone(), out))
            }
            "minimac4" => {
                // A meta-imputation's first round phases with this panel; its second imputes
                // the phasing the origin composed, as it is.
                let phase = match job.mode.as_str() {
                    "meta_phase" => true,
                    "meta_impute" => false,
                    _ => job.phasing == "beagle",
                };
                let phased = if phase {
                    let out_prefix = self.work.join(format!("{name}.phased"));
                    let task = self.new_task(&name, "phase", "beagle", &e.java, beagle(false, &out_prefix));
                    self.beagle_task(task, unit, tracker, 0.7, chunk_name).await?;
                    let out = PathBuf::from(format!("{}.vcf.gz", out_prefix.display()));
                    tools::run(&e.tabix, &tool_args!("-f", "-p", "vcf", out.as_os_str()), None).await?;
                    out
                } else {
                    c.filtered.clone()
                };
                let out = self.work.join(format!("{name}.minimac4.vcf.gz"));
                let sites = self.work.join(format!("{name}.minimac4.sites.vcf.gz"));
                let region = chunk.map(|k| (k.region(), chunking.minimac4_overlap_bp));
                let msav = self.files.msav(&c.chrom);
                let empirical = is_meta(job).then(|| meta_work_files(self.work, &c.chrom).1);
                let outputs = Minimac4Outputs { dose: &out, sites: &sites, empirical: empirical.as_deref() };
                // Meta-imputation needs every site, whatever its r2: the origin filters the
                // combination.
                let min_r2 = if is_meta(job) { 0.0 } else { job.r2_filter };
                let args = minimac4_args(e, &msav, &phased, &outputs, min_r2, map.as_deref(), region);
                let task = self.new_task(&name, "impute", "minimac4", &e.minimac4, args);
                self.task(task, chunk_name, tracker, |_| {}).await?;
                Ok((out, phased))
            }
            other => Err(JobFailure(format!("unknown engine {other}"))),
        }
    }

    /// The task `<unit>.<step>` of this job, logging to `logs/<unit>.<step>.log`.
    fn new_task(
        &self,
        unit: &str,
        step: &str,
        engine: &'static str,
        program: &Path,
        args: Vec<std::ffi::OsString>,
    ) -> Task {
        Task {
            job: self.job.id.clone(),
            name: format!("{unit}.{step}"),
            engine,
            program: program.to_path_buf(),
            args,
            log: self.work.join("logs").join(format!("{unit}.{step}.log")),
            on_start: None,
        }
    }

    /// Runs a Beagle task, turning its phasing iterations into up to `share` of the unit.
    async fn beagle_task(
        &self,
        task: Task,
        unit: usize,
        tracker: &Progress,
        share: f64,
        chunk_name: &str,
    ) -> Result<(), JobFailure> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
        let mut seen = 0;
        let run = self.task(task, chunk_name, tracker, move |line| {
            if let Some(p) = beagle_phasing_progress(line, &mut seen) {
                let _ = tx.send(p);
            }
        });
        let reporter = async {
            while let Some(p) = rx.recv().await {
                tracker.set(unit, share * p);
                let overall = 0.1 + 0.85 * tracker.mean();
                if tracker.advanced(overall) {
                    progress(self.svc, &self.job.id, "phasing", overall, None).await;
                }
            }
        };
        let (result, ()) = tokio::join!(run, reporter);
        result
    }

    /// Hands `task` to the executor, then appends its log to the job's. Once it starts, an
    /// event says its chunk runs (`chunk <name>: running`, which the job page's grid follows).
    async fn task(
        &self,
        mut task: Task,
        chunk_name: &str,
        tracker: &Progress,
        on_line: impl FnMut(&str),
    ) -> Result<(), JobFailure> {
        let task_log = task.log.clone();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        task.on_start = Some(Box::new(move || {
            let _ = started_tx.send(());
        }));
        let run = self.svc.executor.run(task, self.kill, on_line);
        let announce = async {
            if started_rx.await.is_ok() {
                let message = format!("chunk {chunk_name}: running");
                let stage = if self.job.engine == "beagle" { "phasing" } else { "imputing" };
                let p = 0.1 + 0.85 * tracker.mean();
                progress(self.svc, &self.job.id, stage, p, Some(&message)).await;
            }
        };
        let (result, ()) = tokio::join!(run, announce);
        if let Ok(text) = tokio::fs::read(&task_log).await {
            use tokio::io::AsyncWriteExt;
            let mut log = tokio::fs::OpenOptions::new().create(true).append(true).open(self.log).await?;
            log.write_all(&text).await?;
        }
        result.map_err(|e| JobFailure(e.to_string()))
    }
}

impl Progress {
    /// Sets a unit's progress; returns how many units are done.
    fn set(&self, unit: usize, p: f64) -> usize {
        let mut guard = self.units.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = guard.0.get_mut(unit) {
            *slot = slot.max(p);
        }
        guard.0.iter().filter(|&&u| u >= 1.0).count()
    }

    fn mean(&self) -> f64 {
        let guard = self.units.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.iter().sum::<f64>() / guard.0.len().max(1) as f64
    }

    /// Whether `overall` is at least 2 points past what was last reported (and records it).
    fn advanced(&self, overall: f64) -> bool {
        let mut guard = self.units.lock().unwrap_or_else(|e| e.into_inner());
        if overall - guard.1 >= 0.02 {
            guard.1 = overall;
            return true;
        }
        false
    }
}
