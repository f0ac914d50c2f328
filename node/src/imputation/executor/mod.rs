//! Where engine tasks run. The job engine hands each task (one engine command on one chunk) to
//! the node's executor and never starts engine processes itself; the executor decides where it
//! runs and how many run at once. `local` runs tasks as child processes of the node; `slurm`
//! submits each as a Slurm job (see [`slurm`]). Either way at most `slots` tasks are in flight
//! at once across all jobs.

mod slurm;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::engines::{EngineError, EngineRun, KillSwitch};
use crate::store::Store;
pub use slurm::{SlurmResources, SlurmSection};

/// `[executor]` in node.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorSection {
    /// `local`: engine tasks run on this machine; `slurm`: as jobs of a Slurm cluster.
    pub kind: ExecutorKind,
    /// Engine tasks in flight at once on this node; 0 means, for `local`, the machine's cores
    /// divided by `engines.threads` (at least 1), for `slurm`, 64.
    pub slots: u32,
    pub slurm: SlurmSection,
}

impl Default for ExecutorSection {
    fn default() -> Self {
        Self { kind: ExecutorKind::Local, slots: 0, slurm: SlurmSection::default() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    Local,
    Slurm,
}

/// One engine command: a program and its arguments, with its own log file.
pub struct Task {
    /// The job it is part of.
    pub job: String,
    /// Unique within the job, e.g. `chr20.chunk3.phase`.
    pub name: String,
    pub engine: &'static str,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub log: PathBuf,
    /// Called once the task has a slot and starts (for Slurm: is submitted or re-attached to).
    pub on_start: Option<Box<dyn FnOnce() + Send + Sync>>,
}

/// The node's executor; cheap to clone (all clones share the slots).
#[derive(Clone)]
pub struct Executor {
    slots: Arc<tokio::sync::Semaphore>,
    capacity: usize,
    slurm: Option<Arc<slurm::Slurm>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Executor {
    pub fn new(section: &ExecutorSection, engine_threads: u32, store: Store) -> Self {
        let capacity = match (section.slots, section.kind) {
            (0, ExecutorKind::Local) => {
                let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
                (cores / engine_threads.max(1) as usize).max(1)
            }
            (0, ExecutorKind::Slurm) => 64,
            (n, _) => n as usize,
        };
        let slurm = (section.kind == ExecutorKind::Slurm)
            .then(|| Arc::new(slurm::Slurm { section: section.slurm.clone(), engine_threads, store }));
        Self { slots: Arc::new(tokio::sync::Semaphore::new(capacity)), capacity, slurm, metrics: None }
    }

    /// Records each task's wall time in `metrics` (`engine_run_seconds`).
    pub fn observed_by(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Whether tasks outlive the node (Slurm jobs): a re-run then keeps the job's work files and
    /// re-attaches to its tasks instead of starting over.
    pub fn resumable(&self) -> bool {
        self.slurm.is_some()
    }

    /// Tasks that may run at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Runs `task` once a slot is free, handing each line it prints to `on_line`. A task waiting
    /// for a slot when `kill` is thrown never starts.
    pub async fn run(&self, mut task: Task, kill: &KillSwitch, on_line: impl FnMut(&str)) -> Result<(), EngineError> {
        let permit = tokio::select! {
            permit = self.slots.acquire() => permit.map_err(|_| EngineError::Killed { engine: task.engine })?,
            () = kill.killed() => return Err(EngineError::Killed { engine: task.engine }),
        };
        tracing::debug!(task = %task.name, "engine task starting");
        if let Some(started) = task.on_start.take() {
            started();
        }
        let (engine, started) = (task.engine, std::time::Instant::now());
        let result = match &self.slurm {
            Some(slurm) => slurm.run(task, kill, on_line).await,
            None => {
                EngineRun {
                    engine: task.engine,
                    program: &task.program,
                    args: task.args,
                    stdout_to: None,
                    log: &task.log,
                    kill,
                }
                .run(on_line)
                .await
            }
        };
        drop(permit);
        if let Some(metrics) = &self.metrics {
            let outcome = match &result {
                Ok(()) => "ok",
                Err(EngineError::Killed { .. }) => "killed",
                Err(_) => "failed",
            };
            metrics.engine_run(engine, outcome, started.elapsed().as_secs_f64());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(name: &str, dir: &std::path::Path, secs: &str) -> Task {
        Task {
            job: "job".into(),
            name: name.into(),
            engine: "beagle",
            program: "sh".into(),
            args: vec!["-c".into(), format!("echo start $(date +%s%N); sleep {secs}; echo end $(date +%s%N)").into()],
            log: dir.join(format!("{name}.log")),
            on_start: None,
        }
    }

    async fn store(dir: &std::path::Path) -> Store {
        Store::open(&dir.join("node.db"), true).await.unwrap()
    }

    fn times(log: &std::path::Path) -> (u128, u128) {
        let text = std::fs::read_to_string(log).unwrap();
        let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).unwrap().trim().parse().unwrap();
        (get("start "), get("end "))
    }

    #[tokio::test]
    async fn no_more_tasks_run_at_once_than_there_are_slots() {
        let dir = tempfile::tempdir().unwrap();
        let executor = Executor::new(&ExecutorSection { slots: 2, ..Default::default() }, 1, store(dir.path()).await);
        let kill = KillSwitch::default();
        let tasks: Vec<Task> = (0..4).map(|i| sleeper(&format!("t{i}"), dir.path(), "0.3")).collect();
        let runs = tasks.into_iter().map(|t| executor.run(t, &kill, |_| {}));
        for r in futures_util::future::join_all(runs).await {
            r.unwrap();
        }
        let spans: Vec<(u128, u128)> = (0..4).map(|i| times(&dir.path().join(format!("t{i}.log")))).collect();
        // At every task's start, count the tasks running then (itself included).
        for &(start, _) in &spans {
            let running = spans.iter().filter(|(s, e)| *s <= start && start < *e).count();
            assert!(running <= 2, "{running} tasks ran at once: {spans:?}");
        }
        let overlapping = spans.iter().filter(|(s, _)| spans.iter().any(|(s2, e2)| s2 < s && s < e2)).count();
        assert!(overlapping >= 1, "two slots ran nothing side by side: {spans:?}");
    }

    #[tokio::test]
    async fn a_kill_stops_the_running_tasks_and_those_waiting_for_a_slot() {
        let dir = tempfile::tempdir().unwrap();
        let executor = Executor::new(&ExecutorSection { slots: 2, ..Default::default() }, 1, store(dir.path()).await);
        let kill = KillSwitch::default();
        let tasks: Vec<Task> = (0..3).map(|i| sleeper(&format!("k{i}"), dir.path(), "30")).collect();
        let runs = futures_util::future::join_all(tasks.into_iter().map(|t| executor.run(t, &kill, |_| {})));
        let killer = async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            kill.kill();
        };
        let started = std::time::Instant::now();
        let (results, ()) = tokio::join!(runs, killer);
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the kill did not stop the tasks");
        assert!(results.iter().all(|r| matches!(r, Err(EngineError::Killed { .. }))), "{results:?}");
        assert!(!dir.path().join("k2.log").exists(), "the waiting task started after the kill");
    }
}
