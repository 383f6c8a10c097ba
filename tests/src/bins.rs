//! Where the real Kubernetes binaries are: `$MC_CACHE/bin/<name>-<version>/<name>`, as
//! `scripts/build-kube-bins` caches them, unless an environment variable names another file.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The pinned versions, shared with the Go build scripts.
const VERSIONS: &str = include_str!("../testbed/go/versions.env");

/// The cache directory: `$MC_CACHE`, or `~/.cache/mc`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MC_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache").join("mc")
}

/// The paths of the binaries the testbed runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `kube-apiserver`.
    pub kube_apiserver: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
    /// `kubectl`.
    pub kubectl: PathBuf,
}

impl Binaries {
    /// Finds every binary, or fails naming the first one missing and how to get it.
    pub fn locate() -> Result<Binaries> {
        Ok(Binaries {
            kube_apiserver: find("kube-apiserver", "KUBE_VERSION", "MC_KUBE_APISERVER")?,
            etcd: find("etcd", "ETCD_VERSION", "MC_ETCD")?,
            kubectl: find("kubectl", "KUBE_VERSION", "MC_KUBECTL")?,
        })
    }

    /// The pinned Kubernetes version, e.g. `v1.35.4`.
    pub fn kube_version() -> &'static str {
        pinned("KUBE_VERSION").unwrap_or("unknown")
    }
}

/// What nodes run: kubelet and kube-proxy; the controller manager and scheduler beside each
/// cluster; and the image archives `scripts/build-images` wrote, imported into every node.
#[derive(Debug, Clone)]
pub struct NodeBinaries {
    /// `kubelet`.
    pub kubelet: PathBuf,
    /// `kube-proxy`.
    pub kube_proxy: PathBuf,
    /// `kube-controller-manager`.
    pub controller_manager: PathBuf,
    /// `kube-scheduler`.
    pub scheduler: PathBuf,
    /// The image archives: `$MC_CACHE/images/{pause,client,coredns,podinfo}.tar` and mc's.
    pub images: Vec<PathBuf>,
}

impl NodeBinaries {
    /// Finds every node binary and image archive, or fails naming the first one missing.
    pub fn locate() -> Result<NodeBinaries> {
        Ok(NodeBinaries {
            kubelet: find("kubelet", "KUBE_VERSION", "MC_KUBELET")?,
            kube_proxy: find("kube-proxy", "KUBE_VERSION", "MC_KUBE_PROXY")?,
            controller_manager: find(
                "kube-controller-manager",
                "KUBE_VERSION",
                "MC_KUBE_CONTROLLER_MANAGER",
            )?,
            scheduler: find("kube-scheduler", "KUBE_VERSION", "MC_KUBE_SCHEDULER")?,
            images: image_archives()?,
        })
    }
}

/// The images every node holds: the workloads' in `$MC_CACHE/images`, and mc's own.
const CACHED_IMAGES: [&str; 4] = ["pause", "client", "coredns", "podinfo"];

/// Every image archive nodes import, or the first one missing.
fn image_archives() -> Result<Vec<PathBuf>> {
    let dir = cache_dir().join("images");
    let mut found: Vec<PathBuf> = CACHED_IMAGES
        .iter()
        .map(|name| dir.join(format!("{name}.tar")))
        .collect();
    found.push(mc_image_archive());
    match found.iter().find(|p| !p.is_file()) {
        Some(missing) => Err(Error::MissingImages(missing.clone())),
        None => Ok(found),
    }
}

/// mc's own image: `$MC_IMAGE_ARCHIVE`, or `<cargo target dir>/images/mc.tar`, where
/// `scripts/build-images mc` writes it from the current sources.
pub fn mc_image_archive() -> PathBuf {
    if let Some(path) = std::env::var_os("MC_IMAGE_ARCHIVE").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|p| !p.is_empty())
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        )
        .join("images")
        .join("mc.tar")
}

/// Gateway API's HTTPRoute CRD (standard channel, pinned by `GATEWAY_API_VERSION`), as
/// `scripts/build-kube-bins` caches it: `$MC_CACHE/crds/gateway-api-<version>/httproutes.yaml`,
/// unless `MC_HTTPROUTE_CRD` names another file.
pub fn httproute_crd() -> Result<PathBuf> {
    let path = match std::env::var_os("MC_HTTPROUTE_CRD").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => cache_dir()
            .join("crds")
            .join(format!(
                "gateway-api-{}",
                pinned("GATEWAY_API_VERSION").unwrap_or("unknown")
            ))
            .join("httproutes.yaml"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingBinary {
            name: "the Gateway API HTTPRoute CRD",
            path,
            env: "MC_HTTPROUTE_CRD",
        })
    }
}

fn pinned(key: &str) -> Option<&'static str> {
    VERSIONS.lines().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        (k == key).then_some(v.trim())
    })
}

fn find(name: &'static str, version_key: &str, env: &'static str) -> Result<PathBuf> {
    let path = match std::env::var_os(env).filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let version = pinned(version_key).unwrap_or("unknown");
            cache_dir()
                .join("bin")
                .join(format!("{name}-{version}"))
                .join(name)
        }
    };
    if is_executable(&path) {
        Ok(path)
    } else {
        Err(Error::MissingBinary { name, path, env })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
