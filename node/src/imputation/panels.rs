//! Reference panels hosted by this node: validated, indexed and converted once, at registration,
//! into what the engines read (bref3 for Beagle, msav for Minimac4) and a sites-only file for QC.
//!
//! Layout under `DATA_DIR/panels/<id>/`: `<chrom>.vcf.gz` (+ `.tbi`), `<chrom>.sites.vcf.gz`,
//! `<chrom>.bref3`, `<chrom>.msav`, and `map.txt` when a genetic map was given.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use noodles::vcf;

use super::GenomeBuild;
use super::qc::{InputFile, PanelSites, QcError, check_bgzf, is_base, refuse};
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
    /// One bgzipped, phased VCF per chromosome.
    pub vcfs: Vec<PathBuf>,
    /// A PLINK genetic map covering the panel's chromosomes.
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
    pub fn map(&self) -> PathBuf {
        self.dir.join("map.txt")
    }

    /// The sites files of `chromosomes`, for QC.
    pub fn panel_sites<'a>(&self, chromosomes: impl IntoIterator<Item = &'a str>) -> PanelSites {
        PanelSites { by_chromosome: chromosomes.into_iter().map(|c| (c.to_string(), self.sites(c))).collect() }
    }
}

/// A validated panel file.
#[derive(Debug)]
struct ValidatedFile {
    chromosome: String,
    samples: Vec<String>,
    sites: u64,
}

/// Checks one panel file in a streaming pass: bgzipped, one chromosome named for the build,
/// sorted, biallelic SNPs only, every genotype phased and called.
fn validate_file(path: &Path, build: GenomeBuild) -> Result<ValidatedFile, QcError> {
    let input = InputFile { path: path.to_path_buf(), name: path.display().to_string() };
    check_bgzf(&input)?;
    let mut reader = vcf::io::reader::Builder::default()
        .set_compression_method(vcf::io::CompressionMethod::Bgzf)
        .build_from_path(path)?;
    let header = reader.read_header().map_err(|e| refuse(&input, None, format!("header does not parse: {e}")))?;
    let samples: Vec<String> = header.sample_names().iter().cloned().collect();
    if samples.is_empty() {
        return Err(refuse(&input, None, "has no samples: a reference panel needs haplotypes"));
    }
    let mut record = vcf::Record::default();
    let (mut chromosome, mut last_pos, mut sites) = (None::<String>, 0usize, 0u64);
    loop {
        if reader
            .read_record(&mut record)
            .map_err(|e| refuse(&input, None, format!("record {} does not parse: {e}", sites + 1)))?
            == 0
        {
            break;
        }
        sites += 1;
        let at = format!("record {sites}");
        let chrom = record.reference_sequence_name();
        match &chromosome {
            None => {
                build.check_chromosome(chrom).map_err(|m| refuse(&input, None, format!("{at}: {m}")))?;
                chromosome = Some(chrom.to_string());
            }
            Some(c) if c != chrom => {
                return Err(refuse(
                    &input,
                    None,
                    format!("{at}: a second chromosome ({chrom} after {c}); give one file per chromosome"),
                ));
            }
            _ => {}
        }
        let pos = match record.variant_start() {
            Some(Ok(p)) => usize::from(p),
            _ => return Err(refuse(&input, None, format!("{at}: no valid position"))),
        };
        if pos < last_pos {
            return Err(refuse(&input, None, format!("{at}: not sorted ({pos} after {last_pos})")));
        }
        last_pos = pos;
        let alternate = record.alternate_bases();
        let alt: &str = alternate.as_ref();
        if !is_base(record.reference_bases()) || !is_base(alt) {
            return Err(refuse(
                &input,
                None,
                format!("{at} ({chrom}:{pos}): not a biallelic SNP; keep only those (`bcftools view -m2 -M2 -v snps`)"),
            ));
        }
        for sample in record.samples().iter() {
            let raw: &str = sample.as_ref();
            let gt = raw.split(':').next().unwrap_or("");
            if gt.contains('/') || gt.contains('.') {
                return Err(refuse(
                    &input,
                    None,
                    format!(
                        "{at} ({chrom}:{pos}): genotype {gt:?} is unphased or missing; a panel must be phased and complete"
                    ),
                ));
            }
        }
    }
    let chromosome = chromosome.ok_or_else(|| refuse(&input, None, "has no variants"))?;
    Ok(ValidatedFile { chromosome, samples, sites })
}

