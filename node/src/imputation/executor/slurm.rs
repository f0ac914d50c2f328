//! Engine tasks as Slurm jobs: `sbatch` with the node's resources per engine, followed with
//! `scontrol show job`, cancelled with `scancel`. The Slurm job id is stored before the node
//! waits on it, so a node restarted while its chunks run re-attaches to them and submits nothing
//! twice. A task Slurm ends badly (failed, out of memory, timeout, node failure, cancelled by
//! someone else) is submitted again up to `max_retries` times.
//!
//! Each task's script writes its exit status next to its log when the program ends, so the
//! outcome is known even once Slurm has forgotten the job (after `MinJobAge`) and without
//! `sacct` (which needs slurmdbd).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::Task;
use crate::imputation::engines::{EngineError, KillSwitch};
use crate::store::Store;

/// Resources asked of Slurm for one engine's tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmResources {
    /// `--cpus-per-task`; 0 means `engines.threads`.
    pub cpus: u32,
    /// `--mem`, e.g. `8G`.
    pub memory: String,
    /// `--time`, e.g. `24:00:00`.
    pub time_limit: String,
}

impl Default for SlurmResources {
    fn default() -> Self {
        Self { cpus: 0, memory: "8G".into(), time_limit: "24:00:00".into() }
    }
}

/// `[executor.slurm]` in node.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmSection {
    /// The cluster's `slurm.conf`, given to the Slurm commands as `SLURM_CONF` (unset: theirs).
    pub conf: Option<PathBuf>,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// More `sbatch` arguments, e.g. `["--qos=normal"]`.
    pub extra_args: Vec<String>,
    /// Work files of jobs, on the filesystem the cluster's nodes share (unset: the node's
    /// data directory, which must then be shared). Panels must be on a shared path too.
    pub shared_dir: Option<PathBuf>,
    pub beagle: SlurmResources,
    pub minimac4: SlurmResources,
    /// Times a task Slurm ended badly is submitted again before the job fails.
    pub max_retries: u32,
    /// Milliseconds between looks at a running task.
    pub poll_interval_ms: u64,
    pub sbatch: PathBuf,
    pub scontrol: PathBuf,
    pub scancel: PathBuf,
}

impl Default for SlurmSection {
    fn default() -> Self {
        Self {
            conf: None,
            partition: None,
            account: None,
            extra_args: Vec::new(),
            shared_dir: None,
            beagle: SlurmResources::default(),
            minimac4: SlurmResources::default(),
            max_retries: 2,
            poll_interval_ms: 2000,
            sbatch: "sbatch".into(),
            scontrol: "scontrol".into(),
            scancel: "scancel".into(),
        }
    }
}

/// What Slurm (or the task's exit file) says of a task.
#[derive(Debug, PartialEq)]
enum SlurmState {
    Live,
    Completed,
    Ended(String),
}

pub(super) struct Slurm {
    pub(super) section: SlurmSection,
    pub(super) engine_threads: u32,
    pub(super) store: Store,
}

impl Slurm {
    pub(super) async fn run(
        &self,
        task: Task,
        kill: &KillSwitch,
        mut on_line: impl FnMut(&str),
    ) -> Result<(), EngineError> {
        let io = |e: crate::store::StoreError| EngineError::Io(std::io::Error::other(e.to_string()));
        let exit_file = PathBuf::from(format!("{}.exit", task.log.display()));
        let (mut id, mut attempts) = match self.store.engine_task(&task.job, &task.name).await.map_err(io)? {
            Some(row) if row.state == "completed" && read_exit(&exit_file).await == Some(0) => return Ok(()),
            Some(row) => {
                tracing::info!(task = %task.name, slurm_job = %row.external_id, "re-attaching to a Slurm job");
                (row.external_id, row.attempts)
            }
            None => (self.submit(&task, &exit_file, 1).await?, 1),
        };
        let mut offset = 0;
        loop {
            match self.wait(&id, &task, &exit_file, kill, &mut on_line, &mut offset).await? {
                SlurmState::Completed => {
                    self.store.complete_engine_task(&task.job, &task.name).await.map_err(io)?;
                    return Ok(());
                }
                SlurmState::Ended(reason) if attempts <= i64::from(self.section.max_retries) => {
                    tracing::warn!(task = %task.name, slurm_job = %id, %reason, attempts, "Slurm task failed; submitting it again");
                    attempts += 1;
                    id = self.submit(&task, &exit_file, attempts).await?;
                }
                SlurmState::Ended(reason) => {
                    return Err(EngineError::Failed {
                        engine: task.engine,
                        status: format!("Slurm job {id} of task {} {reason}, after {attempts} attempt(s)", task.name),
                        tail: tail(&task.log).await,
                    });
                }
                SlurmState::Live => unreachable!("wait returns only once the task has ended"),
            }
        }
    }

    fn command(&self, program: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        command.stdin(Stdio::null()).kill_on_drop(true);
        if let Some(conf) = &self.section.conf {
            command.env("SLURM_CONF", conf);
        }
        command
    }

    async fn output(&self, program: &Path, args: &[String]) -> Result<std::process::Output, EngineError> {
        self.command(program)
            .args(args)
            .output()
            .await
            .map_err(|source| EngineError::Spawn { program: program.display().to_string(), source })
    }

