//! Choosing the host of a job: the members that advertise the panel, within both sides' data
//! policy, best first by health, queue length and round-trip time.

use fedimpute_protocol::advert::{Advert, ServiceStatus};
use fedimpute_protocol::federation::Member;

use crate::config::PolicySection;
use crate::federation::policy::{origin_may_send, selects};

/// A panel as the researcher names it: `panel`, or `host/panel` to pin the host, named as the
/// signed member list names it: its PeerId, its institution or a `tag=value` of its entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelRef {
    pub panel_id: String,
    pub host: Option<String>,
}

impl PanelRef {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (host, panel) = match text.rsplit_once('/') {
            Some((host, panel)) => (Some(host.trim().to_string()), panel.trim()),
            None => (None, text),
        };
        if panel.is_empty() || host.as_deref() == Some("") {
            return Err(format!("panel {text:?} is not `panel` or `node/panel`"));
        }
        Ok(Self { panel_id: panel.to_string(), host })
    }

    /// The reference as written: `panel` or `node/panel`.
    pub fn text(&self) -> String {
        match &self.host {
            Some(h) => format!("{h}/{}", self.panel_id),
            None => self.panel_id.clone(),
        }
    }
}

/// One member that could host the job, as seen from the origin.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub member: &'a Member,
    pub advert: &'a Advert,
    /// Its advert is within its time to live: it is up and gossiping. Whether this node holds a
    /// connection to it does not matter: only gossip neighbours stay connected, and a job opens
    /// its own connection to the host.
    pub fresh: bool,
    /// Last measured round trip, if this node has been connected to it.
    pub rtt_ms: Option<f64>,
}

/// What the job needs of a host.
#[derive(Debug, Clone)]
pub struct Needs<'a> {
    pub panel: &'a PanelRef,
    pub build: &'a str,
    pub engine: &'a str,
    pub input_bytes: u64,
    /// This node, as the member list describes it (for the host's `accepts_from`).
    pub origin: &'a Member,
    /// Hosts already given up on for this job.
    pub excluded: &'a [String],
}

/// The best host for the job among `candidates`, or the reasons none will do, in words for
/// the researcher.
pub fn choose_host<'a>(
    candidates: &[Candidate<'a>],
    needs: &Needs<'_>,
    policy: &PolicySection,
) -> Result<Candidate<'a>, String> {
    let panel_id = &needs.panel.panel_id;
    let hosting: Vec<&Candidate<'a>> = candidates
        .iter()
        .filter(|c| c.advert.panels.iter().any(|p| &p.id == panel_id))
        .filter(|c| needs.panel.host.as_deref().is_none_or(|h| selects(h, c.member)))
        .collect();
    if hosting.is_empty() {
        return Err(match &needs.panel.host {
            Some(h) => format!("no member named {h:?} hosts panel {panel_id:?} (see /api/v1/catalog/panels)"),
            None => format!("no member of the federation hosts panel {panel_id:?} (see /api/v1/catalog/panels)"),
        });
    }
    let mut reasons = Vec::new();
    let mut usable = Vec::new();
    for c in hosting {
        let who = &c.member.institution;
        let panel = c.advert.panels.iter().find(|p| &p.id == panel_id);
        let service = c.advert.services.iter().find(|s| s.id == needs.engine);
        let reason = if needs.excluded.contains(&c.member.peer_id) {
            Some(format!("{who}: already tried for this job"))
        } else if let Err(r) = origin_may_send(policy, c.member) {
            Some(r)
        } else if !c.advert.data_policy.accepts_from.is_empty()
            && !c.advert.data_policy.accepts_from.iter().any(|s| selects(s, needs.origin))
        {
            Some(format!(
                "{who}'s data policy accepts jobs only from {}; this node ({}) is not among them",
                c.advert.data_policy.accepts_from.join(", "),
                needs.origin.institution
            ))
        } else if c.advert.data_policy.max_input_bytes > 0 && needs.input_bytes > c.advert.data_policy.max_input_bytes {
            Some(format!(
                "{who} accepts inputs of at most {} bytes; this job has {}",
                c.advert.data_policy.max_input_bytes, needs.input_bytes
            ))
        } else if panel.is_some_and(|p| p.build != needs.build) {
            Some(format!(
                "{who}: panel {panel_id} is {}, the job is {}",
                panel.map(|p| p.build.as_str()).unwrap_or(""),
                needs.build
            ))
        } else if panel.is_some_and(|p| !p.engines.iter().any(|e| e == needs.engine)) {
            Some(format!("{who}: panel {panel_id} cannot be used with {}", needs.engine))
        } else if service.is_none_or(|s| s.status == ServiceStatus::Unavailable) {
            Some(format!("{who}: {} is not available there", needs.engine))
        } else if !c.fresh {
            Some(format!("{who} is not reachable now"))
        } else {
            None
        };
        match reason {
            Some(r) => reasons.push(r),
            None => usable.push((c, service.map(|s| (s.status != ServiceStatus::Available, s.queue_length)))),
        }
    }
    usable
        .into_iter()
        .min_by(|(a, sa), (b, sb)| {
            let rtt = |c: &Candidate<'_>| c.rtt_ms.unwrap_or(f64::MAX);
            sa.cmp(sb).then(rtt(a).total_cmp(&rtt(b)))
        })
        .map(|(c, _)| c.clone())
        .ok_or_else(|| format!("no usable host for panel {panel_id}: {}", reasons.join("; ")))
}

#[cfg(test)]
mod tests {
    use fedimpute_protocol::advert::{DataPolicyAdvert, PanelAdvert, ServiceAdvert};

    use super::*;

    fn member(name: &str, jurisdiction: &str) -> Member {
        Member {
            peer_id: format!("peer-{name}"),
            institution: name.into(),
            addresses: vec![],
            roles: vec![],
            tags: [("jurisdiction".to_string(), jurisdiction.to_string())].into(),
        }
    }

