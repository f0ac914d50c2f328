//! Multi-panel jobs: one submission to several panels is a parent job with one child per panel
//! (each an ordinary local or forwarded job). The parent's state and progress follow its
//! children's; when all have completed, the parent merges their results ([`super::merge`]).
//! Cancelling the parent cancels the children.

use std::path::PathBuf;

use serde_json::json;

use super::JobsService;
use super::results::JobSummary;
use crate::imputation::combine::best_r2::{MergeReport, PanelVcf, merge_chromosome, report_text};
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::jobs::{JobResult, JobRole, JobRow, JobState, LIVE_STATES, TransitionUpdate};

/// Where the children of a parent are, taken together.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Aggregate {
    /// None has started.
    Waiting,
    /// Some are under way; mean progress.
    Running(f64),
    /// All completed: merge.
    Completed,
    /// All ended, not all completed: the reasons, per panel.
    Failed(String),
    /// All ended, all cancelled.
    Cancelled,
}

/// How a child is named in reports: the panel reference the researcher gave.
pub fn child_label(child: &JobRow) -> String {
    match &child.pinned_host {
        Some(host) => format!("{host}/{}", child.panel_id),
        None => child.panel_id.clone(),
    }
}

/// Stages in which the parent itself works on its children's results (one at a time: events
/// meanwhile wait for it).
const BUSY_STAGES: [&str; 2] = ["merging", "composing"];

pub(super) fn aggregate(children: &[JobRow]) -> Aggregate {
    if children.iter().any(|c| c.state().is_live()) {
        let started =
            children.iter().any(|c| !matches!(c.state(), JobState::Pending | JobState::Validating | JobState::Queued));
        let progress = children.iter().map(|c| c.progress).sum::<f64>() / children.len().max(1) as f64;
        return if started || progress > 0.0 { Aggregate::Running(progress) } else { Aggregate::Waiting };
    }
    if !children.is_empty() && children.iter().all(|c| c.state() == JobState::Completed) {
        return Aggregate::Completed;
    }
    if !children.is_empty() && children.iter().all(|c| c.state() == JobState::Cancelled) {
        return Aggregate::Cancelled;
    }
    let reasons: Vec<String> = children
        .iter()
        .filter(|c| c.state() != JobState::Completed)
        .map(|c| format!("{}: {}", child_label(c), c.error.clone().unwrap_or_else(|| c.state.clone())))
        .collect();
    Aggregate::Failed(reasons.join("; "))
}

