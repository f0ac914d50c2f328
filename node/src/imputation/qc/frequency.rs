//! The allele-frequency check against the panel, as the Michigan Imputation Server's QC does it:
//! for every kept site, the input's ALT frequency against the panel's (the chosen population's
//! where the panel has per-population frequencies), a chi-square statistic, the sites over a
//! threshold, and a density scatter plot (SVG). A large, systematic mismatch (alleles coded
//! against the other strand or swapped, another build or population) is named as such.
//!
//! Memory is bounded: the plot is a fixed grid of counts, and only the first outliers are kept.

use serde::{Deserialize, Serialize};

use super::panel_sites::PanelFrequency;

/// Michigan's threshold: sites with chi-square above it are reported.
pub const CHISQ_THRESHOLD: f64 = 300.0;
/// Cells per axis of the density plot.
pub const GRID: usize = 50;
const MAX_OUTLIERS: usize = 20;

/// One site far from the panel's frequency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FrequencyOutlier {
    pub chrom: String,
    pub pos: u64,
    pub input_af: f64,
    pub panel_af: f64,
    pub chisq: f64,
}

/// What the frequency check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FrequencyCheck {
    /// The population compared with (null: the panel's overall frequencies).
    pub population: Option<String>,
    /// Sites compared.
    pub sites: u64,
    pub chisq_threshold: f64,
    /// Sites whose chi-square is above the threshold.
    pub sites_over_threshold: u64,
    /// Pearson correlation of input and panel frequencies.
    pub correlation: Option<f64>,
    /// Correlation of the input's frequency with the panel's ALT-swapped one (1 - AF): high when
    /// alleles are swapped or read from the other strand.
    pub swapped_correlation: Option<f64>,
    /// A systematic problem, named, and what to check.
    pub warning: Option<String>,
    /// The first sites over the threshold.
    pub outliers: Vec<FrequencyOutlier>,
    /// Density plot: `[panel_cell, input_cell, sites]` on a `grid` x `grid` lattice of [0, 1].
    pub grid: usize,
    pub cells: Vec<[u64; 3]>,
}

/// Collects the check site by site.
#[derive(Debug)]
pub(super) struct FrequencyAccumulator {
    population: Option<String>,
    population_seen: bool,
    sites: u64,
    over: u64,
    sums: [f64; 6],
    outliers: Vec<FrequencyOutlier>,
    grid: Vec<u64>,
}

/// Pearson chi-square of the 2x2 table (input, panel) x (REF, ALT); with no panel allele count,
/// the input against the panel frequency taken as known.
pub fn chi_square(input_alt: u64, input_alleles: u64, panel: &PanelFrequency) -> f64 {
    let (a, b) = (input_alt as f64, (input_alleles - input_alt.min(input_alleles)) as f64);
    match panel.alleles {
        Some(n) if n > 0 => {
            let c = (panel.af * n as f64).round();
            let d = n as f64 - c;
            let total = a + b + c + d;
            let margins = (a + b) * (c + d) * (a + c) * (b + d);
            if margins <= 0.0 { 0.0 } else { total * (a * d - b * c).powi(2) / margins }
        }
        _ => {
            let p = panel.af.clamp(1e-4, 1.0 - 1e-4);
            let n = a + b;
            if n == 0.0 { 0.0 } else { n * (a / n - p).powi(2) / (p * (1.0 - p)) }
        }
    }
}

fn cell(f: f64) -> usize {
    ((f.clamp(0.0, 1.0) * GRID as f64) as usize).min(GRID - 1)
}

impl FrequencyAccumulator {
    pub(super) fn new(population: Option<String>) -> Self {
        Self {
            population,
            population_seen: false,
            sites: 0,
            over: 0,
            sums: [0.0; 6],
            outliers: Vec::new(),
            grid: vec![0; GRID * GRID],
        }
    }

    pub(super) fn add(&mut self, chrom: &str, pos: u64, input_alt: u64, input_alleles: u64, panel: &PanelFrequency) {
        if input_alleles == 0 {
            return;
        }
        self.population_seen |= panel.of_population;
        let (x, y) = (panel.af, input_alt as f64 / input_alleles as f64);
        self.sites += 1;
        let s = &mut self.sums;
        s[0] += x;
        s[1] += y;
        s[2] += x * x;
        s[3] += y * y;
        s[4] += x * y;
        s[5] += (1.0 - x) * y;
        self.grid[cell(x) * GRID + cell(y)] += 1;
        let chisq = chi_square(input_alt, input_alleles, panel);
        if chisq > CHISQ_THRESHOLD {
            self.over += 1;
            if self.outliers.len() < MAX_OUTLIERS {
                self.outliers.push(FrequencyOutlier { chrom: chrom.to_string(), pos, input_af: y, panel_af: x, chisq });
            }
        }
    }

