//! The hidden Markov model of meta-imputation (Yu et al. 2022, MetaMinimac2): per target
//! haplotype, the hidden states are the panels; at each training site (a typed site every panel
//! imputed with the site hidden), panel k emits the observed allele with probability
//! `LDS_k + 1e-5` (ALT) or `1 - LDS_k + 1e-5` (REF); between training sites `d` bp apart the
//! state is redrawn uniformly with probability `max(1e-4, 1 - exp(-2e-7 d))`. A haplotype's
//! weights for the panels are the forward-backward posteriors.
//!
//! Memory stays flat in the number of sites: the forward pass appends each site's emissions and
//! forward probabilities to a file of fixed-size records; the backward pass reads it from the
//! end and writes the posteriors, in position order, to a second file that
//! [`WeightReader`] then streams.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Added to every emission, so one poorly predicted site never rules a panel out.
pub const EMISSION_FLOOR: f64 = 1e-5;
/// The least probability of redrawing the state between two training sites.
pub const MIN_SWITCH: f64 = 1e-4;
/// Per bp: the switch probability between sites `d` bp apart is `1 - exp(-SWITCH_RATE d)`.
pub const SWITCH_RATE: f64 = 2e-7;

/// The probability that the state is redrawn between two training sites `distance` bp apart.
pub fn switch_probability(distance: u64) -> f64 {
    (1.0 - (-SWITCH_RATE * distance as f64).exp()).max(MIN_SWITCH)
}

/// The probability that a panel whose leave-one-out dosage is `lds` emits `observed` (0 REF,
/// 1 ALT).
pub fn emission(lds: f32, observed: u8) -> f64 {
    let lds = f64::from(lds).clamp(0.0, 1.0);
    if observed == 1 { lds + EMISSION_FLOOR } else { 1.0 - lds + EMISSION_FLOOR }
}

