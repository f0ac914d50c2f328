//! Splitting a chromosome into chunks that are phased and imputed on their own, as Michigan's
//! Imputation Server does: a fixed grid of cores (20 Mb by default), each run with flanks on
//! both sides so that the engines see context past its edges, then ligated back together (see
//! [`super::ligate`]).
//!
//! A chunk whose core holds too few of the input's sites, or whose input sites are mostly absent
//! from the panel, is left out with the reason in the QC report (Michigan's rule: fewer than 3
//! SNPs, or under 50% found in the panel).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// `[chunking]` in node.toml.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkingSection {
    /// Length of a chunk's core, in base pairs.
    pub size_bp: u64,
    /// Flank on each side of a core that phasing (and Beagle's imputation) sees.
    pub phasing_flank_bp: u64,
    /// Minimac4's `--overlap`: flank on each side of a core its HMM sees.
    pub minimac4_overlap_bp: u64,
    /// A chunk with fewer input sites than this in its core is left out.
    pub min_input_sites: u64,
    /// A chunk whose input sites are found in the panel less often than this is left out.
    pub min_panel_overlap: f64,
}

impl Default for ChunkingSection {
    fn default() -> Self {
        Self {
            size_bp: 20_000_000,
            phasing_flank_bp: 5_000_000,
            minimac4_overlap_bp: 500_000,
            min_input_sites: 3,
            min_panel_overlap: 0.5,
        }
    }
}

/// One chunk of a chromosome: its core `start..=end` (1-based) and what the input holds there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Chunk {
    pub chromosome: String,
    /// 1-based position of the chunk along the chromosome's grid.
    pub index: u32,
    pub start: u64,
    pub end: u64,
    /// Input sites in the core that passed QC.
    pub input_sites: u64,
    /// Share of the core's input SNPs found in the panel (1 when it has none to judge by).
    pub panel_overlap: f64,
    /// Why the chunk is not run, if it is not.
    pub excluded: Option<String>,
}

impl Chunk {
    /// A name unique in the job, safe in file names: `chr20.chunk3`.
    pub fn name(&self) -> String {
        format!("chr{}.chunk{}", self.chromosome.strip_prefix("chr").unwrap_or(&self.chromosome), self.index)
    }

    /// The core as a region (`20:1-20000000`).
    pub fn region(&self) -> String {
        format!("{}:{}-{}", self.chromosome, self.start, self.end)
    }

    /// The core widened by `flank` on each side (never below position 1).
    pub fn extended_region(&self, flank: u64) -> String {
        format!("{}:{}-{}", self.chromosome, self.start.saturating_sub(flank).max(1), self.end + flank)
    }

    pub fn contains(&self, pos: u64) -> bool {
        (self.start..=self.end).contains(&pos)
    }
}

/// Plans the chunks of `chromosome`: the grid of `size_bp` cores (aligned at position 1) that
/// covers the panel's sites from `panel_first` to `panel_last`, with the input's QC-passed
/// positions `kept` and the positions of its SNPs the panel lacks, `absent`, both sorted.
pub fn plan(
    chromosome: &str,
    (panel_first, panel_last): (u64, u64),
    kept: &[u64],
    absent: &[u64],
    settings: &ChunkingSection,
) -> Vec<Chunk> {
    let size = settings.size_bp.max(1);
    let count_in = |sorted: &[u64], start: u64, end: u64| {
        (sorted.partition_point(|&p| p <= end) - sorted.partition_point(|&p| p < start)) as u64
    };
    let mut chunks = Vec::new();
    let mut start = (panel_first.max(1) - 1) / size * size + 1;
    let mut index = 1 + (start - 1) / size;
    while start <= panel_last.max(panel_first) {
        let end = start + size - 1;
        let input_sites = count_in(kept, start, end);
        let missing = count_in(absent, start, end);
        let judged = input_sites + missing;
        let panel_overlap = if judged == 0 { 1.0 } else { input_sites as f64 / judged as f64 };
        let excluded = if input_sites < settings.min_input_sites {
            Some(format!(
                "{input_sites} input site(s) passed QC in this chunk, fewer than the {} a chunk needs",
                settings.min_input_sites
            ))
        } else if panel_overlap < settings.min_panel_overlap {
            Some(format!(
                "{:.0}% of the chunk's input SNPs are in the panel, under the {:.0}% a chunk needs",
                panel_overlap * 100.0,
                settings.min_panel_overlap * 100.0
            ))
        } else {
            None
        };
        chunks.push(Chunk {
            chromosome: chromosome.to_string(),
            index: index as u32,
            start,
            end,
            input_sites,
            panel_overlap,
            excluded,
        });
        start = end + 1;
        index += 1;
    }
    chunks
}

