//! Job messages as a peer sends them (JSON over `/fedimpute/jobs/1`): decoding, opening the
//! signature and reading the body must never panic, whatever the bytes.
#![no_main]

use fedimpute_protocol::canonical::to_canonical_bytes;
use fedimpute_protocol::jobs::{JobMessage, JobRequest, SignedJobMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let peer = libp2p_identity::Keypair::ed25519_from_bytes([7u8; 32]).expect("fixed key").public().to_peer_id();
    if let Ok(signed) = serde_json::from_slice::<SignedJobMessage>(data) {
        let _ = signed.open::<JobMessage>(&peer);
    }
    if let Ok(message) = serde_json::from_slice::<JobMessage>(data) {
        if let JobMessage::Request(JobRequest::Submit { params, .. }) = &message {
            let _ = params.validate();
        }
        // What decodes must re-encode canonically or be refused cleanly (floats are refused).
        let _ = to_canonical_bytes(&message);
    }
});
