//! The acceptance rules of federation configs, one test per rule.

use fedimpute_protocol::federation::{
    AdminSet, AdminSigningKey, ConfigRejection, FederationConfig, FederationDocument, FederationPolicy, Member,
    SignerSet,
};
use time::{Duration, OffsetDateTime, macros::datetime};

const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

fn key(n: u8) -> AdminSigningKey {
    AdminSigningKey::from_seed([n; 32])
}

const PEER_A: &str = "12D3KooWCksG4HMEKfNdwr7KVvgbKx5bAgXBhQRFVqeLx9Ppwsxy";
const PEER_B: &str = "12D3KooWStB2NbgxcjBXoqBH7ATPbyMHqTL7shVgTmfXxoMeGWsE";

fn doc(version: u64, admins: &[u8], threshold: u32) -> FederationDocument {
    FederationDocument {
        federation_id: "test-fed".into(),
        version,
        issued_at: NOW - Duration::hours(1),
        expires_at: NOW + Duration::days(30),
        admins: AdminSet { keys: admins.iter().map(|n| key(*n).admin_key()).collect(), threshold },
        members: vec![Member {
            peer_id: PEER_A.into(),
            institution: "A".into(),
            addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            roles: vec!["host".into()],
            tags: [("jurisdiction".to_string(), "ZA".to_string())].into(),
        }],
        policy: FederationPolicy::default(),
    }
}

fn signed(d: FederationDocument, signers: &[u8]) -> FederationConfig {
    let mut c = FederationConfig::new(d).unwrap();
    for n in signers {
        c.sign(&key(*n).0).unwrap();
    }
    c
}

fn v1() -> FederationConfig {
    signed(doc(1, &[1, 2, 3], 2), &[1, 2])
}

#[test]
fn first_config_needs_a_threshold_of_its_own_admins() {
    assert_eq!(v1().verify_initial(NOW), Ok(()));
    let one = signed(doc(1, &[1, 2, 3], 2), &[1]);
    assert_eq!(
        one.verify_initial(NOW),
        Err(ConfigRejection::NotEnoughSignatures { by: SignerSet::Own, valid: 1, threshold: 2 })
    );
}

#[test]
fn next_version_signed_by_two_of_three_is_accepted() {
    let mut d = doc(2, &[1, 2, 3], 2);
    d.members.push(Member {
        peer_id: PEER_B.into(),
        institution: "B".into(),
        addresses: vec![],
        roles: vec![],
        tags: Default::default(),
    });
    let v2 = signed(d, &[2, 3]);
    assert_eq!(v2.verify_update(&v1(), NOW), Ok(()));
}

#[test]
fn one_signature_or_one_key_signing_twice_is_not_enough() {
    let v2 = signed(doc(2, &[1, 2, 3], 2), &[1]);
    assert!(matches!(v2.verify_update(&v1(), NOW), Err(ConfigRejection::NotEnoughSignatures { valid: 1, .. })));

    // The same key's signature listed twice (as a forger replaying it would) still counts once.
    let mut text: serde_json::Value = serde_json::from_str(&v2.to_json()).unwrap();
    let sig = text["signatures"][0].clone();
    text["signatures"].as_array_mut().unwrap().push(sig);
    let doubled = FederationConfig::from_json(&text.to_string()).unwrap();
    assert_eq!(doubled.signatures().len(), 2);
    assert!(matches!(
        doubled.verify_update(&v1(), NOW),
        Err(ConfigRejection::NotEnoughSignatures { valid: 1, threshold: 2, .. })
    ));
}

#[test]
fn signatures_by_strangers_do_not_count() {
    let v2 = signed(doc(2, &[1, 2, 3], 2), &[1, 9]);
    assert!(matches!(v2.verify_update(&v1(), NOW), Err(ConfigRejection::NotEnoughSignatures { valid: 1, .. })));
}

