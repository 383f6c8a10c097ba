//! End-to-end tests of the `mc` binary against the real testbed: install | kubectl apply,
//! link east → west with least-privilege credentials, check on healthy and broken pairs, and
//! bad input (exit code 2, nothing on stdout).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mc_tests::{Testbed, shared_api_only};

mod cli_common;
use cli_common::{mc_bin, ok, stderr, with_stdin};

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn mc(bed: &Testbed, context: &str, args: &[&str]) -> Output {
    Command::new(mc_bin())
        .arg("--kubeconfig")
        .arg(bed.kubeconfig())
        .arg("--context")
        .arg(context)
        .args(args)
        .output()
        .unwrap()
}

/// `kubectl apply`, one at a time in this process: the tests share a testbed, and every install
/// carries the same cluster-scoped objects (the Link CRD, cluster roles). Two client-side applies
/// of one object both see it missing and both create it; the second fails with `AlreadyExists`.
fn apply(bed: &Testbed, context: &str, yaml: &str, extra: &[&str]) -> Output {
    static APPLY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = APPLY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut cmd = bed.kubectl(context);
    cmd.args(["apply", "-f", "-"]).args(extra);
    with_stdin(cmd, yaml)
}

fn kubectl(bed: &Testbed, context: &str, args: &[&str]) -> Output {
    bed.kubectl(context).args(args).output().unwrap()
}

fn ensure_ns(bed: &Testbed, context: &str, ns: &str) {
    let yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n");
    ok(&apply(bed, context, &yaml, &[]));
}

/// Installs the extension in `ns` on `context` with remote-access account `sa`.
fn install(bed: &Testbed, context: &str, ns: &str, sa: &str) -> String {
    let yaml = ok(&mc(
        bed,
        context,
        &[
            "multicluster",
            "install",
            "--namespace",
            ns,
            "--remote-mirror-service-account-name",
            sa,
        ],
    ));
    // Server-side dry run needs the namespace to exist, so apply first, then validate the
    // whole manifest again server-side.
    ok(&apply(bed, context, &yaml, &[]));
    ok(&apply(bed, context, &yaml, &["--dry-run=server"]));
    yaml
}

/// `mc --context east multicluster link` for link `name` in `ns` with remote-access account `sa`.
fn link_east(bed: &Testbed, ns: &str, sa: &str, name: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "multicluster",
        "link",
        "--cluster-name",
        name,
        "--namespace",
        ns,
        "--gateway-namespace",
        ns,
        "--service-account-name",
        sa,
    ];
    args.extend_from_slice(extra);
    mc(bed, "east", &args)
}