/// Checks a panel id: 1-64 of a-z 0-9 - _ . (it names a directory and appears in adverts).
pub fn check_panel_id(id: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    if id.is_empty() || id.len() > 64 || !id.chars().all(ok) || id.starts_with('.') {
        return Err(format!("panel id {id:?}: use 1-64 of a-z 0-9 - _ . (not starting with a dot)"));
    }
    Ok(())
}

/// Links `from` to `to` (same file system, and `from` already private: a link shares its mode)
/// or makes a private copy.
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let private = std::fs::metadata(from)?.permissions().mode() & 0o077 == 0;
    if !private || std::fs::hard_link(from, to).is_err() {
        crate::at_rest::private_copy(from, to)?;
    }
    Ok(())
}

/// Registers a panel: validates every file, prepares the engines' formats and records it.
/// `progress` hears each step. On failure nothing is left: the record says `failed` with the
/// reason and the panel's directory is removed.
pub async fn register(
    store: &Store,
    config: &NodeConfig,
    spec: PanelSpec,
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
    // A failed registration stays listed with its reason until retried under the same id.
    if store.panel(&spec.id).await?.is_some_and(|p| p.status == "failed") {
        store.delete_panel(&spec.id).await?;
    }
    store.insert_panel(&spec.id, &spec.name, spec.build.as_str(), &spec.populations, spec.map.is_some()).await?;
    let files = PanelFiles::new(config, &spec.id);
    let result = prepare(config, &spec, &files, &progress).await;
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
    files: &PanelFiles,
    progress: &impl Fn(&str),
) -> Result<Vec<PanelChromosome>, PanelError> {
    let mut validated = Vec::new();
    let mut chromosomes = HashSet::new();
    for vcf in &spec.vcfs {
        progress(&format!("validating {}", vcf.display()));
        let (path, build) = (vcf.clone(), spec.build);
        let v = tokio::task::spawn_blocking(move || validate_file(&path, build))
            .await
            .map_err(|e| PanelError::Invalid(e.to_string()))??;
        if !chromosomes.insert(v.chromosome.clone()) {
            return Err(PanelError::Invalid(format!("two files hold chromosome {}", v.chromosome)));
        }
        if let Some((_, first)) = validated.first() {
            let first: &ValidatedFile = first;
            if first.samples != v.samples {
                return Err(PanelError::Invalid(format!(
                    "{} has different samples than {}",
                    vcf.display(),
                    spec.vcfs[0].display()
                )));
            }
        }
        validated.push((vcf.clone(), v));
    }
    std::fs::create_dir_all(&files.dir)?;
    if let Some(map) = &spec.map {
        crate::at_rest::private_copy(map, &files.map())?;
    }
    let e = &config.engines;
    let mut out = Vec::new();
    for (source, v) in validated {
        let chrom = &v.chromosome;
        let vcf = files.vcf(chrom);
        link_or_copy(&source, &vcf)?;
        progress(&format!("{chrom}: indexing"));
        tools::run(&e.tabix, &tool_args!("-f", "-p", "vcf", vcf.as_os_str()), None).await?;
        progress(&format!("{chrom}: writing the sites-only file for QC"));
        let sites = files.sites(chrom);
        tools::run(&e.bcftools, &tool_args!("view", "-G", "-Oz", "-o", sites.as_os_str(), vcf.as_os_str()), None)
            .await?;
        progress(&format!("{chrom}: converting to bref3 for Beagle"));
        tools::run(&e.java, &tool_args!("-jar", e.bref3_jar.as_os_str(), vcf.as_os_str()), Some(&files.bref3(chrom)))
            .await?;
        progress(&format!("{chrom}: converting to msav for Minimac4"));
        tools::run(&e.minimac4, &tool_args!("--compress-reference", vcf.as_os_str()), Some(&files.msav(chrom))).await?;
        for made in [files.sites(chrom), files.bref3(chrom), files.msav(chrom)] {
            if std::fs::metadata(&made).map(|m| m.len()).unwrap_or(0) == 0 {
                return Err(PanelError::Invalid(format!("{} came out empty", made.display())));
            }
        }
        out.push(PanelChromosome { chromosome: chrom.clone(), samples: v.samples.len() as i64, sites: v.sites as i64 });
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
