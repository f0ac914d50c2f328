//! The published test vectors (`tests/vectors/v1.json`): canonical bytes, digests and
//! signatures that another implementation of the protocol must reproduce exactly.

use fedimpute_protocol::advert::SignedAdvert;
use fedimpute_protocol::canonical::canonicalize;
use fedimpute_protocol::federation::{AdminSigningKey, FederationConfig};
use serde_json::Value;
use time::macros::datetime;

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/v1.json")).unwrap()
}

fn seed(hex_seed: &Value) -> [u8; 32] {
    hex::decode(hex_seed.as_str().unwrap()).unwrap().try_into().unwrap()
}

#[test]
fn federation_config_vector() {
    let v = &vectors()["federation_config"];
    let config = FederationConfig::from_json(&v["document"].to_string()).unwrap();
    let canonical = canonicalize(&v["document"]["signed"]).unwrap();
    assert_eq!(String::from_utf8(canonical).unwrap(), v["canonical_signed"].as_str().unwrap());
    assert_eq!(config.digest(), v["digest_sha256_hex"].as_str().unwrap());
    assert_eq!(config.verify_initial(datetime!(2026-06-01 00:00 UTC)), Ok(()));

    // ed25519 is deterministic: re-signing with the published seeds gives the published bytes.
    let mut resigned = config.clone();
    for s in v["admin_seeds_hex"].as_array().unwrap().iter().take(2) {
        resigned.sign(&AdminSigningKey::from_seed(seed(s)).0).unwrap();
    }
    assert_eq!(resigned.signatures(), config.signatures());
}

#[test]
fn advert_vector() {
    let v = &vectors()["advert"];
    let signed: SignedAdvert = serde_json::from_value(v["signed_advert"].clone()).unwrap();
    let advert = signed.verify().unwrap();
    assert_eq!(
        String::from_utf8(canonicalize(&signed.advert).unwrap()).unwrap(),
        v["canonical_advert"].as_str().unwrap()
    );

    let mut node_seed = seed(&v["node_seed_hex"]);
    let keypair = libp2p_identity::Keypair::ed25519_from_bytes(&mut node_seed).unwrap();
    assert_eq!(keypair.public().to_peer_id().to_string(), advert.peer_id);
    let resigned = SignedAdvert::sign(&advert, |m| keypair.sign(m).unwrap()).unwrap();
    assert_eq!(resigned.signature, signed.signature);
}

#[test]
fn a_tampered_advert_or_a_foreign_signature_fails() {
    let v = &vectors()["advert"];
    let signed: SignedAdvert = serde_json::from_value(v["signed_advert"].clone()).unwrap();
    let mut tampered = signed.clone();
    tampered.advert["panels"][0]["samples"] = 999_999.into();
    assert_eq!(tampered.verify(), Err(fedimpute_protocol::advert::AdvertError::BadSignature));

    // Same content, claimed by another node: the signature is not that node's.
    let mut other_seed = [8u8; 32];
    let other = libp2p_identity::Keypair::ed25519_from_bytes(&mut other_seed).unwrap();
    let mut claimed = signed.clone();
    claimed.advert["peer_id"] = other.public().to_peer_id().to_string().into();
    assert!(claimed.verify().is_err());
}
