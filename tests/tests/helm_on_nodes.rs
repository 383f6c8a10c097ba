//! The Helm chart on a real cluster: `helm install` of `charts/mc-multicluster` starts the gateway
//! Pod from mc's image, which becomes Ready behind a LoadBalancer address and refuses a client
//! without a certificate; `helm uninstall` removes it. Real helm, real nodes; nothing is played by the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_common;
mod nodes_common;

use std::path::Path;
use std::process::Output;

use nodes_common::{check, eventually};

const NS: &str = "linkerd-multicluster";

fn sh(bed: &mc_tests::Testbed, work: &Path, script: &str) -> Output {
    nodes_common::shell(bed, cli_common::mc_bin().parent().unwrap(), work, script)
}

#[test]
fn helm_install_runs_the_gateway_pod_from_the_image_and_uninstall_removes_it() {
    let bed = mc_tests::shared_with_nodes().expect("the testbed with nodes starts");
    let work = tempfile::tempdir().unwrap();
    let run = |script: &str| check(sh(bed, work.path(), script), script);
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/mc-multicluster");
    run("mc trust-anchor create --cert-out root.crt --key-out root.key");
    run(
        "mc issuer create --ca-cert root.crt --ca-key root.key --cert-out issuer.crt --key-out issuer.key",
    );
    run(&format!(
        "helm --kube-context east install linkerd-multicluster -n linkerd-multicluster --create-namespace {}",
        chart.display()
    ));
    run(
        "mc --context east multicluster gateway-identity --issuer-cert issuer.crt --issuer-key issuer.key --trust-anchors root.crt | kubectl --context east apply -f -",
    );
    bed.wait_rollout("east", NS, "deployment/linkerd-gateway")
        .unwrap();
    let ip = eventually(60, "the gateway's LoadBalancer address", || {
        let out = run(
            "kubectl --context east -n linkerd-multicluster get svc linkerd-gateway -o jsonpath={.status.loadBalancer.ingress[0].ip}",
        );
        if out.trim().is_empty() {
            Err("none yet".to_owned())
        } else {
            Ok(out.trim().to_owned())
        }
    });
    let image = run(
        "kubectl --context east -n linkerd-multicluster get pods -l app=linkerd-gateway -o jsonpath={.items[0].spec.containers[0].image}",
    );
    assert_eq!(image, mc_core::render::ImageValues::default().reference());
    // The gateway Pod serves through its LoadBalancer address: the admin port answers, and the
    // mTLS port refuses a client without a certificate.
    let ready = eventually(
        30,
        "the gateway's /ready through its LoadBalancer address",
        || {
            let out = sh(
                bed,
                work.path(),
                &format!("curl -sS --max-time 5 http://{ip}:4191/ready"),
            );
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    );
    assert!(!ready.is_empty());
    let refused = sh(
        bed,
        work.path(),
        &format!("curl -sS --max-time 5 --insecure https://{ip}:4143/"),
    );
    assert!(
        !refused.status.success(),
        "a client without a certificate is refused"
    );

    run(
        "helm --kube-context east uninstall linkerd-multicluster -n linkerd-multicluster --wait --timeout 3m",
    );
    eventually(60, "the gateway Pods gone", || {
        let left = run(
            "kubectl --context east get pods,deploy,svc -A -l linkerd.io/extension=multicluster -o name",
        );
        if left.trim().is_empty() {
            Ok(())
        } else {
            Err(left)
        }
    });
}