#[test]
fn lower_or_equal_versions_are_rollbacks() {
    let v2 = signed(doc(2, &[1, 2, 3], 2), &[1, 2]);
    assert_eq!(v1().verify_update(&v2, NOW), Err(ConfigRejection::Rollback { current: 2, offered: 1 }));
    assert_eq!(v2.verify_update(&v2, NOW), Err(ConfigRejection::Rollback { current: 2, offered: 2 }));
}

#[test]
fn skipping_a_version_is_refused() {
    let v3 = signed(doc(3, &[1, 2, 3], 2), &[1, 2, 3]);
    let err = v3.verify_update(&v1(), NOW).unwrap_err();
    assert_eq!(err, ConfigRejection::SkipsVersion { current: 1, offered: 3 });
    assert!(err.to_string().contains("apply version 2 first"));
}

#[test]
fn expired_configs_are_refused() {
    let mut d = doc(2, &[1, 2, 3], 2);
    d.expires_at = NOW - Duration::seconds(1);
    d.issued_at = NOW - Duration::days(1);
    let v2 = signed(d, &[1, 2]);
    assert!(matches!(v2.verify_update(&v1(), NOW), Err(ConfigRejection::Expired { version: 2, .. })));
    assert!(v1().verify_initial(NOW + Duration::days(31)).is_err());
    assert!(v1().is_expired(NOW + Duration::days(30)));
}

#[test]
fn another_federation_is_refused() {
    let mut d = doc(2, &[1, 2, 3], 2);
    d.federation_id = "other".into();
    let v2 = signed(d, &[1, 2]);
    assert!(matches!(v2.verify_update(&v1(), NOW), Err(ConfigRejection::WrongFederation { .. })));
}

/// Rotation: v1 has admins {1,2,3} (2 needed); v2 hands over to {3,4,5} (2 needed). v2 needs two
/// old and two new signatures; admin 3 counts on both sides.
#[test]
fn key_rotation_needs_the_old_threshold_and_the_new_threshold() {
    let rotated = || doc(2, &[3, 4, 5], 2);
    let only_old = signed(rotated(), &[1, 2]);
    assert_eq!(
        only_old.verify_update(&v1(), NOW),
        Err(ConfigRejection::NotEnoughSignatures { by: SignerSet::Own, valid: 0, threshold: 2 })
    );
    let only_new = signed(rotated(), &[4, 5]);
    assert_eq!(
        only_new.verify_update(&v1(), NOW),
        Err(ConfigRejection::NotEnoughSignatures { by: SignerSet::Previous, valid: 0, threshold: 2 })
    );
    let one_each = signed(rotated(), &[3, 4]);
    assert!(matches!(
        one_each.verify_update(&v1(), NOW),
        Err(ConfigRejection::NotEnoughSignatures { by: SignerSet::Previous, valid: 1, .. })
    ));
    assert_eq!(signed(rotated(), &[1, 3, 4]).verify_update(&v1(), NOW), Ok(()));
    assert_eq!(signed(rotated(), &[1, 2, 4, 5]).verify_update(&v1(), NOW), Ok(()));

    // After the rotation the old admins alone can no longer move the federation on.
    let v2 = signed(rotated(), &[1, 2, 4, 5]);
    let v3_by_old = signed(doc(3, &[3, 4, 5], 2), &[1, 2]);
    assert!(matches!(v3_by_old.verify_update(&v2, NOW), Err(ConfigRejection::NotEnoughSignatures { .. })));
}

#[test]
fn any_change_to_the_signed_document_breaks_the_signatures() {
    let original = v1();
    let mut value: serde_json::Value = serde_json::from_str(&original.to_json()).unwrap();
    value["signed"]["members"][0]["institution"] = "Mallory".into();
    let tampered = FederationConfig::from_json(&value.to_string()).unwrap();
    assert!(matches!(tampered.verify_initial(NOW), Err(ConfigRejection::NotEnoughSignatures { valid: 0, .. })));

    // A field this implementation does not know is still covered by the signature.
    let mut value: serde_json::Value = serde_json::from_str(&original.to_json()).unwrap();
    value["signed"]["future_field"] = "x".into();
    let extended = FederationConfig::from_json(&value.to_string()).unwrap();
    assert!(extended.verify_initial(NOW).is_err());
}

