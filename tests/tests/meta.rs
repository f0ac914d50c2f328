//! Meta-imputation on the committed two-population data (tests/data/two_pop/), with the real
//! engines run as each host runs them (Beagle 5.4 phasing with its panel, Minimac4 4.1.2 with
//! `--empirical-output`) and the origin's statistics through `fedimpute combine`: each sample's
//! phasing from its best-fitting panel, then the combination of both panels' results of that one
//! phased file. The pooled panel is in the data for reference only. Then the same through a
//! federation: a `combine=meta` job at an origin with two hosts, one panel each.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::Duration;

use fedimpute_tests::federation::{federation_with, with_transfer};
use fedimpute_tests::jobs::{accuracy_against, download, panel_add, submit, wait_state, walk};
use fedimpute_tests::{fedimpute, test_data};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

fn data(name: &str) -> PathBuf {
    test_data(&format!("two_pop/{name}"))
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// What one panel's host makes: the panel as msav, its phasing of the targets, and Minimac4's
/// dose and empirical VCFs of a phased input.
struct Host {
    msav: PathBuf,
    phased: PathBuf,
    dir: PathBuf,
}

impl Host {
    fn new(dir: &Path, panel: &str) -> Self {
        let msav = dir.join(format!("{panel}.msav"));
        run("minimac4", &["--compress-reference", path(&data(&format!("{panel}.vcf.gz"))), "-o", path(&msav)]);
        let prefix = dir.join(format!("{panel}.phased"));
        run(
            "beagle",
            &[
                &format!("gt={}", path(&data("targets.vcf.gz"))),
                &format!("ref={}", path(&data(&format!("{panel}.vcf.gz")))),
                &format!("map={}", path(&data("map.txt"))),
                &format!("out={}", path(&prefix)),
                "impute=false",
                "seed=1",
                "nthreads=2",
            ],
        );
        let phased = dir.join(format!("{panel}.phased.vcf.gz"));
        run("tabix", &["-f", "-p", "vcf", path(&phased)]);
        Self { msav, phased, dir: dir.join(panel) }
    }

    /// Minimac4 on `input`: (dose, empirical).
    fn impute(&self, input: &Path, tag: &str) -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let dose = self.dir.join(format!("{tag}.dose.vcf.gz"));
        let empirical = self.dir.join(format!("{tag}.empirical.vcf.gz"));
        run(
            "minimac4",
            &[
                path(&self.msav),
                path(input),
                "-o",
                path(&dose),
                "-O",
                "vcf.gz",
                "-f",
                "GT,HDS,DS,GP",
                "-e",
                path(&empirical),
                "-t",
                "2",
            ],
        );
        (dose, empirical)
    }
}

fn r2_all(imputed: &Path) -> f64 {
    let scores = accuracy_against(imputed, &data("truth.vcf.gz"), &data("targets.vcf.gz"), &data("pooled.vcf.gz"));
    scores["all"]["r2"].as_f64().unwrap()
}

