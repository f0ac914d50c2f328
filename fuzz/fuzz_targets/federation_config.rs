//! Signed federation configs as an admin or a peer hands them over: parsing and verification
//! never panic, and a config that parses prints back to one with the same digest.
#![no_main]

use fedimpute_protocol::federation::FederationConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = FederationConfig::from_json(text) else { return };
    let _ = config.verify_initial(time::OffsetDateTime::UNIX_EPOCH);
    let _ = config.verify_update(&config, time::OffsetDateTime::UNIX_EPOCH);
    let again = FederationConfig::from_json(&config.to_json()).expect("a parsed config reparses");
    assert_eq!(again.digest(), config.digest());
});