    /// Writes the task's script and submits it; records the Slurm job id before returning it.
    async fn submit(&self, task: &Task, exit_file: &Path, attempts: i64) -> Result<String, EngineError> {
        let _ = tokio::fs::remove_file(exit_file).await;
        let dir = task.log.parent().unwrap_or(Path::new("."));
        let shown: Vec<String> = task.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let mut log = tokio::fs::OpenOptions::new().create(true).append(true).open(&task.log).await?;
        log.write_all(format!("$ {} {}\n", task.program.display(), shown.join(" ")).as_bytes()).await?;
        let command: Vec<String> =
            std::iter::once(task.program.display().to_string()).chain(shown).map(|a| shell_quote(&a)).collect();
        let script = PathBuf::from(format!("{}.sh", task.log.display()));
        let exit = shell_quote(&exit_file.display().to_string());
        tokio::fs::write(
            &script,
            format!(
                "#!/bin/sh\n# fedimpute: task {} of job {}\n{}\nrc=$?\necho $rc > {exit}.tmp && mv {exit}.tmp {exit}\nexit $rc\n",
                task.name,
                task.job,
                command.join(" ")
            ),
        )
        .await?;
        let resources = if task.engine == "minimac4" { &self.section.minimac4 } else { &self.section.beagle };
        let cpus = if resources.cpus == 0 { self.engine_threads } else { resources.cpus };
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name=fedimpute.{}.{}", task.job, task.name),
            format!("--output={}", task.log.display()),
            "--open-mode=append".into(),
            format!("--chdir={}", dir.display()),
            format!("--cpus-per-task={cpus}"),
            format!("--mem={}", resources.memory),
            format!("--time={}", resources.time_limit),
        ];
        if let Some(p) = &self.section.partition {
            args.push(format!("--partition={p}"));
        }
        if let Some(a) = &self.section.account {
            args.push(format!("--account={a}"));
        }
        args.extend(self.section.extra_args.iter().cloned());
        args.push(script.display().to_string());
        let out = self.output(&self.section.sbatch, &args).await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = stdout.trim().split(';').next().unwrap_or_default().to_string();
        if !out.status.success() || id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(EngineError::Failed {
                engine: task.engine,
                status: format!("sbatch refused task {} ({})", task.name, out.status),
                tail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        self.store
            .record_engine_task(&task.job, &task.name, &id, attempts)
            .await
            .map_err(|e| EngineError::Io(std::io::Error::other(e.to_string())))?;
        tracing::info!(task = %task.name, slurm_job = %id, attempts, "submitted to Slurm");
        Ok(id)
    }

    /// Follows Slurm job `id` until it ends, handing the new lines of its log to `on_line`;
    /// `scancel`s it if `kill` is thrown.
    async fn wait(
        &self,
        id: &str,
        task: &Task,
        exit_file: &Path,
        kill: &KillSwitch,
        on_line: &mut impl FnMut(&str),
        offset: &mut u64,
    ) -> Result<SlurmState, EngineError> {
        let every = Duration::from_millis(self.section.poll_interval_ms.max(100));
        loop {
            if kill.is_killed() {
                let out = self.output(&self.section.scancel, &[id.to_string()]).await?;
                if !out.status.success() {
                    tracing::warn!(slurm_job = %id, stderr = %String::from_utf8_lossy(&out.stderr), "scancel failed");
                }
                return Err(EngineError::Killed { engine: task.engine });
            }
            follow_log(&task.log, offset, on_line).await;
            match self.state(id, exit_file).await? {
                SlurmState::Live => {}
                ended => {
                    follow_log(&task.log, offset, on_line).await;
                    return Ok(ended);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = kill.killed() => {}
            }
        }
    }

    async fn state(&self, id: &str, exit_file: &Path) -> Result<SlurmState, EngineError> {
        let out = self.output(&self.section.scontrol, &["show".into(), "job".into(), "-o".into(), id.into()]).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .map(String::from)
        };
        let Some(state) = field("JobState").filter(|_| out.status.success()) else {
            // Slurm has forgotten the job: its exit file says how it ended.
            return Ok(match read_exit(exit_file).await {
                Some(0) => SlurmState::Completed,
                Some(rc) => SlurmState::Ended(format!("exited with status {rc}")),
                None => SlurmState::Ended("is unknown to Slurm and left no exit status".into()),
            });
        };
        Ok(match state.as_str() {
            "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "SUSPENDED" | "REQUEUED" | "RESIZING"
            | "STAGE_OUT" | "SIGNALING" | "REQUEUE_HOLD" | "REQUEUE_FED" => SlurmState::Live,
            "COMPLETED" if read_exit(exit_file).await == Some(0) => SlurmState::Completed,
            other => {
                let reason = field("Reason").unwrap_or_default();
                let exit = field("ExitCode").unwrap_or_default();
                SlurmState::Ended(format!("ended {other} (reason {reason}, exit code {exit})"))
            }
        })
    }
}

async fn read_exit(path: &Path) -> Option<i32> {
    tokio::fs::read_to_string(path).await.ok()?.trim().parse().ok()
}

/// Hands the lines appended to `log` since `offset` to `on_line`.
async fn follow_log(log: &Path, offset: &mut u64, on_line: &mut impl FnMut(&str)) {
    let Ok(mut file) = tokio::fs::File::open(log).await else { return };
    if file.seek(std::io::SeekFrom::Start(*offset)).await.is_err() {
        return;
    }
    let mut new = Vec::new();
    if file.read_to_end(&mut new).await.is_err() {
        return;
    }
    // Only whole lines; a partial last line is read again next time.
    let Some(end) = new.iter().rposition(|&b| b == b'\n') else { return };
    *offset += end as u64 + 1;
    for line in String::from_utf8_lossy(&new[..end]).lines() {
        on_line(line);
    }
}

/// The last lines of a task's log, for the failure message.
async fn tail(log: &Path) -> String {
    let text = tokio::fs::read_to_string(log).await.unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn arguments_reach_the_program_as_given() {
        let args = ["plain", "with space", "it's", "$HOME", "a;b"];
        let script = format!("printf '%s\\n' {}", args.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "));
        let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), args.join("\n") + "\n");
    }
}
