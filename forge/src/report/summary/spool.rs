//! Writing a JSON document as it is fed: the items of an array that comes
//! later in the document are appended to a [`Spool`] (an unnamed temporary
//! file, gone when dropped) and copied into place once the document's
//! earlier parts are written, so a suite of any size is held in constant
//! memory. Items are written redacted, pretty ([`Pretty`], indented to
//! their depth) or compact ([`compact`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::ser::{CompactFormatter, PrettyFormatter};

use crate::output::write_redacted;
use crate::secrets::Secrets;

/// An element buffer that grew past this (one huge dataset) is given back
/// after use, so what the reporter holds stays bounded by the usual item.
const KEPT_BUFFER: usize = 1 << 20;

/// The items of one JSON array, in a [`report::spool::Spool`] created (in
/// `dir`) on the first item.
///
/// [`report::spool::Spool`]: crate::report::spool::Spool
pub(crate) struct Spool {
    dir: PathBuf,
    file: Option<crate::report::spool::Spool>,
    items: usize,
}

impl Spool {
    /// An empty spool whose file, once needed, goes in `dir`.
    pub(crate) fn new(dir: &Path) -> Self {
        Spool {
            dir: dir.to_owned(),
            file: None,
            items: 0,
        }
    }

    /// How many items it holds.
    pub(crate) fn items(&self) -> usize {
        self.items
    }

    /// The file to append the next item to (its separator is the
    /// caller's: see [`Pretty::push`] and [`compact`]), and whether the
    /// item is the first; counts the item.
    pub(crate) fn next(&mut self) -> std::io::Result<(&mut crate::report::spool::Spool, bool)> {
        let file = match self.file.take() {
            Some(file) => file,
            None => crate::report::spool::Spool::new(&self.dir)?,
        };
        let first = self.items == 0;
        self.items += 1;
        Ok((self.file.insert(file), first))
    }

    /// Copies the items, as written, to `out`; the spool is then gone.
    pub(crate) fn copy_to(self, out: &mut impl Write) -> std::io::Result<()> {
        match self.file {
            Some(mut file) => file.copy_to(out),
            None => Ok(()),
        }
    }

    /// The bytes it holds in memory (its buffer), whatever it spooled.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.file
            .as_ref()
            .map_or(0, crate::report::spool::Spool::buffer)
    }
}

/// Writes `value` compact and redacted to `out` as an array's item: after a
/// `,` unless it is the `first`.
pub(crate) fn compact<T: Serialize>(
    out: &mut impl Write,
    first: bool,
    value: &T,
    secrets: &Secrets,
) -> std::io::Result<()> {
    if !first {
        out.write_all(b",")?;
    }
    write_redacted(out, value, secrets, CompactFormatter)
}

/// Writes values pretty (serde_json's [`PrettyFormatter`], two spaces) and
/// redacted at a depth of the document they belong to, exactly as
/// serializing the whole document would: each value is serialized alone
/// into a buffer, then written with every line after its first indented to
/// the depth (JSON strings never hold a raw newline, so every `\n` of the
/// buffer is one the formatter put between lines).
#[derive(Default)]
pub(crate) struct Pretty {
    buffer: Vec<u8>,
}

impl Pretty {
    /// Writes `value` as an item of an array at `depth` (the array's
    /// items' depth: 2 for `datasets` in `{"datasets": [...]}`), after the
    /// separator the formatter puts before it.
    pub(crate) fn push<T: Serialize>(
        &mut self,
        (out, first): (&mut impl Write, bool),
        depth: usize,
        value: &T,
        secrets: &Secrets,
    ) -> std::io::Result<()> {
        out.write_all(if first { b"\n" } else { b",\n" })?;
        indent(out, depth)?;
        self.value(out, depth, value, secrets)
    }

    /// Writes `value` at `depth` (its first line where `out` stands).
    pub(crate) fn value<T: Serialize>(
        &mut self,
        out: &mut impl Write,
        depth: usize,
        value: &T,
        secrets: &Secrets,
    ) -> std::io::Result<()> {
        self.buffer.clear();
        write_redacted(&mut self.buffer, value, secrets, PrettyFormatter::new())?;
        let mut lines = self.buffer.split(|&b| b == b'\n');
        if let Some(line) = lines.next() {
            out.write_all(line)?;
        }
        for line in lines {
            out.write_all(b"\n")?;
            indent(out, depth)?;
            out.write_all(line)?;
        }
        if self.buffer.capacity() > KEPT_BUFFER {
            self.buffer = Vec::new();
        }
        Ok(())
    }

    /// Writes the key and value of an object's member at `depth` (1 for
    /// the document's own keys), after the separator before it (the
    /// object has members before it).
    pub(crate) fn member<T: Serialize>(
        &mut self,
        out: &mut impl Write,
        depth: usize,
        key: &str,
        value: &T,
        secrets: &Secrets,
    ) -> std::io::Result<()> {
        out.write_all(b",\n")?;
        indent(out, depth)?;
        write!(out, "\"{key}\": ")?;
        self.value(out, depth, value, secrets)
    }

    /// The bytes it holds in memory.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.buffer.capacity()
    }
}

/// Closes a pretty array of `items` items whose `]` is at `depth`.
pub(crate) fn close_array(out: &mut impl Write, depth: usize, items: usize) -> std::io::Result<()> {
    if items > 0 {
        out.write_all(b"\n")?;
        indent(out, depth)?;
    }
    out.write_all(b"]")
}

fn indent(out: &mut impl Write, depth: usize) -> std::io::Result<()> {
    (0..depth).try_for_each(|_| out.write_all(b"  "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document put together item by item, each at its depth, is the
    /// one serde_json writes whole.
    #[test]
    fn items_written_at_their_depth_make_the_whole_document() {
        let secrets = Secrets::new(["sk-secret"]);
        let items = [
            serde_json::json!({"a": [1, {"b": "x sk-secret\ny"}], "e": {}, "f": []}),
            serde_json::json!([]),
            serde_json::json!("plain"),
        ];
        let whole = serde_json::json!({"success": true, "datasets": items, "n": {"k": [1]}});
        let mut expected = Vec::new();
        write_redacted(&mut expected, &whole, &secrets, PrettyFormatter::new()).expect("whole");
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut spool = Spool::new(tmp.path());
        let mut pretty = Pretty::default();
        for item in &items {
            pretty
                .push(spool.next().expect("spool"), 2, item, &secrets)
                .expect("item");
        }
        let mut out = b"{\n  \"success\": true,\n  \"datasets\": [".to_vec();
        let items = spool.items();
        spool.copy_to(&mut out).expect("copy");
        close_array(&mut out, 1, items).expect("close");
        let n = serde_json::json!({"k": [1]});
        pretty
            .member(&mut out, 1, "n", &n, &secrets)
            .expect("member");
        out.extend_from_slice(b"\n}");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            String::from_utf8(expected).expect("utf-8")
        );
    }

    #[test]
    fn an_empty_spool_makes_an_empty_array() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let spool = Spool::new(tmp.path());
        assert_eq!(spool.held(), 0);
        let mut out = b"[".to_vec();
        spool.copy_to(&mut out).expect("copy");
        close_array(&mut out, 1, 0).expect("close");
        assert_eq!(out, b"[]");
        assert_eq!(std::fs::read_dir(tmp.path()).expect("dir").count(), 0);
    }
}
