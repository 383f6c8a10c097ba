//! A node's control group. Every process of a node runs inside it: containerd and, through it,
//! every shim and container; kubelet and kube-proxy. Container processes are not children of the
//! testbed (containerd's shims re-parent them), so the death signal that stops the testbed's own
//! processes cannot reach them; the control group can, even after the test process was killed.
//!
//! The machines this project runs on have cgroup v1 hierarchies under `/sys/fs/cgroup`; the group
//! is created in each, kubelet gets it as its `cgroupRoot` (Pods go to `<group>/kubepods`), and
//! node processes join `<group>/system` before they exec.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Error, Result};

const ROOT: &str = "/sys/fs/cgroup";
const PREFIX: &str = "mc-testbed-";

/// One node's control group, in every cgroup v1 hierarchy.
#[derive(Debug)]
pub(crate) struct NodeCgroup {
    name: String,
}

impl NodeCgroup {
    /// Creates `mc-testbed-<owner>-<node>` in every hierarchy, with a `system` child for the
    /// node's own processes, and moves `owner` there. The group lives as long as `owner`, the
    /// process holding the node's namespaces: once it is gone, [`remove_stale`] destroys it.
    pub(crate) fn create(owner: u32, node: &str) -> Result<NodeCgroup> {
        let group = NodeCgroup {
            name: format!("{PREFIX}{owner}-{node}"),
        };
        let hierarchies = hierarchies()?;
        for h in &hierarchies {
            for dir in [h.join(&group.name), h.join(&group.name).join("system")] {
                std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", dir.display(), e))?;
                if h.ends_with("cpuset") {
                    inherit_cpuset(&dir)?;
                }
            }
        }
        for h in &hierarchies {
            let procs = h.join(&group.name).join("system").join("cgroup.procs");
            std::fs::write(&procs, owner.to_string())
                .map_err(|e| Error::io("write", procs.display(), e))?;
        }
        lock_registry().push(group.name.clone());
        Ok(group)
    }

    /// The group as kubelet's `cgroupRoot`, e.g. `/mc-testbed-42-east`.
    pub(crate) fn root(&self) -> String {
        format!("/{}", self.name)
    }

    /// Makes `cmd` join `<group>/system` in every hierarchy between fork and exec.
    pub(crate) fn enter_on_exec(&self, cmd: &mut Command) -> Result<()> {
        let mut files = Vec::new();
        for h in hierarchies()? {
            let path = h.join(&self.name).join("system").join("cgroup.procs");
            files.push(
                File::options()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io("open", path.display(), e))?,
            );
        }
        // SAFETY: between fork and exec the closure only calls write(2) on descriptors opened
        // before the fork, allocating nothing. Writing 0 to cgroup.procs moves the caller.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                for f in &mut files {
                    f.write_all(b"0")?;
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// Kills every process in the group and removes it.
    pub(crate) fn destroy(&self) {
        destroy(&self.name);
        lock_registry().retain(|n| n != &self.name);
    }
}

impl Drop for NodeCgroup {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// The groups this process created and has not destroyed.
static REGISTRY: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn lock_registry() -> std::sync::MutexGuard<'static, Vec<String>> {
    REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Destroys, when the process exits normally, every group it created and did not destroy
/// (those of testbeds held in statics, which are never dropped).
pub(crate) fn destroy_at_exit() {
    extern "C" fn at_exit() {
        let names: Vec<String> = lock_registry().drain(..).collect();
        for name in names {
            destroy(&name);
        }
    }
    // SAFETY: at_exit is a plain extern "C" function with no arguments, as atexit(3) requires.
    #[allow(unsafe_code)]
    unsafe {
        libc::atexit(at_exit);
    }
}

/// Destroys the groups whose owner is gone: nodes of a testbed that was killed before it could
/// clean up (their containers outlive it), or stopped by pid (`mc-testbed down`).
pub(crate) fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(Path::new(ROOT).join("pids")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if owner.is_some_and(|pid| !crate::process::pid_alive(pid)) {
            destroy(&name);
        }
    }
}

fn destroy(name: &str) {
    let Ok(hierarchies) = hierarchies() else {
        return;
    };
    let freezer = Path::new(ROOT)
        .join("freezer")
        .join(name)
        .join("freezer.state");
    let _ = std::fs::write(&freezer, "FROZEN");
    let start = Instant::now();
    loop {
        let pids: Vec<u32> = hierarchies
            .iter()
            .flat_map(|h| procs_below(&h.join(name)))
            .collect();
        if pids.is_empty() || start.elapsed() > Duration::from_secs(20) {
            break;
        }
        for pid in pids {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill(2) takes plain integers and has no memory effects here.
                #[allow(unsafe_code)]
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = std::fs::write(&freezer, "THAWED");
        std::thread::sleep(Duration::from_millis(100));
    }
    for h in &hierarchies {
        remove_tree(&h.join(name));
    }
}

fn procs_below(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(procs_below(&e.path()));
            }
        }
    }
    pids
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The cgroup v1 hierarchies: every directory of `/sys/fs/cgroup` holding a `cgroup.procs`.
fn hierarchies() -> Result<Vec<PathBuf>> {
    let root = Path::new(ROOT);
    if root.join("cgroup.controllers").exists() {
        return Err(Error::Network {
            what: "create a node control group".into(),
            detail: "this machine mounts cgroup v2 only; the testbed's nodes are built for the \
                     cgroup v1 hierarchies of this project's machines"
                .into(),
        });
    }
    let entries = std::fs::read_dir(root).map_err(|e| Error::io("read", ROOT, e))?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(Error::Network {
            what: "create a node control group".into(),
            detail: format!("no cgroup hierarchy is mounted under {ROOT}"),
        });
    }
    Ok(found)
}

/// A new cpuset group has no CPUs or memory nodes until given its parent's.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    let parent = dir.parent().unwrap_or(dir);
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let value = std::fs::read_to_string(parent.join(file))
            .map_err(|e| Error::io("read", parent.join(file).display(), e))?;
        std::fs::write(dir.join(file), value.trim())
            .map_err(|e| Error::io("write", dir.join(file).display(), e))?;
    }
    Ok(())
}
