//! Structure check of ISO-BMFF (MP4/M4A) bytes before symphonia reads them.
//!
//! In: a file's bytes. Out: `Ok(())`, or what is wrong. symphonia's MP4 demuxer (0.5.5) sizes its sample tables from
//! their entry counts (`Vec::with_capacity(count)`), so a 1 KB file whose `stsc` claims 4 billion entries makes it ask
//! for 64 GB and the process aborts — an allocation failure is not a panic, no `catch_unwind` stops it (found by
//! `fuzz/fuzz_targets/audio_decode.rs`). This walk goes through the box tree and refuses any table whose entry count
//! does not fit in the bytes its box actually has, so every table symphonia allocates is at most the file's size.

/// Boxes whose body is a sequence of boxes (walked into).
const CONTAINERS: [&[u8; 4]; 11] = [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"moof", b"traf", b"mvex", b"udta"];

/// Top-level box types that mark ISO-BMFF; symphonia's probe finds such a marker anywhere near the start.
const MARKERS: [&[u8; 4]; 4] = [b"ftyp", b"moov", b"moof", b"styp"];

/// How far into the bytes a marker is looked for (symphonia's probe scans a bounded prefix too).
const SEARCH: usize = 1 << 20;

/// Checks every ISO-BMFF box tree that starts at a marker within the first [`SEARCH`] bytes.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let end = bytes.len().min(SEARCH);
    let mut i = 4;
    while i + 4 <= end {
        if MARKERS.iter().any(|m| &bytes[i..i + 4] == *m) {
            walk(&bytes[i - 4..], 0)?;
        }
        i += 1;
    }
    Ok(())
}

fn u32_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as u64)
}

fn walk(data: &[u8], depth: usize) -> Result<(), String> {
    if depth > 16 {
        return Err("MP4 boxes nested too deeply".into());
    }
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let mut size = u32_at(data, pos).unwrap_or(0);
        let typ: [u8; 4] = data[pos + 4..pos + 8].try_into().unwrap_or([0; 4]);
        let mut header = 8u64;
        if size == 1 {
            let Some(s) = data.get(pos + 8..pos + 16) else { return Ok(()) };
            size = u64::from_be_bytes(s.try_into().unwrap_or([0; 8]));
            header = 16;
        } else if size == 0 {
            size = (data.len() - pos) as u64;
        }
        if size < header {
            // not a box tree (or a broken one symphonia refuses by itself)
            return Ok(());
        }
        let body_end = (pos as u64).saturating_add(size).min(data.len() as u64) as usize;
        let body = &data[(pos + header as usize).min(body_end)..body_end];
        if CONTAINERS.iter().any(|c| **c == typ) {
            walk(body, depth + 1)?;
        } else {
            table(&typ, body)?;
        }
        match pos.checked_add(size as usize) {
            Some(next) if (size as u128) < usize::MAX as u128 && next > pos => pos = next,
            _ => break,
        }
    }
    Ok(())
}

/// A table box: its entry count times the entry size must fit in its body.
fn table(typ: &[u8; 4], body: &[u8]) -> Result<(), String> {
    // (offset of the count, bytes per entry)
    let (at, entry): (usize, u64) = match typ {
        b"stts" | b"ctts" | b"co64" => (4, 8),
        b"stsc" => (4, 12),
        b"stco" | b"stss" => (4, 4),
        // sample descriptions and data references: at least a box header each
        b"stsd" | b"dref" => (4, 8),
        b"elst" => (4, if body.first() == Some(&1) { 20 } else { 12 }),
        b"stsz" => {
            if u32_at(body, 4) != Some(0) {
                return Ok(()); // one size for every sample: no table
            }
            (8, 4)
        }
        b"stz2" => {
            let bits = *body.get(7).unwrap_or(&0) as u64;
            let (Some(count), true) = (u32_at(body, 8), bits > 0) else { return Ok(()) };
            return fits(typ, count * bits / 8, body.len().saturating_sub(12));
        }
        b"trun" => {
            let flags = u32_at(body, 0).unwrap_or(0) & 0x00FF_FFFF;
            let per = 4 * (flags & 0xF00).count_ones() as u64;
            let fixed = 8 + if flags & 1 != 0 { 4 } else { 0 } + if flags & 4 != 0 { 4 } else { 0 };
            let Some(count) = u32_at(body, 4) else { return Ok(()) };
            return fits(typ, count * per, body.len().saturating_sub(fixed));
        }
        b"sbgp" => (if body.first() == Some(&1) { 12 } else { 8 }, 8),
        _ => return Ok(()),
    };
    let Some(count) = u32_at(body, at) else { return Ok(()) };
    fits(typ, count * entry, body.len().saturating_sub(at + 4))
}