impl JobsService {
    /// Follows every parent's children until the process ends.
    pub(super) async fn follow_parents(&self) {
        let mut events = self.subscribe();
        for parent in self.store.jobs_of_role(JobRole::Parent, &LIVE_STATES).await.unwrap_or_default() {
            // A merge or composition a restart interrupted is done again from the children's
            // results, which are all still there.
            if let Some(stage) = parent.stage.as_deref().filter(|s| BUSY_STAGES.contains(s))
                && let Ok(event) = self.store.job_progress(&parent.id, "panels", parent.progress, None).await
            {
                tracing::info!(job = %parent.id, stage, "resuming a multi-panel job interrupted by a restart");
                self.publish(event);
            }
            self.update_parent(&parent.id).await;
        }
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let Ok(Some(job)) = self.store.job(&event.job_id).await else { continue };
            if let Some(parent) = &job.parent_id {
                self.update_parent(parent).await;
            } else if job.role() == JobRole::Parent && job.state() == JobState::Cancelled {
                for child in self.store.child_jobs(&job.id).await.unwrap_or_default() {
                    if child.state().is_live() {
                        let _ = self.cancel(&child.id, "node", "local").await;
                    }
                }
            }
        }
    }

    async fn update_parent(&self, parent_id: &str) {
        let Ok(Some(parent)) = self.store.job(parent_id).await else { return };
        if !parent.state().is_live() || parent.stage.as_deref().is_some_and(|s| BUSY_STAGES.contains(&s)) {
            return;
        }
        let Ok(children) = self.store.child_jobs(parent_id).await else { return };
        if parent.mode == super::meta_rounds::META_PARENT_MODE {
            return self.update_meta_parent(&parent, &children).await;
        }
        match aggregate(&children) {
            Aggregate::Completed => self.merge(&parent, &children).await,
            other => self.follow_round(&parent, other, children.len(), "panels", (0.0, 0.95)).await,
        }
    }

    /// Moves the parent along with one round of children that has not all completed; its
    /// progress spans `span` (from, width) of the parent's.
    pub(super) async fn follow_round(
        &self,
        parent: &JobRow,
        round: Aggregate,
        panels: usize,
        stage: &str,
        span: (f64, f64),
    ) {
        let (parent_id, live) = (parent.id.as_str(), &LIVE_STATES);
        match round {
            Aggregate::Waiting | Aggregate::Completed => {}
            Aggregate::Running(progress) => {
                let progress = span.0 + progress * span.1;
                if parent.state() != JobState::Running {
                    let update = TransitionUpdate {
                        stage: Some(stage.into()),
                        progress: Some(progress),
                        message: Some(format!("{panels} panels under way")),
                        ..Default::default()
                    };
                    let _ = self.transition(parent_id, live, JobState::Running, update).await;
                } else if (progress - parent.progress >= 0.01 || parent.stage.as_deref() != Some(stage))
                    && let Ok(event) = self.store.job_progress(parent_id, stage, progress, None).await
                {
                    self.publish(event);
                }
            }
            Aggregate::Failed(reason) => {
                let update = TransitionUpdate { error: Some(reason), ..Default::default() };
                let _ = self.transition(parent_id, live, JobState::Failed, update).await;
            }
            Aggregate::Cancelled => {
                let update =
                    TransitionUpdate { message: Some("every panel's job was cancelled".into()), ..Default::default() };
                let _ = self.transition(parent_id, live, JobState::Cancelled, update).await;
            }
        }
    }

    pub(super) async fn merge(&self, parent: &JobRow, children: &[JobRow]) {
        let update = TransitionUpdate {
            stage: Some("merging".into()),
            progress: Some(0.95),
            message: Some("merging the panels' results".into()),
            ..Default::default()
        };
        if !matches!(self.transition(&parent.id, &LIVE_STATES, JobState::Running, update).await, Ok(true)) {
            return;
        }
        let written = if parent.mode == super::meta_rounds::META_PARENT_MODE {
            self.write_meta(parent, children).await
        } else {
            self.write_merge(parent, children).await
        };
        let (to, update) = match written {
            Ok((message, summary)) => (
                JobState::Completed,
                TransitionUpdate {
                    message: Some(message),
                    summary: serde_json::to_string(&summary).ok(),
                    ..Default::default()
                },
            ),
            Err(reason) => (JobState::Failed, TransitionUpdate { error: Some(reason), ..Default::default() }),
        };
        let panels = json!({ "panels": children.iter().map(child_label).collect::<Vec<_>>() });
        self.end_parent(parent, to, update, panels).await;
    }

    /// Ends a parent that was working on its children's results (`running`) in `to`, and
    /// audits it with `details` and the state.
    pub(super) async fn end_parent(
        &self,
        parent: &JobRow,
        to: JobState,
        update: TransitionUpdate,
        mut details: serde_json::Value,
    ) {
        if matches!(self.transition(&parent.id, &[JobState::Running], to, update).await, Ok(true)) {
            let outcome = if to == JobState::Completed { Outcome::Success } else { Outcome::Failure };
            if let Some(fields) = details.as_object_mut() {
                fields.insert("state".into(), to.as_str().into());
            }
            self.audit(AuditEvent::new("node", "local", "job.finished", outcome).target(&parent.id).details(details))
                .await;
        }
    }

    /// Merges every chromosome the children imputed; returns the completion message and the
    /// summary.
    async fn write_merge(&self, parent: &JobRow, children: &[JobRow]) -> Result<(String, JobSummary), String> {
        let results = self.results_dir(&parent.id);
        let _ = tokio::fs::remove_dir_all(&results).await;
        self.store.clear_job_results(&parent.id).await.map_err(|e| e.to_string())?;
        tokio::fs::create_dir_all(&results).await.map_err(|e| e.to_string())?;
        // Chromosome file name -> (label, path) of every child that has it, in panel order.
        let mut chromosomes: std::collections::BTreeMap<String, Vec<(String, PathBuf)>> = Default::default();
        for child in children {
            for file in self.store.job_results(&child.id).await.map_err(|e| e.to_string())? {
                if file.name.ends_with(".dose.vcf.gz") {
                    let path = self.results_dir(&child.id).join(&file.name);
                    chromosomes.entry(file.name).or_default().push((child_label(child), path));
                }
            }
        }
        if chromosomes.is_empty() {
            return Err("no panel produced imputed VCFs to merge".into());
        }
        let mut report = MergeReport::default();
        let mut summary = JobSummary { r2_filter: parent.r2_filter, ..Default::default() };
        let labels: Vec<String> = children.iter().map(child_label).collect();
        let lines = self
            .multi_panel_provenance(parent, children, &labels, &format!("best-r2 merge of {} panels", children.len()))
            .await;
        let work = self.job_dir(&parent.id).join("merge");
        tokio::fs::create_dir_all(&work).await.map_err(|e| e.to_string())?;
        for (name, inputs) in chromosomes {
            let merged = work.join(&name);
            let out_for_merge = merged.clone();
            report = tokio::task::spawn_blocking(move || {
                let panels: Vec<PanelVcf<'_>> =
                    inputs.iter().map(|(label, path)| PanelVcf { panel: label, path }).collect();
                merge_chromosome(&panels, &out_for_merge, &mut report).map(|()| report)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("merging {name}: {e}"))?;
            let prefix = format!("{}.merged", name.trim_end_matches(".dose.vcf.gz"));
            super::outputs::write_chromosome_results(
                self,
                &parent.id,
                &merged,
                &prefix,
                &results,
                0.0,
                &lines,
                &mut summary,
            )
            .await
            .map_err(|e| e.0)?;
        }
        let _ = tokio::fs::remove_dir_all(&work).await;
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        for (file, text) in [("merge_report.json", json), ("merge_report.txt", report_text(&report))] {
            tokio::fs::write(results.join(file), text).await.map_err(|e| e.to_string())?;
            self.record_result(&parent.id, &results.join(file)).await?;
        }
        self.write_parent_summary(parent, &results, &summary).await?;
        let message = format!("merged {} variants from {} panels", report.variants, report.panels.len());
        Ok((message, summary))
    }

    /// Writes a multi-panel job's `summary.json` and `report.html`, after its other results.
    pub(super) async fn write_parent_summary(
        &self,
        parent: &JobRow,
        results: &std::path::Path,
        summary: &JobSummary,
    ) -> Result<(), String> {
        let json = serde_json::to_string_pretty(summary).map_err(|e| e.to_string())?;
        tokio::fs::write(results.join("summary.json"), json).await.map_err(|e| e.to_string())?;
        self.record_result(&parent.id, &results.join("summary.json")).await?;
        let page = super::html_report::write(parent, results).await.map_err(|e| e.to_string())?;
        self.record_result(&parent.id, &page).await
    }

    /// The provenance lines of a multi-panel job's results: `how` they were combined, and the
    /// panels with the institutions that host them, from the signed member list.
    pub(super) async fn multi_panel_provenance(
        &self,
        parent: &JobRow,
        children: &[JobRow],
        labels: &[String],
        how: &str,
    ) -> Vec<(String, String)> {
        let mut hosts = Vec::new();
        for (child, label) in children.iter().zip(labels) {
            let host = match &child.peer {
                Some(peer) => super::outputs::signed_institution(self, peer).await.unwrap_or_else(|| peer.clone()),
                None => self.config.node.institution.clone(),
            };
            hosts.push(format!("{label}: {host}"));
        }
        let mut lines = super::outputs::provenance(self, parent, how).await;
        for (key, value) in lines.iter_mut() {
            if key == "panel_host" {
                *value = hosts.join("; ");
            }
        }
        lines
    }

    pub(super) async fn record_result(&self, id: &str, path: &std::path::Path) -> Result<(), String> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let file = crate::files::hash_file(path).await.map_err(|e| e.to_string())?;
        self.store
            .add_job_result(id, &JobResult { name, size: file.size as i64, sha256: file.sha256 })
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(panel: &str, state: &str, progress: f64, error: Option<&str>) -> JobRow {
        JobRow {
            state: state.into(),
            progress,
            error: error.map(String::from),
            role: "origin".into(),
            parent_id: Some("p".into()),
            ..JobRow::for_tests(panel, panel)
        }
    }

    #[test]
    fn the_parent_follows_its_children() {
        let queued = [child("a", "queued", 0.0, None), child("b", "queued", 0.0, None)];
        assert_eq!(aggregate(&queued), Aggregate::Waiting);
        let running = [child("a", "running", 0.5, None), child("b", "completed", 1.0, None)];
        assert_eq!(aggregate(&running), Aggregate::Running(0.75));
        let done = [child("a", "completed", 1.0, None), child("b", "completed", 1.0, None)];
        assert_eq!(aggregate(&done), Aggregate::Completed);
        let failed = [child("a", "completed", 1.0, None), child("b", "failed", 0.1, Some("input QC failed"))];
        assert_eq!(aggregate(&failed), Aggregate::Failed("b: input QC failed".into()));
        let cancelled = [child("a", "cancelled", 0.1, None), child("b", "cancelled", 0.0, None)];
        assert_eq!(aggregate(&cancelled), Aggregate::Cancelled);
    }
}
