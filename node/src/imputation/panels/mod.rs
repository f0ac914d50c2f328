//! Reference panels hosted by this node: taken as published (indels, multi-allelic records, any
//! compression), made biallelic and indexed once, at registration, and converted into what the
//! engines read (bref3 for Beagle, msav for Minimac4), with a sites-only file for QC that holds
//! the panel's allele frequencies.
//!
//! Layout under `DATA_DIR/panels/<id>/`: `<chrom>.vcf.gz` (+ `.tbi`), `<chrom>.sites.vcf.gz`,
//! `<chrom>.bref3`, `<chrom>.msav`, and `map.txt` when a genetic map was given.

pub mod published;

use std::collections::HashSet;
use std::path::PathBuf;

use self::published::SamplePopulations;
use super::GenomeBuild;
use super::qc::{PanelSites, QcError};
use super::tools::{self, ToolError};
use crate::config::NodeConfig;
use crate::store::panels::PanelChromosome;
use crate::store::{Store, StoreError};
use crate::tool_args;

/// What an admin registers.
#[derive(Debug, Clone)]
pub struct PanelSpec {
    pub id: String,
    pub name: String,
    pub build: GenomeBuild,
    pub populations: Vec<String>,
    /// Which population each sample belongs to (`sample population` rows), for per-population
    /// allele frequencies.
    pub sample_populations: Option<PathBuf>,
    /// One phased VCF per chromosome, as published (plain, gzip or bgzip).
    pub vcfs: Vec<PathBuf>,
    /// A genetic map covering the panel's chromosomes: PLINK, SHAPEIT or Eagle, plain or gzipped.
    pub map: Option<PathBuf>,
}

/// A panel that could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Input(#[from] QcError),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("file error: {0}")]
    Io(#[from] std::io::Error),
}

/// Where a panel's files are.
#[derive(Debug, Clone)]
pub struct PanelFiles {
    pub dir: PathBuf,
}

impl PanelFiles {
    pub fn new(config: &NodeConfig, id: &str) -> Self {
        Self { dir: config.panels_dir().join(id) }
    }
    pub fn vcf(&self, chrom: &str) -> PathBuf {
        self.dir.join(format!("{chrom}.vcf.gz"))
    }
    pub fn sites(&self, chrom: &str) -> PathBuf {
        self.dir.join(format!("{chrom}.sites.vcf.gz"))
    }
    pub fn bref3(&self, chrom: &str) -> PathBuf {
        self.dir.join(format!("{chrom}.bref3"))
    }
    pub fn msav(&self, chrom: &str) -> PathBuf {
        self.dir.join(format!("{chrom}.msav"))
    }
    /// The PLINK map of `chrom` the engines read (converted at registration), or the single
    /// `map.txt` of a panel registered before maps were converted.
    pub fn map_for(&self, chrom: &str) -> PathBuf {
        let converted = self.converted_map(chrom);
        if converted.is_file() { converted } else { self.dir.join("map.txt") }
    }
    fn converted_map(&self, chrom: &str) -> PathBuf {
        self.dir.join(format!("map-{chrom}.txt"))
    }

    /// The sites files of `chromosomes`, for QC.
    pub fn panel_sites<'a>(&self, chromosomes: impl IntoIterator<Item = &'a str>) -> PanelSites {
        PanelSites {
            by_chromosome: chromosomes.into_iter().map(|c| (c.to_string(), self.sites(c))).collect(),
            population: None,
        }
    }
}

/// Checks a panel id: 1-64 of a-z 0-9 - _ . (it names a directory and appears in adverts).
pub fn check_panel_id(id: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    if id.is_empty() || id.len() > 64 || !id.chars().all(ok) || id.starts_with('.') {
        return Err(format!("panel id {id:?}: use 1-64 of a-z 0-9 - _ . (not starting with a dot)"));
    }
    Ok(())
}

/// Registers a panel: prepares every file, converts it for the engines and records it, with a
/// registration report per chromosome. `progress` hears each step. On failure nothing is left:
/// the record says `failed` with the reason and the panel's directory is removed.
pub async fn register(
    store: &Store,
    config: &NodeConfig,
    mut spec: PanelSpec,
    progress: impl Fn(&str),
) -> Result<Vec<PanelChromosome>, PanelError> {
    check_panel_id(&spec.id).map_err(PanelError::Invalid)?;
    if spec.vcfs.is_empty() {
        return Err(PanelError::Invalid("a panel needs at least one VCF".into()));
    }
    if let Some(map) = &spec.map
        && !map.is_file()
    {
        // Beagle stops with an unclear error on a missing map: say it here.
        return Err(PanelError::Invalid(format!("genetic map {} does not exist", map.display())));
    }
    let populations = match &spec.sample_populations {
        Some(path) => {
            let groups = SamplePopulations::read(path).map_err(PanelError::Invalid)?;
            let names = groups.names();
            if let Some(unknown) = spec.populations.iter().find(|p| !names.contains(p)) {
                return Err(PanelError::Invalid(format!(
                    "population {unknown} is not in {} (it has {})",
                    path.display(),
                    names.join(", ")
                )));
            }
            if spec.populations.is_empty() {
                spec.populations = names;
            }
            Some(groups)
        }
        None => None,
    };
    // A failed registration stays listed with its reason until retried under the same id.
    if store.panel(&spec.id).await?.is_some_and(|p| p.status == "failed") {
        store.delete_panel(&spec.id).await?;
    }
    store.insert_panel(&spec.id, &spec.name, spec.build.as_str(), &spec.populations, spec.map.is_some()).await?;
    let files = PanelFiles::new(config, &spec.id);
    let result = prepare(config, &spec, populations, &files, &progress).await;
    match result {
        Ok(chromosomes) => {
            store.panel_ready(&spec.id, &chromosomes).await?;
            Ok(chromosomes)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&files.dir);
            store.panel_failed(&spec.id, &e.to_string()).await?;
            Err(e)
        }
    }
}

