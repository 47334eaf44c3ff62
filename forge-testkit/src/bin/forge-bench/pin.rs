//! Pinning: the server on one CPU, the measured client on another
//! (`sched_setaffinity`; children and threads inherit the mask).

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs the server and the measured client run on.
#[derive(Debug, Clone, Copy)]
pub struct Pinning {
    /// The server's CPU.
    pub server: usize,
    /// The measured client's CPU.
    pub client: usize,
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Result<Vec<usize>, String> {
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(|e| format!("sched_getaffinity: {e}"))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// The first two allowed CPUs, or `None` (with a note printed) when the
/// machine gives this process only one.
pub fn plan() -> Result<Option<Pinning>, String> {
    let cpus = allowed_cpus()?;
    match cpus[..] {
        [server, client, ..] => Ok(Some(Pinning { server, client })),
        _ => {
            println!("note: only {} CPU available: not pinned", cpus.len());
            Ok(None)
        }
    }
}

/// Pins the calling thread (and the threads and children it starts from
/// now on) to `cpu`: call it before any other thread exists.
pub fn pin_to(cpu: usize) -> Result<(), String> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(|e| format!("CPU {cpu}: {e}"))?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))
}
