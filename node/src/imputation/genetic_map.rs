//! Genetic maps in the formats people have, converted to what the engines read.
//!
//! Accepted, plain or gzipped, told apart by their first line:
//! - PLINK `.map` (what Beagle ships): `chr id cM pos`, no header;
//! - SHAPEIT4 (`chr20.b37.gmap.gz`, Debian's `shapeit4-example`): header `pos chr cM`;
//! - Eagle (`genetic_map_hg19_withX.txt.gz`): header `chr position COMBINED_rate(cM/Mb)
//!   Genetic_Map(cM)`, all chromosomes in one file, X as 23.
//!
//! Each is validated (positions and cM increasing within a chromosome, every panel chromosome
//! present with at least two positions) and written as one PLINK map per panel chromosome,
//! named as the panel names it: Beagle reads PLINK maps, and so does Minimac4 (a four-column
//! map without header; checked against minimac 4.1.2, which gives the same output for it as
//! for its own three-column format).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::vcf_io;

/// The layout of a map file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MapFormat {
    Plink,
    Shapeit,
    Eagle,
}

/// What a conversion read.
#[derive(Debug, Clone, PartialEq)]
pub struct MapSummary {
    pub format: MapFormat,
    /// Panel chromosome and the positions the map has on it.
    pub chromosomes: Vec<(String, u64)>,
}

/// The bare name of a chromosome: `chr20` and `20` are `20`, Eagle's `23` is `X`.
fn bare(chrom: &str) -> &str {
    let b = chrom.strip_prefix("chr").unwrap_or(chrom);
    if b == "23" { "X" } else { b }
}

