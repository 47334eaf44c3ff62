//! Writing output files (reports, parts, cassettes): atomically, through
//! a temporary file renamed into place, and with every secret redacted
//! from the JSON strings as they are written.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::ser::Formatter;

use crate::error::ReportError;
use crate::secrets::Secrets;

/// Creates the output directory and removes what killed runs left in it.
pub(crate) fn prepare(dir: &Path) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;
    remove_stale(dir);
    Ok(())
}

/// Opens a temporary file beside `path` for writing; [`finish`] renames it
/// over `path`, so a reader never sees half a report. Its name,
/// `.<file name>.forge-<pid>-<n>.tmp`, is unique to this process and write,
/// so two writers never share one, and [`remove_stale`] can tell whose it is.
pub(crate) fn create(
    path: &Path,
) -> Result<(PathBuf, std::io::BufWriter<std::fs::File>), ReportError> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}{TMP_MARK}{}-{n}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| ReportError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    Ok((tmp, std::io::BufWriter::with_capacity(1 << 16, file)))
}

/// What marks a report's temporary file, followed by the writer's pid.
const TMP_MARK: &str = ".forge-";

/// Removes the temporary report files in `dir` left by a forge process that
/// no longer runs (killed while writing, with `kill -9`, say). Files of
/// live processes (another run writing into the same directory) are kept.
pub(crate) fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(tmp_file_pid) else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The pid in a temporary report file's name, `None` for other files.
fn tmp_file_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, tail) = rest.rsplit_once(TMP_MARK)?;
    let (pid, n) = tail.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether process `pid` still runs.
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    use nix::errno::Errno;
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 checks that the process exists; EPERM means it does, as
    // another user's.
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}

/// Whether process `pid` still runs: without a way to ask (not on unix),
/// every writer counts as alive and nothing is removed.
#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

/// Flushes the writer and moves the finished file into place.
pub(crate) fn finish(
    path: &Path,
    tmp: &Path,
    writer: std::io::BufWriter<std::fs::File>,
    written: std::io::Result<()>,
) -> Result<(), ReportError> {
    written
        .and_then(|()| writer.into_inner().map_err(|e| e.into_error()))
        .and_then(|_file| std::fs::rename(tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(tmp);
            ReportError {
                path: path.to_owned(),
                message: e.to_string(),
            }
        })
}

/// Writes `value` as JSON with `formatter`, every secret in its string
/// values replaced by `[REDACTED]` as they are written.
pub(crate) fn write_redacted<W: Write, T: Serialize, F: Formatter>(
    writer: W,
    value: &T,
    secrets: &Secrets,
    formatter: F,
) -> std::io::Result<()> {
    let formatter = Redacting {
        inner: formatter,
        secrets,
        in_key: false,
    };
    let mut serializer = serde_json::Serializer::with_formatter(writer, formatter);
    value
        .serialize(&mut serializer)
        .map_err(std::io::Error::other)
}

/// A serde_json formatter, replacing secrets inside string values by
/// `[REDACTED]` (object keys, the format's own names, are left alone).
struct Redacting<'a, F> {
    inner: F,
    secrets: &'a Secrets,
    in_key: bool,
}

impl<F: Formatter> Formatter for Redacting<'_, F> {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        if self.in_key {
            writer.write_all(fragment.as_bytes())
        } else {
            writer.write_all(self.secrets.redact(fragment).as_bytes())
        }
    }

    fn end_object_key<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.in_key = false;
        self.inner.end_object_key(w)
    }

    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.begin_array(w)
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.end_array(w)
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.inner.begin_array_value(w, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.end_array_value(w)
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.begin_object(w)
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.end_object(w)
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.in_key = true;
        self.inner.begin_object_key(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.begin_object_value(w)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::ser::PrettyFormatter;

    #[test]
    fn secrets_are_redacted_while_streaming() {
        let secrets = Secrets::new(["sk-123456", "n"]);
        let mut out = Vec::new();
        let formatter = Redacting {
            inner: PrettyFormatter::new(),
            secrets: &secrets,
            in_key: false,
        };
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
        serde_json::json!({"answer": "my key is sk-123456, \"quoted\"", "n": [1, 2]})
            .serialize(&mut serializer)
            .expect("serialize");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(!text.contains("sk-123456"), "{text}");
        assert!(
            text.contains("my key is [REDACTED], \\\"quoted\\\""),
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(value["n"], serde_json::json!([1, 2]));
    }
}
