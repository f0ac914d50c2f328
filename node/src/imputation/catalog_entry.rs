//! What this node advertises about its own imputation capacity: ready panels and engines.

use fedimpute_protocol::advert::{PanelAdvert, ServiceAdvert, ServiceStatus};

use crate::config::EnginesSection;
use crate::store::panels::panel_totals;
use crate::store::{Store, StoreError};

/// The engines this node runs, as advertised. An engine whose program is missing is advertised
/// as unavailable rather than hidden, so admins see why jobs do not go there.
pub fn local_services(engines: &EnginesSection) -> Vec<ServiceAdvert> {
    let on_path = |p: &std::path::Path| {
        p.is_absolute() && p.is_file()
            || std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(p).is_file()))
    };
    let status = |ok: bool| if ok { ServiceStatus::Available } else { ServiceStatus::Unavailable };
    vec![
        ServiceAdvert {
            id: "beagle".into(),
            kind: "beagle".into(),
            status: status(on_path(&engines.java) && engines.beagle_jar.is_file()),
            queue_length: 0,
            capacity: engines.max_concurrent_jobs,
        },
        ServiceAdvert {
            id: "minimac4".into(),
            kind: "minimac4".into(),
            status: status(on_path(&engines.minimac4) && on_path(&engines.java) && engines.beagle_jar.is_file()),
            queue_length: 0,
            capacity: engines.max_concurrent_jobs,
        },
    ]
}

/// The ready panels, as advertised.
pub async fn local_panels(store: &Store) -> Result<Vec<PanelAdvert>, StoreError> {
    let mut out = Vec::new();
    for p in store.list_panels().await?.into_iter().filter(|p| p.status == "ready") {
        let chromosomes = store.panel_chromosomes(&p.id).await?;
        let (samples, sites) = panel_totals(&chromosomes);
        out.push(PanelAdvert {
            populations: p.population_list(),
            id: p.id,
            name: p.name,
            build: p.build,
            samples: samples as u64,
            sites: sites as u64,
            chromosomes: chromosomes.into_iter().map(|c| c.chromosome).collect(),
            engines: vec!["beagle".into(), "minimac4".into()],
        });
    }
    Ok(out)
}

/// How an external service and its panels are advertised: the service under its own id and
/// kind, with the status of its last health check; each panel once per build it takes, naming
/// the service as its engine.
pub fn external_service(service: &crate::store::services::ServiceRow) -> (ServiceAdvert, Vec<PanelAdvert>) {
    let status = match service.status.as_str() {
        "available" => ServiceStatus::Available,
        "degraded" => ServiceStatus::Degraded,
        _ => ServiceStatus::Unavailable,
    };
    let advert = ServiceAdvert {
        id: service.id.clone(),
        kind: service.kind.clone(),
        status,
        queue_length: service.queue_length.clamp(0, i64::from(u32::MAX)) as u32,
        capacity: 0,
    };
    let panels = service
        .panels()
        .into_iter()
        .flat_map(|p| {
            let builds = if p.builds.is_empty() { vec!["hg19".to_string()] } else { p.builds.clone() };
            builds.into_iter().map(move |build| PanelAdvert {
                id: p.id.clone(),
                name: p.name.clone(),
                build,
                populations: p.populations.clone(),
                samples: 0,
                sites: 0,
                chromosomes: vec![],
                engines: vec![service.id.clone()],
            })
        })
        .collect();
    (advert, panels)
}
