//! A reference panel's sites, read alongside a sorted input to match alleles in constant memory.
//!
//! A panel as published holds several records at one position (a SNP and an indel, or the
//! biallelic parts of a split multi-allelic record): an input SNP is matched against every
//! SNP record at its position, and the closest relation wins.

use std::collections::HashMap;
use std::io::{self, BufRead};
use std::path::PathBuf;

use super::lines;
use crate::imputation::vcf_io;

/// How an input SNP relates to the panel's SNPs at the same position, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum PanelMatch {
    Exact { ambiguous: bool },
    Switch,
    Flip,
    FlipSwitch,
    Mismatch,
    Absent,
}

/// The panel's sites-only VCF per chromosome (bgzipped, sorted).
#[derive(Debug, Clone, Default)]
pub struct PanelSites {
    pub by_chromosome: HashMap<String, PathBuf>,
    /// The population whose allele frequencies QC compares with (the panel's overall ones when
    /// it has none for it).
    pub population: Option<String>,
}

/// One panel record: REF, ALT and its allele frequency.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PanelSite {
    pub reference: String,
    pub alt: String,
    pub frequency: Option<PanelFrequency>,
}

/// A panel site's ALT frequency: of the population QC compares with where the panel has it,
/// else overall; with the allele count it comes from when the sites file has it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PanelFrequency {
    pub af: f64,
    pub alleles: Option<u64>,
    /// Whether it is the chosen population's frequency (not the overall one).
    pub of_population: bool,
}

/// A forward-only reader over one chromosome's panel sites.
pub(super) struct SitesCursor {
    reader: Option<Box<dyn BufRead + Send>>,
    /// The INFO key of the frequency to report (`AF`, or `AF_<population>`).
    frequency_key: String,
    line: Vec<u8>,
    /// The first record past the current group, already read.
    next: Option<(usize, PanelSite)>,
    /// Position and records of the group last looked up.
    group_pos: usize,
    group: Vec<PanelSite>,
}

impl PanelSites {
    /// A cursor over `chrom`.
    pub(super) fn cursor(&self, chrom: &str) -> io::Result<SitesCursor> {
        let reader = match self.by_chromosome.get(chrom) {
            Some(path) => Some(vcf_io::open_text(path)?.0),
            None => None,
        };
        let frequency_key = self.population.as_ref().map(|p| format!("AF_{p}")).unwrap_or_else(|| "AF".into());
        let mut cursor =
            SitesCursor { reader, frequency_key, line: Vec::new(), next: None, group_pos: 0, group: Vec::new() };
        cursor.next = cursor.read_site()?;
        Ok(cursor)
    }
}

pub(super) fn complement(base: &str) -> &'static str {
    match base {
        "A" => "T",
        "T" => "A",
        "C" => "G",
        "G" => "C",
        _ => "N",
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("panel sites file: {what}"))
}

impl SitesCursor {
    /// The next record of the file (skipping the header).
    fn read_site(&mut self) -> io::Result<Option<(usize, PanelSite)>> {
        let Some(reader) = self.reader.as_mut() else { return Ok(None) };
        loop {
            match lines::read_line(reader.as_mut(), &mut self.line, lines::max_record_bytes(0))? {
                lines::Line::End => return Ok(None),
                lines::Line::TooLong => return Err(invalid("a record is too long")),
                lines::Line::Read(_) => {}
            }
            if self.line.starts_with(b"#") {
                continue;
            }
            let text = std::str::from_utf8(&self.line).map_err(|_| invalid("a record is not text"))?;
            let mut cols = text.trim_end().split('\t');
            let (_, pos, _, reference, alt) = (cols.next(), cols.next(), cols.next(), cols.next(), cols.next());
            let (Some(pos), Some(reference), Some(alt)) = (pos.and_then(|p| p.parse().ok()), reference, alt) else {
                return Err(invalid("a record without position or alleles"));
            };
            let info = cols.nth(2).unwrap_or("");
            let population = self.frequency_key.strip_prefix("AF_").and_then(|p| {
                let af = info_value(info, &self.frequency_key)?;
                let alleles = info_value(info, &format!("AN_{p}")).map(|n| n as u64);
                Some(PanelFrequency { af, alleles, of_population: true })
            });
            let frequency = population.or_else(|| {
                let af = info_value(info, "AF")?;
                Some(PanelFrequency { af, alleles: info_value(info, "AN").map(|n| n as u64), of_population: false })
            });
            return Ok(Some((pos, PanelSite { reference: reference.to_string(), alt: alt.to_string(), frequency })));
        }
    }

    /// The panel's records at `pos`. Calls must come in ascending `pos`.
    pub(super) fn at(&mut self, pos: usize) -> io::Result<&[PanelSite]> {
        if pos != self.group_pos {
            self.group.clear();
            self.group_pos = pos;
            while self.next.as_ref().is_some_and(|(p, _)| *p < pos) {
                self.next = self.read_site()?;
            }
            while self.next.as_ref().is_some_and(|(p, _)| *p == pos) {
                if let Some((_, site)) = self.next.take() {
                    self.group.push(site);
                }
                self.next = self.read_site()?;
            }
        }
        Ok(&self.group)
    }

    /// Relation of the input SNP at `pos` to the panel, and the panel record it matched.
    /// Calls must come in ascending `pos`.
    pub(super) fn lookup(
        &mut self,
        pos: usize,
        reference: &str,
        alt: &str,
    ) -> io::Result<(PanelMatch, Option<PanelFrequency>)> {
        let (fr, fa) = (complement(reference), complement(alt));
        let ambiguous = reference == complement(alt);
        let mut best = (PanelMatch::Absent, None);
        for site in self.at(pos)? {
            // An indel at the same position is another variant, not a mismatch of this one.
            if site.reference.len() != 1 || site.alt.len() != 1 {
                continue;
            }
            let (pref, palt) = (site.reference.as_str(), site.alt.as_str());
            let relation = if pref == reference && palt == alt {
                PanelMatch::Exact { ambiguous }
            } else if pref == alt && palt == reference {
                PanelMatch::Switch
            } else if pref == fr && palt == fa {
                PanelMatch::Flip
            } else if pref == fa && palt == fr {
                PanelMatch::FlipSwitch
            } else {
                PanelMatch::Mismatch
            };
            if relation < best.0 {
                best = (relation, site.frequency);
            }
        }
        Ok(best)
    }
}

/// The value of `key` in an INFO column, as a number.
fn info_value(info: &str, key: &str) -> Option<f64> {
    info.split(';').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.split(',').next()?.parse().ok())
}
