//! Ctrl-C and SIGTERM during a run, the same for `forge run` and the
//! `cargo test` harness.
//!
//! The first signal stops new work: the run's cancellation token fires, so
//! turns not yet sent are recorded as interrupted failures, pending retry
//! waits end, turns in flight finish, and the reports are written. A second
//! signal kills the programs the `command` runner is running (their whole
//! process groups) and exits at once with status 130.

use tokio_util::sync::CancellationToken;

/// Exit status after a second signal.
pub const EXIT_ABORTED: i32 = 130;

/// Watches for Ctrl-C and SIGTERM on behalf of the run `cancel` stops (see
/// the module documentation). Call it inside the tokio runtime before the
/// run starts: the handlers are installed when it returns, so no signal is
/// missed, and the two signals are counted even when they arrive together.
pub fn stop_on_signal(cancel: CancellationToken) {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(error) => {
            tracing::warn!(%error, "cannot watch for Ctrl-C and SIGTERM");
            return;
        }
    };
    tokio::spawn(async move {
        signals.recv().await;
        cancel.cancel();
        eprintln!("forge: stopping: finishing turns in flight (press Ctrl-C again to abort)");
        signals.recv().await;
        abort();
    });
}

/// Kills the programs the `command` runner is running and exits with
/// [`EXIT_ABORTED`].
pub fn abort() -> ! {
    crate::runners::command::kill_running();
    eprintln!("forge: aborted");
    std::process::exit(EXIT_ABORTED)
}

/// Ctrl-C and SIGTERM, listened to from creation on.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<Self> {
        Ok(Signals {})
    }

    /// The next Ctrl-C or SIGTERM.
    #[cfg(unix)]
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
