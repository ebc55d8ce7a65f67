//! TFRecord framing, the container of TensorBoard event files: records one
//! after another, each
//!
//! ```text
//! u64 length (little-endian) | u32 masked CRC32C of those 8 bytes
//! length bytes of data       | u32 masked CRC32C of the data
//! ```
//!
//! with `mask(c) = ((c >> 15) | (c << 17)) + 0xA282EAD8`. The reader works
//! on a byte slice read from some offset of a file and never fails: it
//! yields each intact record, reports a corrupt one (with its offset) and
//! goes on, and stops before a record that is not complete yet — a writer
//! mid-write, or a file cut short — saying where, so that a later read can
//! resume there.

/// Bytes before a record's data: the length and its CRC.
pub const HEADER_BYTES: usize = 12;
/// Bytes after a record's data: its CRC.
pub const FOOTER_BYTES: usize = 4;
/// The largest record believed: a longer length (whose CRC matched by
/// chance, or was forged) is treated as a corrupt header rather than
/// waited for. TensorBoard's own writers stay far below it.
pub const MAX_RECORD_BYTES: u64 = 1 << 30;

/// The masked CRC32C TFRecord stores.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One step of reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// An intact record: its data and the offset of its header.
    Record { offset: u64, data: &'a [u8] },
    /// A record whose data does not match its CRC: skipped (its length was
    /// intact, so the next record is found).
    BadData { offset: u64, len: u64 },
    /// A header whose length does not match its CRC: the bytes from
    /// `offset` to `resumed` (the next intact header, or as far as could be
    /// searched) are skipped.
    BadHeader { offset: u64, resumed: u64 },
}

/// Why reading stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every byte was read.
    Clean,
    /// The record at `offset` is not complete: `have` of `need` bytes.
    /// A writer may still be writing it; a later read resumes at `offset`.
    Truncated { offset: u64, have: u64, need: u64 },
}

/// Reads the records of `buf`, whose first byte is at `base` in its file.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    end: Option<End>,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], base: u64) -> Self {
        Reader {
            buf,
            pos: 0,
            base,
            end: None,
        }
    }

    /// The file offset where the next read should start: after the last
    /// record (intact or skipped), at a truncated one.
    pub fn resume_offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Why reading stopped (`None` while records remain).
    pub fn end(&self) -> Option<End> {
        self.end
    }

    fn header_at(&self, pos: usize) -> Option<u64> {
        let h = self.buf.get(pos..pos + HEADER_BYTES)?;
        let len = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
        let crc = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
        (masked_crc32c(&h[..8]) == crc && len <= MAX_RECORD_BYTES).then_some(len)
    }

    /// The next intact header after `from`, or the first position from
    /// which a header could not be checked whole (it may be in flight).
    fn resync(&self, from: usize) -> usize {
        let last = self.buf.len().saturating_sub(HEADER_BYTES - 1);
        (from..last)
            .find(|&p| self.header_at(p).is_some())
            .unwrap_or(last.max(from))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if self.end.is_some() {
            return None;
        }
        let offset = self.base + self.pos as u64;
        let rest = self.buf.len() - self.pos;
        if rest == 0 {
            self.end = Some(End::Clean);
            return None;
        }
        if rest < HEADER_BYTES {
            self.end = Some(End::Truncated {
                offset,
                have: rest as u64,
                need: HEADER_BYTES as u64,
            });
            return None;
        }
        let Some(len) = self.header_at(self.pos) else {
            let next = self.resync(self.pos + 1);
            self.pos = next;
            return Some(Frame::BadHeader {
                offset,
                resumed: self.base + next as u64,
            });
        };
        let need = HEADER_BYTES as u64 + len + FOOTER_BYTES as u64;
        if (rest as u64) < need {
            self.end = Some(End::Truncated {
                offset,
                have: rest as u64,
                need,
            });
            return None;
        }
        let start = self.pos + HEADER_BYTES;
        let end = start + len as usize;
        let data = &self.buf[start..end];
        let crc = u32::from_le_bytes(self.buf[end..end + 4].try_into().expect("4 bytes"));
        self.pos = end + FOOTER_BYTES;
        if masked_crc32c(data) == crc {
            Some(Frame::Record { offset, data })
        } else {
            Some(Frame::BadData { offset, len })
        }
    }
}

