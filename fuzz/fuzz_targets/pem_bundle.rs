//! Fuzzes the PEM trust-bundle parser: it must never panic, and whatever it accepts must
//! survive a round trip through `to_pem` and behave as a set under `merge`.

#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use mc_core::trust::TrustBundle;

fuzz_target!(|data: &[u8]| {
    // 2030-01-01T00:00:00Z, inside the validity of the seed certificates.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000);
    let checked = TrustBundle::from_pem(data, now);
    let unchecked = TrustBundle::from_pem_unchecked_time(data);
    if let Ok(bundle) = &checked {
        // Time checking only ever removes acceptance.
        assert_eq!(unchecked.as_ref().ok(), Some(bundle));
    }
    if let Ok(bundle) = unchecked {
        let again = TrustBundle::from_pem_unchecked_time(bundle.to_pem())
            .expect("to_pem output must parse");
        assert_eq!(again, bundle);
        assert_eq!(bundle.merge(&bundle), bundle);
        assert!(bundle.diff(&bundle).is_empty());
        assert!(bundle.shares_anchor(&bundle));
        assert_eq!(bundle.der_certs().len(), bundle.anchors().len());
    }
});
