//! Data policy between members: which origins a host accepts, which hosts an origin sends to.
//!
//! Both sides decide with the same selectors over the signed member list, so a host's refusal
//! and an origin's restraint are explained in the same words.

use fedimpute_protocol::federation::Member;

use crate::config::PolicySection;

/// Whether `selector` (institution name, PeerId, or `tag=value`) names `member`.
pub fn selects(selector: &str, member: &Member) -> bool {
    let selector = selector.trim();
    match selector.split_once('=') {
        Some((key, value)) => member.tags.get(key.trim()).is_some_and(|v| v.eq_ignore_ascii_case(value.trim())),
        None => selector == member.peer_id || selector.eq_ignore_ascii_case(&member.institution),
    }
}

fn allowed_by(list: &[String], member: &Member) -> bool {
    list.is_empty() || list.iter().any(|s| selects(s, member))
}

/// As a host: may `origin` submit jobs here? The error is the reason the researcher sees.
pub fn host_accepts(policy: &PolicySection, origin: &Member) -> Result<(), String> {
    if allowed_by(&policy.accept_from, origin) {
        Ok(())
    } else {
        Err(format!(
            "this node's data policy accepts jobs only from {}; {} is not among them",
            policy.accept_from.join(", "),
            origin.institution
        ))
    }
}

/// As an origin: may data go to `host`? The error is the reason the researcher sees.
pub fn origin_may_send(policy: &PolicySection, host: &Member) -> Result<(), String> {
    if allowed_by(&policy.send_to, host) {
        Ok(())
    } else {
        Err(format!(
            "your node's data policy sends data only to {}; {} (which hosts this panel) is not among them",
            policy.send_to.join(", "),
            host.institution
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(institution: &str, jurisdiction: &str) -> Member {
        Member {
            peer_id: format!("12D3Koo{institution}"),
            institution: institution.into(),
            addresses: vec![],
            roles: vec![],
            tags: [("jurisdiction".to_string(), jurisdiction.to_string())].into(),
        }
    }

    #[test]
    fn selectors_match_institution_peer_id_or_tag() {
        let m = member("Wits", "ZA");
        assert!(selects("wits", &m));
        assert!(selects("12D3KooWits", &m));
        assert!(selects("jurisdiction=za", &m));
        assert!(!selects("jurisdiction=NG", &m));
        assert!(!selects("country=ZA", &m));
        assert!(!selects("UCT", &m));
    }

    #[test]
    fn an_empty_list_allows_every_member_and_a_list_only_those_it_names() {
        let (za, ng) = (member("Wits", "ZA"), member("Ibadan", "NG"));
        let open = PolicySection::default();
        assert!(host_accepts(&open, &ng).is_ok() && origin_may_send(&open, &ng).is_ok());

        let strict = PolicySection {
            accept_from: vec!["jurisdiction=ZA".into()],
            send_to: vec!["Wits".into()],
            ..Default::default()
        };
        assert!(host_accepts(&strict, &za).is_ok());
        let refusal = host_accepts(&strict, &ng).unwrap_err();
        assert!(refusal.contains("jurisdiction=ZA") && refusal.contains("Ibadan"), "{refusal}");
        assert!(origin_may_send(&strict, &za).is_ok());
        let restraint = origin_may_send(&strict, &ng).unwrap_err();
        assert!(restraint.contains("hosts this panel") && restraint.contains("Ibadan"), "{restraint}");
    }
}