    fn advert(name: &str, queue: u32, accepts_from: &[&str]) -> Advert {
        Advert {
            federation_id: "f".into(),
            peer_id: format!("peer-{name}"),
            seq: 1,
            issued_at_ms: 0,
            node_name: format!("node-{name}"),
            institution: name.into(),
            software_version: "0".into(),
            protocol_major: 1,
            api_url: None,
            config_version: 1,
            config_digest: String::new(),
            services: vec![ServiceAdvert {
                id: "beagle".into(),
                kind: "beagle".into(),
                status: ServiceStatus::Available,
                queue_length: queue,
                capacity: 1,
            }],
            panels: vec![PanelAdvert {
                id: "afr".into(),
                name: "AFR".into(),
                build: "hg38".into(),
                populations: vec![],
                samples: 1,
                sites: 1,
                chromosomes: vec![],
                engines: vec!["beagle".into()],
            }],
            data_policy: DataPolicyAdvert {
                accepts_from: accepts_from.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            audit_head: None,
        }
    }

    fn candidate<'a>(m: &'a Member, a: &'a Advert, rtt: f64) -> Candidate<'a> {
        Candidate { member: m, advert: a, fresh: true, rtt_ms: Some(rtt) }
    }

    #[test]
    fn the_shortest_queue_then_the_nearest_host_wins_and_pins_are_obeyed() {
        let origin = member("Origin", "ZA");
        let (b, c, d) = (member("B", "ZA"), member("C", "ZA"), member("D", "ZA"));
        let (ab, ac, ad) = (advert("B", 3, &[]), advert("C", 0, &[]), advert("D", 0, &[]));
        let all = [candidate(&b, &ab, 1.0), candidate(&c, &ac, 9.0), candidate(&d, &ad, 2.0)];
        let panel = PanelRef::parse("afr").unwrap();
        let needs =
            Needs { panel: &panel, build: "hg38", engine: "beagle", input_bytes: 10, origin: &origin, excluded: &[] };
        let policy = PolicySection::default();
        assert_eq!(choose_host(&all, &needs, &policy).unwrap().member.institution, "D");

        let pinned = PanelRef::parse("B/afr").unwrap();
        let needs_b = Needs { panel: &pinned, ..needs.clone() };
        assert_eq!(choose_host(&all, &needs_b, &policy).unwrap().member.institution, "B");
        // A node name is the member's own say, not the signed list's: it pins nothing.
        let by_advert_name = PanelRef::parse("node-B/afr").unwrap();
        assert!(choose_host(&all, &Needs { panel: &by_advert_name, ..needs.clone() }, &policy).is_err());

        let excluded = ["peer-D".to_string()];
        let needs_not_d = Needs { excluded: &excluded, ..needs };
        assert_eq!(choose_host(&all, &needs_not_d, &policy).unwrap().member.institution, "C");
    }

    #[test]
    fn a_member_calling_itself_like_another_never_gets_the_others_pinned_jobs() {
        let origin = member("Origin", "ZA");
        let (b, c) = (member("B", "ZA"), member("C", "ZA"));
        let mut impostor = advert("C", 0, &[]);
        impostor.node_name = "B".into();
        impostor.institution = "B".into();
        let ab = advert("B", 5, &[]);
        let pinned = PanelRef::parse("B/afr").unwrap();
        let needs =
            Needs { panel: &pinned, build: "hg38", engine: "beagle", input_bytes: 10, origin: &origin, excluded: &[] };
        let policy = PolicySection::default();
        let all = [candidate(&b, &ab, 9.0), candidate(&c, &impostor, 1.0)];
        assert_eq!(choose_host(&all, &needs, &policy).unwrap().member.peer_id, "peer-B");
        // With B unreachable, the job waits or fails; it never goes to the impostor.
        let gone = Candidate { fresh: false, ..candidate(&b, &ab, 9.0) };
        assert!(choose_host(&[gone, candidate(&c, &impostor, 1.0)], &needs, &policy).is_err());
    }

    #[test]
    fn both_policies_are_applied_and_the_refusal_says_why() {
        let origin = member("Origin", "NG");
        let (b, c) = (member("B", "ZA"), member("C", "NG"));
        let (ab, ac) = (advert("B", 0, &[]), advert("C", 0, &["jurisdiction=ZA"]));
        let all = [candidate(&b, &ab, 1.0), candidate(&c, &ac, 1.0)];
        let panel = PanelRef::parse("afr").unwrap();
        let needs =
            Needs { panel: &panel, build: "hg38", engine: "beagle", input_bytes: 10, origin: &origin, excluded: &[] };
        // Our policy keeps data in NG: B is out; C's policy wants ZA origins: C is out.
        let policy = PolicySection { send_to: vec!["jurisdiction=NG".into()], ..Default::default() };
        let err = choose_host(&all, &needs, &policy).unwrap_err();
        assert!(err.contains("sends data only to jurisdiction=NG") && err.contains("accepts jobs only from"), "{err}");

        let unknown = PanelRef::parse("eur").unwrap();
        let err = choose_host(&all, &Needs { panel: &unknown, ..needs }, &PolicySection::default()).unwrap_err();
        assert!(err.contains("no member of the federation hosts panel \"eur\""), "{err}");
    }

    #[test]
    fn panel_references_parse() {
        assert_eq!(PanelRef::parse("afr").unwrap(), PanelRef { panel_id: "afr".into(), host: None });
        assert_eq!(PanelRef::parse("Wits/afr").unwrap().host.as_deref(), Some("Wits"));
        assert!(PanelRef::parse("/afr").is_err() && PanelRef::parse("wits/").is_err());
    }
}