fn fits(typ: &[u8; 4], need: u64, have: usize) -> Result<(), String> {
    if need > have as u64 {
        return Err(format!(
            "malformed MP4: its '{}' table claims {need} bytes of entries in a box of {have}",
            String::from_utf8_lossy(typ)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(typ: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(typ);
        v.extend_from_slice(body);
        v
    }

    fn mp4_with(table: Vec<u8>) -> Vec<u8> {
        let stbl = boxed(b"stbl", &table);
        let trak = boxed(b"trak", &boxed(b"mdia", &boxed(b"minf", &stbl)));
        let mut f = boxed(b"ftyp", b"M4A \0\0\0\0");
        f.extend(boxed(b"moov", &trak));
        f
    }

    #[test]
    fn a_table_claiming_more_entries_than_its_box_holds_is_refused() {
        // stsc: version/flags, count 0xFFFFFFF0, one real entry
        let mut body = vec![0, 0, 0, 0];
        body.extend_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
        body.extend_from_slice(&[0; 12]);
        let e = check(&mp4_with(boxed(b"stsc", &body))).unwrap_err();
        assert!(e.contains("'stsc'"), "{e}");
        // the same with a count that fits passes
        let mut ok = vec![0, 0, 0, 0];
        ok.extend_from_slice(&1u32.to_be_bytes());
        ok.extend_from_slice(&[0; 12]);
        check(&mp4_with(boxed(b"stsc", &ok))).unwrap();
        // stsz with one size for all samples has no table, whatever the count
        let mut stsz = vec![0, 0, 0, 0, 0, 0, 4, 0];
        stsz.extend_from_slice(&u32::MAX.to_be_bytes());
        check(&mp4_with(boxed(b"stsz", &stsz))).unwrap();
        stsz[4..8].copy_from_slice(&[0; 4]);
        assert!(check(&mp4_with(boxed(b"stsz", &stsz))).is_err());
    }

    #[test]
    fn other_bytes_pass() {
        check(b"").unwrap();
        check(b"RIFF\0\0\0\0WAVEfmt ").unwrap();
        check(&[0u8; 64]).unwrap();
        // a marker with a nonsense size: not a box tree, left to symphonia
        check(b"\0\0\0\x02ftypM4A ").unwrap();
    }
}

/// Matroska/WebM masters (walked into); every other element is data that symphonia may read into one buffer of its
/// declared size.
const EBML_MASTERS: [u32; 30] = [
    0x1A45DFA3, 0x18538067, 0x114D9B74, 0x4DBB, 0x1549A966, 0x1654AE6B, 0xAE, 0xE0, 0xE1, 0x6D80, 0x6240, 0x5034,
    0x5035, 0x1F43B675, 0xA0, 0x75A1, 0xA6, 0x1C53BB6B, 0xBB, 0xB7, 0x1043A770, 0x45B9, 0xB6, 0x80, 0x1254C367, 0x7373,
    0x63C0, 0x67C8, 0x1941A469, 0x61A7,
];

/// The same idea for Matroska/WebM (EBML): symphonia-format-mkv reads a data element (a block, codec private data)
/// with `vec![0; declared size]`, so an element claiming petabytes aborts the process. Every element in the tree
/// that starts at the EBML header, masters excepted (they are walked as far as the file goes), must declare at most
/// the file's whole length.
pub fn check_ebml(bytes: &[u8]) -> Result<(), String> {
    let end = bytes.len().min(SEARCH);
    let Some(start) = bytes[..end].windows(4).position(|w| w == [0x1A, 0x45, 0xDF, 0xA3]) else { return Ok(()) };
    ebml_walk(&bytes[start..], bytes.len() as u64, 0)
}

/// (value, length) of an EBML variable-length integer; `keep_marker` for element IDs.
fn vint(b: &[u8], keep_marker: bool) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 || b.len() < len {
        return None;
    }
    let mut v = if keep_marker { first as u64 } else { (first as u64) & (0xFF >> len) };
    for &x in &b[1..len] {
        v = (v << 8) | x as u64;
    }
    Some((v, len))
}

fn ebml_walk(data: &[u8], file_len: u64, depth: usize) -> Result<(), String> {
    if depth > 16 {
        return Err("Matroska elements nested too deeply".into());
    }
    let mut pos = 0usize;
    while pos < data.len() {
        let Some((id, il)) = vint(&data[pos..], true) else { return Ok(()) };
        let Some((size, sl)) = vint(&data[pos + il..], false) else { return Ok(()) };
        let unknown = size == (1u64 << (7 * sl)) - 1;
        let body_start = pos + il + sl;
        let master = EBML_MASTERS.contains(&(id as u32)) && id <= u32::MAX as u64;
        if unknown && master {
            // a live-written segment or cluster: runs to the end of what there is
            return ebml_walk(&data[body_start.min(data.len())..], file_len, depth + 1);
        }
        // a master larger than the file is a truncated recording (it is walked as far as it goes); a data element
        // larger than the whole file is a lie symphonia would allocate for
        if size > file_len && !master {
            return Err(format!("malformed Matroska: element {id:#X} declares {size} bytes in a file of {file_len}"));
        }
        let body_end = (body_start as u64 + size).min(data.len() as u64) as usize;
        if master {
            ebml_walk(&data[body_start.min(body_end)..body_end], file_len, depth + 1)?;
        }
        pos = body_end.max(pos + 1);
    }
    Ok(())
}

#[cfg(test)]
mod ebml_tests {
    use super::*;

    #[test]
    fn an_element_larger_than_the_file_is_refused() {
        // EBML header (empty), Segment of unknown size, Cluster (9 bytes) holding a SimpleBlock that claims 2^32 bytes
        let head = |cluster: u8| {
            let mut f = vec![0x1A, 0x45, 0xDF, 0xA3, 0x80];
            f.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
            f.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75, cluster]);
            f
        };
        let mut f = head(0x89);
        f.extend_from_slice(&[0xA3, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00]);
        let e = check_ebml(&f).unwrap_err();
        assert!(e.contains("0xA3"), "{e}");
        // a SimpleBlock of 2 bytes passes
        let mut f = head(0x84);
        f.extend_from_slice(&[0xA3, 0x82, 0x00, 0x00]);
        check_ebml(&f).unwrap();
    }
}
