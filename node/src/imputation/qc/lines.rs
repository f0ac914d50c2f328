//! Reading VCF lines with a bound: a line is refused once it passes its limit, before it is
//! held in memory whole (one 800 MB header line in a 1.3 MB upload once took a node to 1.7 GB).

use std::io::{self, BufRead};

/// The most a whole header (every `##` line and `#CHROM`) may hold. The largest real headers
/// (thousands of contigs, a `#CHROM` line naming a million samples) are a few tens of MB.
pub const MAX_HEADER_BYTES: usize = 32 << 20;

/// The longest record line for `samples` samples: a generous 256 bytes per genotype column
/// (GT with dosages and probabilities takes about 30) plus 1 MiB for the fixed columns.
pub fn max_record_bytes(samples: usize) -> usize {
    (1 << 20) + samples.saturating_mul(256)
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line (with its newline, unless it is the last) of this many bytes is in the buffer.
    Read(usize),
    /// The input ended.
    End,
    /// The line is longer than the limit; the buffer holds its first bytes only.
    TooLong,
}

/// Reads one line into `buf` (cleared first), reading no more than `max` bytes of it.
pub fn read_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(if buf.is_empty() { Line::End } else { Line::Read(buf.len()) });
        }
        let (take, done) = match memchr(available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if buf.len() + take > max {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            return Ok(Line::Read(buf.len()));
        }
    }
}

/// Calls `each(line_number, record)` for every non-empty record of `reader` (without its line
/// end), numbering lines after the `header_lines` the header took; a record past `max` bytes is
/// refused with its line number before it is held whole.
pub(crate) fn for_each_record(
    reader: &mut dyn BufRead,
    header_lines: u64,
    max: usize,
    input: &super::InputFile,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), super::QcError>,
) -> Result<(), super::QcError> {
    let mut buf = Vec::with_capacity(1 << 16);
    let mut line = header_lines;
    loop {
        match read_line(reader, &mut buf, max)
            .map_err(|e| super::refuse(input, Some(line + 1), format!("cannot be read: {e}")))?
        {
            Line::End => return Ok(()),
            Line::TooLong => {
                return Err(super::refuse(input, Some(line + 1), format!("record is longer than {max} bytes")));
            }
            Line::Read(_) => {}
        }
        line += 1;
        let record = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let record = record.strip_suffix(b"\r").unwrap_or(record);
        if !record.is_empty() {
            each(line, record)?;
        }
    }
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_whole_within_the_limit_and_refused_past_it() {
        let text = b"short\nexactly10\n\nno newline at the end";
        let mut reader = io::BufReader::with_capacity(4, &text[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut reader, &mut buf, 10).unwrap(), Line::Read(6));
        assert_eq!(buf, b"short\n");
        assert_eq!(read_line(&mut reader, &mut buf, 10).unwrap(), Line::Read(10));
        assert_eq!(read_line(&mut reader, &mut buf, 10).unwrap(), Line::Read(1));
        assert_eq!(read_line(&mut reader, &mut buf, 10).unwrap(), Line::TooLong);
        assert!(buf.len() <= 10);
        let mut last = io::BufReader::new(&b"tail"[..]);
        assert_eq!(read_line(&mut last, &mut buf, 10).unwrap(), Line::Read(4));
        assert_eq!(read_line(&mut last, &mut buf, 10).unwrap(), Line::End);
    }
}
