//! Reference panels: registered on one node, validated and converted, advertised to the
//! federation, and found in every member's catalog.

use std::time::Duration;

use fedimpute_tests::{FederationAdmins, TestNode, fedimpute, install_crypto_provider, test_data, wait_for};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panel_registered_on_one_node_appears_in_every_catalog() {
    install_crypto_provider();
    let admins = FederationAdmins::new(1).unwrap();
    let mut a = TestNode::init("Inst A").unwrap();
    let mut b = TestNode::init("Inst B").unwrap();
    let fed = admins.new_config("fed.json", "panels-test", 1, &[&a, &b], &[]).unwrap();
    admins.sign(&fed, &[0]).unwrap();
    for n in [&a, &b] {
        assert!(n.apply(&[&fed]).status.success());
    }
    a.start().await.unwrap();
    b.start().await.unwrap();

    // Registered with the CLI while B runs: B notices and re-advertises.
    let out = fedimpute(&[
        "panel",
        "add",
        "--config",
        &b.config_arg(),
        "--id",
        "sim-afr",
        "--name",
        "Simulated AFR",
        "--build",
        "hg19",
        "--population",
        "AFR,EUR",
        "--vcf",
        test_data("panel.vcf.gz").to_str().unwrap(),
        "--map",
        test_data("map.txt").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for ext in ["bref3", "msav", "sites.vcf.gz", "vcf.gz.tbi"] {
        let f = b.data_dir().join(format!("panels/sim-afr/20.{ext}"));
        assert!(std::fs::metadata(&f).map(|m| m.len() > 0).unwrap_or(false), "{} missing or empty", f.display());
    }

    let token = a.admin_token().await.unwrap();
    wait_for("B's panel in A's catalog", Duration::from_secs(60), || async {
        let (_, panels) = a.get("/catalog/panels", &token).await?;
        Ok(panels.as_array().is_some_and(|p| p.iter().any(|x| x["id"] == "sim-afr")))
    })
    .await
    .unwrap();
    let (_, panels) = a.get("/catalog/panels", &token).await.unwrap();
    let panel = &panels[0];
    assert_eq!((panel["samples"].as_u64(), panel["sites"].as_u64()), (Some(1000), Some(19525)));
    assert_eq!(panel["chromosomes"], json!(["20"]));
    assert_eq!(panel["hosts"][0]["peer_id"], b.peer_id());
    assert_eq!(panel["hosts"][0]["reachable"], true);
    // The host's data policy travels with its advert.
    assert_eq!(panel["hosts"][0]["retention_days"], 7);
    assert_eq!(panel["hosts"][0]["max_input_bytes"], 4_294_967_296u64);
    assert_eq!(panel["hosts"][0]["accepts_from"], json!([]));

    // Filters.
    let ids =
        |v: &Value| v.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&a.get("/catalog/panels?build=hg19&population=afr", &token).await.unwrap().1), vec!["sim-afr"]);
    assert!(ids(&a.get("/catalog/panels?build=hg38", &token).await.unwrap().1).is_empty());
    assert!(ids(&a.get("/catalog/panels?population=EAS", &token).await.unwrap().1).is_empty());
    assert!(ids(&a.get(&format!("/catalog/panels?node={}", a.peer_id()), &token).await.unwrap().1).is_empty());
    assert_eq!(ids(&a.get(&format!("/catalog/panels?node={}", b.peer_id()), &token).await.unwrap().1), vec!["sim-afr"]);

    // The researcher's CLI lists the same catalog, as a table or as JSON, with the same filters.
    let ca = a.data_dir().join("tls/api.crt");
    let panels_cli = |extra: &[&str]| {
        let base = a.base_url();
        let mut args = vec!["panels", "--node", &base, "--token", &token, "--ca-cert", ca.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = fedimpute(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let table = panels_cli(&["--build", "hg19"]);
    let row = table.lines().find(|l| l.contains("sim-afr")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("19525") && row.contains("1000") && row.contains(b.institution()), "{table}");
    let header = table.lines().find(|l| l.contains("Panel")).unwrap();
    assert_eq!(header.find("Sites"), row.find("19525"), "columns are aligned: {table}");
    let listed: Value = serde_json::from_str(&panels_cli(&["--population", "EUR", "--json"])).unwrap();
    assert_eq!(ids(&listed), vec!["sim-afr"]);
    let none: Value = serde_json::from_str(&panels_cli(&["--build", "hg38", "--json"])).unwrap();
    assert!(ids(&none).is_empty());

    // Both nodes advertise their engines.
    let (_, services) = a.get("/catalog/services?kind=beagle", &token).await.unwrap();
    let hosts: Vec<&str> =
        services.as_array().unwrap().iter().map(|s| s["host"]["peer_id"].as_str().unwrap()).collect();
    assert!(hosts.contains(&a.peer_id()) && hosts.contains(&b.peer_id()), "{services}");
    assert!(services.as_array().unwrap().iter().all(|s| s["status"] == "available"), "engines installed: {services}");

    // Removing it withdraws it from the federation.
    let out = fedimpute(&["panel", "remove", "--config", &b.config_arg(), "sim-afr"]);
    assert!(out.status.success());
    wait_for("the panel to leave A's catalog", Duration::from_secs(60), || async {
        Ok(a.get("/catalog/panels", &token).await?.1.as_array().is_some_and(|p| p.is_empty()))
    })
    .await
    .unwrap();
    let _ = b.stop_with(libc::SIGTERM);
}

#[tokio::test]
async fn the_panel_api_reads_only_the_incoming_folder_and_explains_bad_panels() {
    install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    node.start().await.unwrap();
    let admin = node.admin_token().await.unwrap();
    let incoming = node.data_dir().join("panels-incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::copy(test_data("panel.vcf.gz"), incoming.join("panel.vcf.gz")).unwrap();
    std::fs::copy(test_data("targets.vcf.gz"), incoming.join("unphased.vcf.gz")).unwrap();

    let add =
        |id: &str, vcf: &str| json!({"id": id, "name": id, "build": "hg19", "populations": ["AFR"], "vcfs": [vcf]});
    for escape in ["../node.key", "/etc/passwd", "..", "sub/x.vcf.gz"] {
        let (status, body) = node.send(Method::POST, "/panels", &admin, &add("x", escape)).await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{escape}: {body}");
    }
    let (status, _) = node.send(Method::POST, "/panels", &admin, &add("Bad Id!", "panel.vcf.gz")).await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, body) = node.send(Method::POST, "/panels", &admin, &add("good", "panel.vcf.gz")).await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _) = node.send(Method::POST, "/panels", &admin, &add("unphased", "unphased.vcf.gz")).await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for("both registrations to finish", Duration::from_secs(120), || async {
        let (_, list) = node.get("/panels", &admin).await?;
        Ok(list.as_array().is_some_and(|l| l.len() == 2 && l.iter().all(|p| p["status"] != "preparing")))
    })
    .await
    .unwrap();
    let (_, list) = node.get("/panels", &admin).await.unwrap();
    let by_id = |id: &str| list.as_array().unwrap().iter().find(|p| p["id"] == id).unwrap().clone();
    assert_eq!(by_id("good")["status"], "ready");
    assert_eq!(by_id("good")["sites"], 19525);
    let bad = by_id("unphased");
    assert_eq!(bad["status"], "failed");
    assert!(bad["error"].as_str().unwrap().contains("unphased"), "{bad}");

    // A researcher may list but not add or remove.
    let (_, created) =
        node.send(Method::POST, "/users", &admin, &json!({"username": "rita", "role": "researcher"})).await.unwrap();
    let rita = node.first_login("rita", created["generated_password"].as_str().unwrap()).await.unwrap();
    assert_eq!(node.get("/panels", &rita).await.unwrap().0, StatusCode::OK);
    assert_eq!(
        node.send(Method::POST, "/panels", &rita, &add("r", "panel.vcf.gz")).await.unwrap().0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(node.send(Method::DELETE, "/panels/good", &rita, &Value::Null).await.unwrap().0, StatusCode::FORBIDDEN);

    let (status, _) = node.send(Method::DELETE, "/panels/good", &admin, &Value::Null).await.unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!node.data_dir().join("panels/good").exists());
    assert_eq!(node.send(Method::DELETE, "/panels/good", &admin, &Value::Null).await.unwrap().0, StatusCode::NOT_FOUND);
    let audit = node.audit("panel.").await.unwrap();
    assert!(audit.iter().any(|e| e["action"] == "panel.add" && e["target"] == "good" && e["outcome"] == "success"));
    assert!(audit.iter().any(|e| e["action"] == "panel.add" && e["target"] == "unphased" && e["outcome"] == "failure"));
    assert!(audit.iter().any(|e| e["action"] == "panel.remove" && e["target"] == "good"));
}

/// The committed panel reshaped as published panels are (scripts/published_panel.py): gzip not
/// bgzip, indels, multi-allelic records, symbolic alleles, a malformed, an unphased and a
/// repeated record.
fn published_panel(dir: &std::path::Path) -> Value {
    let out = std::process::Command::new("python3")
        .arg(fedimpute_tests::workspace_root().join("scripts/published_panel.py"))
        .arg("--data")
        .arg(test_data(""))
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panel_as_published_registers_with_a_report_and_its_indels_are_imputed_by_both_engines() {
    use fedimpute_tests::jobs::*;
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let expected = published_panel(dir.path());
    let mut node = TestNode::init("Inst A").unwrap();
    add_panel(&node, "sim");
    let map = test_data("map.txt");
    let stderr = panel_add(&node, "published", &[&dir.path().join("panel.vcf.gz")], &["--map", map.to_str().unwrap()]);
    assert!(stderr.contains("multi-allelic records split") && stderr.contains("1 malformed"), "{stderr}");
    node.start().await.unwrap();
    let token = node.admin_token().await.unwrap();

    let (_, panels) = node.get("/panels", &token).await.unwrap();
    let panel = panels.as_array().unwrap().iter().find(|p| p["id"] == "published").unwrap().clone();
    assert_eq!(panel["status"], "ready", "{panel}");
    let report = &panel["registration"][0]["report"];
    assert_eq!(report["records_read"], expected["records_read"], "{report}");
    assert_eq!(report["multiallelic_split"], expected["multiallelic_split"], "{report}");
    assert_eq!(report["excluded"], expected["excluded"], "{report}");
    assert_eq!(report["indels"], expected["indels"], "{report}");
    let excluded: u64 = expected["excluded"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    let sites =
        expected["records_read"].as_u64().unwrap() - excluded + expected["multiallelic_split"].as_u64().unwrap();
    assert_eq!(panel["sites"].as_u64(), Some(sites), "a split record counts as two sites");

    // Beagle on the published panel and on the original, side by side: the same SNP accuracy.
    let on = |panel: &'static str, engine: &'static str| {
        let (node, token, dir) = (&node, &token, dir.path());
        async move {
            let id = submit_targets(node, token, &[("panel", panel), ("build", "hg19"), ("engine", engine)]).await;
            let done = wait_state(node, token, &id, &["completed", "failed"], Duration::from_secs(300)).await;
            assert_eq!(done["state"], "completed", "{done}");
            let dose = dir.join(format!("{panel}-{engine}.dose.vcf.gz"));
            download(node, token, &id, "chr20.dose.vcf.gz", &dose).await;
            dose
        }
    };
    let (published, original) = (on("published", "beagle").await, on("sim", "beagle").await);
    let (r2_published, r2_original) = (r2_common(&published), r2_common(&original));
    assert!(
        (r2_published - r2_original).abs() < 0.005,
        "dosage r2 at MAF > 5% SNPs: {r2_published} on the published panel, {r2_original} on the original"
    );
    let minimac = on("published", "minimac4").await;
    for dose in [&published, &minimac] {
        let body = vcf_body(dose);
        let indels = body
            .iter()
            .filter(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                f[3].len() != 1 || f[4].len() != 1
            })
            .count() as u64;
        assert_eq!(indels, expected["indels"].as_u64().unwrap(), "indels in {}", dose.display());
        let split = body.windows(2).filter(|w| w[0].split('\t').nth(1) == w[1].split('\t').nth(1)).count() as u64;
        assert_eq!(split, expected["multiallelic_split"].as_u64().unwrap(), "split records in {}", dose.display());
    }
}

/// Registers the committed panel as `id` with `map` as its genetic map.
fn add_panel_with_map(node: &TestNode, id: &str, map: &std::path::Path) -> String {
    fedimpute_tests::jobs::panel_add(node, id, &[&test_data("panel.vcf.gz")], &["--map", map.to_str().unwrap()])
}

fn gzip(path: &std::path::Path, text: &str) {
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(path).unwrap())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genetic_maps_in_each_format_give_the_same_output_and_debians_real_map_works() {
    use fedimpute_tests::jobs::*;
    install_crypto_provider();
    let real = std::path::Path::new("/usr/share/doc/shapeit4/examples/maps/genetic_maps.b37.tar.gz");
    assert!(real.is_file(), "Debian's shapeit4-example is missing: run scripts/install-deps.sh");
    let dir = tempfile::tempdir().unwrap();
    // The committed PLINK map, and the same map as SHAPEIT and Eagle tables (gzipped).
    let shapeit = dir.path().join("chr20.gmap.gz");
    gzip(&shapeit, "pos\tchr\tcM\n30000000\t20\t30.0\n32000000\t20\t32.0\n");
    let eagle = dir.path().join("genetic_map_hg19.txt.gz");
    gzip(
        &eagle,
        "chr position COMBINED_rate(cM/Mb) Genetic_Map(cM)\n1 100 1 0\n1 200 1 0.0001\n20 30000000 1 30.0\n20 32000000 0 32.0\n",
    );
    // The real b37 map of chromosome 20, as an admin takes it from the package.
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(real)
        .arg("-C")
        .arg(dir.path())
        .arg("chr20.b37.gmap.gz")
        .status()
        .unwrap();
    assert!(status.success());
    let mut node = TestNode::init("Inst A").unwrap();
    add_panel_with_map(&node, "plink", &test_data("map.txt"));
    assert!(add_panel_with_map(&node, "shapeit", &shapeit).contains("Shapeit format"));
    assert!(add_panel_with_map(&node, "eagle", &eagle).contains("Eagle format"));
    let real_log = add_panel_with_map(&node, "real", &dir.path().join("chr20.b37.gmap.gz"));
    assert!(real_log.contains("Shapeit format") && real_log.contains("20: "), "{real_log}");
    node.start().await.unwrap();
    let token = node.admin_token().await.unwrap();

    let mut bodies = Vec::new();
    for (panel, engine) in
        [("plink", "beagle"), ("shapeit", "beagle"), ("eagle", "beagle"), ("real", "beagle"), ("real", "minimac4")]
    {
        let id = submit_targets(&node, &token, &[("panel", panel), ("build", "hg19"), ("engine", engine)]).await;
        let done = wait_state(&node, &token, &id, &["completed", "failed"], Duration::from_secs(300)).await;
        assert_eq!(done["state"], "completed", "{panel} {engine}: {done}");
        let dose = dir.path().join(format!("{panel}-{engine}.vcf.gz"));
        download(&node, &token, &id, "chr20.dose.vcf.gz", &dose).await;
        if panel == "real" {
            let r2 = r2_common(&dose);
            assert!(r2 >= 0.94, "{engine} with the real b37 map: dosage r2 at MAF > 5% is {r2}");
        } else {
            bodies.push(vcf_body(&dose));
        }
    }
    assert!(bodies[1] == bodies[0], "the SHAPEIT map gives other Beagle output than the PLINK map");
    assert!(bodies[2] == bodies[0], "the Eagle map gives other Beagle output than the PLINK map");
    // Minimac4 is given the map too (the last job's engine log).
    let engine_log = std::fs::read_to_string(
        fedimpute_tests::jobs::walk(&node.data_dir().join("jobs"))
            .into_iter()
            .filter(|p| p.ends_with("job.log"))
            .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .unwrap(),
    )
    .unwrap();
    assert!(engine_log.contains("--map") && engine_log.contains("map-20.txt"), "minimac4 ran without the map");
}
