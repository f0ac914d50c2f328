//! Ligation: the chunks of one chromosome, each imputed with flanks, back into one VCF.
//!
//! Every record comes from the chunk whose core holds its position, so no site is written twice
//! or lost. Chunks are phased on their own, so a sample's two haplotypes may come out swapped
//! from one chunk to the next; as `bcftools concat --ligate` does, the phase of each chunk is
//! matched to the one before it at the heterozygous sites both phased in their shared flank,
//! and where most of a sample's sites disagree, its haplotypes (GT, HDS, AP1/AP2) are swapped
//! in that chunk and the ones after it. Memory holds one record per input and a count per
//! sample, whatever the number of sites.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use super::chunks::Chunk;
use super::vcf_io::{BgzfWriter, Effort, open_text};

/// Why ligation failed.
#[derive(Debug, thiserror::Error)]
pub enum LigateError {
    #[error("ligation I/O on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("chunk outputs to ligate differ in their samples ({0})")]
    SamplesDiffer(String),
    #[error("{0} holds a record at {1} before the previous chunk's last one: chunks out of order")]
    OutOfOrder(String, u64),
    #[error("nothing to ligate")]
    Empty,
}

/// One chunk's engine output and the phased file its haplotypes were taken from (for Beagle,
/// the output itself; for Minimac4, the phased input it imputed from).
pub struct LigationPart {
    pub chunk: Chunk,
    pub records: PathBuf,
    pub phase_reference: PathBuf,
}

/// What ligation did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ligated {
    /// Records written from each part.
    pub records: Vec<u64>,
    /// Per boundary (between part k-1 and k), the samples whose phase was swapped there.
    pub swapped_at_boundary: Vec<usize>,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> LigateError + '_ {
    move |source| LigateError::Io { path: path.display().to_string(), source }
}

/// Ligates `parts` (in chromosome order) into a bgzipped VCF at `out`.
pub fn ligate(parts: &[LigationPart], out: &Path) -> Result<Ligated, LigateError> {
    let first = parts.first().ok_or(LigateError::Empty)?;
    let samples = sample_line(&first.records)?;
    for part in &parts[1..] {
        if sample_line(&part.records)? != samples {
            return Err(LigateError::SamplesDiffer(part.records.display().to_string()));
        }
    }
    let n = samples.split('\t').count().saturating_sub(9);
    let mut flips = vec![vec![false; n]];
    let mut ligated = Ligated::default();
    for pair in parts.windows(2) {
        let relative = phase_disagreements(&pair[0].phase_reference, &pair[1].phase_reference, n)?;
        let previous = flips.last().cloned().unwrap_or_default();
        ligated.swapped_at_boundary.push(relative.iter().filter(|&&r| r).count());
        flips.push(previous.iter().zip(&relative).map(|(p, r)| p ^ r).collect());
    }

    let mut writer = BgzfWriter::create(out, Effort::Fast).map_err(io_err(out))?;
    let mut last_pos = 0;
    for (k, (part, flip)) in parts.iter().zip(&flips).enumerate() {
        let path = &part.records;
        let (reader, _) = open_text(path).map_err(io_err(path))?;
        let mut written = 0;
        for line in reader.lines() {
            let line = line.map_err(io_err(path))?;
            if line.starts_with('#') {
                if k == 0 {
                    writeln!(writer, "{line}").map_err(io_err(out))?;
                }
                continue;
            }
            let Some(pos) = line.split('\t').nth(1).and_then(|p| p.parse::<u64>().ok()) else { continue };
            if !part.chunk.contains(pos) {
                continue;
            }
            if pos < last_pos {
                return Err(LigateError::OutOfOrder(path.display().to_string(), pos));
            }
            last_pos = pos;
            if flip.iter().any(|&f| f) {
                writeln!(writer, "{}", swap_haplotypes(&line, flip)).map_err(io_err(out))?;
            } else {
                writeln!(writer, "{line}").map_err(io_err(out))?;
            }
            written += 1;
        }
        ligated.records.push(written);
    }
    writer.finish().map_err(io_err(out))?;
    Ok(ligated)
}

fn sample_line(path: &Path) -> Result<String, LigateError> {
    let (reader, _) = open_text(path).map_err(io_err(path))?;
    for line in reader.lines() {
        let line = line.map_err(io_err(path))?;
        if line.starts_with("#CHROM") {
            return Ok(line);
        }
        if !line.starts_with('#') {
            break;
        }
    }
    Err(LigateError::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no #CHROM line"),
    })
}

/// A record's key and its samples' phased GTs, as read for phase matching.
struct Phased {
    pos: u64,
    key: String,
    line: String,
}

impl Phased {
    fn parse(line: String) -> Option<Self> {
        let mut cols = line.splitn(6, '\t');
        let _chrom = cols.next()?;
        let pos = cols.next()?.parse().ok()?;
        let _id = cols.next()?;
        let key = format!("{}\t{}", cols.next()?, cols.next()?);
        Some(Phased { pos, key, line })
    }