fn populations() -> Vec<(String, String)> {
    std::fs::read_to_string(data("populations.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t').map(|(s, p)| (s.to_string(), p.to_string())))
        .collect()
}

/// Writes `best_r2` (the best-r2 merge of the panels' own results) and asserts that `meta`
/// beats both the better panel alone (by 0.05) and that merge, and comes within 0.02 of the
/// pooled panel, in aggregate dosage r2 over every masked site.
fn assert_meta_approaches_pooled(what: &str, a_own: &Path, b_own: &Path, best_r2: &Path, meta: &Path, pooled: &Path) {
    let panel_arg = |name: &str, p: &Path| format!("{name}={}", path(p));
    combine(&["best-r2", "--panel", &panel_arg("A", a_own), "--panel", &panel_arg("B", b_own), "-o", path(best_r2)]);
    let (single_a, single_b, merged, combined, reference) =
        (r2_all(a_own), r2_all(b_own), r2_all(best_r2), r2_all(meta), r2_all(pooled));
    let scores =
        format!("A {single_a:.3}, B {single_b:.3}, best_r2 {merged:.3}, meta {combined:.3}, pooled {reference:.3}");
    eprintln!("aggregate dosage r2 ({what}): {scores}");
    assert!(combined >= single_a.max(single_b) + 0.05, "meta beats the better panel by 0.05: {scores}");
    assert!(combined > merged, "meta beats best_r2: {scores}");
    assert!(combined >= reference - 0.02, "meta within 0.02 of the pooled panel: {scores}");
}

/// How many samples of a meta report weigh most the panel of their own population
/// (`own_panel(population)` names it).
fn weighing_own_panel(report: &serde_json::Value, own_panel: impl Fn(&str) -> String) -> usize {
    let panels: Vec<&str> = report["panels"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    let truth = populations();
    report["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            let w: Vec<f64> = s["mean_weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).collect();
            let best = if w[0] >= w[1] { panels[0] } else { panels[1] };
            truth.iter().any(|(name, pop)| s["sample"] == name.as_str() && own_panel(pop) == best)
        })
        .count()
}

fn combine(args: &[&str]) -> String {
    let out = fedimpute(&[&["combine"], args].concat());
    assert!(out.status.success(), "fedimpute combine {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn meta_imputation_of_two_population_panels_approaches_the_pooled_panel() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Host::new(dir.path(), "panel_a"), Host::new(dir.path(), "panel_b"));
    let pooled = Host::new(dir.path(), "pooled");
    // Each host imputes its own phasing once: the single-panel results and the fit to score.
    let (a_own, a_fit) = a.impute(&a.phased, "own");
    let (b_own, b_fit) = b.impute(&b.phased, "own");
    let (pooled_dose, _) = pooled.impute(&pooled.phased, "own");

    // Each sample's phasing from its best-fitting panel.
    let composed = dir.path().join("composed.vcf.gz");
    let choice = combine(&[
        "phasing",
        "--panel",
        &format!("A={},{}", path(&a.phased), path(&a_fit)),
        "--panel",
        &format!("B={},{}", path(&b.phased), path(&b_fit)),
        "-o",
        path(&composed),
        "--json",
    ]);
    let choice: serde_json::Value = serde_json::from_str(&choice).unwrap();
    let truth = populations();
    let chosen_right = choice["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| truth.iter().any(|(name, pop)| s["sample"] == name.as_str() && s["panel"] == pop.as_str()))
        .count();
    assert!(
        chosen_right * 10 >= truth.len() * 9,
        "{chosen_right} of {} samples phased by their own panel",
        truth.len()
    );

    // Both hosts impute that one file; the origin combines.
    let (a_dose, a_emp) = a.impute(&composed, "meta_input");
    let (b_dose, b_emp) = b.impute(&composed, "meta_input");
    let meta = dir.path().join("meta.vcf.gz");
    let report = combine(&[
        "meta",
        "--panel",
        &format!("A={},{}", path(&a_dose), path(&a_emp)),
        "--panel",
        &format!("B={},{}", path(&b_dose), path(&b_emp)),
        "-o",
        path(&meta),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let best_r2 = dir.path().join("best_r2.vcf.gz");
    assert_meta_approaches_pooled("fedimpute combine", &a_own, &b_own, &best_r2, &meta, &pooled_dose);

    // What the federation learnt about whom each panel fits.
    let weighted_right = weighing_own_panel(&report, |pop| pop.to_string());
    assert!(
        weighted_right * 10 >= truth.len() * 9,
        "{weighted_right} of {} samples weigh their own panel most",
        truth.len()
    );
    assert!(report["chromosomes"][0]["training_sites"].as_u64().unwrap() > 100, "{report}");

    // The output is the union of both panels' sites, in order, each once.
    let sites = |p: &Path| -> Vec<String> {
        let out = Command::new("bcftools").args(["query", "-f", "%POS %REF %ALT\\n"]).arg(p).output().unwrap();
        String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect()
    };
    let mut union: Vec<String> = sites(&a_dose).into_iter().chain(sites(&b_dose)).collect();
    union.sort_by_key(|s| s.split(' ').next().unwrap().parse::<u64>().unwrap());
    let mut seen = std::collections::HashSet::new();
    union.retain(|s| seen.insert(s.clone()));
    assert_eq!(sites(&meta), union);
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn samples_of(vcf: &Path) -> Vec<String> {
    let out = Command::new("bcftools").args(["query", "-l"]).arg(vcf).output().unwrap();
    assert!(out.status.success(), "bcftools query -l {}: {}", vcf.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_meta_job_approaches_the_pooled_panel_and_the_origin_receives_only_its_targets() {
    const PANELS: [&str; 2] = ["panel_a", "panel_b"];
    let fed = federation_with(
        2,
        |i, node| {
            let vcf = data(&format!("{}.vcf.gz", PANELS[i - 1]));
            panel_add(node, PANELS[i - 1], &[&vcf], &["--population", "AFR", "--map", path(&data("map.txt"))]);
        },
        |_, c| with_transfer(c, "poll_secs = 1"),
    )
    .await;
    let a = &fed.nodes[0];
    let token = a.admin_token().await.unwrap();
    let targets = [(data("targets.vcf.gz"), "targets.vcf.gz")];
    let targets: Vec<(&Path, &str)> = targets.iter().map(|(p, n)| (p.as_path(), *n)).collect();
    let fields = |extra: &[(&'static str, &'static str)]| {
        [&[("panel", "panel_a,panel_b"), ("build", "hg19"), ("combine", "meta")], extra].concat()
    };

    // What meta-imputation cannot do is refused before anything is kept.
    for (extra, why) in [
        (vec![("panel", "panel_a")], "two or more panels"),
        (vec![("engine", "beagle")], "minimac4"),
        (vec![("phasing", "no_phasing")], "no_phasing"),
        (vec![("combine", "average")], "combine must be one of"),
    ] {
        let mut asked = fields(&[]);
        asked.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        asked.extend(extra);
        let (status, body) = submit(a, &token, &targets, &asked).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{asked:?}: {body}");
        assert!(body.to_string().contains(why), "{asked:?}: {body}");
    }

    let (status, job) = submit(a, &token, &targets, &fields(&[("r2_filter", "0")])).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap();
    let done = wait_state(a, &token, id, &["completed", "failed", "cancelled"], Duration::from_secs(900)).await;
    assert_eq!(done["state"], "completed", "{done}");
    // Two rounds, each on both hosts: the phasing, then the composed phasing imputed.
    let children = done["children"].as_array().unwrap();
    let hosts = [fed.nodes[1].peer_id(), fed.nodes[2].peer_id()];
    for round in ["meta_phase", "meta_impute"] {
        let peers: Vec<&str> =
            children.iter().filter(|c| c["mode"] == round).map(|c| c["peer"].as_str().unwrap()).collect();
        assert_eq!(peers, hosts, "{round}: {done}");
    }

    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta.vcf.gz");
    download(a, &token, id, "chr20.meta.dose.vcf.gz", &meta).await;
    // The same panels run directly, for reference: each alone, their best-r2 merge, and pooled.
    let (host_a, host_b) = (Host::new(dir.path(), "panel_a"), Host::new(dir.path(), "panel_b"));
    let pooled = Host::new(dir.path(), "pooled");
    let (a_own, _) = host_a.impute(&host_a.phased, "own");
    let (b_own, _) = host_b.impute(&host_b.phased, "own");
    let (pooled_dose, _) = pooled.impute(&pooled.phased, "own");
    let best_r2 = dir.path().join("best_r2.vcf.gz");
    assert_meta_approaches_pooled("federated job", &a_own, &b_own, &best_r2, &meta, &pooled_dose);

    // The job's report: most samples weigh the panel of their own population most.
    let report = &done["meta_report"];
    let panels: Vec<&str> = report["panels"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(panels, PANELS, "{report}");
    let truth = populations();
    let own_panel = |pop: &str| if pop == "A" { PANELS[0] } else { PANELS[1] }.to_string();
    let weighted_right = weighing_own_panel(report, own_panel);
    assert!(weighted_right * 10 >= truth.len() * 9, "{weighted_right} of {} samples: {report}", truth.len());

    // Nothing of the panels reached the origin: every VCF it holds has the targets' samples
    // and no others, and no file it holds is a file of a host's panel.
    let target_samples = samples_of(&data("targets.vcf.gz"));
    let origin_files = walk(&a.data_dir());
    let mut vcfs = 0;
    for file in origin_files.iter().filter(|f| f.to_string_lossy().ends_with(".vcf.gz")) {
        assert_eq!(samples_of(file), target_samples, "{}", file.display());
        vcfs += 1;
    }
    assert!(vcfs >= 9, "the inputs, each round's returned files and the results: {vcfs} VCFs");
    let panel_files: std::collections::HashSet<String> =
        fed.nodes[1..].iter().flat_map(|h| walk(&h.data_dir().join("panels"))).map(|f| sha256(&f)).collect();
    assert!(panel_files.len() >= 4, "the hosts' panel files were found: {}", panel_files.len());
    for file in &origin_files {
        assert!(!panel_files.contains(&sha256(file)), "{} is a host's panel file", file.display());
    }
}
