//! Adverts as they arrive on the gossip topic (JSON): parsing and signature checks never panic.
#![no_main]

use fedimpute_protocol::advert::{Advert, SignedAdvert};
use fedimpute_protocol::messages::{FederationRequest, FederationResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = serde_json::from_slice::<SignedAdvert>(data) {
        let _ = signed.verify();
    }
    let _ = serde_json::from_slice::<Advert>(data);
    // The federation protocol's messages travel in the same JSON codec.
    let _ = serde_json::from_slice::<FederationRequest>(data);
    let _ = serde_json::from_slice::<FederationResponse>(data);
});
