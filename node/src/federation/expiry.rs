//! Warning ahead of the federation config's expiry. An expired config freezes the node's part in
//! the federation, so from [`WARN_DAYS`] before, the node says so: a warning in its log and a row
//! in its audit log once a day, the days left on `/metrics`, and a banner on the federation page.

use fedimpute_protocol::federation::{FederationConfig, rfc3339};
use time::OffsetDateTime;

/// How many days ahead of expiry the warnings start.
pub const WARN_DAYS: i64 = 30;

/// Whole days until `config` expires (negative once it has).
pub fn days_left(config: &FederationConfig, now: OffsetDateTime) -> i64 {
    (config.doc().expires_at - now).whole_days()
}

/// What to tell admins when `config` expires within [`WARN_DAYS`] (and has not yet).
pub fn warning(config: &FederationConfig, now: OffsetDateTime) -> Option<String> {
    let d = config.doc();
    if d.expires_at <= now || days_left(config, now) >= WARN_DAYS {
        return None;
    }
    let left = days_left(config, now);
    let when = if left == 0 {
        "in less than a day".to_string()
    } else {
        format!("in {left} day{}", if left == 1 { "" } else { "s" })
    };
    Some(format!(
        "federation config version {} expires {when} ({}): federation admins must sign and publish version {} \
         before then, or this node stops federating",
        d.version,
        rfc3339(d.expires_at),
        d.version + 1
    ))
}

#[cfg(test)]
mod tests {
    use fedimpute_protocol::federation::{AdminSet, AdminSigningKey, FederationDocument, FederationPolicy};
    use time::Duration;

    use super::*;

    fn config(expires_in: Duration, now: OffsetDateTime) -> FederationConfig {
        FederationConfig::new(FederationDocument {
            federation_id: "f".into(),
            version: 3,
            issued_at: now - Duration::days(300),
            expires_at: now + expires_in,
            admins: AdminSet { keys: vec![AdminSigningKey::from_seed([1; 32]).admin_key()], threshold: 1 },
            members: vec![],
            policy: FederationPolicy::default(),
        })
        .unwrap()
    }

    #[test]
    fn warnings_start_thirty_days_ahead_and_stop_at_expiry() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(warning(&config(Duration::days(31), now), now), None);
        let soon = warning(&config(Duration::days(10) + Duration::hours(1), now), now).unwrap();
        assert!(soon.contains("version 3 expires in 10 days") && soon.contains("version 4"), "{soon}");
        assert!(warning(&config(Duration::hours(5), now), now).unwrap().contains("in less than a day"));
        assert_eq!(warning(&config(-Duration::hours(1), now), now), None, "expired: the node is frozen, not warned");
        assert_eq!(days_left(&config(Duration::days(10) + Duration::hours(1), now), now), 10);
    }
}
