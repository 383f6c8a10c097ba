//! Upstream Linkerd's multicluster integration checks, ported to mc (issue #19).
//!
//! Linkerd's own suite (linkerd2 `test/integration/multicluster`: install, traffic, pod-to-pod
//! and federated checks on two k3d clusters) is re-expressed here as mc scenarios on the
//! testbed's real clusters, written from the list in issue #19, not from upstream's code. One
//! installation with mc's rendered manifests, as a user would type them, then the scenarios in
//! order, each in namespaces `up-*` of its own:
//!
//! 1. install with exclusions and a source without a gateway: east (the target) renders its
//!    gateway, west (the source) `--gateway=false`; upstream's install exclusions
//!    (`evil.linkerd/*`, `evil`) are west's `localServiceMirror.excludedLabels` and
//!    `excludedAnnotations` (for the local members of federated Services) and the Link's
//!    (`link --excluded-labels`, `--excluded-annotations`) for east's Services;
//! 2. link both ways: west → east through east's gateway (headless mirroring on), east → west
//!    without a gateway (remote discovery only);
//! 3. `mc multicluster check` passes on both clusters;
//! 4. `mc multicluster allow` renders the same output twice;
//! 5. `mc multicluster gateways` shows east alive with 1 service within a minute;
//! 6. the mirror carries the good labels and annotations, not the excluded ones, and a plain
//!    Pod's traffic arrives;
//! 7. StatefulSet traffic to `<pod>.<svc>-east` arrives, TCP and HTTP;
//! 8. remote-discovery mirrors (both directions) have no Endpoints and carry the
//!    remote-discovery labels;
//! 9. the federated Service takes metadata and ports from the oldest Link, with its exclusions
//!    (a second, newer Link `back` of west to itself, named to sort before `east`, federates
//!    a Service of other labels and ports); with a local member (west's own Service labelled
//!    `federated=member`) metadata and ports come from the local member, through west's
//!    install-time `localServiceMirror` exclusions;
//! 10. `check` passes again after the endpoint repair period: mc's equivalent of upstream's
//!     1-minute `RepairEndpoints` is the pass over every mirror each tenth `--recheck-period`
//!     (30 s by default, so 5 minutes); the test sets `MC_RECHECK_PERIOD=1s` on west's
//!     controller and waits for `service_mirror_endpoint_repairs_total` to grow;
//! 11. a backend that refuses unauthenticated clients admits east's gateway (the gateway
//!     reaches meshed backends as a meshed client, with mTLS as its own identity): the backend
//!     Pod carries `linkerd.io/control-plane-ns: linkerd` and its inbound proxy is stood in for
//!     by `openssl s_server` requiring a client certificate from the trust anchor
//!     (`default-inbound-policy: all-authenticated`), with a certificate for the Pod's
//!     ServiceAccount identity issued here by openssl from east's issuer (as Linkerd's identity
//!     service would); a plain Pod of west reaches it through the egress and east's gateway,
//!     and the backend reports the gateway's certificate. With `gateway.backendMtls=off` (the
//!     gateway before backend mTLS) the same request fails;
//! 12. the namespaces clean up: deleting east's removes west's mirrors, then every `up-*`
//!     namespace is gone from both clusters.
//!
//! `scripts/in-netns cargo test -p mc-tests --test pod_upstream_scenarios` (root, as `make test`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_common;
mod nodes_common;
use nodes_common::{check, eventually, ips};

use std::path::PathBuf;
use std::process::Output;
use std::time::Instant;

use mc_tests::Testbed;
use serde_json::{Value, json};

const NS: &str = "linkerd-multicluster";
/// The exclusions of upstream's install test, as the Link's lists.
const EXCLUDED: &str = "evil.linkerd/*,evil";
/// The same as one `--set` value (a comma escaped, as for Helm).
const EXCLUDED_SET: &str = "evil.linkerd/*\\,evil";
/// Where the plain client Pod of west runs; it calls every scenario's mirrors by FQDN.
const CLIENT_NS: &str = "up-traffic";
const SCENARIO_NAMESPACES: [&str; 5] = ["up-traffic", "up-sts", "up-rd", "up-fed", "up-mesh"];

