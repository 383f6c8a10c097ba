//! Child processes of the testbed, and how they die.
//!
//! An [`Lifetime::Attached`] process is killed by the kernel (`PR_SET_PDEATHSIG`) when the test
//! process dies, however it dies: a panic, a timeout kill, `SIGKILL`. The kernel tracks the
//! *thread* that forked, so every attached process is forked by one long-lived spawner thread.
//! A [`Lifetime::Detached`] process (for `mc-testbed up`) lives in its own process group until
//! `mc-testbed down` stops it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How long a started process lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Dies with the current process, whatever ends it.
    Attached,
    /// Outlives the current process; stopped by pid.
    Detached,
}

/// A process started by the testbed, with its log file. Dropping it stops it.
#[derive(Debug)]
pub struct Proc {
    what: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(
        what: impl Into<String>,
        mut cmd: Command,
        log: &Path,
        lifetime: Lifetime,
    ) -> Result<Proc> {
        let what = what.into();
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io("open", log.display(), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io("duplicate", log.display(), e))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = match lifetime {
            Lifetime::Attached => spawn_attached(cmd),
            Lifetime::Detached => {
                use std::os::unix::process::CommandExt;
                cmd.process_group(0).spawn()
            }
        }
        .map_err(|e| Error::io("start", &what, e))?;
        Ok(Proc {
            what,
            child,
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What this process is, e.g. `kube-apiserver east`.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Waits until `ready` returns true, failing if the process exits or `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(Error::EarlyExit {
                    what: self.what.clone(),
                    status: status.to_string(),
                    log: self.log.clone(),
                    tail: self.log_tail(30),
                });
            }
            if ready() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(Error::NotReady {
                    what: self.what.clone(),
                    seconds: timeout.as_secs(),
                    log: self.log.clone(),
                    tail: self.log_tail(30),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace`. Returns once it is reaped.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        terminate_pid(self.child.id(), grace);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Leaves the process running and forgets it (for detached processes).
    pub fn release(self) -> u32 {
        let pid = self.child.id();
        std::mem::forget(self);
        pid
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The last `lines` lines of a log file, or a note that it cannot be read.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Whether a process with this pid exists (and is not a zombie we could reap).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the first field after the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Sends SIGTERM to `pid`, waits up to `grace` for it to go, then SIGKILLs it.
pub(crate) fn terminate_pid(pid: u32, grace: Duration) {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return;
    };
    signal(raw, libc::SIGTERM);
    let start = Instant::now();
    while pid_alive(pid) && start.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(50));
    }
    if pid_alive(pid) {
        signal(raw, libc::SIGKILL);
    }
}

#[allow(unsafe_code)]
fn signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and has no memory effects on this process.
    unsafe {
        libc::kill(pid, sig);
    }
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Forks on the spawner thread, which lives as long as the process, so that
/// `PR_SET_PDEATHSIG` fires only when the whole test process dies.
fn spawn_attached(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<std::sync::Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("mc-testbed-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(spawn_with_death_signal(&mut cmd));
                }
            })
            .map(|_| ())
            .unwrap_or(());
        std::sync::Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    let sent = sender
        .lock()
        .map_err(|_| std::io::Error::other("the testbed spawner lock is poisoned"))?
        .send((cmd, reply_tx));
    sent.map_err(|_| std::io::Error::other("the testbed spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("the testbed spawner thread did not answer"))?
}

#[allow(unsafe_code)]
fn spawn_with_death_signal(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid is async-signal-safe; it runs before fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, getppid, _exit), allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}