    /// The GT of every sample as (first, second) allele if phased and heterozygous.
    fn phased_hets(&self) -> Vec<Option<(&str, &str)>> {
        let cols: Vec<&str> = self.line.split('\t').collect();
        let gt_index = cols.get(8).and_then(|f| f.split(':').position(|k| k == "GT"));
        cols.iter()
            .skip(9)
            .map(|sample| {
                let gt = sample.split(':').nth(gt_index?)?;
                let (a, b) = gt.split_once('|')?;
                (a != b && a != "." && b != ".").then_some((a, b))
            })
            .collect()
    }
}

struct Records {
    lines: std::io::Lines<Box<dyn BufRead + Send>>,
    path: PathBuf,
}

impl Records {
    fn open(path: &Path) -> Result<Self, LigateError> {
        let (reader, _) = open_text(path).map_err(io_err(path))?;
        Ok(Records { lines: reader.lines(), path: path.to_path_buf() })
    }

    fn next_record(&mut self) -> Result<Option<Phased>, LigateError> {
        for line in self.lines.by_ref() {
            let line = line.map_err(io_err(&self.path))?;
            if line.starts_with('#') {
                continue;
            }
            if let Some(record) = Phased::parse(line) {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }
}

/// Per sample, whether `later`'s phase is the opposite of `earlier`'s at most of the
/// heterozygous sites both phased (ties and samples with no such site keep their phase).
fn phase_disagreements(earlier: &Path, later: &Path, samples: usize) -> Result<Vec<bool>, LigateError> {
    let (mut agree, mut disagree) = (vec![0u32; samples], vec![0u32; samples]);
    let (mut a, mut b) = (Records::open(earlier)?, Records::open(later)?);
    let (mut ra, mut rb) = (a.next_record()?, b.next_record()?);
    while let (Some(x), Some(y)) = (&ra, &rb) {
        if x.pos < y.pos {
            ra = a.next_record()?;
        } else if y.pos < x.pos {
            rb = b.next_record()?;
        } else {
            if x.key == y.key {
                for (s, (hx, hy)) in x.phased_hets().into_iter().zip(y.phased_hets()).enumerate().take(samples) {
                    if let (Some(hx), Some(hy)) = (hx, hy) {
                        if hx == hy {
                            agree[s] += 1;
                        } else if (hx.1, hx.0) == hy {
                            disagree[s] += 1;
                        }
                    }
                }
            }
            ra = a.next_record()?;
            rb = b.next_record()?;
        }
    }
    Ok(agree.iter().zip(&disagree).map(|(a, d)| d > a).collect())
}

/// `line` with the two haplotypes of each sample marked in `flip` swapped.
fn swap_haplotypes(line: &str, flip: &[bool]) -> String {
    let cols: Vec<&str> = line.split('\t').collect();
    let Some(format) = cols.get(8) else { return line.to_string() };
    let keys: Vec<&str> = format.split(':').collect();
    let (ap1, ap2) = (keys.iter().position(|k| *k == "AP1"), keys.iter().position(|k| *k == "AP2"));
    let mut out: Vec<String> = cols[..9.min(cols.len())].iter().map(|c| c.to_string()).collect();
    for (s, sample) in cols.iter().skip(9).enumerate() {
        if !flip.get(s).copied().unwrap_or(false) {
            out.push(sample.to_string());
            continue;
        }
        let mut fields: Vec<String> = sample.split(':').map(String::from).collect();
        for (i, key) in keys.iter().enumerate() {
            let Some(value) = fields.get_mut(i) else { break };
            match *key {
                "GT" => {
                    if let Some((a, b)) = value.split_once('|') {
                        *value = format!("{b}|{a}");
                    }
                }
                "HDS" => {
                    if let Some((a, b)) = value.split_once(',') {
                        *value = format!("{b},{a}");
                    }
                }
                _ => {}
            }
        }
        if let (Some(i), Some(j)) = (ap1, ap2)
            && i < fields.len()
            && j < fields.len()
        {
            fields.swap(i, j);
        }
        out.push(fields.join(":"));
    }
    out.join("\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\n";

    fn chunk(index: u32, start: u64, end: u64) -> Chunk {
        Chunk { chromosome: "20".into(), index, start, end, input_sites: 10, panel_overlap: 1.0, excluded: None }
    }

    fn vcf(dir: &Path, name: &str, rows: &[(u64, &str, &str)]) -> PathBuf {
        let path = dir.join(name);
        let mut text = HEADER.to_string();
        for (pos, s1, s2) in rows {
            text += &format!("20\t{pos}\t.\tA\tG\t.\tPASS\t.\tGT:DS:HDS\t{s1}\t{s2}\n");
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    fn body(path: &Path) -> Vec<String> {
        let (reader, _) = open_text(path).unwrap();
        reader.lines().map(|l| l.unwrap()).filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn each_site_comes_once_from_the_chunk_whose_core_holds_it_and_swapped_phase_is_matched() {
        let dir = tempfile::tempdir().unwrap();
        // Chunk 1 core 1-100 (flank to 150); chunk 2 core 101-200 (flank from 51).
        let a = vcf(
            dir.path(),
            "a.vcf",
            &[
                (10, "0|1:1:0,1", "0|0:0:0,0"),
                (60, "0|1:1:0.1,0.9", "1|0:1:1,0"),
                (100, "1|0:1:1,0", "0|1:1:0,1"),
                (120, "0|1:1:0,1", "1|0:1:1,0"),
                (140, "1|1:2:1,1", "0|1:1:0,1"),
            ],
        );
        // Chunk 2 phased S1 the other way round, S2 the same way.
        let b = vcf(
            dir.path(),
            "b.vcf",
            &[
                (60, "1|0:1:0.9,0.1", "1|0:1:1,0"),
                (100, "0|1:1:0,1", "0|1:1:0,1"),
                (120, "1|0:1:1,0", "1|0:1:1,0"),
                (140, "1|1:2:1,1", "0|1:1:0,1"),
                (150, "1|0:1:0.8,0.2", "0|1:1:0,1"),
                (190, "0|1:1:0,1", "0|0:0:0,0"),
            ],
        );
        let parts = vec![
            LigationPart { chunk: chunk(1, 1, 100), records: a.clone(), phase_reference: a },
            LigationPart { chunk: chunk(2, 101, 200), records: b.clone(), phase_reference: b },
        ];
        let out = dir.path().join("out.vcf.gz");
        let ligated = ligate(&parts, &out).unwrap();
        assert_eq!(ligated.records, vec![3, 4]);
        assert_eq!(ligated.swapped_at_boundary, vec![1]);
        let rows = body(&out);
        let positions: Vec<&str> = rows.iter().map(|r| r.split('\t').nth(1).unwrap()).collect();
        assert_eq!(positions, ["10", "60", "100", "120", "140", "150", "190"]);
        // Chunk 1's records as they were; chunk 2's with S1 swapped back, S2 untouched.
        assert!(rows[1].ends_with("0|1:1:0.1,0.9\t1|0:1:1,0"), "{}", rows[1]);
        assert!(rows[3].ends_with("0|1:1:0,1\t1|0:1:1,0"), "{}", rows[3]);
        assert!(rows[5].ends_with("0|1:1:0.2,0.8\t0|1:1:0,1"), "{}", rows[5]);
        assert!(rows[6].ends_with("1|0:1:1,0\t0|0:0:0,0"), "{}", rows[6]);
    }

    #[test]
    fn a_swap_carries_on_into_later_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let a = vcf(dir.path(), "a.vcf", &[(50, "0|1:1:0,1", "0|1:1:0,1"), (110, "0|1:1:0,1", "0|1:1:0,1")]);
        let b = vcf(
            dir.path(),
            "b.vcf",
            &[(110, "1|0:1:1,0", "0|1:1:0,1"), (150, "1|0:1:1,0", "0|1:1:0,1"), (210, "1|0:1:1,0", "0|1:1:0,1")],
        );
        // Chunk 3 agrees with chunk 2 as chunk 2 was phased, so S1 stays swapped there too.
        let c = vcf(dir.path(), "c.vcf", &[(210, "1|0:1:1,0", "0|1:1:0,1"), (250, "1|0:1:1,0", "1|0:1:1,0")]);
        let parts: Vec<LigationPart> = [(a, 1, 1, 100), (b, 2, 101, 200), (c, 3, 201, 300)]
            .into_iter()
            .map(|(p, i, s, e)| LigationPart { chunk: chunk(i, s, e), records: p.clone(), phase_reference: p })
            .collect();
        let out = dir.path().join("out.vcf.gz");
        let ligated = ligate(&parts, &out).unwrap();
        assert_eq!(ligated.swapped_at_boundary, vec![1, 0]);
        let rows = body(&out);
        assert!(rows.last().unwrap().ends_with("0|1:1:0,1\t1|0:1:1,0"), "{rows:?}");
    }

    #[test]
    fn parts_with_different_samples_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = vcf(dir.path(), "a.vcf", &[(50, "0|1:1:0,1", "0|1:1:0,1")]);
        let b = dir.path().join("b.vcf");
        std::fs::write(&b, HEADER.replace("S2", "S3")).unwrap();
        let parts = vec![
            LigationPart { chunk: chunk(1, 1, 100), records: a.clone(), phase_reference: a },
            LigationPart { chunk: chunk(2, 101, 200), records: b.clone(), phase_reference: b },
        ];
        assert!(matches!(ligate(&parts, &dir.path().join("o.vcf.gz")), Err(LigateError::SamplesDiffer(_))));
    }

    #[test]
    fn ap1_and_ap2_swap_with_the_haplotypes() {
        let line = "20\t5\t.\tA\tG\t.\tPASS\t.\tGT:DS:AP1:AP2\t0|1:0.9:0.1:0.8\t1|0:1:1:0";
        assert_eq!(
            swap_haplotypes(line, &[true, false]),
            "20\t5\t.\tA\tG\t.\tPASS\t.\tGT:DS:AP1:AP2\t1|0:0.9:0.8:0.1\t1|0:1:1:0"
        );
    }
}