async fn prepare(
    config: &NodeConfig,
    spec: &PanelSpec,
    populations: Option<SamplePopulations>,
    files: &PanelFiles,
    progress: &impl Fn(&str),
) -> Result<Vec<PanelChromosome>, PanelError> {
    // Headers first: a file with other samples is refused before any long pass.
    let mut first_samples: Option<Vec<String>> = None;
    for vcf in &spec.vcfs {
        let path = vcf.clone();
        let samples = tokio::task::spawn_blocking(move || published::read_samples(&path))
            .await
            .map_err(|e| PanelError::Invalid(e.to_string()))??;
        match &first_samples {
            None => first_samples = Some(samples),
            Some(first) if *first != samples => {
                return Err(PanelError::Invalid(format!(
                    "{} has different samples than {}",
                    vcf.display(),
                    spec.vcfs[0].display()
                )));
            }
            Some(_) => {}
        }
    }
    if let (Some(groups), Some(samples)) = (&populations, &first_samples) {
        let missing = samples.iter().filter(|s| !groups.by_sample.contains_key(*s)).count();
        if missing > 0 {
            return Err(PanelError::Invalid(format!(
                "{missing} of the panel's {} samples have no population in the sample-populations file",
                samples.len()
            )));
        }
    }
    std::fs::create_dir_all(&files.dir)?;
    let e = &config.engines;
    let populations = std::sync::Arc::new(populations);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, source) in spec.vcfs.iter().enumerate() {
        progress(&format!(
            "{}: checking, splitting multi-allelic records, counting allele frequencies",
            source.display()
        ));
        let (vcf_tmp, sites_tmp) =
            (files.dir.join(format!(".incoming-{i}.vcf.gz")), files.dir.join(format!(".incoming-{i}.sites.vcf.gz")));
        let (src, build, bcftools, groups) = (source.clone(), spec.build, e.bcftools.clone(), populations.clone());
        let (vcf_out, sites_out) = (vcf_tmp.clone(), sites_tmp.clone());
        let prepared = tokio::task::spawn_blocking(move || {
            published::prepare_file(&src, build, &bcftools, groups.as_ref().as_ref(), &vcf_out, &sites_out)
        })
        .await
        .map_err(|e| PanelError::Invalid(e.to_string()))??;
        let chrom = prepared.chromosome.clone();
        if !seen.insert(chrom.clone()) {
            return Err(PanelError::Invalid(format!("two files hold chromosome {chrom}")));
        }
        progress(&format!("{chrom}: {}", prepared.report.summary()));
        let vcf = files.vcf(&chrom);
        std::fs::rename(&vcf_tmp, &vcf)?;
        std::fs::rename(&sites_tmp, files.sites(&chrom))?;
        progress(&format!("{chrom}: indexing"));
        tools::run(&e.tabix, &tool_args!("-f", "-p", "vcf", vcf.as_os_str()), None).await?;
        progress(&format!("{chrom}: converting to bref3 for Beagle"));
        tools::run(&e.java, &tool_args!("-jar", e.bref3_jar.as_os_str(), vcf.as_os_str()), Some(&files.bref3(&chrom)))
            .await?;
        progress(&format!("{chrom}: converting to msav for Minimac4"));
        tools::run(&e.minimac4, &tool_args!("--compress-reference", vcf.as_os_str()), Some(&files.msav(&chrom)))
            .await?;
        for made in [files.sites(&chrom), files.bref3(&chrom), files.msav(&chrom)] {
            if std::fs::metadata(&made).map(|m| m.len()).unwrap_or(0) == 0 {
                return Err(PanelError::Invalid(format!("{} came out empty", made.display())));
            }
        }
        out.push(PanelChromosome {
            chromosome: chrom,
            samples: prepared.samples.len() as i64,
            sites: prepared.report.sites as i64,
            report: serde_json::to_string(&prepared.report).ok(),
        });
    }
    if let Some(map) = &spec.map {
        progress(&format!("{}: checking and converting the genetic map", map.display()));
        let names: Vec<String> = out.iter().map(|c| c.chromosome.clone()).collect();
        let (source, target) = (map.clone(), files.clone());
        let summary = tokio::task::spawn_blocking(move || {
            crate::imputation::genetic_map::convert(&source, &names, |c| target.converted_map(c))
        })
        .await
        .map_err(|e| PanelError::Invalid(e.to_string()))?
        .map_err(PanelError::Invalid)?;
        let counts: Vec<String> = summary.chromosomes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        progress(&format!("genetic map ({:?} format) positions per chromosome: {}", summary.format, counts.join(", ")));
    }
    Ok(out)
}

/// Removes a panel and its files.
pub async fn remove(store: &Store, config: &NodeConfig, id: &str) -> Result<(), PanelError> {
    check_panel_id(id).map_err(PanelError::Invalid)?;
    store.delete_panel(id).await?;
    let dir = PanelFiles::new(config, id).dir;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}