/// Labels and annotations of every exported Service: the kept ones and the excluded ones.
fn good_and_evil() -> (Value, Value) {
    (
        json!({"app.kubernetes.io/part-of": "up-scenarios", "evilish": "kept", "good": "yes",
               "evil": "yes", "evil.linkerd/label": "dropped", "evil.linkerd.io/label": "dropped"}),
        json!({"good.example/annotation": "kept", "evil": "yes",
               "evil.linkerd/annotation": "dropped"}),
    )
}

const KEPT: [&str; 3] = ["app.kubernetes.io/part-of", "evilish", "good"];
const DROPPED_LABELS: [&str; 3] = ["evil", "evil.linkerd/label", "evil.linkerd.io/label"];
const DROPPED_ANNOTATIONS: [&str; 2] = ["evil", "evil.linkerd/annotation"];

struct Clusters {
    bed: &'static Testbed,
    work: PathBuf,
}

impl Clusters {
    fn sh(&self, script: &str) -> String {
        check(self.sh_output(script), script)
    }

    fn sh_output(&self, script: &str) -> Output {
        nodes_common::shell(
            self.bed,
            cli_common::mc_bin().parent().unwrap(),
            &self.work,
            script,
        )
    }

    fn kubectl(&self, ctx: &str, args: &[&str]) -> Result<String, String> {
        nodes_common::kubectl(self.bed, ctx, args)
    }

    fn json(&self, ctx: &str, args: &[&str]) -> Result<Value, String> {
        nodes_common::kubectl_json(self.bed, ctx, args)
    }

    fn apply(&self, ctx: &str, items: &[Value], what: &str) {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
        check(self.bed.apply(ctx, &list.to_string()).unwrap(), what);
    }

    /// Ready addresses of the Endpoints `ns/name` in `ctx`.
    fn ready(&self, ctx: &str, ns: &str, name: &str) -> Result<Vec<String>, String> {
        let ep = self.json(ctx, &["get", "endpoints", "-n", ns, name])?;
        Ok(ips(&ep, "addresses"))
    }

    /// Whether the Endpoints `ns/name` exist in `ctx` (any error but NotFound panics).
    fn endpoints_exist(&self, ctx: &str, ns: &str, name: &str) -> bool {
        match self.kubectl(ctx, &["get", "endpoints", "-n", ns, name]) {
            Ok(_) => true,
            Err(e) if e.contains("NotFound") => false,
            Err(e) => panic!("get endpoints {ns}/{name} in {ctx}: {e}"),
        }
    }

    /// A command in west's plain client Pod (no sidecar, no certificate): stdout and stderr.
    fn exec_client(&self, script: &str) -> String {
        nodes_common::client_sh(self.bed, "west", CLIENT_NS, script)
    }

    /// `mc multicluster check` on `ctx`, which must exit 0.
    fn check_passes(&self, ctx: &str, wait: &str) -> String {
        let out = self.sh_output(&format!(
            "mc --context {ctx} multicluster check --wait {wait}"
        ));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "mc multicluster check failed on {ctx}:\n{text}"
        );
        eprintln!("mc --context {ctx} multicluster check:\n{text}");
        text
    }

    /// `service_mirror_endpoint_repairs_total` of west's controller for Link east, read from its
    /// admin port by the plain client.
    fn repairs(&self) -> Result<f64, String> {
        let pods = self.json(
            "west",
            &[
                "get",
                "pods",
                "-n",
                NS,
                "-l",
                "component=controller,mirror.linkerd.io/cluster-name=east",
            ],
        )?;
        let ips: Vec<&str> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter_map(|p| p["status"]["podIP"].as_str())
            .collect();
        let [ip] = ips[..] else {
            return Err(format!("not one controller Pod: {ips:?}"));
        };
        let text = self.exec_client(&format!("curl -sS -m 5 http://{ip}:9999/metrics"));
        let sample = "service_mirror_endpoint_repairs_total{target_cluster_name=\"east\"}";
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("no {sample} in\n{text}"))
    }

    /// `mc multicluster gateways -o json` on west: (alive, number of services) of east.
    fn east_gateway(&self) -> Result<(bool, u64), String> {
        let out = self.sh_output("mc --context west multicluster gateways -o json");
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
        let row = v
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["clusterName"] == "east"))
            .ok_or_else(|| format!("no row for east: {v}"))?;
        Ok((
            row["alive"].as_bool().unwrap_or(false),
            row["numberOfServices"].as_u64().unwrap_or(u64::MAX),
        ))
    }
}

