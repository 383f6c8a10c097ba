//! Running the commands a user types, with real pipes: `mc … | kubectl apply -f -`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::Testbed;

/// Runs pipelines with `mc`, `mc-gateway`, `mc-mirror` and `kubectl` on PATH and `KUBECONFIG` set
/// to the testbed's, so the printed command is exactly what runs.
#[derive(Debug)]
pub(crate) struct Shell {
    path: String,
    kubeconfig: PathBuf,
    cwd: PathBuf,
}

/// A failed command, with everything it printed.
#[derive(Debug)]
pub(crate) struct Failed(pub(crate) String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

impl Shell {
    pub(crate) fn new(bed: &Testbed, bin_dir: &Path, cwd: &Path) -> Shell {
        let kubectl_dir = bed
            .binaries()
            .kubectl
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path = format!(
            "{}:{}:{}",
            bin_dir.display(),
            kubectl_dir.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        Shell {
            path,
            kubeconfig: bed.kubeconfig().to_path_buf(),
            cwd: cwd.to_path_buf(),
        }
    }

    /// Runs `script` under `bash -o pipefail`; fails with its output unless it exits 0.
    pub(crate) fn run(&self, script: &str) -> Result<String, Failed> {
        let out = self.output(script)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Failed(format!(
                "`{script}` exited with {}:\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// Runs `script` and returns its raw output, whatever its exit status.
    pub(crate) fn output(&self, script: &str) -> Result<Output, Failed> {
        Command::new("bash")
            .args(["-o", "pipefail", "-c", script])
            .env("PATH", &self.path)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(&self.cwd)
            .output()
            .map_err(|e| Failed(format!("cannot run bash for `{script}`: {e}")))
    }
}