    pub(super) fn finish(self) -> Option<FrequencyCheck> {
        if self.sites == 0 {
            return None;
        }
        let n = self.sites as f64;
        let [sx, sy, sxx, syy, sxy, s_swapped] = self.sums;
        let (vx, vy) = (sxx - sx * sx / n, syy - sy * sy / n);
        let correlation = (vx > 0.0 && vy > 0.0).then(|| (sxy - sx * sy / n) / (vx * vy).sqrt());
        // 1 - x has the same variance as x and the opposite covariance sign.
        let swapped_correlation = (vx > 0.0 && vy > 0.0).then(|| (s_swapped - (n - sx) * sy / n) / (vx * vy).sqrt());
        let share_over = self.over as f64 / n;
        let warning = if self.sites < 20 {
            None
        } else if swapped_correlation.is_some_and(|r| r > 0.8) && correlation.is_some_and(|r| r < 0.2) {
            Some(format!(
                "the input's allele frequencies follow the panel's with REF and ALT exchanged (r = {:.2}): the alleles look swapped or coded on the other strand; check the strand and allele coding (e.g. with the panel's site list) before imputing",
                swapped_correlation.unwrap_or_default()
            ))
        } else if share_over > 0.1 || correlation.is_some_and(|r| r < 0.5) {
            Some(format!(
                "{:.1}% of the sites differ from the panel's frequencies beyond chi-square {CHISQ_THRESHOLD} (correlation {:.2}): a genome build, strand or population mismatch is likely; check the build chosen, the strand of the array and that the panel suits the samples",
                share_over * 100.0,
                correlation.unwrap_or_default()
            ))
        } else {
            None
        };
        let cells = self
            .grid
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| [(i / GRID) as u64, (i % GRID) as u64, *c])
            .collect();
        Some(FrequencyCheck {
            population: self.population.filter(|_| self.population_seen),
            sites: self.sites,
            chisq_threshold: CHISQ_THRESHOLD,
            sites_over_threshold: self.over,
            correlation,
            swapped_correlation,
            warning,
            outliers: self.outliers,
            grid: GRID,
            cells,
        })
    }
}

impl FrequencyCheck {
    /// The density plot as a self-contained SVG: panel frequency across, input frequency up,
    /// cells shaded by the log of their site count, the diagonal drawn for reference.
    pub fn svg(&self) -> String {
        let (size, margin) = (400.0, 50.0);
        let step = size / self.grid.max(1) as f64;
        let max = self.cells.iter().map(|c| c[2]).max().unwrap_or(1).max(1) as f64;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{w}\" viewBox=\"0 0 {w} {w}\" role=\"img\" aria-label=\"Input allele frequency against the panel's, {} sites\">\n",
            self.sites,
            w = size + 2.0 * margin
        );
        out.push_str(&format!(
            "<rect x=\"{margin}\" y=\"{margin}\" width=\"{size}\" height=\"{size}\" fill=\"#fff\" stroke=\"#444\"/>\n"
        ));
        for [x, y, count] in &self.cells {
            let shade = 0.15 + 0.85 * ((*count as f64).ln_1p() / max.ln_1p());
            out.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{step:.1}\" height=\"{step:.1}\" fill=\"#1f4e9c\" fill-opacity=\"{shade:.2}\"><title>{count} sites</title></rect>\n",
                margin + *x as f64 * step,
                margin + size - (*y as f64 + 1.0) * step,
            ));
        }
        out.push_str(&format!(
            "<line x1=\"{margin}\" y1=\"{b}\" x2=\"{b2}\" y2=\"{margin}\" stroke=\"#c33\" stroke-dasharray=\"4 3\"/>\n",
            b = margin + size,
            b2 = margin + size
        ));
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"13\">panel ALT frequency{}</text>\n",
            margin + size / 2.0,
            size + 2.0 * margin - 12.0,
            self.population.as_ref().map(|p| format!(" ({})", crate::html::escape(p))).unwrap_or_default()
        ));
        out.push_str(&format!(
            "<text x=\"14\" y=\"{}\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"13\" transform=\"rotate(-90 14 {})\">input ALT frequency</text>\n",
            margin + size / 2.0,
            margin + size / 2.0
        ));
        for tick in [0.0, 0.5, 1.0] {
            out.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"11\">{tick}</text>\n",
                margin + tick * size,
                margin + size + 15.0
            ));
            out.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-family=\"sans-serif\" font-size=\"11\">{tick}</text>\n",
                margin - 5.0,
                margin + size - tick * size + 4.0
            ));
        }
        out.push_str("</svg>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(af: f64, alleles: Option<u64>) -> PanelFrequency {
        PanelFrequency { af, alleles, of_population: false }
    }

    #[test]
    fn chi_square_is_zero_on_agreement_and_large_on_a_shift() {
        assert!(chi_square(50, 200, &panel(0.25, Some(2000))) < 1e-9);
        let shifted = chi_square(1500, 2000, &panel(0.25, Some(2000)));
        assert!(shifted > CHISQ_THRESHOLD, "{shifted}");
        // Without the panel's allele count, the panel frequency is taken as known.
        let known = chi_square(150, 200, &panel(0.25, None));
        assert!((known - 200.0 * 0.5f64.powi(2) / (0.25 * 0.75)).abs() < 1e-9);
        assert_eq!(chi_square(0, 0, &panel(0.5, Some(10))), 0.0);
    }

    #[test]
    fn swapped_alleles_and_unrelated_frequencies_are_named() {
        let run = |f: &dyn Fn(f64) -> f64| {
            let mut acc = FrequencyAccumulator::new(None);
            for i in 0..200u64 {
                let p = 0.05 + 0.9 * (i as f64 / 200.0);
                acc.add("20", i, (f(p) * 2000.0).round() as u64, 2000, &panel(p, Some(2000)));
            }
            acc.finish().unwrap()
        };
        let fine = run(&|p| p);
        assert_eq!(fine.sites_over_threshold, 0);
        assert!(fine.warning.is_none() && fine.correlation.unwrap() > 0.99);
        let swapped = run(&|p| 1.0 - p);
        assert!(swapped.warning.as_deref().unwrap().contains("swapped"), "{:?}", swapped.warning);
        let unrelated = run(&|p| (p * 7.3).fract());
        assert!(unrelated.warning.as_deref().unwrap().contains("mismatch"), "{:?}", unrelated.warning);
        assert!(unrelated.outliers.len() <= MAX_OUTLIERS && unrelated.sites_over_threshold > 20);
        let svg = fine.svg();
        assert!(svg.starts_with("<svg xmlns") && svg.trim_end().ends_with("</svg>") && svg.contains("<rect"));
    }
}
