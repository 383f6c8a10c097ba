//! The contract between the `Dockerfile` and the manifests that run its image.
//!
//! No Docker engine runs on the machines this project is built on, so the image itself cannot be
//! built here. What can be checked is everything the image and the manifests must agree on: every
//! container command the renderer writes is a binary the image's build stage builds and its
//! runtime stage copies onto `PATH`; the image's `USER` is the UID/GID the pods run as; every
//! container port is exposed; and the real binaries accept every flag the manifests pass them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use mc_core::render::{self, ControllerValues, InstallValues, LinkGateway, LinkValues};
use serde_json::Value;

mod cli_common;
use cli_common::{gateway_bin, mirror_bin};

/// What the Dockerfile's final stage provides.
#[derive(Debug)]
struct Image {
    /// Binaries the build stage builds (`cargo build -p <pkg> --bins`).
    built_packages: BTreeSet<String>,
    /// Binary names the runtime stage copies into `/usr/local/bin/`.
    binaries: BTreeSet<String>,
    /// `USER uid:gid`.
    user: (i64, i64),
    /// `EXPOSE` ports.
    exposed: BTreeSet<i64>,
}

fn dockerfile() -> Image {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile");
    let text = std::fs::read_to_string(&path).unwrap();
    // Join continuation lines, drop comments.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let mut built_packages = BTreeSet::new();
    for l in &lines[..last_from] {
        let Some(start) = l.find("cargo build").filter(|_| l.starts_with("RUN ")) else {
            continue;
        };
        let command = l[start..].split("&&").next().unwrap();
        let w = words(command);
        assert!(
            w.contains(&"--locked".to_owned()),
            "the image builds --locked: {l}"
        );
        assert!(w.contains(&"--release".to_owned()), "{l}");
        for (i, word) in w.iter().enumerate() {
            if word == "-p" {
                built_packages.insert(w[i + 1].clone());
            }
        }
    }
    let mut image = Image {
        built_packages,
        binaries: BTreeSet::new(),
        user: (-1, -1),
        exposed: BTreeSet::new(),
    };
    for l in &lines[last_from + 1..] {
        let w = words(l);
        match w[0].as_str() {
            "COPY" => {
                assert_eq!(w.last().unwrap(), "/usr/local/bin/", "{l}");
                for src in &w[1..w.len() - 1] {
                    if !src.starts_with("--") {
                        image
                            .binaries
                            .insert(src.rsplit('/').next().unwrap().to_owned());
                    }
                }
            }
            "USER" => {
                let (u, g) = w[1].split_once(':').unwrap();
                image.user = (u.parse().unwrap(), g.parse().unwrap());
            }
            "EXPOSE" => image
                .exposed
                .extend(w[1..].iter().map(|p| p.parse::<i64>().unwrap())),
            _ => {}
        }
    }
    image
}

/// Every Deployment the renderer writes: install (the gateway) and link (the controller).
fn deployments() -> Vec<Value> {
    let installed = render::install(&InstallValues::default()).unwrap();
    let linked = render::link(&LinkValues {
        cluster_name: "east".to_owned(),
        kubeconfig: "apiVersion: v1\nkind: Config\n".to_owned(),
        gateway: Some(LinkGateway {
            addresses: vec!["203.0.113.10".to_owned()],
            port: 4143,
            identity:
                "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
                    .to_owned(),
            probe_path: "/ready".to_owned(),
            probe_port: 4191,
            probe_period: "3".to_owned(),
        }),
        controller: Some(ControllerValues::default()),
        ..LinkValues::default()
    })
    .unwrap();
    let all: Vec<Value> = installed
        .into_iter()
        .chain(linked)
        .filter(|o| o["kind"] == "Deployment")
        .collect();
    assert_eq!(all.len(), 2, "the gateway and the controller");
    all
}

#[test]
fn manifests_run_what_the_image_contains_as_the_image_user() {
    let image = dockerfile();
    assert_eq!(
        image.built_packages,
        BTreeSet::from(["mc-gateway".to_owned(), "mc-mirror".to_owned()])
    );
    assert_eq!(
        image.binaries,
        BTreeSet::from(["mc-gateway".to_owned(), "mc-mirror".to_owned()])
    );
    for d in deployments() {
        let name = d["metadata"]["name"].as_str().unwrap().to_owned();
        let pod = &d["spec"]["template"]["spec"];
        let user = (
            pod["securityContext"]["runAsUser"].as_i64().unwrap(),
            pod["securityContext"]["runAsGroup"].as_i64().unwrap(),
        );
        assert_eq!(user, image.user, "{name}: pods run as the image's USER");
        for c in pod["containers"].as_array().unwrap() {
            let command = c["command"][0].as_str().unwrap();
            assert!(
                image.binaries.contains(command),
                "{name}: runs {command:?}, which the image does not contain"
            );
            assert!(
                c["image"].as_str().unwrap().contains("/mc:"),
                "{name}: {}",
                c["image"]
            );
            for p in c["ports"].as_array().into_iter().flatten() {
                let port = p["containerPort"].as_i64().unwrap();
                assert!(
                    image.exposed.contains(&port),
                    "{name}: port {port} is not EXPOSEd by the image"
                );
            }
        }
    }
}

#[test]
fn the_binaries_accept_every_flag_the_manifests_pass() {
    for d in deployments() {
        for c in d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            let bin = match c["command"][0].as_str().unwrap() {
                "mc-gateway" => gateway_bin(),
                "mc-mirror" => mirror_bin(),
                other => panic!("unknown command {other}"),
            };
            let args: Vec<&str> = c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            // clap rejects an unknown flag before it gets to --help: exit 0 means every flag
            // the manifest passes exists.
            let out = Command::new(bin)
                .args(&args)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} {args:?} was rejected:\n{}",
                bin.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            // And the check can fail: an unknown flag is rejected.
            let out = Command::new(bin)
                .args(&args)
                .args(["--no-such-flag", "--help"])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{}", bin.display());
        }
    }
}