#[test]
fn editing_a_config_drops_its_signatures() {
    let mut c = v1();
    c.edit(|d| d.members.clear()).unwrap();
    assert!(c.signatures().is_empty());
}

#[test]
fn malformed_configs_name_the_problem() {
    let mut d = doc(1, &[1, 2], 3);
    let err = FederationConfig::new(d.clone()).unwrap_err();
    assert!(err.to_string().contains("threshold"), "{err}");
    d.admins.threshold = 1;
    d.admins.keys[0].id = "00".repeat(32);
    assert!(FederationConfig::new(d.clone()).unwrap_err().to_string().contains("does not match"));
    let mut d = doc(1, &[1], 1);
    d.members[0].peer_id = "not-a-peer".into();
    assert!(FederationConfig::new(d).unwrap_err().to_string().contains("not a PeerId"));
    let mut d = doc(1, &[1], 1);
    d.members[0].addresses = vec!["127.0.0.1:4001".into()];
    assert!(FederationConfig::new(d).unwrap_err().to_string().contains("multiaddr"));
    assert!(matches!(FederationConfig::from_json("{}"), Err(ConfigRejection::Malformed(_))));
}

#[test]
fn copies_signed_separately_combine_to_the_threshold() {
    // Two admins each sign their own copy of the same version, offline.
    let (mut first, second) = (signed(doc(1, &[1, 2, 3], 2), &[1]), signed(doc(1, &[1, 2, 3], 2), &[2]));
    assert!(matches!(first.verify_initial(NOW), Err(ConfigRejection::NotEnoughSignatures { valid: 1, .. })));
    assert_eq!(first.merge_signatures(&second), Ok(1));
    assert_eq!(first.verify_initial(NOW), Ok(()));
    assert_eq!(first.merge_signatures(&second), Ok(0), "merging again adds nothing");
    let missing: Vec<&str> = first.missing_signers().iter().map(|k| k.id.as_str()).collect();
    assert_eq!(missing, [key(3).admin_key().id.as_str()]);
}

#[test]
fn copies_whose_signed_content_differs_do_not_combine() {
    let mut first = signed(doc(1, &[1, 2, 3], 2), &[1]);
    let mut edited = doc(1, &[1, 2, 3], 2);
    edited.members[0].institution = "A, edited".into();
    let err = first.merge_signatures(&signed(edited, &[2])).unwrap_err();
    assert!(err.to_string().contains("differ in what they sign"), "{err}");
    assert_eq!(first.signatures().len(), 1, "nothing was taken from the other copy");
}

#[test]
fn a_forged_signature_does_not_displace_a_valid_one_in_a_merge() {
    let mut good = signed(doc(1, &[1, 2, 3], 2), &[1, 2]);
    // A copy carrying key 1's id with a signature of other bytes.
    let mut text: serde_json::Value = serde_json::from_str(&signed(doc(1, &[1, 2, 3], 2), &[1]).to_json()).unwrap();
    text["signatures"][0]["sig"] = serde_json::Value::String("00".repeat(64));
    let forged = FederationConfig::from_json(&text.to_string()).unwrap();
    assert_eq!(good.merge_signatures(&forged), Ok(0));
    assert_eq!(good.verify_initial(NOW), Ok(()));
    // And a valid signature replaces a forged one.
    let mut bad = forged.clone();
    assert_eq!(bad.merge_signatures(&signed(doc(1, &[1, 2, 3], 2), &[1, 2])), Ok(1));
    assert_eq!(bad.verify_initial(NOW), Ok(()));
}
