//! The Slurm executor on a real one-machine Slurm cluster (munge, slurmctld, slurmd from
//! Debian's packages, started by scripts/slurm/local-cluster.sh in a folder of the test's own):
//! one Slurm job per chunk task, re-attachment after the node is SIGKILLed (no task submitted
//! twice), cancel reaching every running chunk, and a chunk whose Slurm job is killed retried.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fedimpute_tests::federation::federation;
use fedimpute_tests::jobs::{download, node_with_panel_and_config, r2_common, set, submit_targets, wait_state};
use fedimpute_tests::{TestNode, wait_for, workspace_root};

/// The cluster, stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Cluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(workspace_root().join("scripts/slurm/local-cluster.sh"))
            .arg("start")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the local Slurm cluster did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        Cluster { dir, conf }
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// `(id, name, state)` of the cluster's current jobs of fedimpute job `job`.
    fn queue(&self, job: &str) -> Vec<(String, String, String)> {
        let out = self.command("squeue").args(["-h", "-o", "%i %j %T"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.to_string(), f.next()?.to_string(), f.next()?.to_string()))
            })
            .filter(|(_, name, _)| name.starts_with(&format!("fedimpute.{job}.")))
            .collect()
    }

    /// `(name, state)` of every finished Slurm job, from Slurm's job completion log.
    fn all_finished(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.dir.path().join("jobcomp.log")).unwrap_or_default();
        let field = |line: &str, key: &str| {
            line.split_whitespace().find_map(|kv| kv.strip_prefix(key)).unwrap_or_default().to_string()
        };
        text.lines().map(|l| (field(l, "Name="), field(l, "JobState="))).collect()
    }

    /// `(name, state)` of every finished Slurm job of fedimpute job `job`.
    fn finished(&self, job: &str) -> Vec<(String, String)> {
        let prefix = format!("fedimpute.{job}.");
        self.all_finished().into_iter().filter(|(name, _)| name.starts_with(&prefix)).collect()
    }

    /// node.toml edited to run engine tasks on this cluster, with work files in `shared` and
    /// 500 kb chunks (four over the test panel).
    fn node_config(&self, config: String, shared: &Path) -> String {
        let c = set(config, "threads = 2", "threads = 1");
        let c = set(c, "kind = \"local\"", "kind = \"slurm\"");
        let c = set(c, "poll_interval_ms = 2000", "poll_interval_ms = 300");
        let slurm =
            format!("[executor.slurm]\nconf = \"{}\"\nshared_dir = \"{}\"\n", self.conf.display(), shared.display());
        let c = set(c, "[executor.slurm]\n", &slurm);
        let c = c.replace("memory = \"8G\"", "memory = \"1G\"");
        let c = set(c, "size_bp = 20000000", "size_bp = 500000");
        set(c, "phasing_flank_bp = 5000000", "phasing_flank_bp = 250000")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(workspace_root().join("scripts/slurm/local-cluster.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

async fn wait_running(cluster: &Cluster, job: &str) -> (String, String) {
    let mut found = None;
    wait_for("a Slurm job of the chunks to run", Duration::from_secs(120), || {
        let running = cluster.queue(job).into_iter().find(|(_, _, state)| state == "RUNNING");
        let ok = running.is_some();
        found = running;
        async move { Ok(ok) }
    })
    .await
    .unwrap();
    let (id, name, _) = found.unwrap();
    (id, name)
}

fn task_names(finished: &[(String, String)]) -> Vec<String> {
    let mut names: Vec<String> = finished.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names
}

async fn dose_of(node: &TestNode, token: &str, id: &str, dir: &Path) -> PathBuf {
    let dose = dir.join(format!("{id}.dose.vcf.gz"));
    download(node, token, id, "chr20.dose.vcf.gz", &dose).await;
    dose
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_run_as_slurm_jobs_survive_a_node_kill_cancel_and_a_killed_job() {
    let cluster = Cluster::start();
    let shared = tempfile::tempdir().unwrap();
    let mut node = node_with_panel_and_config(|c| cluster.node_config(c, shared.path())).await;
    let token = node.admin_token().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fields = [("panel", "sim"), ("build", "hg19"), ("engine", "beagle")];
    let expected: Vec<String> = (61..=64).map(|k| format!("chr20.chunk{k}.beagle")).collect();

    // One Slurm job per chunk task; the results are as good as a local run's.
    let id = submit_targets(&node, &token, &fields).await;
    let done = wait_state(&node, &token, &id, &["completed", "failed"], Duration::from_secs(600)).await;
    assert_eq!(done["state"], "completed", "{done}");
    let names = task_names(&cluster.finished(&id));
    let prefixed: Vec<String> = expected.iter().map(|n| format!("fedimpute.{id}.{n}")).collect();
    assert_eq!(names, prefixed, "one Slurm job per chunk task");
    let dose = dose_of(&node, &token, &id, dir.path()).await;
    assert!(r2_common(&dose) >= 0.95);
    assert!(!shared.path().join("jobs").join(&id).exists(), "the shared work files are deleted with the inputs");

    // SIGKILL while chunks run, restart: the node re-attaches and submits nothing twice.
    let id = submit_targets(&node, &token, &fields).await;
    wait_running(&cluster, &id).await;
    node.stop_with(libc::SIGKILL).unwrap();
    assert!(!cluster.queue(&id).is_empty(), "the chunks' Slurm jobs outlive the node");
    node.start().await.unwrap();
    let token = node.admin_token().await.unwrap();
    let done = wait_state(&node, &token, &id, &["completed", "failed"], Duration::from_secs(600)).await;
    assert_eq!(done["state"], "completed", "{done}");
    let names = task_names(&cluster.finished(&id));
    let prefixed: Vec<String> = expected.iter().map(|n| format!("fedimpute.{id}.{n}")).collect();
    assert_eq!(names, prefixed, "each chunk ran once as a Slurm job across the restart");
    assert!(node.log().contains("re-attaching to a Slurm job"), "{}", node.log());

    // Cancel at the node scancels every chunk in the queue.
    let id = submit_targets(&node, &token, &fields).await;
    wait_running(&cluster, &id).await;
    let resp = node.client().post(node.api(&format!("/jobs/{id}/cancel"))).bearer_auth(&token).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    wait_for("every chunk to leave the Slurm queue", Duration::from_secs(30), || {
        let empty = cluster.queue(&id).is_empty();
        async move { Ok(empty) }
    })
    .await
    .unwrap();
    assert!(cluster.finished(&id).iter().any(|(_, state)| state == "CANCELLED"), "{:?}", cluster.finished(&id));

    // A chunk whose Slurm job is killed behind the node's back is submitted again.
    let id = submit_targets(&node, &token, &fields).await;
    let (slurm_id, name) = wait_running(&cluster, &id).await;
    assert!(cluster.command("scancel").arg(&slurm_id).status().unwrap().success());
    let done = wait_state(&node, &token, &id, &["completed", "failed"], Duration::from_secs(600)).await;
    assert_eq!(done["state"], "completed", "{done}");
    let finished = cluster.finished(&id);
    let runs_of_killed: Vec<&String> = finished.iter().filter(|(n, _)| *n == name).map(|(_, s)| s).collect();
    assert_eq!(runs_of_killed, vec!["CANCELLED", "COMPLETED"], "{finished:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_job_whose_host_runs_its_chunks_on_slurm_completes_at_the_origin() {
    let cluster = Cluster::start();
    let shared = tempfile::tempdir().unwrap();
    let fed = federation(1, |i, c| if i == 1 { cluster.node_config(c, shared.path()) } else { c }).await;
    let (a, b) = (&fed.nodes[0], &fed.nodes[1]);
    let ta = a.admin_token().await.unwrap();
    let id = submit_targets(a, &ta, &[("panel", "sim"), ("build", "hg19"), ("engine", "beagle")]).await;
    let done = wait_state(a, &ta, &id, &["completed", "failed"], Duration::from_secs(600)).await;
    assert_eq!(done["state"], "completed", "{done}\nB's log:\n{}", b.log());
    let finished = cluster.all_finished();
    let mut tasks: Vec<String> = finished
        .iter()
        .filter(|(_, s)| s == "COMPLETED")
        .filter_map(|(n, _)| n.rsplit_once(".chr20."))
        .map(|(_, t)| t.to_string())
        .collect();
    tasks.sort();
    let expected: Vec<String> = (61..=64).map(|k| format!("chunk{k}.beagle")).collect();
    assert_eq!(tasks, expected, "the host ran each chunk as a Slurm job: {finished:?}");
    let dir = tempfile::tempdir().unwrap();
    let dose = dose_of(a, &ta, &id, dir.path()).await;
    assert!(r2_common(&dose) >= 0.95);
}
