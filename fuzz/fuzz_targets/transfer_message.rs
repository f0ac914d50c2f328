//! File-chunk messages as a peer sends them (CBOR over `/fedimpute/files/1`, the codec libp2p's
//! request-response uses): decoding never panics, and what decodes survives a round trip.
#![no_main]

use fedimpute_protocol::transfer::{ChunkRequest, ChunkResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = cbor4ii::serde::from_slice::<ChunkRequest>(data) {
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &request).expect("a decoded request encodes");
        assert_eq!(cbor4ii::serde::from_slice::<ChunkRequest>(&bytes).expect("and decodes again"), request);
    }
    if let Ok(response) = cbor4ii::serde::from_slice::<ChunkResponse>(data) {
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &response).expect("a decoded response encodes");
        assert_eq!(cbor4ii::serde::from_slice::<ChunkResponse>(&bytes).expect("and decodes again"), response);
    }
});