/// Calls `each` with the position of every record of a VCF, in file order.
fn for_each_position(vcf: &Path, mut each: impl FnMut(u64)) -> std::io::Result<()> {
    let (reader, _) = super::vcf_io::open_text(vcf)?;
    for line in reader.lines() {
        let line = line?;
        if line.starts_with('#') {
            continue;
        }
        if let Some(pos) = line.split('\t').nth(1).and_then(|p| p.parse().ok()) {
            each(pos);
        }
    }
    Ok(())
}

/// The positions of a VCF's records, in file order.
pub fn positions(vcf: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for_each_position(vcf, |pos| out.push(pos))?;
    Ok(out)
}

/// The first and last position of a VCF (its sites file, for a panel); `None` if it has none.
pub fn span(vcf: &Path) -> std::io::Result<Option<(u64, u64)>> {
    let mut span: Option<(u64, u64)> = None;
    for_each_position(vcf, |pos| span = Some(span.map_or((pos, pos), |(first, _)| (first, pos))))?;
    Ok(span)
}

/// Per chromosome, the positions that QC's `excluded.tsv` lists as absent from the panel, sorted.
pub fn absent_from_panel(excluded_tsv: &Path) -> std::io::Result<HashMap<String, Vec<u64>>> {
    let mut out: HashMap<String, Vec<u64>> = HashMap::new();
    let reader = std::io::BufReader::new(std::fs::File::open(excluded_tsv)?);
    for line in reader.lines().skip(1) {
        let line = line?;
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() >= 6
            && cols[5] == "not_in_panel"
            && let Ok(pos) = cols[2].parse()
        {
            out.entry(cols[1].to_string()).or_default().push(pos);
        }
    }
    for positions in out.values_mut() {
        positions.sort_unstable();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(size_bp: u64) -> ChunkingSection {
        ChunkingSection { size_bp, ..Default::default() }
    }

    #[test]
    fn cores_are_a_grid_from_position_one_covering_the_panel_without_gaps() {
        let kept: Vec<u64> = (0..40).map(|i| 30_000_100 + i * 50_000).collect();
        let chunks = plan("20", (30_000_034, 31_999_862), &kept, &[], &settings(500_000));
        let bounds: Vec<(u64, u64)> = chunks.iter().map(|c| (c.start, c.end)).collect();
        assert_eq!(
            bounds,
            vec![
                (30_000_001, 30_500_000),
                (30_500_001, 31_000_000),
                (31_000_001, 31_500_000),
                (31_500_001, 32_000_000)
            ]
        );
        assert_eq!(chunks.iter().map(|c| c.index).collect::<Vec<_>>(), vec![61, 62, 63, 64]);
        assert_eq!(chunks.iter().map(|c| c.input_sites).sum::<u64>(), 40);
        assert!(chunks.iter().all(|c| c.excluded.is_none()));
        assert_eq!(chunks[0].name(), "chr20.chunk61");
        assert_eq!(chunks[1].extended_region(100_000), "20:30400001-31100000");
        assert_eq!(chunks[0].region(), "20:30000001-30500000");
    }

    #[test]
    fn a_boundary_site_belongs_to_the_chunk_whose_core_ends_there() {
        let kept = [100, 200, 300, 1_000, 1_001, 1_002, 1_003];
        let chunks = plan("chr1", (1, 2_000), &kept, &[], &settings(1_000));
        assert_eq!(chunks.len(), 2);
        assert_eq!((chunks[0].input_sites, chunks[1].input_sites), (4, 3));
        assert_eq!(chunks[0].extended_region(5_000), "chr1:1-6000");
    }

    #[test]
    fn chunks_with_too_few_sites_or_too_little_panel_overlap_are_left_out_with_the_reason() {
        // Chunk 1: 2 sites. Chunk 2: 3 kept, 4 absent from the panel (43%). Chunk 3: fine.
        let kept = [10, 20, 1_100, 1_200, 1_300, 2_100, 2_200, 2_300];
        let absent = [1_400, 1_500, 1_600, 1_700];
        let chunks = plan("20", (1, 3_000), &kept, &absent, &settings(1_000));
        assert!(chunks[0].excluded.as_deref().unwrap().contains("2 input site(s)"), "{:?}", chunks[0]);
        assert!((chunks[1].panel_overlap - 3.0 / 7.0).abs() < 1e-12);
        assert!(chunks[1].excluded.as_deref().unwrap().contains("43% of the chunk's input SNPs"), "{:?}", chunks[1]);
        assert_eq!(chunks[2].excluded, None);
        assert_eq!(chunks[2].panel_overlap, 1.0);
    }

    #[test]
    fn a_panel_shorter_than_one_chunk_gives_one_chunk() {
        let chunks =
            plan("20", (30_000_034, 31_999_862), &[30_000_492, 30_100_000, 31_000_000], &[], &settings(20_000_000));
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].start, chunks[0].end, chunks[0].index), (20_000_001, 40_000_000, 2));
    }
}
