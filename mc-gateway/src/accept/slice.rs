//! The scheduler slice of the serving threads that accept and serve connections (stage 1).
//!
//! Linux's fair scheduler (EEVDF, since 6.6) gives every task a time slice that grows with the
//! CPU count (1.4 ms on 2 CPUs under Linux 6.18), and lets a woken task preempt the running one
//! only when its deadline comes first. Since Linux 6.12 a task may ask for a shorter slice with
//! `sched_setattr(2)` (`sched_runtime` under `SCHED_OTHER`, clamped by the kernel to
//! 0.1–100 ms). It does not get more CPU time for it: its deadline comes sooner and its turns
//! are shorter, so a woken task with a short slice runs at once instead of waiting for the
//! running one's slice to end. That fits a proxy, whose every wake-up is a few tens of
//! microseconds of work that someone is waiting for. No privilege is needed; on older kernels
//! (which ignore `sched_runtime` under `SCHED_OTHER`) and other systems it changes nothing.
//!
//! It is opt-in (`mc-gateway serve --sched-slice-us`, default 0: the kernel's slice): a short
//! slice also changes when the threads of co-located Pods run on a shared CPU, and that has not
//! been measured.

use std::time::Duration;

/// Asks the kernel to give the calling thread time slices of `slice` (Linux: see the module
/// documentation). The thread's policy and nice value stay as they are.
///
/// Errors come from the kernel (`EPERM` under a seccomp filter that refuses
/// `sched_setattr`, `EINVAL` for a slice it does not accept); the caller logs them and serves
/// on with the default slice.
pub(crate) fn request(slice: Duration) -> std::io::Result<()> {
    imp::request(slice)
}

/// The calling thread's slice as the kernel reports it (`se.slice` in
/// `/proc/thread-self/sched`), if it does.
pub fn current() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
    let line = text.lines().find(|l| l.starts_with("se.slice"))?;
    let nanos = line.rsplit(':').next()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_nanos(nanos))
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod imp {
    use std::time::Duration;

    /// `struct sched_attr` of `sched_setattr(2)` (the `SCHED_ATTR_SIZE_VER1` layout).
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
        util_min: u32,
        util_max: u32,
    }

    /// Keeps the thread's policy (`SCHED_OTHER`, `SCHED_BATCH` or `SCHED_IDLE`); the nice value
    /// is passed back as it is, so only the runtime (the slice) is new.
    const SCHED_FLAG_KEEP_POLICY: u64 = 0x08;

    pub(super) fn request(slice: Duration) -> std::io::Result<()> {
        let nice = current_nice()?;
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            flags: SCHED_FLAG_KEEP_POLICY,
            nice,
            priority: 0,
            runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
            deadline: 0,
            period: 0,
            util_min: 0,
            util_max: 0,
        };
        // SAFETY: `attr` is a valid, initialised `struct sched_attr` that outlives the call,
        // its `size` field says how much of it the kernel may read, and pid 0 names the
        // calling thread. The kernel does not keep the pointer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_sched_setattr,
                0 as libc::pid_t,
                &attr as *const SchedAttr,
                0 as libc::c_uint,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// The calling thread's nice value (`sched_setattr` sets it too, so it is passed back).
    fn current_nice() -> std::io::Result<i32> {
        // getpriority may return -1 as a value; errno tells an error apart.
        // SAFETY: both calls only read and write the thread's errno and take no pointers.
        unsafe {
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
            match *libc::__errno_location() {
                0 => Ok(nice),
                _ => Err(std::io::Error::last_os_error()),
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::time::Duration;

    pub(super) fn request(_slice: Duration) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_asks_for_a_short_slice_gets_it_and_other_threads_keep_theirs() {
        let before = current().expect("this kernel reports se.slice");
        let asked = Duration::from_micros(200);
        let got = std::thread::spawn(move || {
            request(asked).expect("sched_setattr");
            current()
        })
        .join()
        .unwrap();
        assert_eq!(
            got,
            Some(asked),
            "the slice the kernel reports after the request"
        );
        assert_eq!(current(), Some(before), "the calling thread is untouched");
        assert_ne!(before, asked);
    }
}
