//! `report.html`: a job's QC and imputation report as one self-contained page (no script, no
//! external asset), for researchers to keep with their results and send to collaborators: the
//! repairs made, the QC statistics, the allele-frequency plot, mean r2 by MAF, counts per
//! chromosome, and for a multi-panel job the variants each panel won or, for a meta-imputation,
//! what each sample weighed each panel.
//!
//! Every text comes from a typed report and is escaped; plots are drawn here from numbers, so
//! nothing a host sent can add markup.

use std::fmt::Write as _;
use std::path::Path;

use super::results::JobSummary;
use crate::html::escape;
use crate::imputation::combine::best_r2::MergeReport;
use crate::imputation::combine::meta::MetaReport;
use crate::imputation::qc::{QcReport, QcStatus};
use crate::store::jobs::JobRow;
use crate::time::rfc3339;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}\
td.n{text-align:right}.warn{color:#a00;font-weight:600}dl{display:grid;grid-template-columns:12rem 1fr}\
dt{font-weight:600}svg{max-width:100%}";

fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class =
                if i > 0 && cell.chars().next().is_some_and(|c| c.is_ascii_digit()) { " class=\"n\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", escape(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn r2_chart(summary: &JobSummary) -> String {
    let bins = [
        ("<1%", &summary.imputed_by_maf.rare),
        ("1-5%", &summary.imputed_by_maf.low_frequency),
        (">5%", &summary.imputed_by_maf.common),
    ];
    let mut svg = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"420\" height=\"130\" role=\"img\" aria-label=\"Mean r2 by MAF\">",
    );
    for (i, (label, bin)) in bins.iter().enumerate() {
        let r2 = bin.mean_r2.unwrap_or(0.0).clamp(0.0, 1.0);
        let y = 10 + i * 40;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" font-size=\"13\">MAF {}</text><rect x=\"80\" y=\"{y}\" width=\"{:.1}\" height=\"26\" fill=\"#1f4e9c\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"13\">{:.3} ({} variants)</text>",
            y + 18,
            escape(label),
            r2 * 250.0,
            86.0 + r2 * 250.0,
            y + 18,
            r2,
            bin.variants
        );
    }
    svg.push_str("</svg>");
    svg
}

/// How a multi-panel job's panels were combined, from its report.
#[derive(Default, Clone, Copy)]
pub enum Combined<'a> {
    #[default]
    One,
    BestR2(&'a MergeReport),
    Meta(&'a MetaReport),
}

fn meta_section(out: &mut String, meta: &MetaReport) {
    out.push_str("<h2>Panels combined (meta-imputation)</h2>");
    let rows: Vec<Vec<String>> = meta
        .chromosomes
        .iter()
        .map(|c| {
            let cells = [c.training_sites, c.variants, c.not_in_every_panel];
            std::iter::once(c.chromosome.clone()).chain(cells.iter().map(u64::to_string)).collect()
        })
        .collect();
    table(out, &["Chromosome", "Training sites", "Variants", "Not in every panel"], &rows);
    out.push_str("<h3>Mean weight of each panel, per sample</h3>");
    let mut head = vec!["Sample"];
    head.extend(meta.panels.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = meta
        .samples
        .iter()
        .map(|s| std::iter::once(s.sample.clone()).chain(s.mean_weights.iter().map(|w| format!("{w:.3}"))).collect())
        .collect();
    table(out, &head, &rows);
}

/// The report page.
pub fn render(job: &JobRow, qc: Option<&QcReport>, summary: Option<&JobSummary>, combined: Combined<'_>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fedimpute report: {}</title><style>{STYLE}</style></head><body>",
        escape(&job.name)
    );
    let _ = write!(out, "<h1>Imputation report: {}</h1><dl>", escape(&job.name));
    let facts = [
        ("Job", job.id.clone()),
        ("Panel(s)", job.panel_id.clone()),
        ("Genome build", job.build.clone()),
        ("Engine", job.engine.clone()),
        ("Phasing", job.phasing.clone()),
        ("Population", job.population.clone().unwrap_or_else(|| "-".into())),
        ("r2 filter", job.r2_filter.to_string()),
        ("Submitted", rfc3339(job.created_at)),
        ("Software", format!("fedimpute {}", env!("CARGO_PKG_VERSION"))),
    ];
    for (k, v) in facts {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(&v));
    }
    out.push_str("</dl>");

    if let Some(qc) = qc {
        out.push_str("<h2>Input QC</h2>");
        let status = if qc.status == QcStatus::Passed { "passed" } else { "failed" };
        let _ = write!(
            out,
            "<p>QC {status}: {} of {} variants kept, {} samples{}.</p>",
            qc.variants_kept,
            qc.variants_total,
            qc.samples,
            qc.panel_overlap.map(|o| format!(", {:.1}% found in the panel", o * 100.0)).unwrap_or_default()
        );
        if let Some(m) = &qc.message {
            let _ = write!(out, "<p class=\"warn\">{}</p>", escape(m));
        }
        if !qc.repairs.is_empty() {
            out.push_str("<h3>Repairs made to the uploaded files</h3><ul>");
            for r in &qc.repairs {
                let _ = write!(out, "<li>{}: {}</li>", escape(&r.file), escape(&r.message));
            }
            out.push_str("</ul>");
        }
        let files: Vec<Vec<String>> = qc
            .files
            .iter()
            .map(|f| {
                vec![
                    f.name.clone(),
                    f.chromosome.clone().unwrap_or_default(),
                    f.variants.to_string(),
                    f.kept.to_string(),
                    f.skipped.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(&mut out, &["File", "Chromosome", "Variants", "Kept", "Note"], &files);
        if !qc.excluded.is_empty() {
            out.push_str("<h3>Excluded variants by reason</h3>");
            let rows: Vec<Vec<String>> =
                qc.excluded.iter().map(|(r, n)| vec![r.as_str().replace('_', " "), n.to_string()]).collect();
            table(&mut out, &["Reason", "Variants"], &rows);
        }
        if let Some(f) = &qc.allele_frequency {
            out.push_str("<h3>Allele frequencies against the panel</h3>");
            let _ = write!(
                out,
                "<p>{} sites compared with {}; {} with chi-square above {}{}.</p>",
                f.sites,
                escape(f.population.as_deref().unwrap_or("all panel samples")),
                f.sites_over_threshold,
                f.chisq_threshold,
                f.correlation.map(|r| format!(", correlation {r:.3}")).unwrap_or_default()
            );
            if let Some(w) = &f.warning {
                let _ = write!(out, "<p class=\"warn\">{}</p>", escape(w));
            }
            out.push_str(&f.svg());
        }
    }
    if let Some(summary) = summary {
        out.push_str("<h2>Imputation</h2>");
        let _ = write!(
            out,
            "<p>{} variants imputed, {} typed (r2 filter {}).</p>",
            summary.variants_imputed, summary.variants_typed, summary.r2_filter
        );
        out.push_str("<h3>Mean estimated r2 of imputed variants by minor allele frequency</h3>");
        out.push_str(&r2_chart(summary));
        if !summary.chromosomes.is_empty() {
            out.push_str("<h3>Per chromosome</h3>");
            let rows: Vec<Vec<String>> = summary
                .chromosomes
                .iter()
                .map(|c| vec![c.chromosome.clone(), c.typed.to_string(), c.imputed.to_string(), c.filtered.to_string()])
                .collect();
            table(&mut out, &["Chromosome", "Typed", "Imputed", "Under the r2 filter"], &rows);
        }
    }
    match combined {
        Combined::One => {}
        Combined::BestR2(merge) => {
            out.push_str("<h2>Panels combined (best r2 per variant)</h2>");
            let rows: Vec<Vec<String>> =
                merge.wins.iter().map(|(panel, n)| vec![panel.clone(), n.to_string()]).collect();
            table(&mut out, &["Panel", "Variants won"], &rows);
        }
        Combined::Meta(meta) => meta_section(&mut out, meta),
    }
    out.push_str("</body></html>\n");
    out
}

/// Writes `report.html` into `results` from the files there (`qc_report.json`, `summary.json`,
/// `merge_report.json` or `meta_report.json`), whichever exist.
pub async fn write(job: &JobRow, results: &Path) -> std::io::Result<std::path::PathBuf> {
    async fn read<T: serde::de::DeserializeOwned>(path: std::path::PathBuf) -> Option<T> {
        serde_json::from_slice(&tokio::fs::read(path).await.ok()?).ok()
    }
    let qc: Option<QcReport> = read(results.join("qc_report.json")).await;
    let summary: Option<JobSummary> = read(results.join("summary.json")).await;
    let merge: Option<MergeReport> = read(results.join("merge_report.json")).await;
    let meta: Option<MetaReport> = read(results.join("meta_report.json")).await;
    let combined = match (&merge, &meta) {
        (Some(merge), _) => Combined::BestR2(merge),
        (None, Some(meta)) => Combined::Meta(meta),
        (None, None) => Combined::One,
    };
    let path = results.join("report.html");
    tokio::fs::write(&path, render(job, qc.as_ref(), summary.as_ref(), combined)).await?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imputation::repair::{Repair, RepairKind};

    #[test]
    fn the_page_holds_every_section_and_no_markup_from_the_reports() {
        let qc_json = r#"{"status":"passed","message":null,"build":"hg19","samples":100,
            "files":[{"name":"<img src=x onerror=alert(1)>.vcf","chromosome":"20","variants":10,"kept":9}],
            "variants_total":10,"variants_kept":9,"excluded":{"not_in_panel":1},"panel_matches":9,
            "ambiguous_strand_matches":0,"panel_overlap":0.9,"low_call_rate_samples":[],
            "allele_frequency":{"population":"</text><script>x</script>","sites":9,"chisq_threshold":300.0,
              "sites_over_threshold":0,"correlation":0.99,"swapped_correlation":-0.9,"warning":null,
              "outliers":[],"grid":50,"cells":[[1,1,9]]}}"#;
        let mut qc: QcReport = serde_json::from_str(qc_json).unwrap();
        qc.repairs.push(Repair {
            file: "a<b>.vcf".into(),
            kind: RepairKind::Sorted,
            message: "sorted 9 records of 20".into(),
        });
        let mut summary = JobSummary::default();
        crate::jobs::results::add_counts(
            &mut summary,
            "chr20",
            &crate::imputation::dose::DoseCounts {
                imputed: 5,
                typed: 4,
                filtered: 0,
                bins: [(1, 0.5), (2, 0.8), (2, 0.9)],
            },
        );
        let job = JobRow::for_tests("j1", "sim");
        let page = render(&job, Some(&qc), Some(&summary), Combined::One);
        assert!(!page.contains("<script") && !page.contains("<img"), "markup from a report reached the page");
        assert!(page.contains("a&lt;b&gt;.vcf: sorted 9 records of 20"));
        for section in
            ["Input QC", "Allele frequencies against the panel", "Mean estimated r2", "Per chromosome", "<svg"]
        {
            assert!(page.contains(section), "no {section}");
        }
        assert!(!page.contains("src=\"http") && !page.contains("href="), "self-contained: no external asset");
    }
}
