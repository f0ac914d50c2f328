//! The bounded line reader under every VCF decoder: a line is returned whole or refused at its
//! limit, and the bytes read always add up to the input.
#![no_main]

use fedimpute_node::imputation::qc::lines::{Line, read_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, text)) = data.split_first() else { return };
    let max = usize::from(limit) + 1;
    // A small buffer makes lines straddle fill_buf calls.
    let mut reader = std::io::BufReader::with_capacity(7, text);
    let mut buf = Vec::new();
    let mut consumed = 0;
    loop {
        match read_line(&mut reader, &mut buf, max).expect("reading a slice cannot fail") {
            Line::Read(n) => {
                assert!(n <= max && n == buf.len());
                assert_eq!(&text[consumed..consumed + n], &buf[..]);
                consumed += n;
            }
            Line::End => {
                assert_eq!(consumed, text.len());
                break;
            }
            Line::TooLong => {
                assert!(buf.len() <= max);
                break;
            }
        }
    }
});
