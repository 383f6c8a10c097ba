//! Render what `mc multicluster link` applies to a source cluster — the credentials Secret, the
//! Link and the mirror controller — from values, without any cluster; then read the Link back and
//! validate it, as the controller will.
//!
//! ```text
//! cargo run -p mc-examples --bin render-link -- east 203.0.113.10
//! ```

use std::process::ExitCode;

use mc_core::link::Link;
use mc_core::render::to_yaml;
use mc_core::render::{LinkGateway, LinkValues, link};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cluster = args.next().unwrap_or_else(|| "east".into());
    let address = args.next().unwrap_or_else(|| "203.0.113.10".into());
    match run(&cluster, &address) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("render-link: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cluster: &str, address: &str) -> Result<(), Box<dyn std::error::Error>> {
    let values = LinkValues {
        cluster_name: cluster.to_string(),
        kubeconfig: "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n".into(),
        gateway: Some(LinkGateway {
            addresses: vec![address.to_string()],
            port: 4143,
            identity:
                "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
                    .into(),
            probe_path: "/ready".into(),
            probe_port: 4191,
            probe_period: "3".into(),
        }),
        ..LinkValues::default()
    };
    let objects = link(&values)?;
    let link_object = objects
        .iter()
        .find(|o| o.get("kind").and_then(|k| k.as_str()) == Some("Link"))
        .ok_or("the rendering has no Link")?;
    let parsed: Link = serde_json::from_value(link_object.clone())?;
    let valid = parsed.spec.validate()?;
    eprintln!(
        "Link {} is valid: gateway {:?}, probe every {:?}, selector {}",
        valid.cluster_name,
        valid
            .gateway
            .as_ref()
            .map(|g| (g.addresses.clone(), g.port)),
        valid.probe.as_ref().map(|p| p.period),
        valid.selector
    );
    print!("{}", to_yaml(&objects)?);
    Ok(())
}