/// Frames `data` as one TFRecord (what a writer appends).
pub fn frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + data.len() + FOOTER_BYTES);
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[&[u8]]) -> Vec<u8> {
        records.iter().flat_map(|r| frame(r)).collect()
    }

    fn datas<'a>(r: &mut Reader<'a>) -> Vec<Frame<'a>> {
        r.by_ref().collect()
    }

    #[test]
    fn the_masked_crc_matches_tensorflow() {
        // The header of TensorFlow's first record in every event file: a
        // length of 24 (the file_version event), CRC as tensorboardX writes it.
        assert_eq!(masked_crc32c(&24u64.to_le_bytes()), 0x224b_7fa3);
        // The check value of CRC32C (Castagnoli), before masking.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn intact_records_come_out_in_order_with_offsets() {
        let buf = file(&[b"one", b"", b"three"]);
        let mut r = Reader::new(&buf, 100);
        assert_eq!(
            datas(&mut r),
            vec![
                Frame::Record {
                    offset: 100,
                    data: b"one"
                },
                Frame::Record {
                    offset: 119,
                    data: b""
                },
                Frame::Record {
                    offset: 135,
                    data: b"three"
                },
            ]
        );
        assert_eq!(r.end(), Some(End::Clean));
        assert_eq!(r.resume_offset(), 100 + buf.len() as u64);
    }

    #[test]
    fn a_flipped_data_byte_skips_that_record_only() {
        let mut buf = file(&[b"one", b"two", b"three"]);
        buf[19 + 12] ^= 0x40; // the first data byte of "two"
        let frames = datas(&mut Reader::new(&buf, 0));
        assert_eq!(
            frames,
            vec![
                Frame::Record {
                    offset: 0,
                    data: b"one"
                },
                Frame::BadData { offset: 19, len: 3 },
                Frame::Record {
                    offset: 38,
                    data: b"three"
                },
            ]
        );
    }

    #[test]
    fn a_flipped_length_byte_resyncs_at_the_next_header() {
        let mut buf = file(&[b"one", b"two", b"three"]);
        buf[19] ^= 0x01; // the length of "two"
        let mut r = Reader::new(&buf, 0);
        assert_eq!(
            datas(&mut r),
            vec![
                Frame::Record {
                    offset: 0,
                    data: b"one"
                },
                Frame::BadHeader {
                    offset: 19,
                    resumed: 38
                },
                Frame::Record {
                    offset: 38,
                    data: b"three"
                },
            ]
        );
        assert_eq!(r.end(), Some(End::Clean));
    }

    #[test]
    fn a_cut_record_stops_reading_where_it_starts() {
        let buf = file(&[b"one", b"two"]);
        for cut in [20, 30, buf.len() - 1] {
            let mut r = Reader::new(&buf[..cut], 0);
            assert_eq!(
                datas(&mut r),
                vec![Frame::Record {
                    offset: 0,
                    data: b"one"
                }]
            );
            let need = if cut < 19 + HEADER_BYTES { 12 } else { 19 };
            assert_eq!(
                r.end(),
                Some(End::Truncated {
                    offset: 19,
                    have: cut as u64 - 19,
                    need
                })
            );
            assert_eq!(r.resume_offset(), 19, "resumed at the cut record");
        }
    }

    #[test]
    fn an_absurd_length_is_a_corrupt_header_not_a_wait() {
        let len = (MAX_RECORD_BYTES + 1).to_le_bytes();
        let mut buf = len.to_vec();
        buf.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        buf.extend_from_slice(&frame(b"ok"));
        let frames = datas(&mut Reader::new(&buf, 0));
        assert_eq!(
            frames,
            vec![
                Frame::BadHeader {
                    offset: 0,
                    resumed: 12
                },
                Frame::Record {
                    offset: 12,
                    data: b"ok"
                },
            ]
        );
    }

    #[test]
    fn garbage_to_the_end_is_skipped_up_to_an_unchecked_tail() {
        let buf = vec![0xffu8; 40];
        let mut r = Reader::new(&buf, 0);
        assert_eq!(
            datas(&mut r),
            vec![Frame::BadHeader {
                offset: 0,
                resumed: 29
            }]
        );
        assert_eq!(
            r.end(),
            Some(End::Truncated {
                offset: 29,
                have: 11,
                need: 12
            })
        );
    }
}
