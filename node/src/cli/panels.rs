//! `fedimpute panels`: the reference panels of the whole federation, as the researcher's node
//! sees them (its catalog), for choosing one before a submission.

use std::process::ExitCode;

use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

use super::client::{Client, NodeArgs};

#[derive(Debug, clap::Args)]
pub struct PanelsArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Only panels of this genome build (hg19 or hg38).
    #[arg(long)]
    build: Option<String>,
    /// Only panels covering this population.
    #[arg(long)]
    population: Option<String>,
    /// Only panels at this host: its PeerId, institution or a tag=value of the member list.
    #[arg(long)]
    host: Option<String>,
}

impl PanelsArgs {
    pub fn json(&self) -> bool {
        self.node.json
    }
}

pub async fn run(args: PanelsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.node)?;
    // The filters, percent-encoded by the URL parser.
    let mut url = reqwest::Url::parse("https://node.invalid/")?;
    for (key, value) in [("build", &args.build), ("population", &args.population), ("node", &args.host)] {
        if let Some(v) = value {
            url.query_pairs_mut().append_pair(key, v);
        }
    }
    let path = match url.query() {
        Some(query) => format!("/catalog/panels?{query}"),
        None => "/catalog/panels".to_string(),
    };
    let panels = client.get(&path).await?;
    if args.node.json {
        println!("{}", serde_json::to_string_pretty(&panels)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = panels.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        eprintln!("no panel in the federation catalog matches");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// One row per panel and host: what `--panel host/panel` would choose.
fn table(panels: &[Value]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(["Panel", "Build", "Populations", "Samples", "Sites", "Chromosomes", "Engines", "Host", "Reachable"]);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let list = |v: &Value| v.as_array().map(|a| a.iter().map(text).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    for p in panels {
        for host in p["hosts"].as_array().cloned().unwrap_or_default() {
            t.add_row([
                text(&p["id"]),
                text(&p["build"]),
                list(&p["populations"]),
                p["samples"].as_u64().unwrap_or(0).to_string(),
                p["sites"].as_u64().unwrap_or(0).to_string(),
                list(&p["chromosomes"]),
                list(&p["engines"]),
                text(&host["institution"]),
                if host["reachable"].as_bool().unwrap_or(false) { "yes" } else { "no" }.to_string(),
            ]);
        }
    }
    t
}
