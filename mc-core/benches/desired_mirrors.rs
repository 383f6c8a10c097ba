//! Desired mirror objects for 10,000 remote Services, against peers measured in the same run:
//! a plain `Clone` of the remote Service and a serde JSON round trip of it (what receiving the
//! object from a watch costs at the least).
//!
//! Run: `cargo bench -p mc-core --bench desired_mirrors`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mc_core::labels;
use mc_core::link::{Link, ValidLink};
use mc_core::mirror::{
    Gateway, MirrorContext, RemoteEndpoints, desired_mirror, endpoints_needs_update,
    service_needs_update,
};

const SERVICES: usize = 10_000;

/// The Link as `link-gen` writes it, with exclusions.
const LINK: &str = r#"
apiVersion: multicluster.linkerd.io/v1alpha3
kind: Link
metadata: {name: east, namespace: linkerd-multicluster}
spec:
  targetClusterName: east
  targetClusterDomain: cluster.local
  clusterCredentialsSecret: cluster-credentials-east
  gatewayAddress: 203.0.113.10,203.0.113.11
  gatewayPort: "4143"
  gatewayIdentity: linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
  probeSpec: {path: /ready, port: "4191", period: 3s}
  selector: {matchLabels: {mirror.linkerd.io/exported: "true"}}
  remoteDiscoverySelector: {matchLabels: {mirror.linkerd.io/exported: remote-discovery}}
  excludedLabels: [argocd.argoproj.io/*]
  excludedAnnotations: [prometheus.io/*]
"#;

fn link() -> ValidLink {
    Link::from_yaml(LINK).unwrap().spec.validate().unwrap()
}

/// A realistic exported Service: 6 labels, 5 annotations, 2 ports; every 10th in
/// remote-discovery mode, every 50th with a name long enough to be shortened.
fn remote(i: usize) -> Service {
    let name = if i.is_multiple_of(50) {
        format!("a-rather-long-service-name-for-a-team-that-likes-them-{i}")
    } else {
        format!("svc-{i}")
    };
    let export = if i.is_multiple_of(10) {
        "remote-discovery"
    } else {
        "true"
    };
    let map = |kv: Vec<(&str, String)>| -> Option<BTreeMap<String, String>> {
        Some(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    };
    Service {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(format!("team-{}", i % 40)),
            resource_version: Some(format!("{}", 100_000 + i)),
            uid: Some(format!("00000000-0000-4000-8000-{i:012}")),
            labels: map(vec![
                ("app", name.clone()),
                ("app.kubernetes.io/name", name.clone()),
                ("app.kubernetes.io/part-of", "shop".into()),
                ("argocd.argoproj.io/instance", "shop".into()),
                (labels::EXPORTED, export.into()),
                ("tier", "backend".into()),
            ]),
            annotations: map(vec![
                (labels::OPAQUE_PORTS, "5432".into()),
                (labels::TOPOLOGY_MODE, "Auto".into()),
                ("prometheus.io/scrape", "true".into()),
                ("prometheus.io/port", "9090".into()),
                ("team.example.com/owner", "payments".into()),
            ]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(format!("10.96.{}.{}", i / 250, i % 250)),
            selector: map(vec![("app", name)]),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".into()),
                    protocol: Some("TCP".into()),
                    port: 80,
                    target_port: Some(IntOrString::Int(8080)),
                    ..ServicePort::default()
                },
                ServicePort {
                    name: Some("grpc".into()),
                    protocol: Some("TCP".into()),
                    port: 9090,
                    target_port: Some(IntOrString::String("grpc".into())),
                    ..ServicePort::default()
                },
            ]),
            type_: Some("ClusterIP".into()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn bench(c: &mut Criterion) {
    let link = link();
    let spec = link.gateway.as_ref().unwrap();
    let ips = spec.addresses.iter().map(|a| a.parse().unwrap());
    let gateway = Gateway::from_spec(spec, ips);
    let ctx = MirrorContext {
        link: &link,
        gateway: Some(&gateway),
        alive: true,
        headless_enabled: false,
    };
    let remotes: Vec<Service> = (0..SERVICES).map(remote).collect();
    let ready = RemoteEndpoints::Ready {
        hostnames: Vec::new(),
    };
    let desired: Vec<_> = remotes
        .iter()
        .map(|r| desired_mirror(r, &ready, &ctx).unwrap())
        .collect();

    let mut g = c.benchmark_group("desired_mirrors");
    g.throughput(Throughput::Elements(SERVICES as u64));
    g.bench_function("desired_mirror", |b| {
        b.iter(|| {
            for r in &remotes {
                black_box(desired_mirror(black_box(r), &ready, &ctx).unwrap());
            }
        })
    });
    g.bench_function("needs_update_steady_state", |b| {
        b.iter(|| {
            for d in &desired {
                black_box(service_needs_update(&d.service, black_box(&d.service)));
                if let Some(e) = &d.endpoints {
                    black_box(endpoints_needs_update(e, black_box(e)));
                }
            }
        })
    });
    g.bench_function("peer_clone_remote", |b| {
        b.iter(|| {
            for r in &remotes {
                black_box(black_box(r).clone());
            }
        })
    });
    g.bench_function("peer_serde_json_round_trip_remote", |b| {
        b.iter(|| {
            for r in &remotes {
                let v = serde_json::to_vec(black_box(r)).unwrap();
                black_box(serde_json::from_slice::<Service>(&v).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
