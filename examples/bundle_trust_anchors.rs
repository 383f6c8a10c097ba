//! Bundle trust anchors, as `cat a.crt b.crt > bundle.crt` should have been: validated, deduplicated,
//! in order, with a warning for every anchor that expires within 90 days.
//!
//! ```text
//! cargo run -p mc-examples --bin bundle-trust-anchors -- a.crt b.crt > bundle.crt
//! cargo run -p mc-examples --bin bundle-trust-anchors            # with two freshly made roots
//! ```

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use mc_core::pki::{AnchorOptions, create_trust_anchor};
use mc_core::trust::{TrustBundle, format_time};

const WARN_WITHIN: Duration = Duration::from_secs(90 * 24 * 3600);

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bundle-trust-anchors: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(paths: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let now = SystemTime::now();
    let inputs = if paths.is_empty() {
        demo_inputs(now)?
    } else {
        read_inputs(&paths)?
    };
    let mut bundle: Option<TrustBundle> = None;
    for (name, pem) in &inputs {
        let next = TrustBundle::from_pem(pem, now).map_err(|e| format!("{name}: {e}"))?;
        bundle = Some(match bundle {
            Some(b) => b.merge(&next),
            None => next,
        });
    }
    let bundle = bundle.ok_or("no input certificates")?;
    for anchor in bundle.expiring_within(now, WARN_WITHIN) {
        let s = anchor.summary();
        eprintln!(
            "warning: {} expires {}",
            s.subject,
            format_time(s.not_after)
        );
    }
    let total: usize = inputs
        .iter()
        .map(|(_, pem)| pem.matches("BEGIN CERTIFICATE").count())
        .sum();
    eprintln!(
        "bundled {} anchors from {total} certificates",
        bundle.anchors().len()
    );
    print!("{}", bundle.to_pem());
    Ok(())
}

fn read_inputs(paths: &[String]) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    paths
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|pem| (p.clone(), pem))
                .map_err(|e| format!("{p}: {e}").into())
        })
        .collect()
}

/// Two fresh roots, the second given twice, as an operator mid-rotation might paste them.
fn demo_inputs(now: SystemTime) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    let old = create_trust_anchor(&AnchorOptions::new(now))?;
    let mut opts = AnchorOptions::new(now);
    opts.common_name = "root-2026.linkerd.cluster.local".into();
    let new = create_trust_anchor(&opts)?;
    Ok(vec![
        ("old.crt".into(), old.cert_pem),
        ("new.crt".into(), new.cert_pem.clone()),
        ("new-again.crt".into(), new.cert_pem),
    ])
}
