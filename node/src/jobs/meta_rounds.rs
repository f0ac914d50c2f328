//! Meta-imputation, as the origin runs it: a multi-panel job with `combine=meta` is a parent in
//! mode [`META_PARENT_MODE`] and two rounds of children, one per panel each.
//!
//! 1. `meta_phase`: each host phases the targets with its panel and returns the phased targets
//!    and Minimac4's leave-one-out (empirical) file of them.
//! 2. The origin scores each sample's fit to each panel from those files, gives each sample the
//!    phasing of its best panel, and sends that one composed file to every host
//!    ([`crate::imputation::combine::meta::phasing`]): the leave-one-out dosages are comparable
//!    across panels only on identical input.
//! 3. `meta_impute`: each host imputes the composed targets and returns the dose and empirical
//!    files; the origin combines them ([`crate::imputation::combine::meta`]).
//!
//! The second round's child ids derive from the first's, so a composition a restart interrupted
//! is simply done again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::JobsService;
use super::multi_panel::{Aggregate, aggregate, child_label};
use super::results::JobSummary;
use crate::imputation::combine::meta::phasing::{best_panels, compose, sample_fit};
use crate::imputation::combine::meta::{AbsentRule, MetaPanel, MetaReport, combine_chromosome};
use crate::store::jobs::{JobInput, JobParams, JobPlacement, JobRow, JobState, LIVE_STATES, TransitionUpdate};

/// The mode of a meta-imputation's parent (its children run [`fedimpute_protocol::jobs::META_MODES`]).
pub const META_PARENT_MODE: &str = "meta";

/// The files a round's child returned for one chromosome: the phased targets (first round) or
/// the dosages (second), and the empirical file.
type RoundFiles = BTreeMap<String, (PathBuf, PathBuf)>;

/// The id of the second-round child that imputes with the panel of first-round child `phase_id`.
fn imputing_child_id(phase_id: &str) -> String {
    let digest = Sha256::digest(format!("fedimpute meta_impute {phase_id}").as_bytes());
    hex::encode(&digest[..12])
}

/// How each child of a meta-imputation is named in reports: as the researcher named its panel.
/// A second-round child is pinned to the host of its first round, and named as that one.
pub fn round_labels(children: &[JobRow]) -> std::collections::HashMap<String, String> {
    let mut labels: std::collections::HashMap<String, String> =
        children.iter().map(|c| (c.id.clone(), child_label(c))).collect();
    for phase in children.iter().filter(|c| c.mode == fedimpute_protocol::jobs::META_MODES[0]) {
        let label = child_label(phase);
        if let Some(imputing) = labels.get_mut(&imputing_child_id(&phase.id)) {
            *imputing = label;
        }
    }
    labels
}

