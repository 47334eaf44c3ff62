//! Measuring a command in a fresh process: wall time and `getrusage` of the
//! child, optionally pinned to one CPU.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::pin;

/// A measured command's wall time and resource usage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Usage {
    pub wall_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
    pub max_rss_mb: f64,
    pub status: Option<i32>,
}

/// The `measure` subcommand: runs `command` (pinned to `cpu` if given) and
/// writes its [`Usage`] to `result` as JSON.
pub fn measure(result: &Path, cpu: Option<usize>, command: &[String]) -> Result<(), String> {
    if let Some(cpu) = cpu {
        // Before the child exists: it inherits the mask.
        pin::pin_to(cpu)?;
    }
    let (program, args) = command.split_first().ok_or("no command to measure")?;
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let wall_s = start.elapsed().as_secs_f64();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map_err(|e| e.to_string())?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    let usage = Usage {
        wall_s,
        user_s: seconds(usage.user_time()),
        sys_s: seconds(usage.system_time()),
        max_rss_mb: usage.max_rss() as f64 / 1024.0,
        status: status.code(),
    };
    std::fs::write(
        result,
        serde_json::to_vec(&usage).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())
}

/// Runs `command` under this program's `measure` in a fresh process (with
/// `env` set, pinned to `cpu` if given) and reads back its usage. A command
/// that fails is an error.
pub fn measured(
    me: &Path,
    dir: &Path,
    command: &[String],
    env: &[(&str, &Path)],
    cpu: Option<usize>,
) -> Result<Usage, String> {
    let result = dir.join("usage.json");
    let mut measure = Command::new(me);
    measure.arg("measure").arg("--result").arg(&result);
    if let Some(cpu) = cpu {
        measure.arg("--cpu").arg(cpu.to_string());
    }
    measure.arg("--").args(command);
    for (key, value) in env {
        measure.env(key, value);
    }
    let status = measure.status().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("measure failed: {status}"));
    }
    let text = std::fs::read_to_string(&result).map_err(|e| e.to_string())?;
    let usage: Usage = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if usage.status != Some(0) {
        return Err(format!(
            "{} failed with status {:?}",
            command.join(" "),
            usage.status
        ));
    }
    Ok(usage)
}

/// CPU seconds (user + system) a live process has used, from /proc.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
