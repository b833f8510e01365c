//! Small formatting helpers shared by the dumpers: a byte buffer that is flushed to the
//! caller's writer in large chunks, and allocation-free decimal formatting.

use std::io::Write;

use super::DumpError;

/// How many bytes collect before they are handed to the writer.
const FLUSH_AT: usize = 1 << 16;

/// Output collected in memory and written out in chunks of about [`FLUSH_AT`] bytes, so
/// that an unbuffered writer (a `File`, a socket) sees few large writes.
pub(crate) struct Sink<'w, W: Write + ?Sized> {
    pub(crate) buf: Vec<u8>,
    out: &'w mut W,
}

impl<'w, W: Write + ?Sized> Sink<'w, W> {
    pub(crate) fn new(out: &'w mut W) -> Self {
        Sink {
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            out,
        }
    }

    /// Writes the buffer out if it is full enough.
    pub(crate) fn maybe_flush(&mut self) -> Result<(), DumpError> {
        if self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes everything out and flushes the writer.
    pub(crate) fn finish(mut self) -> Result<(), DumpError> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()?;
        Ok(())
    }
}

/// Appends `v` in decimal.
pub(crate) fn put_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Appends `v` in decimal, with a leading `-` when negative.
pub(crate) fn put_i64(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    put_u64(buf, v.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_matches_std() {
        for v in [0u64, 1, 9, 10, 99, 100, 4_294_967_295, u64::MAX] {
            let mut b = Vec::new();
            put_u64(&mut b, v);
            assert_eq!(b, v.to_string().into_bytes());
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -2_147_483_648] {
            let mut b = Vec::new();
            put_i64(&mut b, v);
            assert_eq!(b, v.to_string().into_bytes());
        }
    }
}