/// The sample names in a VCF's header.
async fn samples_in(path: &Path) -> Result<Vec<String>, String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || crate::imputation::panels::published::read_samples(&path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

impl JobsService {
    pub(super) async fn update_meta_parent(&self, parent: &JobRow, children: &[JobRow]) {
        let (phasing, imputing): (Vec<JobRow>, Vec<JobRow>) =
            children.iter().cloned().partition(|c| c.mode == fedimpute_protocol::jobs::META_MODES[0]);
        if imputing.is_empty() || imputing.len() < phasing.len() {
            match aggregate(&phasing) {
                Aggregate::Completed => self.compose_phasing(parent, &phasing).await,
                other => self.follow_round(parent, other, phasing.len(), "phasing", (0.0, 0.45)).await,
            }
        } else {
            match aggregate(&imputing) {
                Aggregate::Completed => self.merge(parent, children).await,
                other => self.follow_round(parent, other, imputing.len(), "imputing", (0.5, 0.45)).await,
            }
        }
    }

    async fn compose_phasing(&self, parent: &JobRow, phasing: &[JobRow]) {
        let update = TransitionUpdate {
            stage: Some("composing".into()),
            progress: Some(0.46),
            message: Some("giving each sample the phasing of the panel that fits it best".into()),
            ..Default::default()
        };
        if !matches!(self.transition(&parent.id, &LIVE_STATES, JobState::Running, update).await, Ok(true)) {
            return;
        }
        match self.start_imputing_round(parent, phasing).await {
            Ok(children) => {
                for child in &children {
                    if let Err(e) = self.enqueue(child).await {
                        tracing::error!(job = %child, error = %e, "could not queue a meta-imputation round");
                    }
                }
                let message = format!("{} panels impute the composed phasing", children.len());
                if let Ok(event) = self.store.job_progress(&parent.id, "imputing", 0.5, Some(&message)).await {
                    self.publish(event);
                }
            }
            Err(reason) => {
                let update = TransitionUpdate { error: Some(reason), ..Default::default() };
                self.end_parent(parent, JobState::Failed, update, json!({ "stage": "composing" })).await;
            }
        }
    }

    /// The files `child` (named `label` in messages) returned, per chromosome: `{chrom}{first}`
    /// and `{chrom}.empirical.vcf.gz`, each checked to hold exactly the submitted samples (a
    /// host returns nothing else).
    async fn round_files(
        &self,
        child: &JobRow,
        label: &str,
        first: &str,
        samples: &[String],
    ) -> Result<RoundFiles, String> {
        let names: Vec<String> =
            self.store.job_results(&child.id).await.map_err(|e| e.to_string())?.into_iter().map(|r| r.name).collect();
        let dir = self.results_dir(&child.id);
        let mut out = RoundFiles::new();
        for name in &names {
            let Some(chrom) = name.strip_suffix(".empirical.vcf.gz") else { continue };
            let first_name = format!("{chrom}{first}");
            if !names.contains(&first_name) {
                return Err(format!("{label} returned {name} without {first_name}"));
            }
            let pair = (dir.join(&first_name), dir.join(name));
            for path in [&pair.0, &pair.1] {
                let found = samples_in(path).await.map_err(|e| format!("{label}: {e}"))?;
                if found != samples {
                    return Err(format!(
                        "{label}'s results do not hold the submitted samples ({} samples, not {})",
                        found.len(),
                        samples.len()
                    ));
                }
            }
            out.insert(chrom.to_string(), pair);
        }
        if out.is_empty() {
            return Err(format!("{label} returned no meta-imputation files"));
        }
        Ok(out)
    }

    /// The samples the researcher submitted (every input holds the same ones).
    async fn submitted_samples(&self, parent: &JobRow) -> Result<Vec<String>, String> {
        samples_in(&self.files.input_path(&parent.id, 0)).await
    }

    /// The chromosomes of `rounds` every child returned, and those only some did.
    fn common_chromosomes(rounds: &[RoundFiles]) -> (Vec<String>, Vec<String>) {
        let all: std::collections::BTreeSet<&String> = rounds.iter().flat_map(|r| r.keys()).collect();
        all.into_iter().cloned().partition(|c| rounds.iter().all(|r| r.contains_key(c)))
    }

    /// Composes each chromosome's phasing from the first round and creates the second round's
    /// children (not yet queued); returns their ids.
    async fn start_imputing_round(&self, parent: &JobRow, phasing: &[JobRow]) -> Result<Vec<String>, String> {
        let samples = self.submitted_samples(parent).await?;
        let mut rounds = Vec::new();
        for child in phasing {
            rounds.push(self.round_files(child, &child_label(child), ".phased.vcf.gz", &samples).await?);
        }
        let (chromosomes, partial) = Self::common_chromosomes(&rounds);
        if chromosomes.is_empty() {
            return Err(format!("the panels phased no chromosome in common (only some had {})", partial.join(", ")));
        }
        let work = self.job_dir(&parent.id).join("meta");
        tokio::fs::create_dir_all(&work).await.map_err(|e| e.to_string())?;
        let labels: Vec<String> = phasing.iter().map(child_label).collect();
        let mut choices = format!(
            "chromosome\tsample\tphased_with\t{}\n",
            labels.iter().map(|l| format!("fit_{l}")).collect::<Vec<_>>().join("\t")
        );
        let mut composed = Vec::new();
        for chrom in &chromosomes {
            let phased: Vec<PathBuf> = rounds.iter().map(|r| r[chrom].0.clone()).collect();
            let empirical: Vec<PathBuf> = rounds.iter().map(|r| r[chrom].1.clone()).collect();
            let out = work.join(format!("{chrom}.composed.vcf.gz"));
            let to = out.clone();
            let (fit_samples, fit, choice) = tokio::task::spawn_blocking(move || {
                let empirical: Vec<&Path> = empirical.iter().map(PathBuf::as_path).collect();
                let phased: Vec<&Path> = phased.iter().map(PathBuf::as_path).collect();
                let (fit_samples, fit) = sample_fit(&empirical)?;
                let choice = best_panels(&fit);
                compose(&phased, &choice, &to)?;
                Ok::<_, crate::imputation::combine::meta::MetaError>((fit_samples, fit, choice))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("composing the phasing of {chrom}: {e}"))?;
            for ((sample, fit), panel) in fit_samples.iter().zip(&fit).zip(&choice) {
                let fit: Vec<String> = fit.iter().map(|f| format!("{f:.4}")).collect();
                choices.push_str(&format!("{chrom}\t{sample}\t{}\t{}\n", labels[*panel], fit.join("\t")));
            }
            composed.push((format!("{chrom}.composed.vcf.gz"), out));
        }
        tokio::fs::write(work.join("phasing.tsv"), choices).await.map_err(|e| e.to_string())?;
        let mut inputs = Vec::new();
        for (idx, (name, path)) in composed.iter().enumerate() {
            let file = crate::files::hash_file(path).await.map_err(|e| e.to_string())?;
            inputs.push(JobInput { idx: idx as i64, name: name.clone(), sha256: file.sha256, size: file.size as i64 });
        }
        let paths: Vec<PathBuf> = composed.into_iter().map(|(_, p)| p).collect();
        let mut created = Vec::new();
        for child in phasing {
            let id = imputing_child_id(&child.id);
            created.push(id.clone());
            if self.store.job(&id).await.map_err(|e| e.to_string())?.is_some() {
                continue;
            }
            // Inputs first, the row last: an interrupted round is made again from the start.
            self.files.adopt_inputs(&id, &paths).await.map_err(|e| e.to_string())?;
            let params = JobParams {
                name: format!("{} [{}, imputing]", parent.name, child_label(child)),
                panel_id: child.panel_id.clone(),
                build: parent.build.clone(),
                engine: "minimac4".into(),
                phasing: "no_phasing".into(),
                population: parent.population.clone(),
                r2_filter: 0.0,
                mode: fedimpute_protocol::jobs::META_MODES[1].into(),
            };
            // The same host as the first round: the panel that phased is the panel that imputes.
            let placement = JobPlacement {
                role: child.role(),
                pinned_host: child.peer.clone().or_else(|| child.pinned_host.clone()),
                parent_id: Some(parent.id.clone()),
                ..Default::default()
            };
            self.store
                .create_job(&id, parent.owner_id, &params, &inputs, &placement)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(created)
    }

    /// Combines the second round's results per chromosome into the parent's results; returns
    /// the completion message and the summary.
    pub(super) async fn write_meta(
        &self,
        parent: &JobRow,
        children: &[JobRow],
    ) -> Result<(String, JobSummary), String> {
        let names = round_labels(children);
        let imputing: Vec<JobRow> =
            children.iter().filter(|c| c.mode == fedimpute_protocol::jobs::META_MODES[1]).cloned().collect();
        let samples = self.submitted_samples(parent).await?;
        let mut rounds = Vec::new();
        for child in &imputing {
            rounds.push(self.round_files(child, &names[&child.id], ".dose.vcf.gz", &samples).await?);
        }
        let (chromosomes, _) = Self::common_chromosomes(&rounds);
        if chromosomes.is_empty() {
            return Err("the panels imputed no chromosome in common".into());
        }
        let results = self.results_dir(&parent.id);
        let _ = tokio::fs::remove_dir_all(&results).await;
        self.store.clear_job_results(&parent.id).await.map_err(|e| e.to_string())?;
        tokio::fs::create_dir_all(&results).await.map_err(|e| e.to_string())?;
        let labels: Vec<String> = imputing.iter().map(|c| names[&c.id].clone()).collect();
        let lines = self
            .multi_panel_provenance(parent, &imputing, &labels, &format!("meta-imputation of {} panels", labels.len()))
            .await;
        let work = self.job_dir(&parent.id).join("meta");
        tokio::fs::create_dir_all(&work).await.map_err(|e| e.to_string())?;
        let mut report = MetaReport::new(&labels.iter().map(String::as_str).collect::<Vec<_>>(), AbsentRule::Infer);
        let mut summary = JobSummary { r2_filter: parent.r2_filter, ..Default::default() };
        for chrom in &chromosomes {
            let files: Vec<(PathBuf, PathBuf)> = rounds.iter().map(|r| r[chrom].clone()).collect();
            let (labels, out, dir) = (labels.clone(), work.join(format!("{chrom}.meta.vcf.gz")), work.clone());
            let combined = out.clone();
            report = tokio::task::spawn_blocking(move || {
                let panels: Vec<MetaPanel<'_>> = labels
                    .iter()
                    .zip(&files)
                    .map(|(name, (dose, empirical))| MetaPanel { name, dose, empirical })
                    .collect();
                combine_chromosome(&panels, &dir, &combined, AbsentRule::Infer, &mut report).map(|()| report)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("combining {chrom}: {e}"))?;
            super::outputs::write_chromosome_results(
                self,
                &parent.id,
                &out,
                &format!("{chrom}.meta"),
                &results,
                parent.r2_filter,
                &lines,
                &mut summary,
            )
            .await
            .map_err(|e| e.0)?;
        }
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        for (file, text) in [("meta_report.json", json), ("meta_report.txt", report.text())] {
            tokio::fs::write(results.join(file), text).await.map_err(|e| e.to_string())?;
            self.record_result(&parent.id, &results.join(file)).await?;
        }
        // Which panel phased each sample, and every sample's fit to every panel.
        let phasing = results.join("meta_phasing.tsv");
        if tokio::fs::copy(work.join("phasing.tsv"), &phasing).await.is_ok() {
            self.record_result(&parent.id, &phasing).await?;
        }
        self.write_parent_summary(parent, &results, &summary).await?;
        let _ = tokio::fs::remove_dir_all(&work).await;
        let message = format!(
            "combined {} variants from {} panels by meta-imputation",
            report.chromosomes.iter().map(|c| c.variants).sum::<u64>(),
            labels.len()
        );
        Ok((message, summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_round_ids_are_fixed_by_the_first_and_differ_per_panel() {
        assert_eq!(imputing_child_id("a1"), imputing_child_id("a1"));
        assert_ne!(imputing_child_id("a1"), imputing_child_id("a2"));
        assert_eq!(imputing_child_id("a1").len(), 24, "as long as a random child id");
    }

    #[test]
    fn only_chromosomes_every_panel_returned_are_combined() {
        let round = |chroms: &[&str]| -> RoundFiles {
            chroms.iter().map(|c| (c.to_string(), (PathBuf::from("d"), PathBuf::from("e")))).collect()
        };
        let (common, partial) =
            JobsService::common_chromosomes(&[round(&["chr20", "chr21"]), round(&["chr21", "chr22"])]);
        assert_eq!(common, ["chr21"]);
        assert_eq!(partial, ["chr20", "chr22"]);
    }
}