/// An identifier of a site's alleles, so the posteriors file can say which variant at a
/// position was a training site without storing alleles (FNV-1a).
pub fn allele_key(reference: &str, alt: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in reference.bytes().chain([0]).chain(alt.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The forward pass, site by site, on disk.
pub struct ForwardBackward {
    panels: usize,
    haplotypes: usize,
    path: PathBuf,
    out: BufWriter<File>,
    alpha: Vec<f64>,
    last_pos: Option<u64>,
    sites: u64,
}

/// What the backward pass learnt, besides the posteriors file.
#[derive(Debug, Clone, PartialEq)]
pub struct Posteriors {
    pub path: PathBuf,
    pub sites: u64,
    /// Per haplotype and panel (`h * panels + k`), the sum of the posteriors over the sites.
    pub weight_sums: Vec<f64>,
}

impl ForwardBackward {
    /// Keeps its files in `dir`.
    pub fn new(dir: &Path, panels: usize, haplotypes: usize) -> io::Result<Self> {
        let path = dir.join("meta.forward.bin");
        let out = BufWriter::new(File::create(&path)?);
        Ok(Self { panels, haplotypes, path, out, alpha: vec![0.0; panels * haplotypes], last_pos: None, sites: 0 })
    }

    fn states(&self) -> usize {
        self.panels * self.haplotypes
    }

    /// One training site: `emissions[h * panels + k]`. Sites must come in position order.
    pub fn push(&mut self, pos: u64, key: u64, emissions: &[f64]) -> io::Result<()> {
        assert_eq!(emissions.len(), self.states(), "one emission per haplotype and panel");
        let k = self.panels;
        let switch = self.last_pos.map(|last| switch_probability(pos.saturating_sub(last)));
        for (alpha, e) in self.alpha.chunks_mut(k).zip(emissions.chunks(k)) {
            // The previous alphas of a haplotype sum to 1, so a redraw lands on each with 1/k.
            match switch {
                None => alpha.iter_mut().zip(e).for_each(|(a, e)| *a = e / k as f64),
                Some(r) => alpha.iter_mut().zip(e).for_each(|(a, e)| *a = e * ((1.0 - r) * *a + r / k as f64)),
            }
            normalize(alpha);
        }
        self.out.write_all(&pos.to_le_bytes())?;
        self.out.write_all(&key.to_le_bytes())?;
        for value in emissions.iter().chain(&self.alpha) {
            self.out.write_all(&value.to_le_bytes())?;
        }
        self.last_pos = Some(pos);
        self.sites += 1;
        Ok(())
    }

    pub fn sites(&self) -> u64 {
        self.sites
    }

    /// The backward pass: writes the posteriors to `dir/meta.weights.bin`, in position order.
    pub fn finish(self) -> io::Result<Posteriors> {
        let (k, states) = (self.panels, self.states());
        let mut forward = self.out.into_inner().map_err(|e| e.into_error())?;
        forward.flush()?;
        let mut forward = File::open(&self.path)?;
        let path = self.path.with_file_name("meta.weights.bin");
        let mut weights = File::create(&path)?;
        let record = 16 + 16 * states as u64;
        let weights_record = 16 + 4 * states as u64;
        let mut buf = vec![0u8; record as usize];
        let (mut emissions, mut alpha) = (vec![0.0; states], vec![0.0; states]);
        // Beta of the site after the current one, and its emissions.
        let (mut beta, mut next_emissions, mut next_pos) = (vec![1.0; states], vec![0.0; states], None::<u64>);
        let mut weight_sums = vec![0.0; states];
        let mut posterior = vec![0.0f64; states];
        let mut out = Vec::with_capacity(weights_record as usize);
        for t in (0..self.sites).rev() {
            forward.seek(SeekFrom::Start(t * record))?;
            forward.read_exact(&mut buf)?;
            let pos = u64::from_le_bytes(buf[0..8].try_into().unwrap_or_default());
            let key = &buf[8..16];
            read_f64s(&buf[16..16 + 8 * states], &mut emissions);
            read_f64s(&buf[16 + 8 * states..], &mut alpha);
            if let Some(next) = next_pos {
                let r = switch_probability(next.saturating_sub(pos));
                for (b, e) in beta.chunks_mut(k).zip(next_emissions.chunks(k)) {
                    let redraw: f64 = b.iter().zip(e).map(|(b, e)| b * e).sum::<f64>() * r / k as f64;
                    b.iter_mut().zip(e).for_each(|(b, e)| *b = (1.0 - r) * e * *b + redraw);
                    normalize(b);
                }
            }
            for ((p, a), b) in posterior.iter_mut().zip(&alpha).zip(&beta) {
                *p = a * b;
            }
            out.clear();
            out.extend_from_slice(&pos.to_le_bytes());
            out.extend_from_slice(key);
            for (p, sum) in posterior.chunks_mut(k).zip(weight_sums.chunks_mut(k)) {
                normalize(p);
                for (p, sum) in p.iter().zip(sum) {
                    *sum += p;
                    out.extend_from_slice(&(*p as f32).to_le_bytes());
                }
            }
            weights.seek(SeekFrom::Start(t * weights_record))?;
            weights.write_all(&out)?;
            std::mem::swap(&mut next_emissions, &mut emissions);
            next_pos = Some(pos);
        }
        weights.flush()?;
        drop(forward);
        std::fs::remove_file(&self.path)?;
        Ok(Posteriors { path, sites: self.sites, weight_sums })
    }
}

fn read_f64s(bytes: &[u8], out: &mut [f64]) {
    for (value, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        *value = f64::from_le_bytes(chunk.try_into().unwrap_or_default());
    }
}

/// Scales `values` to sum to 1 (uniform if they are all 0, which the emission floor prevents).
fn normalize(values: &mut [f64]) {
    let sum: f64 = values.iter().sum();
    if sum > 0.0 && sum.is_finite() {
        values.iter_mut().for_each(|v| *v /= sum);
    } else {
        let uniform = 1.0 / values.len() as f64;
        values.iter_mut().for_each(|v| *v = uniform);
    }
}

struct WeightsAt {
    pos: u64,
    weights: Vec<f32>,
}

/// Streams the posteriors in position order and gives each site of the union its weights:
/// a training site's own, else interpolated linearly by position between the training sites
/// either side (the nearest one beyond the first or the last).
pub struct WeightReader {
    reader: BufReader<File>,
    states: usize,
    prev: Option<WeightsAt>,
    /// The allele keys of the training sites at `prev`'s position.
    prev_keys: Vec<u64>,
    next: Option<(u64, WeightsAt)>,
}

impl WeightReader {
    pub fn open(path: &Path, panels: usize, haplotypes: usize) -> io::Result<Self> {
        let states = panels * haplotypes;
        let mut reader = Self {
            reader: BufReader::with_capacity(1 << 20, File::open(path)?),
            states,
            prev: None,
            prev_keys: Vec::new(),
            next: None,
        };
        reader.next = reader.read()?;
        Ok(reader)
    }

    fn read(&mut self) -> io::Result<Option<(u64, WeightsAt)>> {
        let mut head = [0u8; 16];
        match self.reader.read_exact(&mut head) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            other => other?,
        }
        let mut bytes = vec![0u8; 4 * self.states];
        self.reader.read_exact(&mut bytes)?;
        let weights = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default())).collect();
        let pos = u64::from_le_bytes(head[0..8].try_into().unwrap_or_default());
        let key = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
        Ok(Some((key, WeightsAt { pos, weights })))
    }

    /// The weights at `pos` into `out` (`h * panels + k`); true if the variant `key` at `pos` is
    /// a training site. Positions must not go back.
    pub fn weights_at(&mut self, pos: u64, key: u64, out: &mut [f32]) -> io::Result<bool> {
        while self.next.as_ref().is_some_and(|(_, n)| n.pos <= pos) {
            let (next_key, next) = self.next.take().expect("checked above");
            if self.prev.as_ref().is_none_or(|p| p.pos != next.pos) {
                self.prev_keys.clear();
            }
            self.prev_keys.push(next_key);
            self.prev = Some(next);
            self.next = self.read()?;
        }
        match (&self.prev, &self.next) {
            (Some(p), _) if p.pos == pos => out.copy_from_slice(&p.weights),
            (Some(p), Some((_, n))) => {
                let f = (pos - p.pos) as f32 / (n.pos - p.pos) as f32;
                for ((o, a), b) in out.iter_mut().zip(&p.weights).zip(&n.weights) {
                    *o = a + (b - a) * f;
                }
            }
            (Some(only), None) | (None, Some((_, only))) => out.copy_from_slice(&only.weights),
            (None, None) => out.fill(0.0),
        }
        Ok(self.prev.as_ref().is_some_and(|p| p.pos == pos) && self.prev_keys.contains(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the model over sites of (pos, per haplotype per panel LDS, observed alleles) and
    /// returns the posterior per site.
    fn posteriors(panels: usize, sites: &[(u64, Vec<f32>, Vec<u8>)]) -> Vec<Vec<f32>> {
        let dir = tempfile::tempdir().unwrap();
        let haplotypes = sites[0].2.len();
        let mut fb = ForwardBackward::new(dir.path(), panels, haplotypes).unwrap();
        for (pos, lds, observed) in sites {
            let e: Vec<f64> = lds.iter().enumerate().map(|(i, l)| emission(*l, observed[i / panels])).collect();
            fb.push(*pos, allele_key("A", "G"), &e).unwrap();
        }
        let post = fb.finish().unwrap();
        let mut reader = WeightReader::open(&post.path, panels, haplotypes).unwrap();
        sites
            .iter()
            .map(|(pos, _, _)| {
                let mut w = vec![0.0; panels * haplotypes];
                assert!(reader.weights_at(*pos, allele_key("A", "G"), &mut w).unwrap());
                w
            })
            .collect()
    }

    /// A site where panel A predicts the observed allele and panel B the other one.
    fn a_right(pos: u64, observed: u8) -> (u64, Vec<f32>, Vec<u8>) {
        let (right, wrong) = if observed == 1 { (0.95, 0.05) } else { (0.05, 0.95) };
        (pos, vec![right, wrong], vec![observed])
    }

    fn b_right(pos: u64, observed: u8) -> (u64, Vec<f32>, Vec<u8>) {
        let mut site = a_right(pos, observed);
        site.1.reverse();
        site
    }

    #[test]
    fn a_haplotype_that_panel_a_predicts_everywhere_gets_weight_near_one_for_a() {
        let sites: Vec<_> = (0..40).map(|i| a_right(1_000 + i * 5_000, (i % 3 == 0) as u8)).collect();
        for w in posteriors(2, &sites) {
            assert!(w[0] > 0.99, "{w:?}");
            assert!((w[0] + w[1] - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn a_switch_half_way_is_followed() {
        let mut sites: Vec<_> = (0..30).map(|i| a_right(1_000 + i * 5_000, (i % 2) as u8)).collect();
        sites.extend((30..60).map(|i| b_right(1_000 + i * 5_000, (i % 2) as u8)));
        let w = posteriors(2, &sites);
        assert!(w[..25].iter().all(|w| w[0] > 0.95), "A before the switch");
        assert!(w[35..].iter().all(|w| w[1] > 0.95), "B after it");
        assert!(w[29][0] > 0.5 && w[30][1] > 0.5, "the switch is placed between sites 29 and 30");
    }

    #[test]
    fn haplotypes_are_independent() {
        // Two haplotypes side by side: the first fits A, the second B.
        let sites: Vec<_> = (0..20)
            .map(|i| {
                let o = (i % 2) as u8;
                let (a, b) = (a_right(0, o).1, b_right(0, o).1);
                (1_000 + i * 5_000, [a, b].concat(), vec![o, o])
            })
            .collect();
        for w in posteriors(2, &sites) {
            assert!(w[0] > 0.99 && w[3] > 0.99, "{w:?}");
        }
    }

    #[test]
    fn weights_between_training_sites_are_interpolated_by_position() {
        let dir = tempfile::tempdir().unwrap();
        // Strong evidence for A at 1,000 and for B at 1,000,000 (far apart, so each site's
        // posterior follows its own evidence).
        let mut fb = ForwardBackward::new(dir.path(), 2, 1).unwrap();
        for (pos, e) in [(1_000u64, [0.999, 1e-5]), (2_000_000, [1e-5, 0.999])] {
            fb.push(pos, allele_key("A", "G"), &e).unwrap();
        }
        let post = fb.finish().unwrap();
        let mut reader = WeightReader::open(&post.path, 2, 1).unwrap();
        let (mut first, mut mid, mut last, mut after) = ([0.0; 2], [0.0; 2], [0.0; 2], [0.0; 2]);
        assert!(!reader.weights_at(500, allele_key("A", "G"), &mut first).unwrap(), "before the first: not training");
        assert!(reader.weights_at(1_000, allele_key("A", "G"), &mut [0.0; 2]).unwrap());
        assert!(!reader.weights_at(1_000, allele_key("A", "T"), &mut [0.0; 2]).unwrap(), "other alleles at 1,000");
        reader.weights_at(1_000_500, allele_key("C", "T"), &mut mid).unwrap();
        reader.weights_at(2_000_000, allele_key("A", "G"), &mut last).unwrap();
        reader.weights_at(3_000_000, allele_key("A", "G"), &mut after).unwrap();
        assert!(first[0] > 0.99, "before the first training site: its weights");
        assert!(last[1] > 0.99 && after == last, "after the last: its weights");
        let halfway = (first[0] + last[0]) / 2.0;
        assert!((mid[0] - halfway).abs() < 1e-3, "half-way between: the mean, {mid:?}");
        assert!(post.weight_sums[0] > 0.99 && post.weight_sums[1] > 0.99);
    }

    #[test]
    fn switch_probability_follows_distance_with_a_floor() {
        assert_eq!(switch_probability(0), MIN_SWITCH);
        assert!((switch_probability(5_000_000) - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        assert!(switch_probability(100_000) > switch_probability(10_000));
        assert!((emission(1.0, 1) - (1.0 + EMISSION_FLOOR)).abs() < 1e-12);
        assert!((emission(1.0, 0) - EMISSION_FLOOR).abs() < 1e-12);
        assert_ne!(allele_key("A", "GT"), allele_key("AG", "T"));
    }
}
