//! Reading the panels' VCFs side by side: each sorted by position (as Minimac4 writes them),
//! taken one position at a time, the records of every panel at that position grouped by their
//! alleles. One record per panel is held at a time, so memory does not grow with the sites.

use std::io::BufRead;
use std::path::Path;

use super::MetaError;
use crate::imputation::vcf_io;

/// One record's columns, the sample columns left as one string until a value is asked for.
pub(super) struct Record {
    pub chrom: String,
    pub pos: u64,
    pub id: String,
    pub reference: String,
    pub alt: String,
    pub info: String,
    format: String,
    samples: String,
}

impl Record {
    fn parse(line: &str) -> Option<Self> {
        let mut f = line.splitn(10, '\t');
        let chrom = f.next()?.to_string();
        let pos = f.next()?.parse().ok()?;
        let id = f.next()?.to_string();
        let (reference, alt) = (f.next()?.to_string(), f.next()?.to_string());
        let (_qual, _filter) = (f.next()?, f.next()?);
        let info = f.next()?.to_string();
        let format = f.next()?.to_string();
        let samples = f.next()?.to_string();
        Some(Self { chrom, pos, id, reference, alt, info, format, samples })
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.info.split(';').any(|i| i == flag)
    }

    /// Each sample's value of FORMAT field `key`, in sample order.
    fn values<'a>(&'a self, key: &str) -> Option<impl Iterator<Item = &'a str>> {
        let index = self.format.split(':').position(|k| k == key)?;
        Some(self.samples.split('\t').map(move |s| s.split(':').nth(index).unwrap_or(".")))
    }

    /// A haploid pair per sample (`HDS` or `LDS`: two comma-separated floats) into `out`, two
    /// values per sample.
    pub fn haploid_pairs(&self, key: &str, samples: usize, out: &mut Vec<f32>) -> Option<()> {
        out.clear();
        for value in self.values(key)? {
            let (a, b) = value.split_once(',')?;
            out.push(a.parse().ok()?);
            out.push(b.parse().ok()?);
        }
        (out.len() == 2 * samples).then_some(())
    }

    /// The phased alleles per haplotype (`GT`, `0|1`): 0, 1, or [`MISSING`].
    pub fn phased_alleles(&self, samples: usize, out: &mut Vec<u8>) -> Option<()> {
        out.clear();
        for value in self.values("GT")? {
            let (a, b) = value.split_once('|')?;
            for allele in [a, b] {
                out.push(match allele {
                    "0" => 0,
                    "1" => 1,
                    "." => MISSING,
                    _ => return None,
                });
            }
        }
        (out.len() == 2 * samples).then_some(())
    }
}

/// An allele [`Record::phased_alleles`] could not read.
pub(super) const MISSING: u8 = u8::MAX;

/// One VCF, read one record ahead.
pub(super) struct Stream {
    pub file: String,
    pub samples: Vec<String>,
    /// Header lines (`##`) as read.
    pub meta: Vec<String>,
    lines: Box<dyn BufRead + Send>,
    next: Option<Record>,
    line: String,
}

impl Stream {
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        let file = path.display().to_string();
        let (mut lines, _) = vcf_io::open_text(path)?;
        let mut meta = Vec::new();
        let mut line = String::new();
        let samples = loop {
            line.clear();
            if lines.read_line(&mut line)? == 0 {
                return Err(MetaError::Input { file, message: "no #CHROM header line".into() });
            }
            let text = line.trim_end_matches(['\n', '\r']);
            if text.starts_with("##") {
                meta.push(text.to_string());
            } else if text.starts_with("#CHROM") {
                break text.split('\t').skip(9).map(str::to_string).collect::<Vec<_>>();
            } else {
                return Err(MetaError::Input { file, message: "record before the #CHROM header line".into() });
            }
        };
        let mut stream = Self { file, samples, meta, lines, next: None, line };
        stream.advance()?;
        Ok(stream)
    }

    fn advance(&mut self) -> Result<(), MetaError> {
        self.line.clear();
        self.next = if self.lines.read_line(&mut self.line)? == 0 {
            None
        } else {
            let text = self.line.trim_end_matches(['\n', '\r']);
            Some(Record::parse(text).ok_or_else(|| self.error(format!("unreadable record: {}", short(text))))?)
        };
        Ok(())
    }

    pub fn next_pos(&self) -> Option<u64> {
        self.next.as_ref().map(|r| r.pos)
    }

    /// Takes every record at `pos`; refuses a file whose records go back.
    fn take_at(&mut self, pos: u64, out: &mut Vec<Record>) -> Result<(), MetaError> {
        while self.next.as_ref().is_some_and(|r| r.pos == pos) {
            out.extend(self.next.take());
            self.advance()?;
        }
        if self.next_pos().is_some_and(|p| p < pos) {
            return Err(self.error("records are not sorted by position".into()));
        }
        Ok(())
    }

    pub fn error(&self, message: String) -> MetaError {
        MetaError::Input { file: self.file.clone(), message }
    }
}

/// Opens `paths`, which must all have the samples of the first, in the same order; returns the
/// streams and those samples.
pub(super) fn open_matching(paths: &[&Path]) -> Result<(Vec<Stream>, Vec<String>), MetaError> {
    let streams: Vec<Stream> = paths.iter().map(|p| Stream::open(p)).collect::<Result<_, _>>()?;
    let samples = streams.first().map(|s| s.samples.clone()).unwrap_or_default();
    if let Some(other) = streams.iter().find(|s| s.samples != samples) {
        return Err(MetaError::SampleMismatch { file: other.file.clone(), first: streams[0].file.clone() });
    }
    Ok((streams, samples))
}

fn short(line: &str) -> String {
    line.chars().take(80).collect()
}

/// One variant as the panels have it: for each stream, its record, if it has the variant.
pub(super) struct Variant {
    pub pos: u64,
    pub reference: String,
    pub alt: String,
    pub records: Vec<Option<Record>>,
}

/// Reads `streams` side by side; calls `each` with every variant of their union, in position
/// order (variants at one position in the order they first appear).
pub(super) fn for_each_variant(
    streams: &mut [Stream],
    mut each: impl FnMut(Variant) -> Result<(), MetaError>,
) -> Result<(), MetaError> {
    let (mut taken, n) = (Vec::new(), streams.len());
    while let Some(pos) = streams.iter().filter_map(Stream::next_pos).min() {
        let mut variants: Vec<Variant> = Vec::new();
        for (k, stream) in streams.iter_mut().enumerate() {
            taken.clear();
            stream.take_at(pos, &mut taken)?;
            for record in taken.drain(..) {
                let found = variants.iter().position(|v| v.reference == record.reference && v.alt == record.alt);
                let index = found.unwrap_or_else(|| {
                    variants.push(Variant {
                        pos,
                        reference: record.reference.clone(),
                        alt: record.alt.clone(),
                        records: (0..n).map(|_| None).collect(),
                    });
                    variants.len() - 1
                });
                let records = &mut variants[index].records;
                if records[k].is_some() {
                    return Err(stream.error(format!("two records of {pos} {}>{}", record.reference, record.alt)));
                }
                records[k] = Some(record);
            }
        }
        for variant in variants {
            each(variant)?;
        }
    }
    Ok(())
}
