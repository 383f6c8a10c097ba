//! The testbed's real clusters: nodes that run Pods, Services routed by kube-proxy, cluster DNS,
//! the controller manager's controllers, and LoadBalancer addresses reachable from the other
//! cluster. Everything here runs on real nodes (kubelet, containerd, runc, kube-proxy, CoreDNS);
//! nothing is played by the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mc_tests::Testbed;

mod nodes_common;
use nodes_common::{check, eventually};

fn bed() -> &'static Testbed {
    mc_tests::shared_with_nodes().expect("the testbed with nodes starts")
}

fn kubectl(bed: &Testbed, ctx: &str, args: &[&str]) -> String {
    check(
        bed.kubectl(ctx).args(args).output().unwrap(),
        &format!("kubectl --context {ctx} {}", args.join(" ")),
    )
}

/// A namespace of the test's own, with a client Deployment (curl) ready in it.
fn namespace_with_client(bed: &Testbed, ctx: &str, ns: &str) {
    let manifest =
        format!(r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}}}}"#);
    check(bed.apply(ctx, &manifest).unwrap(), "apply the namespace");
    nodes_common::client_deployment(bed, ctx, ns, 2);
}

fn curl(bed: &Testbed, ctx: &str, ns: &str, url: &str) -> Result<String, String> {
    nodes_common::curl(bed, ctx, ns, url)
}

/// A Service of the test's own in front of CoreDNS's health port, which answers `OK`.
fn health_service(bed: &Testbed, ctx: &str, name: &str, kind: &str) {
    let manifest = format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}","namespace":"kube-system"}},
 "spec":{{"type":"{kind}","selector":{{"k8s-app":"kube-dns"}},"ports":[{{"port":80,"targetPort":8080}}]}}}}"#
    );
    check(
        bed.apply(ctx, &manifest).unwrap(),
        "apply the health Service",
    );
}

#[test]
fn a_deployment_runs_and_a_pod_reaches_a_service_by_its_dns_name() {
    let bed = bed();
    for ctx in ["east", "west"] {
        let nodes = kubectl(bed, ctx, &["get", "nodes", "-o", "name"]);
        assert_eq!(nodes.trim(), format!("node/{ctx}-node"));
    }
    namespace_with_client(bed, "west", "nodes-dns");
    let ready = kubectl(
        bed,
        "west",
        &[
            "get",
            "deploy",
            "-n",
            "nodes-dns",
            "client",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
    );
    assert_eq!(ready, "2", "both replicas of the Deployment are Ready");
    health_service(bed, "west", "nodes-dns-health", "ClusterIP");
    let body = eventually(30, "the Service by DNS name", || {
        curl(
            bed,
            "west",
            "nodes-dns",
            "http://nodes-dns-health.kube-system.svc.cluster.local/health",
        )
    });
    assert_eq!(body.trim(), "OK");
    // The endpoints controller and EndpointSlice controller followed the Service.
    let slices = kubectl(
        bed,
        "west",
        &[
            "get",
            "endpointslices",
            "-n",
            "kube-system",
            "-l",
            "kubernetes.io/service-name=nodes-dns-health",
            "-o",
            "name",
        ],
    );
    assert!(
        !slices.trim().is_empty(),
        "no EndpointSlice for the Service"
    );
}

#[test]
fn a_load_balancer_address_of_east_is_reachable_from_a_pod_in_west() {
    let bed = bed();
    health_service(bed, "east", "nodes-lb-health", "LoadBalancer");
    let ip = eventually(30, "a LoadBalancer address", || {
        let ip = kubectl(
            bed,
            "east",
            &[
                "get",
                "svc",
                "-n",
                "kube-system",
                "nodes-lb-health",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ],
        );
        if ip.is_empty() {
            Err("none yet".into())
        } else {
            Ok(ip)
        }
    });
    let plan = bed.plan().unwrap();
    assert!(
        ip.parse::<std::net::Ipv4Addr>().unwrap().octets()[..3]
            == plan.lb_address(0, 0).octets()[..3],
        "{ip} is not from east's pool {}",
        plan.lb_cidr(0)
    );
    namespace_with_client(bed, "west", "nodes-lb");
    let body = eventually(30, "east's LoadBalancer from west", || {
        curl(bed, "west", "nodes-lb", &format!("http://{ip}/health"))
    });
    assert_eq!(body.trim(), "OK");
}

#[test]
fn the_token_controller_fills_a_service_account_token_secret() {
    let bed = bed();
    let manifest = r#"{"apiVersion":"v1","kind":"List","items":[
  {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"nodes-token"}},
  {"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"reader","namespace":"nodes-token"}},
  {"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/service-account-token",
   "metadata":{"name":"reader-token","namespace":"nodes-token",
               "annotations":{"kubernetes.io/service-account.name":"reader"}}}]}"#;
    check(
        bed.apply("east", manifest).unwrap(),
        "apply the token Secret",
    );
    let token = eventually(30, "the token", || {
        let t = kubectl(
            bed,
            "east",
            &[
                "get",
                "secret",
                "-n",
                "nodes-token",
                "reader-token",
                "-o",
                "jsonpath={.data.token}",
            ],
        );
        if t.is_empty() {
            Err("empty".into())
        } else {
            Ok(t)
        }
    });
    assert!(token.len() > 100, "a signed token, got {token}");
}