/// Writes the load-balancer status the testbed has no controller for.
fn set_lb(bed: &Testbed, context: &str, ns: &str, ip: &str) {
    let patch = format!(r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{ip}"}}]}}}}}}"#);
    ok(&kubectl(
        bed,
        context,
        &[
            "-n",
            ns,
            "patch",
            "service",
            "linkerd-gateway",
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
    ));
}

fn secret_kubeconfig(bed: &Testbed, context: &str, ns: &str, name: &str, dir: &Path) -> PathBuf {
    use base64::Engine as _;
    let data = ok(&kubectl(
        bed,
        context,
        &[
            "-n",
            ns,
            "get",
            "secret",
            name,
            "-o",
            "jsonpath={.data.kubeconfig}",
        ],
    ));
    let text = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .unwrap();
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn install_applies_with_server_side_validation_and_objects_are_present() {
    let bed = shared_api_only().unwrap();
    let ns = unique("mci");
    let sa = unique("ra");
    let yaml = install(bed, "east", &ns, &sa);
    assert!(yaml.contains("kind: CustomResourceDefinition"));
    for (kind, name) in [
        ("namespace", ns.as_str()),
        ("deployment", "linkerd-gateway"),
        ("service", "linkerd-gateway"),
        ("serviceaccount", "linkerd-gateway"),
        ("serviceaccount", sa.as_str()),
        ("secret", &format!("{sa}-token")),
    ] {
        let out = kubectl(bed, "east", &["-n", &ns, "get", kind, name, "-o", "name"]);
        assert_eq!(
            ok(&out).trim(),
            format!("{kind}/{name}").replace("deployment/", "deployment.apps/")
        );
    }
    ok(&kubectl(
        bed,
        "east",
        &["get", "crd", "links.multicluster.linkerd.io"],
    ));
    ok(&kubectl(bed, "east", &["get", "clusterrole", &sa]));
    // The JSON List form validates server-side too.
    let json = ok(&mc(
        bed,
        "east",
        &[
            "multicluster",
            "install",
            "--namespace",
            &ns,
            "--remote-mirror-service-account-name",
            &sa,
            "-o",
            "json",
        ],
    ));
    ok(&apply(bed, "east", &json, &["--dry-run=server"]));
    let labels = ok(&kubectl(
        bed,
        "east",
        &[
            "-n",
            &ns,
            "get",
            "svc,deploy,sa,secret",
            "-l",
            "linkerd.io/extension=multicluster",
            "-o",
            "name",
        ],
    ));
    // The gateway's and the egress's Service, Deployment and ServiceAccount, and the
    // remote-access ServiceAccount with its token Secret.
    assert_eq!(labels.lines().count(), 8, "{labels}");
    // The gateway Service publishes the contract link reads.
    let ann = ok(&kubectl(
        bed,
        "east",
        &[
            "-n",
            &ns,
            "get",
            "svc",
            "linkerd-gateway",
            "-o",
            "jsonpath={.metadata.annotations}",
        ],
    ));
    assert!(ann.contains("mirror.linkerd.io/gateway-identity"), "{ann}");
    assert!(
        ann.contains(&format!(
            "linkerd-gateway.{ns}.serviceaccount.identity.linkerd.cluster.local"
        )),
        "{ann}"
    );
}

#[test]
fn link_credentials_authenticate_to_east_and_can_list_services_but_not_read_secrets() {
    let bed = shared_api_only().unwrap();
    let ns = unique("mcl");
    let sa = unique("ra");
    let name = unique("east");
    install(bed, "east", &ns, &sa);
    install(bed, "west", &ns, &unique("ra"));
    ensure_ns(bed, "west", "linkerd");
    set_lb(bed, "east", &ns, "203.0.113.7");
    let out = link_east(bed, &ns, &sa, &name, &[]);
    let yaml = ok(&out);
    ok(&apply(bed, "west", &yaml, &["--dry-run=server"]));
    ok(&apply(bed, "west", &yaml, &[]));
    let link = ok(&kubectl(
        bed,
        "west",
        &[
            "-n",
            &ns,
            "get",
            "link",
            &name,
            "-o",
            "jsonpath={.spec.gatewayAddress} {.spec.gatewayPort} {.spec.probeSpec.period}",
        ],
    ));
    assert_eq!(link, "203.0.113.7 4143 3s");
    let dir = tempfile::tempdir().unwrap();
    let kc = secret_kubeconfig(
        bed,
        "west",
        &ns,
        &format!("cluster-credentials-{name}"),
        dir.path(),
    );
    let as_remote = |args: &[&str]| {
        Command::new(&bed.binaries().kubectl)
            .arg("--kubeconfig")
            .arg(&kc)
            .args(args)
            .output()
            .unwrap()
    };
    let who = ok(&as_remote(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]));
    assert_eq!(who, format!("system:serviceaccount:{ns}:{sa}"));
    ok(&as_remote(&["get", "services", "-A", "-o", "name"]));
    let secrets = as_remote(&["-n", &ns, "get", "secrets"]);
    assert!(!secrets.status.success());
    assert!(
        stderr(&secrets).contains("Forbidden") || stderr(&secrets).contains("forbidden"),
        "{}",
        stderr(&secrets)
    );

    // unlink lists everything link created, and kubectl can delete it: also the controller's
    // Lease under upstream's name and under the name mc's controller held before.
    let leases = [
        format!("service-mirror-write-{name}"),
        format!("mc-mirror-write-{name}"),
    ];
    for lease in &leases {
        let yaml = format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {lease}, namespace: {ns}}}\nspec: {{holderIdentity: pod-0, leaseDurationSeconds: 30}}\n"
        );
        ok(&apply(bed, "west", &yaml, &[]));
    }
    let del = ok(&mc(
        bed,
        "west",
        &[
            "multicluster",
            "unlink",
            "--cluster-name",
            &name,
            "--namespace",
            &ns,
        ],
    ));
    for rendered in [
        "kind: Link",
        "kind: Deployment",
        &format!("name: cluster-credentials-{name}"),
        &format!("name: mc-probe-{name}"),
        &format!("name: {}", leases[0]),
        &format!("name: {}", leases[1]),
    ] {
        assert!(del.contains(rendered), "unlink misses {rendered}:\n{del}");
    }
    let mut cmd = bed.kubectl("west");
    cmd.args(["delete", "-f", "-"]);
    ok(&with_stdin(cmd, &del));
    assert!(
        !kubectl(bed, "west", &["-n", &ns, "get", "link", &name])
            .status
            .success()
    );
    for lease in &leases {
        assert!(
            !kubectl(bed, "west", &["-n", &ns, "get", "lease", lease])
                .status
                .success(),
            "{lease} left behind"
        );
    }
}

