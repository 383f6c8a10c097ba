//! Fuzzes the transport-header decoder: it must never panic; whatever it accepts must
//! re-encode to bytes that decode to the same header; and every prefix of accepted input must
//! be reported as incomplete with a consistent byte count.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mc_core::transport::{Decoded, MAX_HEADER_LEN, PREFACE, decode};

fuzz_target!(|data: &[u8]| {
    // Raw bytes, and the same bytes framed behind a valid preface and length so the fuzzer
    // reaches the protobuf decoder quickly.
    let mut framed = PREFACE.to_vec();
    framed.extend_from_slice(&(data.len() as u32).to_be_bytes());
    framed.extend_from_slice(data);
    for input in [data, framed.as_slice()] {
        match decode(input) {
            Ok(Decoded::Complete { header, consumed }) => {
                assert!(consumed <= input.len());
                assert!(consumed <= PREFACE.len() + 4 + MAX_HEADER_LEN);
                assert_ne!(header.port, 0);
                let again = header.encode();
                match decode(&again) {
                    Ok(Decoded::Complete { header: h2, consumed: c2 }) => {
                        assert_eq!(h2, header);
                        assert_eq!(c2, again.len());
                    }
                    other => panic!("re-encoded header did not decode: {other:?}"),
                }
                // A strict prefix is never complete.
                let cut = consumed / 2;
                match decode(&input[..cut]) {
                    Ok(Decoded::Incomplete { needed }) => assert!(needed >= 1 && cut + needed <= consumed),
                    other => panic!("prefix of {cut} bytes: {other:?}"),
                }
            }
            Ok(Decoded::Incomplete { needed }) => assert!(needed >= 1),
            Err(_) => {}
        }
    }
});
