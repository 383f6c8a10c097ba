//! Compute the mirror of a remote Service exactly as the controller does — the local Service and
//! Endpoints that must exist — for a live and for a dead gateway.
//!
//! ```text
//! cargo run -p mc-examples --bin desired-mirrors
//! ```

use std::process::ExitCode;

use k8s_openapi::api::core::v1::Service;
use mc_core::link::Link;
use mc_core::mirror::{Gateway, MirrorContext, RemoteEndpoints, desired_mirror};

const LINK: &str = r#"
apiVersion: multicluster.linkerd.io/v1alpha3
kind: Link
metadata: {name: east, namespace: linkerd-multicluster}
spec:
  targetClusterName: east
  targetClusterDomain: cluster.local
  clusterCredentialsSecret: cluster-credentials-east
  gatewayAddress: 203.0.113.10
  gatewayPort: "4143"
  gatewayIdentity: linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
  probeSpec: {path: /ready, port: "4191", period: 3s}
  selector: {matchLabels: {mirror.linkerd.io/exported: "true"}}
"#;

const REMOTE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: podinfo
  namespace: test
  resourceVersion: "4711"
  labels: {app: podinfo, mirror.linkerd.io/exported: "true"}
  annotations: {config.linkerd.io/opaque-ports: "9999", service.kubernetes.io/topology-mode: Auto}
spec:
  ports: [{name: http, port: 9898, targetPort: 9898, protocol: TCP}, {name: grpc, port: 9999, protocol: TCP}]
"#;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("desired-mirrors: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let link: Link = serde_yaml::from_str(LINK)?;
    let valid = link.spec.validate()?;
    let remote: Service = serde_yaml::from_str(REMOTE)?;
    let gateway = Gateway::new(
        ["203.0.113.10".parse()?],
        4143,
        valid.gateway.as_ref().and_then(|g| g.identity.clone()),
    );
    let ready = RemoteEndpoints::Ready {
        hostnames: Vec::new(),
    };
    for alive in [true, false] {
        let ctx = MirrorContext {
            link: &valid,
            gateway: Some(&gateway),
            alive,
            headless_enabled: false,
        };
        let mirror = desired_mirror(&remote, &ready, &ctx)?;
        println!("# gateway alive: {alive}");
        println!("---\n{}", serde_yaml::to_string(&mirror.service)?);
        if let Some(endpoints) = &mirror.endpoints {
            println!("---\n{}", serde_yaml::to_string(endpoints)?);
        }
    }
    Ok(())
}