#[test]
fn bad_input_exits_2_with_a_clear_message_and_writes_nothing() {
    let bed = shared_api_only().unwrap();
    let ns = unique("mcb");
    ensure_ns(bed, "east", &ns);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "multicluster".into(),
                "install".into(),
                "--gateway-service-type".into(),
                "Bogus".into(),
            ],
            "LoadBalancer, NodePort, ClusterIP",
        ),
        (
            vec![
                "multicluster".into(),
                "install".into(),
                "-o".into(),
                "xml".into(),
            ],
            "possible values",
        ),
        (
            vec![
                "multicluster".into(),
                "install".into(),
                "--set".into(),
                "gateway.serviceType=Foo".into(),
            ],
            "gateway.serviceType",
        ),
        (
            vec![
                "multicluster".into(),
                "install".into(),
                "--set".into(),
                "controllers[0].link.ref.name=a,controllers[1].link.ref.name=a".into(),
            ],
            "controllers[1].link.ref.name: \"a\" is also the Link of controllers[0]",
        ),
        (
            vec![
                "multicluster".into(),
                "link".into(),
                "--cluster-name".into(),
                "x".into(),
                "--namespace".into(),
                ns.clone(),
                "--gateway-namespace".into(),
                ns.clone(),
            ],
            "does not exist",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = mc(bed, "east", &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    // A gateway Service without a load-balancer address: suggest --gateway-addresses.
    let svc = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: linkerd-gateway\n  namespace: {ns}\n  annotations:\n    mirror.linkerd.io/gateway-identity: linkerd-gateway.{ns}.serviceaccount.identity.linkerd.cluster.local\n    mirror.linkerd.io/probe-path: /ready\nspec:\n  type: LoadBalancer\n  ports:\n  - {{name: mc-gateway, port: 4143}}\n  - {{name: mc-probe, port: 4191}}\n"
    );
    ok(&apply(bed, "east", &svc, &[]));
    let out = mc(
        bed,
        "east",
        &[
            "multicluster",
            "link",
            "--cluster-name",
            "x",
            "--namespace",
            &ns,
            "--gateway-namespace",
            &ns,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("--gateway-addresses"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("no load-balancer address"),
        "{}",
        stderr(&out)
    );

    // Malformed PEM.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.crt");
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = Command::new(mc_bin())
        .args(["trust-anchor", "bundle"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("bad.crt"), "{}", stderr(&out));
    assert!(stderr(&out).contains("base64"), "{}", stderr(&out));
}

#[test]
fn trust_anchor_create_issuer_bundle_and_diff() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let run = |args: &[String]| Command::new(mc_bin()).args(args).output().unwrap();
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    ok(&run(&s(&[
        "trust-anchor",
        "create",
        "--cert-out",
        &p("a.crt"),
        "--key-out",
        &p("a.key"),
    ])));
    ok(&run(&s(&[
        "trust-anchor",
        "create",
        "--cert-out",
        &p("b.crt"),
        "--key-out",
        &p("b.key"),
        "--not-after",
        "100h",
    ])));
    // Refuses to overwrite.
    let again = run(&s(&[
        "trust-anchor",
        "create",
        "--cert-out",
        &p("a.crt"),
        "--key-out",
        &p("a.key"),
    ]));
    assert_eq!(again.status.code(), Some(2));
    ok(&run(&s(&[
        "issuer",
        "create",
        "--ca-cert",
        &p("a.crt"),
        "--ca-key",
        &p("a.key"),
        "--cert-out",
        &p("i.crt"),
        "--key-out",
        &p("i.key"),
        "--not-after",
        "48h",
    ])));
    let out = run(&s(&[
        "trust-anchor",
        "bundle",
        &p("a.crt"),
        &p("b.crt"),
        &p("a.crt"),
    ]));
    let bundle = ok(&out);
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "deduped");
    assert!(
        stderr(&out).contains("expires"),
        "b expires within 720h: {}",
        stderr(&out)
    );
    std::fs::write(p("ab.crt"), &bundle).unwrap();
    let table = ok(&run(&s(&["trust-anchor", "inspect", &p("ab.crt")])));
    assert_eq!(table.lines().count(), 3, "{table}");
    // A private key is not an anchor.
    let out = run(&s(&["trust-anchor", "bundle", &p("a.key")]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("a.key"), "{}", stderr(&out));
    let diff = run(&s(&["trust-anchor", "diff", &p("a.crt"), &p("ab.crt")]));
    assert_eq!(diff.status.code(), Some(1));
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(text.contains("share at least one anchor"), "{text}");
    let same = run(&s(&["trust-anchor", "diff", &p("ab.crt"), &p("ab.crt")]));
    assert_eq!(same.status.code(), Some(0));

    // The gateway's identity Secret: a leaf for the gateway identity that chains to the anchor.
    // Its default year of validity would outlive the 48h issuer: it is shortened, with a warning.
    let out = run(&s(&[
        "multicluster",
        "gateway-identity",
        "--issuer-cert",
        &p("i.crt"),
        "--issuer-key",
        &p("i.key"),
        "--trust-anchors",
        &p("a.crt"),
    ]));
    let yaml = ok(&out);
    assert!(
        stderr(&out).contains("warning") && stderr(&out).contains("outlive the issuer"),
        "{}",
        stderr(&out)
    );
    let secret: serde_json::Value = serde_yaml::from_str(yaml.trim_start_matches("---\n")).unwrap();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    use base64::Engine as _;
    let chain = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["tls.crt"].as_str().unwrap())
        .unwrap();
    std::fs::write(p("chain.pem"), &chain).unwrap();
    let verify = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            &p("a.crt"),
            "-untrusted",
            &p("chain.pem"),
            &p("chain.pem"),
        ])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // `openssl x509 -noout <args> -in <file>`: its stdout.
    let x509 = |args: &[&str], file: &str| {
        let out = Command::new("openssl")
            .args(["x509", "-noout"])
            .args(args)
            .args(["-in", file])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let san = x509(&["-ext", "subjectAltName"], &p("chain.pem"));
    assert!(
        san.contains(
            "DNS:linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
        ),
        "{san}"
    );
    assert_eq!(
        x509(&["-enddate"], &p("chain.pem")),
        x509(&["-enddate"], &p("i.crt")),
        "the leaf ends with its issuer"
    );

    // The egress's Secret: the egress identity, within the issuer's validity: no warning.
    let out = run(&s(&[
        "multicluster",
        "egress-identity",
        "--issuer-cert",
        &p("i.crt"),
        "--issuer-key",
        &p("i.key"),
        "--trust-anchors",
        &p("a.crt"),
        "--validity",
        "24h",
    ]));
    let yaml = ok(&out);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let secret: serde_json::Value = serde_yaml::from_str(yaml.trim_start_matches("---\n")).unwrap();
    assert_eq!(
        secret["metadata"]["name"],
        "linkerd-multicluster-egress-identity"
    );
    let chain = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["tls.crt"].as_str().unwrap())
        .unwrap();
    std::fs::write(p("egress.pem"), &chain).unwrap();
    let san = x509(&["-ext", "subjectAltName"], &p("egress.pem"));
    assert!(
        san.contains(
            "DNS:linkerd-multicluster-egress.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
        ),
        "{san}"
    );

    // Issuer mode's Secret: the issuer itself, checked before it is rendered.
    let yaml = ok(&run(&s(&[
        "multicluster",
        "issuer-secret",
        "--issuer-cert",
        &p("i.crt"),
        "--issuer-key",
        &p("i.key"),
        "--trust-anchors",
        &p("a.crt"),
    ])));
    let secret: serde_json::Value = serde_yaml::from_str(yaml.trim_start_matches("---\n")).unwrap();
    assert_eq!(secret["metadata"]["name"], "linkerd-multicluster-issuer");
    let issuer = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["tls.crt"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(issuer).unwrap(),
        std::fs::read_to_string(p("i.crt")).unwrap()
    );
    let out = run(&s(&[
        "multicluster",
        "issuer-secret",
        "--issuer-cert",
        &p("i.key"),
        "--issuer-key",
        &p("i.key"),
        "--trust-anchors",
        &p("a.crt"),
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("i.key"), "{}", stderr(&out));
}

#[test]
fn link_dry_run_lists_mirrors_and_every_conflict() {
    let bed = shared_api_only().unwrap();
    let ns = unique("mcd");
    let sa = unique("ra");
    let name = unique("dry");
    let app = unique("app");
    let gone = unique("gone");
    install(bed, "east", &ns, &sa);
    set_lb(bed, "east", &ns, "203.0.113.8");
    let long = format!("svc-{}", "x".repeat(56));
    let svc = |ns: &str, n: &str, exported: bool| {
        let labels = if exported {
            "{mirror.linkerd.io/exported: \"true\"}"
        } else {
            "{}"
        };
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {n}, namespace: {ns}, labels: {labels}}}\nspec: {{ports: [{{port: 80}}]}}\n"
        )
    };
    ensure_ns(bed, "east", &app);
    ensure_ns(bed, "east", &gone);
    ensure_ns(bed, "west", &app);
    let east = [
        svc(&app, "web", true),
        svc(&app, &long, true),
        svc(&app, "hidden", false),
        svc(&gone, "api", true),
    ]
    .concat();
    ok(&apply(bed, "east", &east, &[]));
    // A foreign Service where the mirror of web would go.
    ok(&apply(
        bed,
        "west",
        &svc(&app, &format!("web-{name}"), false),
        &[],
    ));
    let before = ok(&kubectl(
        bed,
        "west",
        &["-n", &app, "get", "svc", "-o", "name"],
    ));

    let out = link_east(
        bed,
        &ns,
        &sa,
        &name,
        &["--dry-run", "--source-context", "west"],
    );
    let report = ok(&out);
    let line = |svc: &str| {
        report
            .lines()
            .find(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 2 && (f[0] == app || f[0] == gone) && f[1] == svc
            })
            .unwrap_or_else(|| panic!("no line for {svc}:\n{report}"))
            .to_owned()
    };
    let web = line("web");
    assert!(web.contains(&format!("web-{name}")), "{web}");
    assert!(web.contains("a foreign Service"), "{web}");
    let l = line(&long);
    assert!(l.contains("name shortened"), "{l}");
    let api = line("api");
    assert!(
        api.contains(&format!("namespace {gone} is missing")),
        "{api}"
    );
    assert!(!report.contains("hidden"), "{report}");
    assert!(
        !report.contains("kind:"),
        "dry run renders no manifests:\n{report}"
    );
    // Nothing was written to either cluster.
    assert_eq!(
        ok(&kubectl(
            bed,
            "west",
            &["-n", &app, "get", "svc", "-o", "name"]
        )),
        before
    );
}

