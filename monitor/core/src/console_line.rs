//! Line assembly for sandbox console output.
//!
//! Each vCPU has its own [`LineBuffer`]; bytes accumulate until a newline (or until the
//! line is [`LINE_MAX`] bytes long, then it is emitted in pieces) and only whole lines are
//! printed, each under the console lock with the sandbox's `[name] ` prefix, so output
//! of different cores never interleaves mid-line. Control characters are replaced so a
//! sandbox cannot move the cursor, clear the screen or forge another sandbox's prefix on
//! the same line.

/// Longest line printed in one piece (longer lines are split).
pub const LINE_MAX: usize = 200;

/// One vCPU's partial line.
#[derive(Clone, Debug)]
pub struct LineBuffer {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            buf: [0; LINE_MAX],
            len: 0,
        }
    }

    /// Appends `bytes`, calling `emit` with every completed line (without its newline).
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        for &b in bytes {
            match b {
                b'\n' => {
                    emit(&self.buf[..self.len]);
                    self.len = 0;
                }
                b'\r' => {}
                _ => {
                    if self.len == LINE_MAX {
                        emit(&self.buf[..self.len]);
                        self.len = 0;
                    }
                    self.buf[self.len] = sanitize(b);
                    self.len += 1;
                }
            }
        }
    }

    /// Emits what is left (a last line without newline), if anything.
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8])) {
        if self.len > 0 {
            emit(&self.buf[..self.len]);
            self.len = 0;
        }
    }

    /// Drops any partial line (e.g. when the sandbox restarts).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// Tab stays, other control bytes (and DEL) become `?`; bytes >= 0x80 (UTF-8) stay.
fn sanitize(b: u8) -> u8 {
    match b {
        b'\t' => b,
        0..=0x1f | 0x7f => b'?',
        _ => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn collect(buf: &mut LineBuffer, input: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        for chunk in input {
            buf.push(chunk, |l| out.push(String::from_utf8_lossy(l).into_owned()));
        }
        out
    }

    #[test]
    fn assembles_lines_across_writes() {
        let mut b = LineBuffer::new();
        let lines = collect(&mut b, &[b"hel", b"lo\nwor", b"ld\r\n", b"tail"]);
        assert_eq!(lines, ["hello", "world"]);
        let mut rest = Vec::new();
        b.flush(|l| rest.push(l.to_vec()));
        assert_eq!(rest, [b"tail".to_vec()]);
        b.flush(|_| panic!("nothing left"));
    }

    #[test]
    fn splits_long_lines() {
        let mut b = LineBuffer::new();
        let long = [b'x'; LINE_MAX * 2 + 5];
        let lines = collect(&mut b, &[&long, b"\n"]);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].len(), LINE_MAX);
        assert_eq!(lines[2].len(), 5);
    }

    #[test]
    fn neutralises_control_characters() {
        let mut b = LineBuffer::new();
        let lines = collect(&mut b, &[b"a\x1b[2Jb\tc\x7f\xc3\xa9\n"]);
        assert_eq!(lines, ["a?[2Jb\tc?\u{e9}"]);
        let empty = collect(&mut b, &[b"\n"]);
        assert_eq!(empty, [""]);
    }
}
