//! E2E: under upstream Linkerd's Link CRD, whose schema has no `status.gateway` (so the API
//! server prunes it), the controller's gateway state still reaches `mc multicluster gateways`
//! through the Link annotation `mirror.linkerd.io/mc-gateway-status`. The CRD is
//! cluster-scoped, so this test runs on its own private API servers, not the shared testbed.
//! Run under `scripts/in-netns`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_common;
mod mirror_common;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
use mc_core::link::{GATEWAY_STATUS_ANNOTATION, Link};
use mc_tests::Testbed;
use mirror_common::{Fixture, eventually};

const T: Duration = Duration::from_secs(30);

/// mc's Link CRD without `status.gateway` in any version: the schema upstream ships.
fn upstream_like_crd() -> CustomResourceDefinition {
    let mut crd = serde_json::to_value(mc_core::link::crd()).unwrap();
    let mut trimmed = 0;
    for version in crd["spec"]["versions"].as_array_mut().unwrap() {
        if let Some(props) = version
            .pointer_mut("/schema/openAPIV3Schema/properties/status/properties")
            .and_then(|p| p.as_object_mut())
        {
            trimmed += usize::from(props.remove("gateway").is_some());
        }
    }
    assert!(trimmed > 0, "mc's CRD has status.gateway to remove");
    serde_json::from_value(crd).unwrap()
}

fn annotation(link: &Link) -> Option<String> {
    link.metadata
        .annotations
        .as_ref()?
        .get(GATEWAY_STATUS_ANNOTATION)
        .cloned()
}

/// The row of `mc multicluster gateways -o json` for `cluster`.
fn gateways_row(bed: &Testbed, cluster: &str) -> serde_json::Value {
    let out = Command::new(cli_common::mc_bin())
        .arg("--kubeconfig")
        .arg(bed.kubeconfig())
        .args([
            "--context",
            "west",
            "multicluster",
            "gateways",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let text = cli_common::ok(&out);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    rows.into_iter()
        .find(|r| r["clusterName"] == cluster)
        .unwrap_or_else(|| panic!("no row for {cluster}: {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_state_reaches_gateways_through_the_annotation_under_upstreams_crd() {
    let bed: &'static Testbed = Box::leak(Box::new(
        Testbed::start_api_only(&["east", "west"]).unwrap(),
    ));
    let west = bed.client("west").await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(west.clone());
    crds.create(&PostParams::default(), &upstream_like_crd())
        .await
        .unwrap();
    // The Fixture's own CRD install finds this one and leaves it.
    let mut f = Fixture::new(bed, "upc", false).await;
    f.start().await;

    let alive = eventually("the alive annotation", T, || async {
        annotation(&f.link().await).filter(|a| a == r#"{"alive":true}"#)
    })
    .await;
    assert_eq!(alive, r#"{"alive":true}"#);
    // The API server pruned what the controller wrote into status.gateway.
    let link = f.link().await;
    assert!(
        link.status
            .as_ref()
            .and_then(|s| s.gateway.as_ref())
            .is_none(),
        "{:?}",
        link.status
    );
    let row = gateways_row(bed, &f.cluster);
    assert_eq!(row["alive"], true, "{row}");
    assert!(row["latency"].is_null(), "{row}");

    f.gateway.set_ready(false);
    eventually("the dead annotation", T, || async {
        annotation(&f.link().await).filter(|a| a == r#"{"alive":false}"#)
    })
    .await;
    let row = gateways_row(bed, &f.cluster);
    assert_eq!(row["alive"], false, "{row}");

    // Steady state: a dead gateway probed every second is not written again.
    let before = f.metrics().writes(&f.cluster, Some("links"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(f.metrics().writes(&f.cluster, Some("links")), before);
    f.stop().await;
}