/// The controller that `link` renders, run for real (as a process) with exactly the identity
/// and RBAC that `install` and `link` render: it takes its lease and mirrors an export.
#[test]
fn the_real_mirror_controller_works_with_the_rendered_rbac() {
    let bed = shared_api_only().unwrap();
    let ns = unique("mcr");
    let sa = unique("ra");
    let name = unique("real");
    let app = unique("app");
    install(bed, "east", &ns, &sa);
    install(bed, "west", &ns, &unique("ra"));
    ensure_ns(bed, "west", "linkerd");
    // Gateway-less: remote discovery only, so the controller probes no address.
    let yaml = ok(&link_east(bed, &ns, &sa, &name, &["--gateway=false"]));
    ok(&apply(bed, "west", &yaml, &[]));
    export_db(bed, &app);
    run_controller_until_mirrored(
        bed,
        &ns,
        &name,
        &app,
        &["--namespace", &ns, "--link", &name],
    );
}

/// Exports Service `db` from east's `app` (remote discovery); `app` exists on both sides.
fn export_db(bed: &Testbed, app: &str) {
    ensure_ns(bed, "east", app);
    ensure_ns(bed, "west", app);
    let export = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: {app}, labels: {{mirror.linkerd.io/exported: remote-discovery}}}}\nspec: {{ports: [{{port: 5432}}]}}\n"
    );
    ok(&apply(bed, "east", &export, &[]));
}

