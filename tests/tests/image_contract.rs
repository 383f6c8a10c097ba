//! The contract between the `Dockerfile`, the image archive `scripts/build-images` writes, and
//! the manifests that run the image.
//!
//! No Docker engine runs on the machines this project is built on, so the testbed's nodes run the
//! archive `scripts/build-images mc` writes from the release binaries. Checked here: every
//! container command the renderer writes is a binary the image's build stage builds and its
//! runtime stage copies onto `PATH`; the image's `USER` is the UID/GID the pods run as; every
//! container port is exposed; the real binaries accept every flag the manifests pass them; the
//! archive has the Dockerfile's binaries, user, entrypoint, command and ports under the reference
//! `install` renders by default; and building it twice gives the same bytes.
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
    /// `ENTRYPOINT` (exec form).
    entrypoint: Vec<String>,
    /// `CMD` (exec form).
    cmd: Vec<String>,
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
        entrypoint: Vec::new(),
        cmd: Vec::new(),
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
            "ENTRYPOINT" => image.entrypoint = serde_json::from_str(l[10..].trim()).unwrap(),
            "CMD" => image.cmd = serde_json::from_str(l[3..].trim()).unwrap(),
            _ => {}
        }
    }
    image
}

/// Every Deployment the renderer writes: install (the gateway and the egress, with their leaf
/// Secrets and in issuer mode) and link (the controller).
fn deployments() -> Vec<Value> {
    let mut issuer_mode = InstallValues::default();
    issuer_mode.identity.issuer_secret = "linkerd-multicluster-issuer".to_owned();
    let installed = [InstallValues::default(), issuer_mode]
        .iter()
        .flat_map(|v| render::install(v).unwrap())
        .collect::<Vec<_>>();
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
    assert_eq!(
        all.len(),
        5,
        "the gateway and the egress in both modes, and the controller"
    );
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

/// The manifest, image config and layer listing (`tar -tv` lines) of a docker-archive.
struct Archive {
    repo_tags: Vec<String>,
    config: Value,
    layer_listing: Vec<String>,
}

fn tar_cat(archive: &Path, member: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(member)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar -xOf {} {member}",
        archive.display()
    );
    out.stdout
}

fn read_archive(path: &Path) -> Archive {
    assert!(
        path.is_file(),
        "{} is missing: `make test` builds it (scripts/build-images mc)",
        path.display()
    );
    let manifest: Value = serde_json::from_slice(&tar_cat(path, "manifest.json")).unwrap();
    let manifest = &manifest[0];
    let config: Value =
        serde_json::from_slice(&tar_cat(path, manifest["Config"].as_str().unwrap())).unwrap();
    let layers = manifest["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer");
    let layer = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(layer.path(), tar_cat(path, layers[0].as_str().unwrap())).unwrap();
    let listing = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(layer.path())
        .output()
        .unwrap();
    assert!(listing.status.success());
    Archive {
        repo_tags: manifest["RepoTags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect(),
        config,
        layer_listing: String::from_utf8(listing.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect(),
    }
}

#[test]
fn the_image_archive_keeps_the_dockerfiles_contract_under_the_default_reference() {
    let image = dockerfile();
    let archive = read_archive(&mc_tests::mc_image_archive());
    assert_eq!(
        archive.repo_tags,
        vec![render::ImageValues::default().reference()],
        "nodes must hold the image under the reference install and link render by default"
    );
    let config = &archive.config["config"];
    assert_eq!(
        config["User"].as_str().unwrap(),
        format!("{}:{}", image.user.0, image.user.1)
    );
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    assert_eq!(strings(&config["Entrypoint"]), image.entrypoint);
    assert_eq!(strings(&config["Cmd"]), image.cmd);
    let exposed: BTreeSet<i64> = config["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.trim_end_matches("/tcp").parse().unwrap())
        .collect();
    assert_eq!(exposed, image.exposed);
    assert!(
        strings(&config["Env"])
            .iter()
            .any(|e| e.starts_with("PATH=") && e.contains("/usr/local/bin")),
        "{config}"
    );
    for binary in &image.binaries {
        let line = archive
            .layer_listing
            .iter()
            .find(|l| l.ends_with(&format!(" usr/local/bin/{binary}")))
            .unwrap_or_else(|| panic!("{binary} is not in the archive's layer"));
        assert!(line.starts_with("-rwxr-xr-x 0/0"), "{line}");
    }
    // Owned by root and not writable by the image's user: nothing in the image can be changed
    // by the process, whatever the Pod's securityContext.
    for line in &archive.layer_listing {
        assert!(line.contains(" 0/0 "), "{line}");
        if !line.ends_with(" tmp/") {
            assert!(
                !line.starts_with("-rwxrwxrwx") && !line.starts_with("drwxrwxrwx"),
                "{line}"
            );
        }
    }
    let runs_as_uid = archive
        .layer_listing
        .iter()
        .any(|l| l.ends_with(" etc/passwd"));
    assert!(runs_as_uid, "/etc/passwd names the image's user");
}

#[test]
fn building_the_image_twice_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let build = |name: &str| {
        let out = dir.path().join(name);
        let status =
            Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-images"))
                .arg("mc")
                .arg("--out")
                .arg(&out)
                .status()
                .unwrap();
        assert!(status.success(), "scripts/build-images mc");
        std::fs::read(out).unwrap()
    };
    let first = build("a.tar");
    let second = build("b.tar");
    assert!(first == second, "two builds of the mc image differ");
    // The archive under test is that build too.
    let archive = read_archive(&dir.path().join("a.tar"));
    assert_eq!(
        archive.repo_tags,
        vec![render::ImageValues::default().reference()]
    );
}
