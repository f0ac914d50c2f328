//! A reference panel's sites, read alongside a sorted input to match alleles in constant memory.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;

use noodles::vcf;

/// How an input SNP relates to the panel's SNP at the same position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PanelMatch {
    Absent,
    Exact { ambiguous: bool },
    Switch,
    Flip,
    FlipSwitch,
    Mismatch,
}

/// The panel's sites-only VCF per chromosome (bgzipped, sorted).
#[derive(Debug, Clone, Default)]
pub struct PanelSites {
    pub by_chromosome: HashMap<String, PathBuf>,
}

/// A forward-only reader over one chromosome's panel sites.
pub(super) struct SitesCursor {
    reader: Option<vcf::io::Reader<Box<dyn io::BufRead>>>,
    record: vcf::Record,
    /// The current panel record's position, REF and ALT (None: not read yet or exhausted).
    current: Option<(usize, String, String)>,
    exhausted: bool,
}

impl PanelSites {
    pub(super) fn cursor(&self, chrom: &str) -> io::Result<SitesCursor> {
        let reader = match self.by_chromosome.get(chrom) {
            Some(path) => {
                let mut r = vcf::io::reader::Builder::default()
                    .set_compression_method(vcf::io::CompressionMethod::Bgzf)
                    .build_from_reader(File::open(path)?)?;
                r.read_header()?;
                Some(r)
            }
            None => None,
        };
        let exhausted = reader.is_none();
        Ok(SitesCursor { reader, record: vcf::Record::default(), current: None, exhausted })
    }
}

fn complement(base: &str) -> &'static str {
    match base {
        "A" => "T",
        "T" => "A",
        "C" => "G",
        "G" => "C",
        _ => "N",
    }
}

impl SitesCursor {
    fn advance(&mut self) -> io::Result<()> {
        let Some(reader) = self.reader.as_mut() else {
            self.exhausted = true;
            return Ok(());
        };
        if reader.read_record(&mut self.record)? == 0 {
            self.exhausted = true;
            self.current = None;
            return Ok(());
        }
        let pos = match self.record.variant_start() {
            Some(Ok(p)) => usize::from(p),
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "panel site without a position")),
        };
        let alternate = self.record.alternate_bases();
        let alt: &str = alternate.as_ref();
        self.current = Some((pos, self.record.reference_bases().to_string(), alt.to_string()));
        Ok(())
    }

    /// Relation of the input SNP at `pos` to the panel. Calls must come in ascending `pos`.
    pub(super) fn lookup(&mut self, pos: usize, reference: &str, alt: &str) -> io::Result<PanelMatch> {
        while !self.exhausted && self.current.as_ref().is_none_or(|(p, _, _)| *p < pos) {
            self.advance()?;
        }
        let Some((p, pref, palt)) = self.current.as_ref() else { return Ok(PanelMatch::Absent) };
        if *p != pos {
            return Ok(PanelMatch::Absent);
        }
        let (fr, fa) = (complement(reference), complement(alt));
        let ambiguous = reference == complement(alt);
        Ok(if pref == reference && palt == alt {
            PanelMatch::Exact { ambiguous }
        } else if pref == alt && palt == reference {
            PanelMatch::Switch
        } else if pref == fr && palt == fa {
            PanelMatch::Flip
        } else if pref == fa && palt == fr {
            PanelMatch::FlipSwitch
        } else {
            PanelMatch::Mismatch
        })
    }
}