/// Reads `source` and writes a PLINK map per chromosome of `chromosomes` to `out(chromosome)`.
pub fn convert(source: &Path, chromosomes: &[String], out: impl Fn(&str) -> PathBuf) -> Result<MapSummary, String> {
    use std::io::BufRead;
    let shown = source.display().to_string();
    let (reader, _) = vcf_io::open_text(source).map_err(|e| format!("genetic map {shown}: {e}"))?;
    let wanted: HashMap<&str, &String> = chromosomes.iter().map(|c| (bare(c), c)).collect();
    let mut writers: HashMap<String, (std::io::BufWriter<std::fs::File>, u64, f64, u64)> = HashMap::new();
    let mut format = None;
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("genetic map {shown}, line {}: {e}", n + 1))?;
        let at = |what: &str| format!("genetic map {shown}, line {}: {what}", n + 1);
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.is_empty() || cols[0].starts_with('#') {
            continue;
        }
        let found = match format {
            Some(f) => f,
            None => {
                let f = if cols.len() == 4 && cols[2].starts_with("COMBINED_rate") {
                    MapFormat::Eagle
                } else if cols == ["pos", "chr", "cM"] {
                    MapFormat::Shapeit
                } else if cols.len() == 4 {
                    MapFormat::Plink
                } else {
                    return Err(at(
                        "not a genetic map this node reads: use PLINK (chr id cM pos), SHAPEIT (pos chr cM) or Eagle (chr position COMBINED_rate(cM/Mb) Genetic_Map(cM))",
                    ));
                };
                format = Some(f);
                if f != MapFormat::Plink {
                    continue;
                }
                f
            }
        };
        let (chrom, pos, cm) = match (found, cols.as_slice()) {
            (MapFormat::Plink, [c, _, cm, pos]) => (*c, *pos, *cm),
            (MapFormat::Shapeit, [pos, c, cm]) => (*c, *pos, *cm),
            (MapFormat::Eagle, [c, pos, _, cm]) => (*c, *pos, *cm),
            _ => return Err(at(&format!("expected {} columns", if found == MapFormat::Shapeit { 3 } else { 4 }))),
        };
        let Some(panel_chrom) = wanted.get(bare(chrom)) else { continue };
        let pos: u64 = pos.parse().map_err(|_| at(&format!("{pos:?} is not a position")))?;
        let cm: f64 = cm.parse().map_err(|_| at(&format!("{cm:?} is not a genetic position in cM")))?;
        if !cm.is_finite() || cm < 0.0 {
            return Err(at(&format!("{cm} is not a genetic position in cM")));
        }
        let entry = match writers.get_mut(panel_chrom.as_str()) {
            Some(e) => e,
            None => {
                let path = out(panel_chrom);
                let file = std::fs::File::create(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                writers.entry(panel_chrom.to_string()).or_insert((std::io::BufWriter::new(file), 0, 0.0, 0))
            }
        };
        let (writer, last_pos, last_cm, rows) = entry;
        if *rows > 0 && (pos <= *last_pos || cm < *last_cm) {
            return Err(at(&format!(
                "not sorted: {chrom}:{pos} at {cm} cM after {last_pos} at {last_cm} cM (positions and cM must increase)"
            )));
        }
        writeln!(writer, "{panel_chrom}\t.\t{cm}\t{pos}").map_err(|e| format!("cannot write the map: {e}"))?;
        (*last_pos, *last_cm, *rows) = (pos, cm, *rows + 1);
    }
    let format = format.ok_or_else(|| format!("genetic map {shown} is empty"))?;
    let mut summary = MapSummary { format, chromosomes: Vec::new() };
    for chrom in chromosomes {
        let rows = writers.get(chrom.as_str()).map(|e| e.3).unwrap_or(0);
        if rows < 2 {
            return Err(format!(
                "genetic map {shown} has {rows} position(s) on chromosome {chrom}; it needs the panel's every chromosome"
            ));
        }
        summary.chromosomes.push((chrom.clone(), rows));
    }
    for (_, (mut writer, ..)) in writers {
        writer.flush().map_err(|e| format!("cannot write the map: {e}"))?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(path: &Path, text: &str) {
        let mut e = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), Default::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap();
    }

    #[test]
    fn the_three_formats_give_the_same_plink_map_per_panel_chromosome() {
        let dir = tempfile::tempdir().unwrap();
        let plink = dir.path().join("plink.map");
        std::fs::write(&plink, "20 . 0.5 1000\n20 . 1.25 2000\n21 . 0 10\n21 . 2 20\n").unwrap();
        let shapeit = dir.path().join("chr20.gmap.gz");
        gz(&shapeit, "pos\tchr\tcM\n1000\t20\t0.5\n2000\t20\t1.25\n10\t21\t0\n20\t21\t2\n");
        let eagle = dir.path().join("eagle.txt.gz");
        gz(
            &eagle,
            "chr position COMBINED_rate(cM/Mb) Genetic_Map(cM)\n1 5 0.1 0.0\n1 9 0.1 0.1\n20 1000 0.75 0.5\n20 2000 0 1.25\n21 10 1 0\n21 20 0 2\n23 5 1 0\n",
        );
        let chromosomes = vec!["chr20".to_string(), "chr21".to_string()];
        let mut outputs = Vec::new();
        for (source, format) in [(&plink, MapFormat::Plink), (&shapeit, MapFormat::Shapeit), (&eagle, MapFormat::Eagle)]
        {
            let tag = format!("{format:?}");
            let summary = convert(source, &chromosomes, |c| dir.path().join(format!("{tag}-{c}.map"))).unwrap();
            assert_eq!(summary.format, format);
            assert_eq!(summary.chromosomes, [("chr20".to_string(), 2), ("chr21".to_string(), 2)]);
            outputs.push(std::fs::read_to_string(dir.path().join(format!("{tag}-chr20.map"))).unwrap());
        }
        assert_eq!(outputs[0], "chr20\t.\t0.5\t1000\nchr20\t.\t1.25\t2000\n");
        assert!(outputs.iter().all(|o| *o == outputs[0]), "{outputs:?}");
    }

    #[test]
    fn unsorted_or_missing_chromosomes_and_unknown_layouts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = |c: &str| dir.path().join(format!("{c}.out"));
        let map = dir.path().join("m.map");
        std::fs::write(&map, "20 . 1.0 2000\n20 . 0.5 1000\n").unwrap();
        let e = convert(&map, &["20".into()], out).unwrap_err();
        assert!(e.contains("line 2") && e.contains("not sorted"), "{e}");
        std::fs::write(&map, "20 . 0.5 1000\n20 . 1.0 2000\n").unwrap();
        let e = convert(&map, &["20".into(), "21".into()], out).unwrap_err();
        assert!(e.contains("0 position(s) on chromosome 21"), "{e}");
        std::fs::write(&map, "a b\n").unwrap();
        assert!(convert(&map, &["20".into()], out).unwrap_err().contains("not a genetic map"));
    }
}
