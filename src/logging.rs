//! Log output: a writer that makes every log record one line, whatever text it carries.
//!
//! The server logs what clients send (reference paths, error messages that quote them, request ids). A path with a
//! newline would otherwise start a forged log line, a NUL would cut it, an ESC would reach the operator's terminal.
//! [`EscapingStderr`] writes each formatted record (tracing-subscriber formats a record into one buffer and writes it
//! with one `write_all`) with every control character except the record's final newline escaped (`\n`, `\r`, `\t`,
//! `\0`, `\x1b`, ...). Bytes of multi-byte UTF-8 characters are all >= 0x80, so escaping never splits a character.
//! JSON logs (`--log-format json`) are already escaped by the JSON writer; this writer leaves them unchanged.

use std::io::Write;

/// `MakeWriter` for stderr with control characters escaped.
#[derive(Clone, Copy, Debug, Default)]
pub struct EscapingStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for EscapingStderr {
    type Writer = Escaping<std::io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        Escaping(std::io::stderr())
    }
}

/// Escapes control characters of each written buffer, except a final newline.
pub struct Escaping<W: Write>(pub W);

/// `buf` with every control character (C0, DEL) escaped, except a final `\n`.
pub fn escape_record(buf: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let (body, nl) = match buf.split_last() {
        Some((b'\n', rest)) => (rest, true),
        _ => (buf, false),
    };
    if !body.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return std::borrow::Cow::Borrowed(buf);
    }
    let mut out = Vec::with_capacity(buf.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0 => out.extend_from_slice(b"\\0"),
            b if b < 0x20 || b == 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    if nl {
        out.push(b'\n');
    }
    std::borrow::Cow::Owned(out)
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&escape_record(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_one_line() {
        assert_eq!(&*escape_record(b"plain line\n"), b"plain line\n");
        assert_eq!(&*escape_record(b"a\nFAKE 2099 INFO x\0y\x1b[31m\n"), b"a\\nFAKE 2099 INFO x\\0y\\x1b[31m\n".as_slice());
        assert_eq!(&*escape_record("中文\r\n".as_bytes()), "中文\\r\n".as_bytes());
        assert_eq!(&*escape_record(b"no newline\x07"), b"no newline\\x07".as_slice());
    }
}