/// A podinfo Deployment `app` answering `greetings from <ctx>` in `ns`.
fn podinfo(ns: &str, app: &str, ctx: &str) -> Value {
    json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name": app,"namespace": ns},
     "spec":{"replicas":1,"selector":{"matchLabels":{"app": app}},
      "template":{"metadata":{"labels":{"app": app}},
       "spec":{"terminationGracePeriodSeconds":1,
        "containers":[{"name":"podinfo","image": mc_tests::PODINFO_IMAGE,
         "command":["./podinfo","--port=9898",&format!("--ui-message=greetings from {ctx}")],
         "readinessProbe":{"httpGet":{"path":"/readyz","port":9898},"periodSeconds":2}}]}}}})
}

fn namespace(ns: &str) -> Value {
    json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name": ns}})
}

/// A Service `name` in `ns` with `labels` and `annotations`, selecting `app`, with `ports`.
fn service(ns: &str, name: &str, labels: Value, annotations: Value, ports: Value) -> Value {
    json!({"apiVersion":"v1","kind":"Service",
           "metadata":{"name": name,"namespace": ns,"labels": labels,"annotations": annotations},
           "spec":{"selector":{"app": name},"ports": ports}})
}

/// `base` with `extra`'s keys added (both JSON objects).
fn with(base: &Value, extra: &[(&str, &str)]) -> Value {
    let mut v = base.clone();
    for (k, val) in extra {
        v[*k] = json!(val);
    }
    v
}

/// Asserts that `meta` (an object's metadata) has every kept label and annotation and none of
/// the excluded ones; `what` names the object.
fn assert_exclusions(meta: &Value, what: &str) {
    let labels = &meta["labels"];
    let annotations = &meta["annotations"];
    for k in KEPT {
        assert!(
            labels.get(k).is_some(),
            "{what}: label {k} was kept: {labels}"
        );
    }
    for k in DROPPED_LABELS {
        assert!(
            labels.get(k).is_none(),
            "{what}: label {k} is excluded: {labels}"
        );
    }
    assert_eq!(
        annotations["good.example/annotation"], "kept",
        "{what}: {annotations}"
    );
    for k in DROPPED_ANNOTATIONS {
        assert!(
            annotations.get(k).is_none(),
            "{what}: annotation {k} is excluded: {annotations}"
        );
    }
}