/// Runs `mc-mirror` as a process with `args` (its Link and namespace), as west's ServiceAccount
/// `controller-<name>` (a token of it, so with exactly the RBAC rendered for it), until it holds
/// its lease `service-mirror-write-<name>` and has mirrored `db` of `app` as a remote-discovery
/// mirror. Stands in for the controller's Pod, which the API-only testbed cannot run.
fn run_controller_until_mirrored(bed: &Testbed, ns: &str, name: &str, app: &str, args: &[&str]) {
    let _controller = spawn_controller(bed, ns, name, args);
    wait_mirrored(bed, ns, name, app);
}

/// `mc-mirror` as west's ServiceAccount `controller-<name>`, with `args`; killed on drop.
fn spawn_controller(bed: &Testbed, ns: &str, name: &str, args: &[&str]) -> cli_common::KillOnDrop {
    // The controller's own ServiceAccount, nothing more.
    let token = ok(&kubectl(
        bed,
        "west",
        &["-n", ns, "create", "token", &format!("controller-{name}")],
    ));
    let kubeconfig = bed
        .token_kubeconfig("west", &format!("controller-{name}"), token.trim())
        .unwrap();
    let log =
        std::fs::File::create(std::env::temp_dir().join(format!("{name}-mirror.log"))).unwrap();
    cli_common::KillOnDrop(
        Command::new(cli_common::mirror_bin())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "--context",
                "west",
                "--admin-addr",
                "127.0.0.1:0",
                "--identity",
                "pod-0",
            ])
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Waits (90 s at most) until west's lease `service-mirror-write-<name>` is held by `pod-0` and the
/// remote-discovery mirror `db-<name>` of `app` exists.
fn wait_mirrored(bed: &Testbed, ns: &str, name: &str, app: &str) {
    let start = std::time::Instant::now();
    let mirror = format!("db-{name}");
    loop {
        let lease = kubectl(
            bed,
            "west",
            &[
                "-n",
                ns,
                "get",
                "lease",
                &format!("service-mirror-write-{name}"),
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        );
        let svc = kubectl(
            bed,
            "west",
            &[
                "-n",
                app,
                "get",
                "svc",
                &mirror,
                "-o",
                "jsonpath={.metadata.labels}",
            ],
        );
        if lease.status.success() && svc.status.success() {
            assert_eq!(String::from_utf8_lossy(&lease.stdout), "pod-0");
            let labels = String::from_utf8_lossy(&svc.stdout).into_owned();
            assert!(
                labels.contains("multicluster.linkerd.io/remote-discovery"),
                "{labels}"
            );
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(90),
            "no lease or mirror after 90s; see {}",
            std::env::temp_dir()
                .join(format!("{name}-mirror.log"))
                .display()
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// GitOps with an install-managed controller (upstream's `controllers` list, issue #19 item 7):
/// west is installed with `controllers: [<link>]` before the Link exists; the Link and its
/// credentials are applied afterwards with no controller (`link --no-controller`, as
/// `link-gen` output), and mirroring works. The API-only testbed runs no Pods, so what stands
/// in for the controller's Pod: the test checks that the install applied exactly the objects
/// `link --controller-only` renders for that Link (and that they carry the extension label
/// `uninstall` selects by), and runs `mc-mirror` as a process with the args of the Deployment
/// read back from the cluster, under a token of the ServiceAccount the install rendered,
/// started before the Link is applied; it takes its lease and mirrors.
#[test]
fn an_install_managed_controller_serves_a_link_applied_later() {
    let bed = shared_api_only().unwrap();
    let ns = unique("mci");
    let sa = unique("ra");
    let name = unique("gitops");
    let app = unique("app");
    install(bed, "east", &ns, &sa);
    let installed = ok(&mc(
        bed,
        "west",
        &[
            "multicluster",
            "install",
            "--namespace",
            &ns,
            "--remote-mirror-service-account-name",
            &unique("ra"),
            "--set",
            &format!("controllers[0].link.ref.name={name},controllers[0].gateway.enabled=false"),
            "--set",
            "controllerDefaults.logLevel=debug",
            "-o",
            "json",
        ],
    ));
    ok(&apply(bed, "west", &installed, &[]));
    ensure_ns(bed, "west", "linkerd");
    export_db(bed, &app);
    // The controller starts before its Link exists, as the install's Pod would.
    let args = deployment_args(bed, &ns, &name);
    assert!(args.contains(&format!("--link={name}")), "{args:?}");
    assert!(args.contains(&"--log-level=debug".to_owned()), "{args:?}");
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--admin-addr"))
        .collect();
    let _controller = spawn_controller(bed, &ns, &name, &args);
    std::thread::sleep(std::time::Duration::from_secs(2));
    // Gateway-less (remote discovery only), so the controller probes no address.
    let link = ok(&link_east(
        bed,
        &ns,
        &sa,
        &name,
        &["--gateway=false", "--no-controller"],
    ));
    assert!(!link.contains("kind: Deployment"), "{link}");
    ok(&apply(bed, "west", &link, &[]));

    let controller = controller_only(bed, &ns, &name, &["-o", "json"]);
    let items = |text: &str| -> Vec<serde_json::Value> {
        let list: serde_json::Value = serde_json::from_str(text).unwrap();
        list["items"].as_array().unwrap().clone()
    };
    let want = items(&controller);
    let of_link: Vec<_> = items(&installed)
        .into_iter()
        .filter(|o| o["metadata"]["labels"]["mirror.linkerd.io/cluster-name"] == name.as_str())
        .collect();
    assert_eq!(
        of_link, want,
        "install renders what link --controller-only does"
    );
    assert_eq!(
        want.len(),
        5,
        "SA, ClusterRoleBinding, Role, RoleBinding, Deployment"
    );

    // Applied as rendered, and selected by uninstall's label.
    for object in &want {
        let kind = object["kind"].as_str().unwrap();
        let object_name = object["metadata"]["name"].as_str().unwrap();
        let got = ok(&kubectl(
            bed,
            "west",
            &[
                "-n",
                &ns,
                "get",
                &kind.to_lowercase(),
                "-l",
                "linkerd.io/extension=multicluster",
                "--field-selector",
                &format!("metadata.name={object_name}"),
                "-o",
                "json",
            ],
        ));
        let got = items(&got);
        assert_eq!(got.len(), 1, "{kind} {object_name} by uninstall's label");
        let got = &got[0];
        assert_eq!(
            got["metadata"]["labels"], object["metadata"]["labels"],
            "{kind}"
        );
        for field in ["rules", "roleRef", "subjects"] {
            assert_eq!(got[field], object[field], "{kind} {field}");
        }
        if kind == "Deployment" {
            let c = |o: &serde_json::Value| o["spec"]["template"]["spec"]["containers"][0].clone();
            for field in ["args", "command", "image"] {
                assert_eq!(c(got)[field], c(object)[field], "{field}");
            }
        }
    }

    wait_mirrored(bed, &ns, &name, &app);
}

/// The args of west's Deployment `controller-<name>`, read back from the API server.
fn deployment_args(bed: &Testbed, ns: &str, name: &str) -> Vec<String> {
    let args = ok(&kubectl(
        bed,
        "west",
        &[
            "-n",
            ns,
            "get",
            "deployment",
            &format!("controller-{name}"),
            "-o",
            "jsonpath={.spec.template.spec.containers[0].args}",
        ],
    ));
    serde_json::from_str(&args).unwrap()
}

/// `mc --context west multicluster link --controller-only` for Link `ns/name`, at log level debug.
fn controller_only(bed: &Testbed, ns: &str, name: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "multicluster",
        "link",
        "--controller-only",
        "--cluster-name",
        name,
        "--namespace",
        ns,
        "--log-level",
        "debug",
    ];
    args.extend_from_slice(extra);
    ok(&mc(bed, "west", &args))
}

/// A Link applied on its own (as `link-gen` output is: the Link and its credentials, no
/// controller) gets its controller from `link --controller-only`, which reads the Link in the
/// source cluster only; a missing Link is a clear error naming it and the fix.
#[test]
fn controller_only_renders_the_controller_of_an_existing_link() {
    let bed = shared_api_only().unwrap();
    let ns = unique("mcc");
    let sa = unique("ra");
    let name = unique("ctl");
    install(bed, "east", &ns, &sa);
    install(bed, "west", &ns, &unique("ra"));
    ensure_ns(bed, "west", "linkerd");
    set_lb(bed, "east", &ns, "203.0.113.9");
    let yaml = ok(&link_east(bed, &ns, &sa, &name, &["--no-controller"]));
    assert!(!yaml.contains("kind: Deployment"), "{yaml}");
    ok(&apply(bed, "west", &yaml, &[]));

    let controller = controller_only(bed, &ns, &name, &[]);
    assert!(!controller.contains("kind: Link"), "{controller}");
    assert!(!controller.contains("kind: Secret"), "{controller}");
    ok(&apply(bed, "west", &controller, &[]));
    let deploy = format!("controller-{name}");
    for (kind, object) in [
        ("deployment", deploy.as_str()),
        ("serviceaccount", deploy.as_str()),
        ("role", &format!("controller-read-remote-creds-{name}")),
        (
            "rolebinding",
            &format!("controller-read-remote-creds-{name}"),
        ),
        ("service", &format!("mc-probe-{name}")),
    ] {
        ok(&kubectl(bed, "west", &["-n", &ns, "get", kind, object]));
    }
    let args = ok(&kubectl(
        bed,
        "west",
        &[
            "-n",
            &ns,
            "get",
            "deployment",
            &deploy,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].args}",
        ],
    ));
    for arg in [
        format!("--link={name}"),
        format!("--namespace={ns}"),
        "--log-level=debug".to_owned(),
    ] {
        assert!(args.contains(&arg), "{arg} not in {args}");
    }
    let secret = ok(&kubectl(
        bed,
        "west",
        &[
            "-n",
            &ns,
            "get",
            "role",
            &format!("controller-read-remote-creds-{name}"),
            "-o",
            "jsonpath={.rules[0].resourceNames}",
        ],
    ));
    assert!(
        secret.contains(&format!("cluster-credentials-{name}")),
        "{secret}"
    );
    let probe_port = ok(&kubectl(
        bed,
        "west",
        &[
            "-n",
            &ns,
            "get",
            "service",
            &format!("mc-probe-{name}"),
            "-o",
            "jsonpath={.spec.ports[0].port}",
        ],
    ));
    assert_eq!(probe_port.trim(), "4191");

    let missing = unique("nolink");
    let out = mc(
        bed,
        "west",
        &[
            "multicluster",
            "link",
            "--controller-only",
            "--cluster-name",
            &missing,
            "--namespace",
            &ns,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let msg = stderr(&out);
    assert!(msg.contains(&format!("Link {ns}/{missing}")), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
    assert!(msg.contains("link-gen"), "{msg}");
}

#[test]
fn install_takes_the_trust_domain_from_the_clusters_linkerd_config() {
    let bed = shared_api_only().unwrap();
    let lns = unique("l5d");
    ensure_ns(bed, "east", &lns);
    let cm = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: linkerd-config, namespace: {lns}}}\n\
         data:\n  values: |\n    identityTrustDomain: corp.example\n    \
         identityTrustAnchorsPEM: |\n      -----BEGIN CERTIFICATE-----\n      AAAA\n      \
         -----END CERTIFICATE-----\n"
    );
    ok(&apply(bed, "east", &cm, &[]));
    // `<gateway>.<namespace>.serviceaccount.identity.<linkerd namespace>.<trust domain>`.
    let gateway_id = |l5d: &str, domain: &str| {
        format!("linkerd-gateway.linkerd-multicluster.serviceaccount.identity.{l5d}.{domain}")
    };

    // Read from the cluster, and said so on stderr.
    let out = mc(bed, "east", &["-L", &lns, "multicluster", "install"]);
    let yaml = ok(&out);
    assert!(yaml.contains(&gateway_id(&lns, "corp.example")), "{yaml}");
    assert!(
        stderr(&out).contains(&format!(
            "using trust domain corp.example from {lns}/linkerd-config"
        )),
        "{}",
        stderr(&out)
    );
    // A flag wins over the cluster.
    let flag = &[
        "-L",
        &lns,
        "multicluster",
        "install",
        "--identity-trust-domain",
        "flag.example",
    ];
    assert!(ok(&mc(bed, "east", flag)).contains(&gateway_id(&lns, "flag.example")));
    // No linkerd-config: the default, with a note.
    let out = mc(
        bed,
        "east",
        &["-L", "no-linkerd-here", "multicluster", "install"],
    );
    assert!(ok(&out).contains(&gateway_id("no-linkerd-here", "cluster.local")));
    assert!(
        stderr(&out).contains("no no-linkerd-here/linkerd-config"),
        "{}",
        stderr(&out)
    );
    // An unusable context fails with exit 2 and points at --ignore-cluster; nothing on stdout.
    let out = mc(bed, "no-such-context", &["multicluster", "install"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("--ignore-cluster"),
        "{}",
        stderr(&out)
    );
    // ... and renders offline with it.
    let out = mc(
        bed,
        "no-such-context",
        &["multicluster", "install", "--ignore-cluster"],
    );
    assert!(ok(&out).contains(&gateway_id("linkerd", "cluster.local")));
}
