//! The canonical JSON encoder that every signature covers: for any JSON value it either
//! refuses (floats) or yields bytes that parse back to the same value and are their own
//! canonical form.
#![no_main]

use fedimpute_protocol::canonical::canonicalize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(canonical) = canonicalize(&value) else { return };
    let reparsed: serde_json::Value = serde_json::from_slice(&canonical).expect("canonical bytes are JSON");
    assert_eq!(reparsed, value, "canonical form changed the value");
    assert_eq!(canonicalize(&reparsed).expect("canonical again"), canonical, "canonical form is not a fixed point");
});
