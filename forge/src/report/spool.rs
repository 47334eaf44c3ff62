//! What a report writes before it can write its head: a suite's JUnit
//! testcases before the `<testsuite>` that counts them, the HTML page's
//! rows before the suite's totals. A [`Spool`] is an anonymous temporary
//! file (in the output directory, removed by the OS when closed, even if
//! forge is killed), appended to as the report is fed and copied out, in
//! constant memory, once the head is known. [`Times`] spools the runs'
//! times and answers their nearest-rank percentiles from the file.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// An append-only temporary file, read back by byte range.
pub(crate) struct Spool {
    file: BufWriter<File>,
    len: u64,
}

impl Spool {
    /// A new, empty spool in `dir` (the OS temporary directory when `dir`
    /// cannot hold one).
    pub(crate) fn new(dir: &Path) -> io::Result<Spool> {
        let file = tempfile::tempfile_in(dir).or_else(|_| tempfile::tempfile())?;
        Ok(Spool {
            file: BufWriter::new(file),
            len: 0,
        })
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Copies `len` bytes from `start` into `out`.
    pub(crate) fn copy_range(
        &mut self,
        start: u64,
        len: u64,
        out: &mut impl Write,
    ) -> io::Result<()> {
        self.file.flush()?;
        let file = self.file.get_mut();
        file.seek(SeekFrom::Start(start))?;
        let copied = io::copy(&mut BufReader::new(&mut *file).take(len), out)?;
        file.seek(SeekFrom::End(0))?;
        if copied != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the spool holds {copied} of {len} bytes"),
            ));
        }
        Ok(())
    }

    /// The bytes it holds in memory: its write buffer.
    #[cfg(test)]
    pub(crate) fn buffer(&self) -> usize {
        self.file.capacity()
    }

    /// Copies everything written into `out`.
    pub(crate) fn copy_to(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.copy_range(0, self.len, out)
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Times (ms) of runs, spooled 8 bytes each, with their count, minimum
/// and maximum; their order statistics are found by passes over the file.
pub(crate) struct Times {
    spool: Spool,
    count: u64,
    min: f64,
    max: f64,
}

/// Bits of a key a selection pass looks at (2^11 counters per pass).
const DIGIT_BITS: u32 = 11;

impl Times {
    /// No time yet, spooled in `dir`.
    pub(crate) fn new(dir: &Path) -> io::Result<Times> {
        Ok(Times {
            spool: Spool::new(dir)?,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        })
    }

    /// Adds `ms`, when finite (the others are not times).
    pub(crate) fn push(&mut self, ms: f64) -> io::Result<()> {
        if !ms.is_finite() {
            return Ok(());
        }
        self.spool.write_all(&key(ms).to_le_bytes())?;
        self.count += 1;
        if ms.total_cmp(&self.min).is_lt() {
            self.min = ms;
        }
        if ms.total_cmp(&self.max).is_gt() {
            self.max = ms;
        }
        Ok(())
    }

    /// How many times were added.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The fastest and the slowest, when any.
    pub(crate) fn range(&self) -> Option<(f64, f64)> {
        (self.count > 0).then_some((self.min, self.max))
    }

    /// The nearest-rank `p` percentile (`p` in 0..=1): the time at rank
    /// `ceil(p * count)` (at least 1) in `f64::total_cmp` order, as a sort
    /// would give it.
    pub(crate) fn percentile(&mut self, p: f64) -> io::Result<Option<f64>> {
        if self.count == 0 {
            return Ok(None);
        }
        let rank = ((p * self.count as f64).ceil() as u64).clamp(1, self.count);
        self.select(rank - 1).map(|k| Some(value(k)))
    }

    /// The `k`-th smallest key (from 0), found digit by digit from the
    /// top: each pass counts the keys that share the digits found so far.
    fn select(&mut self, mut k: u64) -> io::Result<u64> {
        let mut prefix = 0u64;
        let mut known = 0u32;
        while known < 64 {
            let bits = DIGIT_BITS.min(64 - known);
            let shift = 64 - known - bits;
            let mut counts = vec![0u64; 1 << bits];
            self.each(|key| {
                if known == 0 || key >> (64 - known) == prefix {
                    counts[((key >> shift) & ((1 << bits) - 1)) as usize] += 1;
                }
            })?;
            let mut digit = 0;
            while digit + 1 < counts.len() && k >= counts[digit] {
                k -= counts[digit];
                digit += 1;
            }
            prefix = (prefix << bits) | digit as u64;
            known += bits;
        }
        Ok(prefix)
    }

    /// Calls `f` with each time added, in the order added.
    pub(crate) fn each_time(&mut self, mut f: impl FnMut(f64)) -> io::Result<()> {
        self.each(|k| f(value(k)))
    }

    /// Calls `f` with each key spooled.
    fn each(&mut self, mut f: impl FnMut(u64)) -> io::Result<()> {
        self.spool.flush()?;
        let file = self.spool.file.get_mut();
        file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::new(&mut *file).take(self.spool.len);
        let mut buf = [0u8; 8];
        for _ in 0..self.count {
            reader.read_exact(&mut buf)?;
            f(u64::from_le_bytes(buf));
        }
        file.seek(SeekFrom::End(0))?;
        Ok(())
    }
}

/// `ms`'s bits turned so that keys compare as `f64::total_cmp` does.
fn key(ms: f64) -> u64 {
    let bits = ms.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// The time whose [`key`] is `key`.
fn value(key: u64) -> f64 {
    if key >> 63 == 1 {
        f64::from_bits(key & !(1 << 63))
    } else {
        f64::from_bits(!key)
    }
}

#[cfg(test)]
mod tests {
    use super::{Spool, Times};
    use std::io::Write;

    #[test]
    fn a_spool_gives_back_what_was_written_by_range() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut spool = Spool::new(dir.path()).expect("spool");
        spool.write_all(b"hello, ").expect("write");
        spool.write_all(b"world").expect("write");
        let mut out = Vec::new();
        spool.copy_range(7, 5, &mut out).expect("copy");
        spool.write_all(b"!").expect("write after a copy appends");
        spool.copy_to(&mut out).expect("copy");
        assert_eq!(out, b"worldhello, world!");
        assert_eq!(spool.len(), 13);
        let names = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(names, 0, "a spool leaves no file behind");
    }

    #[test]
    fn percentiles_are_what_sorting_gives() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut seed = 7u64;
        let mut sample: Vec<f64> = (0..2000)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 40) as f64 / 997.0 - 3.0
            })
            .collect();
        sample.extend([0.0, -0.0, 1e-300, f64::NAN, f64::INFINITY, 12.5, 12.5]);
        let mut times = Times::new(dir.path()).expect("times");
        sample.iter().for_each(|&t| times.push(t).expect("push"));
        let mut sorted: Vec<f64> = sample.into_iter().filter(|t| t.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(times.count(), sorted.len() as u64);
        assert_eq!(times.range(), Some((sorted[0], sorted[sorted.len() - 1])));
        for p in [0.0, 0.01, 0.5, 0.95, 0.99, 1.0] {
            let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            let got = times.percentile(p).expect("read").expect("some");
            assert_eq!(got.to_bits(), sorted[rank - 1].to_bits(), "p{p}");
        }
        let mut empty = Times::new(dir.path()).expect("times");
        assert_eq!(empty.percentile(0.5).expect("read"), None);
    }
}