/// Installs mc on both clusters and links them both ways (plus west's loopback Link `back`
/// for the federated scenario), with the commands a user types.
fn install() -> Clusters {
    let bed = mc_tests::shared_with_nodes().expect("the testbed with nodes starts");
    let work = std::env::temp_dir().join(format!("mc-up-scenarios-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    nodes_common::trust_and_linkerd_config(bed, cli_common::mc_bin().parent().unwrap(), &work);
    let mc = Clusters { bed, work };
    // East is the target (gateway, no egress); west a source without a gateway, whose plain
    // Pods reach mirrors through its egress (issuer mode).
    mc.sh(
        "mc --context east multicluster install --egress=false | kubectl --context east apply -f -",
    );
    // Upstream's install exclusions for the local members of federated Services.
    mc.sh(&format!(
        "mc --context west multicluster install --gateway=false --issuer-secret linkerd-multicluster-issuer \
         --set 'localServiceMirror.excludedLabels={EXCLUDED_SET}' \
         --set 'localServiceMirror.excludedAnnotations={EXCLUDED_SET}' | kubectl --context west apply -f -"
    ));
    mc.sh(
        "mc multicluster issuer-secret --issuer-cert west-issuer.crt --issuer-key west-issuer.key --trust-anchors root.crt | kubectl --context west apply -f -",
    );
    mc.sh(
        "mc --context east multicluster gateway-identity --issuer-cert east-issuer.crt --issuer-key east-issuer.key --trust-anchors root.crt | kubectl --context east apply -f -",
    );
    let no_gateway = mc.kubectl("west", &["get", "deployment", "-n", NS, "linkerd-gateway"]);
    assert!(
        no_gateway.as_ref().is_err_and(|e| e.contains("NotFound")),
        "west was installed without a gateway: {no_gateway:?}"
    );
    // Link both ways: west → east through east's gateway, with the exclusions; east → west
    // without a gateway (remote discovery only).
    mc.sh(&format!(
        "mc --context east multicluster link --cluster-name east --enable-headless-services \
         --excluded-labels '{EXCLUDED}' --excluded-annotations '{EXCLUDED}' | kubectl --context west apply -f -"
    ));
    // The endpoint repair pass (every tenth recheck period) made short for scenario 10.
    mc.sh(&format!(
        "kubectl --context west -n {NS} set env deployment/controller-east MC_RECHECK_PERIOD=1s"
    ));
    mc.sh(
        "mc --context west multicluster link --cluster-name west --gateway=false | kubectl --context east apply -f -",
    );
    // West's loopback Link, newer than Link east: its federated selector picks west's own
    // Services labelled `federated=back` (not the local-member label), nothing else.
    mc.sh(
        "mc --context west multicluster link --cluster-name back --gateway=false \
         --federated-service-selector mirror.linkerd.io/federated=back \
         --remote-discovery-selector mirror.linkerd.io/exported=back | kubectl --context west apply -f -",
    );
    for (ctx, what) in [
        ("east", "deployment/linkerd-gateway"),
        ("east", "deployment/controller-west"),
        ("west", "deployment/controller-east"),
        ("west", "deployment/controller-back"),
        (
            "west",
            &format!("deployment/{}", mc_core::egress::EGRESS_NAME),
        ),
    ] {
        bed.wait_rollout(ctx, NS, what).unwrap();
    }
    mc
}

/// The identity east's gateway presents to backends.
const GATEWAY_ID: &str =
    "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";

/// Scenario 11 (see the module documentation).
fn meshed_backend_admits_the_gateway(mc: &Clusters) {
    let ns = "up-mesh";
    let id = format!("api.{ns}.serviceaccount.identity.linkerd.cluster.local");
    // The Pod's workload certificate, as Linkerd's identity service issues it: one DNS SAN, the
    // ServiceAccount identity; ECDSA P-256; serverAuth and clientAuth; chained to east's issuer.
    mc.sh(&format!(
        "printf 'subjectAltName=DNS:{id}\\nextendedKeyUsage=serverAuth,clientAuth\\n' > api.ext && \
         openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj / \
           -keyout api.key -out api.csr 2>/dev/null && \
         openssl x509 -req -in api.csr -CA east-issuer.crt -CAkey east-issuer.key -CAcreateserial \
           -days 1 -extfile api.ext -out api.crt 2>/dev/null && \
         cat api.crt east-issuer.crt > api-chain.crt && \
         kubectl --context east -n {ns} create secret generic api-identity \
           --from-file=tls.crt=api-chain.crt --from-file=tls.key=api.key --from-file=ca.crt=root.crt"
    ));
    let stand_in = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api","namespace": ns},
        "spec":{"replicas":1,"selector":{"matchLabels":{"app":"api"}},
         "template":{"metadata":{"labels":{"app":"api","linkerd.io/control-plane-ns":"linkerd"}},
          "spec":{"serviceAccountName":"api","terminationGracePeriodSeconds":1,
           "containers":[{"name":"inbound-proxy-stand-in","image": mc_tests::CLIENT_IMAGE,
             "imagePullPolicy":"Never",
             "command":["openssl","s_server","-quiet","-www","-tls1_3","-Verify","1",
                        "-verify_return_error","-accept","8443","-cert","/id/tls.crt",
                        "-cert_chain","/id/tls.crt","-key","/id/tls.key","-CAfile","/id/ca.crt"],
             "ports":[{"containerPort":8443}],
             "readinessProbe":{"tcpSocket":{"port":8443},"periodSeconds":2},
             "volumeMounts":[{"name":"id","mountPath":"/id","readOnly":true}]}],
           "volumes":[{"name":"id","secret":{"secretName":"api-identity"}}]}}}});
    mc.apply(
        "east",
        &[
            json!({"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"api","namespace": ns}}),
            stand_in,
            service(
                ns,
                "api",
                json!({"mirror.linkerd.io/exported": "true"}),
                json!({}),
                json!([{"name": "web", "port": 443, "targetPort": 8443}]),
            ),
        ],
        "the stand-in meshed backend",
    );
    mc.bed.wait_rollout("east", ns, "deployment/api").unwrap();
    // It refuses clients without a certificate: plaintext, and TLS without one.
    for url in ["http://127.0.0.1:8443/", "https://127.0.0.1:8443/"] {
        let out = mc.sh_output(&format!(
            "kubectl --context east -n {ns} exec deploy/api -- curl -sS -k -m 5 {url}"
        ));
        assert!(!out.status.success(), "{url} was answered: {out:?}");
    }
    let url = format!("http://api-east.{ns}.svc.cluster.local:443/");
    let body = eventually(90, "the backend answers west's plain Pod", || {
        let body = mc.exec_client(&format!("curl -sS -m 5 {url}"));
        body.contains("Client certificate")
            .then_some(body.clone())
            .ok_or(body)
    });
    assert!(body.contains(&format!("DNS:{GATEWAY_ID}")), "{body}");
    // The same request with the gateway dialling backends in plaintext fails.
    let reinstall = |set: &str| {
        mc.sh(&format!(
            "mc --context east multicluster install --egress=false {set} | kubectl --context east apply -f -"
        ));
        mc.bed
            .wait_rollout("east", NS, "deployment/linkerd-gateway")
            .unwrap();
    };
    reinstall("--set gateway.backendMtls=off");
    let gateway = mc
        .json("east", &["get", "deployment", "-n", NS, "linkerd-gateway"])
        .unwrap();
    let args = gateway["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--backend-mtls=off"), "{args}");
    eventually(60, "the backend refuses the plaintext gateway", || {
        let body = mc.exec_client(&format!("curl -sS -m 5 {url}"));
        (!body.contains("Client certificate"))
            .then_some(())
            .ok_or(body)
    });
    reinstall("");
    eventually(90, "the backend admits the gateway again", || {
        let body = mc.exec_client(&format!("curl -sS -m 5 {url}"));
        body.contains(&format!("DNS:{GATEWAY_ID}"))
            .then_some(())
            .ok_or(body)
    });
}

/// Every scenario of the list in the module documentation, in order, on one installation.
#[test]
fn upstream_multicluster_checks_hold_on_the_real_clusters() {
    let started = Instant::now();
    let step = |n: u32, what: &str| eprintln!("[{:>5.1?}] {n}. {what}", started.elapsed());
    step(1, "install with exclusions, west without a gateway");
    step(2, "link both ways");
    let mc = install();
    let (good, evil) = good_and_evil();

    // Every scenario's namespaces, and west's plain client.
    for ctx in ["east", "west"] {
        let items: Vec<Value> = SCENARIO_NAMESPACES.iter().map(|n| namespace(n)).collect();
        mc.apply(ctx, &items, "the scenario namespaces");
    }
    nodes_common::client_deployment(mc.bed, "west", CLIENT_NS, 1);

    step(3, "check passes on both clusters");
    let west_check = mc.check_passes("west", "120s");
    assert!(west_check.contains("east"), "{west_check}");
    // West was installed without a gateway on purpose: check says so, not "older mc".
    assert!(
        west_check.contains("no gateway in this cluster (installed with --gateway=false)"),
        "{west_check}"
    );
    let east_check = mc.check_passes("east", "120s");
    assert!(east_check.contains("west"), "{east_check}");

    step(4, "allow renders the same output twice");
    let allow = "mc --context east multicluster allow --service-account-name up-source-b";
    let first = mc.sh(allow);
    assert!(first.contains("up-source-b"), "{first}");
    assert_eq!(first, mc.sh(allow), "allow is stable");
    assert_eq!(
        first,
        mc.sh(&format!("{allow} --ignore-cluster")),
        "reading the cluster changes nothing of allow's output"
    );

    step(5, "gateways: east alive with 1 service within a minute");
    let ns = "up-traffic";
    let (svc_labels, svc_annotations) = (
        with(&good, &[("mirror.linkerd.io/exported", "true")]),
        evil.clone(),
    );
    mc.apply(
        "east",
        &[
            podinfo(ns, "podinfo", "east"),
            service(
                ns,
                "podinfo",
                svc_labels,
                svc_annotations,
                json!([{"name": "http", "port": 9898}]),
            ),
        ],
        "the exported podinfo",
    );
    let exported = Instant::now();
    eventually(60, "east alive with 1 service", || {
        match mc.east_gateway()? {
            (true, 1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    eprintln!(
        "gateways showed east with 1 service {:?} after the export",
        exported.elapsed()
    );

    step(6, "the mirror's labels and annotations, and traffic");
    let mirror = eventually(60, "podinfo-east in west", || {
        mc.json("west", &["get", "svc", "-n", ns, "podinfo-east"])
    });
    assert_exclusions(&mirror["metadata"], "mirror podinfo-east");
    assert_eq!(
        mirror["metadata"]["labels"]["mirror.linkerd.io/cluster-name"],
        "east"
    );
    let endpoints = eventually(60, "podinfo-east's Endpoints", || {
        mc.json("west", &["get", "endpoints", "-n", ns, "podinfo-east"])
    });
    assert_exclusions(
        &json!({"labels": endpoints["metadata"]["labels"],
                "annotations": {"good.example/annotation": "kept"}}),
        "podinfo-east's Endpoints (labels)",
    );
    mc.bed
        .wait_rollout("east", ns, "deployment/podinfo")
        .unwrap();
    let url = format!("http://podinfo-east.{ns}.svc.cluster.local:9898/");
    eventually(90, "podinfo-east answers the plain Pod", || {
        let body = mc.exec_client(&format!("curl -sS -m 5 {url}"));
        body.contains("greetings from east")
            .then_some(())
            .ok_or(body)
    });

    step(7, "StatefulSet traffic to <pod>.<svc>-east, TCP and HTTP");
    let sts = "up-sts";
    let mut web = service(
        sts,
        "web",
        with(&good, &[("mirror.linkerd.io/exported", "true")]),
        evil.clone(),
        json!([{"name": "http", "port": 9898}, {"name": "tcp", "port": 7007}]),
    );
    web["spec"]["clusterIP"] = json!("None");
    mc.apply(
        "east",
        &[
            web,
            json!({"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"podinfo","namespace": sts},
             "spec":{"serviceName":"web","replicas":1,"selector":{"matchLabels":{"app":"web"}},
              "template":{"metadata":{"labels":{"app":"web"}},
               "spec":{"terminationGracePeriodSeconds":1,"containers":[
                {"name":"podinfo","image": mc_tests::PODINFO_IMAGE,
                 "command":["./podinfo","--port=9898","--ui-message=greetings from east"],
                 "readinessProbe":{"httpGet":{"path":"/readyz","port":9898},"periodSeconds":2}},
                {"name":"echo","image": mc_tests::CLIENT_IMAGE,"command":["/echo","7007"],
                 "ports":[{"containerPort":7007}]}]}}}}),
        ],
        "the exported headless Service and its StatefulSet",
    );
    mc.bed
        .wait_rollout("east", sts, "statefulset/podinfo")
        .unwrap();
    let host = format!("podinfo-0.web-east.{sts}.svc.cluster.local");
    // podinfo names its pod in every answer: the StatefulSet's pod answered.
    eventually(120, "podinfo-0 answers over HTTP", || {
        let body = mc.exec_client(&format!("curl -sS -m 5 http://{host}:9898/"));
        let ok =
            body.contains("greetings from east") && body.contains("\"hostname\": \"podinfo-0\"");
        ok.then_some(()).ok_or(body)
    });
    // Opaque TCP: the echo's bytes come back (curl waits for a close that never comes: -m 3).
    eventually(60, "podinfo-0 echoes over TCP", || {
        let out = mc.exec_client(&format!(
            "echo mc-sts-hello | curl -sS -m 3 telnet://{host}:7007"
        ));
        out.contains("mc-sts-hello").then_some(()).ok_or(out)
    });
    let headless = mc
        .json("west", &["get", "svc", "-n", sts, "web-east"])
        .unwrap();
    assert_eq!(headless["spec"]["clusterIP"], "None", "{headless}");
    assert_exclusions(&headless["metadata"], "headless mirror web-east");

    step(
        8,
        "remote-discovery mirrors: no Endpoints, the remote-discovery labels",
    );
    let rd = "up-rd";
    let rd_labels = with(&good, &[("mirror.linkerd.io/exported", "remote-discovery")]);
    let rd_port = json!([{"name": "http", "port": 9898}]);
    mc.apply(
        "east",
        &[service(
            rd,
            "rd",
            rd_labels.clone(),
            evil.clone(),
            rd_port.clone(),
        )],
        "east's remote-discovery Service",
    );
    mc.apply(
        "west",
        &[service(rd, "rdw", rd_labels, evil.clone(), rd_port)],
        "west's remote-discovery Service",
    );
    let remote_discovery_mirror = |ctx: &str, name: &str, cluster: &str, remote: &str| {
        let svc = eventually(60, &format!("{name} in {ctx}"), || {
            mc.json(ctx, &["get", "svc", "-n", rd, name])
        });
        let labels = &svc["metadata"]["labels"];
        assert_eq!(
            labels["multicluster.linkerd.io/remote-discovery"], cluster,
            "{name}: {labels}"
        );
        assert_eq!(
            labels["multicluster.linkerd.io/remote-service"], remote,
            "{name}: {labels}"
        );
        assert_eq!(labels["mirror.linkerd.io/cluster-name"], cluster);
        assert!(svc["spec"]["selector"].is_null(), "{name} has no selector");
        assert!(
            !mc.endpoints_exist(ctx, rd, name),
            "{name} in {ctx} has no Endpoints"
        );
    };
    remote_discovery_mirror("west", "rd-east", "east", "rd");
    remote_discovery_mirror("east", "rdw-west", "west", "rdw");
    let rd_east = mc
        .json("west", &["get", "svc", "-n", rd, "rd-east"])
        .unwrap();
    assert_exclusions(&rd_east["metadata"], "remote-discovery mirror rd-east");

    step(
        9,
        "the federated Service: metadata and ports of the oldest Link, with its exclusions",
    );
    let fed = "up-fed";
    mc.apply(
        "east",
        &[service(
            fed,
            "fed",
            with(&good, &[("mirror.linkerd.io/federated", "member")]),
            evil.clone(),
            json!([{"name": "http", "port": 9898}]),
        )],
        "east's federated member",
    );
    mc.apply(
        "west",
        &[service(
            fed,
            "fed",
            json!({"mirror.linkerd.io/federated": "back", "from": "west"}),
            json!({"from": "west"}),
            json!([{"name": "grpc", "port": 8080}]),
        )],
        "west's member through Link back",
    );
    let links = mc
        .json("west", &["get", "links.multicluster.linkerd.io", "-n", NS])
        .unwrap();
    let created = |name: &str| {
        links["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["metadata"]["name"] == name)
            .and_then(|l| l["metadata"]["creationTimestamp"].as_str())
            .map(str::to_owned)
            .unwrap()
    };
    assert!(
        created("east") < created("back"),
        "Link east is the older one (and `back` sorts first by name)"
    );
    let federated = eventually(90, "fed-federated with both members", || {
        let svc = mc.json("west", &["get", "svc", "-n", fed, "fed-federated"])?;
        let mut members: Vec<&str> =
            svc["metadata"]["annotations"]["multicluster.linkerd.io/remote-discovery"]
                .as_str()
                .unwrap_or_default()
                .split(',')
                .collect();
        members.sort_unstable();
        (members == ["fed@back", "fed@east"])
            .then_some(svc.clone())
            .ok_or(format!("members {members:?}"))
    });
    let meta = &federated["metadata"];
    assert_exclusions(meta, "fed-federated");
    assert!(
        meta["labels"].get("from").is_none() && meta["annotations"].get("from").is_none(),
        "nothing of the newer Link's member: {meta}"
    );
    assert_eq!(meta["labels"]["mirror.linkerd.io/mirrored-service"], "true");
    assert!(
        meta["labels"]
            .get("mirror.linkerd.io/cluster-name")
            .is_none(),
        "{meta}"
    );
    assert!(
        meta["annotations"]
            .get("multicluster.linkerd.io/local-discovery")
            .is_none(),
        "west's own fed is not a local member: {meta}"
    );
    let ports: Vec<(String, u64)> = federated["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["port"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [("http".to_owned(), 9898)],
        "the oldest Link's ports"
    );

    // A local member: `loc` in west (labelled `federated=member`, with the good and the evil
    // keys) and in east. The local member is the metadata source, so its labels and
    // annotations reach loc-federated, through west's install-time `localServiceMirror`
    // exclusions (not through Link east's, which apply to east's member only).
    mc.apply(
        "east",
        &[service(
            fed,
            "loc",
            json!({"mirror.linkerd.io/federated": "member", "from": "east"}),
            json!({"from": "east"}),
            json!([{"name": "http", "port": 9898}]),
        )],
        "east's member of loc",
    );
    mc.apply(
        "west",
        &[service(
            fed,
            "loc",
            with(
                &good,
                &[("mirror.linkerd.io/federated", "member"), ("from", "west")],
            ),
            with(&evil, &[("from", "west")]),
            json!([{"name": "grpc", "port": 8080}]),
        )],
        "west's local member of loc",
    );
    let loc = eventually(90, "loc-federated with the local and east's member", || {
        let svc = mc.json("west", &["get", "svc", "-n", fed, "loc-federated"])?;
        let a = &svc["metadata"]["annotations"];
        let remote = a["multicluster.linkerd.io/remote-discovery"].as_str();
        let local = a["multicluster.linkerd.io/local-discovery"].as_str();
        (remote == Some("loc@east") && local == Some("loc") && a["from"] == "west")
            .then_some(svc.clone())
            .ok_or(format!(
                "remote {remote:?}, local {local:?}, from {}",
                a["from"]
            ))
    });
    let meta = &loc["metadata"];
    assert_exclusions(meta, "loc-federated (the local member's metadata)");
    assert_eq!(meta["labels"]["from"], "west", "the local member's: {meta}");
    assert_eq!(
        loc["spec"]["ports"][0]["name"], "grpc",
        "the local member's ports: {loc}"
    );

    step(10, "check passes again after the endpoint repair period");
    let before = eventually(60, "the repair counter", || mc.repairs());
    eventually(60, "an endpoint repair pass", || {
        let now = mc.repairs()?;
        (now > before)
            .then_some(())
            .ok_or(format!("{before} -> {now}"))
    });
    mc.check_passes("west", "60s");
    mc.check_passes("east", "60s");
    let egress = mc.ready("west", NS, mc_core::egress::EGRESS_NAME).unwrap();
    assert!(!egress.is_empty(), "the egress has ready Pods");
    assert_eq!(mc.ready("west", ns, "podinfo-east").unwrap(), egress);
    let body = mc.exec_client(&format!("curl -sS -m 5 {url}"));
    assert!(body.contains("greetings from east"), "{body}");
    assert!(!mc.endpoints_exist("west", rd, "rd-east"), "still none");
    assert!(!mc.endpoints_exist("east", rd, "rdw-west"), "still none");
    assert_eq!(
        mc.east_gateway().unwrap(),
        (true, 4),
        "podinfo, web, its endpoint mirror podinfo-0 and rd"
    );

    step(
        11,
        "a backend refusing unauthenticated clients admits east's gateway",
    );
    meshed_backend_admits_the_gateway(&mc);

    step(12, "the namespaces clean up");
    let names = SCENARIO_NAMESPACES.join(" ");
    mc.sh(&format!(
        "kubectl --context east delete ns {names} --wait=false"
    ));
    eventually(
        120,
        "west's mirrors of east's deleted Services gone",
        || {
            let left = mc.json(
                "west",
                &[
                    "get",
                    "svc",
                    "-A",
                    "-l",
                    "mirror.linkerd.io/mirrored-service=true,mirror.linkerd.io/cluster-name=east",
                ],
            )?;
            let left: Vec<String> = left["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| format!("{}/{}", s["metadata"]["namespace"], s["metadata"]["name"]))
                .collect();
            left.is_empty().then_some(()).ok_or(format!("{left:?}"))
        },
    );
    mc.sh(&format!(
        "kubectl --context west delete ns {names} --wait=false"
    ));
    eventually(180, "every up-* namespace gone from both clusters", || {
        let mut left = Vec::new();
        for ctx in ["east", "west"] {
            let out = mc.kubectl(ctx, &["get", "ns", "-o", "name"])?;
            left.extend(
                out.lines()
                    .filter(|l| l.starts_with("namespace/up-"))
                    .map(|l| format!("{ctx}: {l}")),
            );
        }
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    });
    eprintln!("upstream scenarios: all passed in {:?}", started.elapsed());
}
