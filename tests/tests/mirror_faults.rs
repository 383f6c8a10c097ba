//! E2E: the service mirror survives API server restarts of the target (east) and of the source
//! (west) cluster. Uses a private testbed, since it stops API servers. Run under
//! `scripts/in-netns`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mirror_common;

use std::time::Duration;

use mirror_common::{EXPORTED, Fixture, eventually};

const T: Duration = Duration::from_secs(120);

async fn restart(bed: &'static mc_tests::Testbed, cluster: &'static str) {
    tokio::task::spawn_blocking(move || bed.restart_apiserver(cluster).unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn converges_after_target_and_source_api_server_restarts() {
    // Leaked: its processes die with this test process (Lifetime::Attached).
    let bed: &'static mc_tests::Testbed = Box::leak(Box::new(
        mc_tests::Testbed::start_api_only(&["east", "west"]).unwrap(),
    ));
    let (mut f, ns) = Fixture::with_namespace(bed, "flt", true, false).await;
    f.start().await;
    f.export(&ns, "a").await;
    f.wait_endpoints(&ns, "a", true, T).await;

    // Target restart: changes made afterwards are mirrored.
    restart(bed, "east").await;
    f.east = bed.client("east").await.unwrap();
    f.export(&ns, "b").await;
    f.remote_service(
        &ns,
        "a",
        &[(EXPORTED, "true")],
        &[("http", 80), ("admin", 9990)],
        &["10.1.0.5"],
    )
    .await;
    f.wait_endpoints(&ns, "b", true, T).await;
    eventually("a updated after the target restart", T, || async {
        let m = f.mirror(&ns, "a").await?;
        (m.spec?.ports?.len() == 2).then_some(())
    })
    .await;

    // Source restart: the controller loses and regains its lease and converges.
    restart(bed, "west").await;
    f.west = bed.client("west").await.unwrap();
    f.export(&ns, "c").await;
    f.wait_endpoints(&ns, "c", true, T).await;
    f.wait_condition(&ns, "c", "Mirrored").await;
    f.services(&f.east, &ns)
        .delete("b", &Default::default())
        .await
        .unwrap();
    eventually("b removed after the source restart", T, || async {
        f.mirror(&ns, "b").await.is_none().then_some(())
    })
    .await;
    f.stop().await;
}
