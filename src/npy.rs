//! The crate's one `.npy` reader (format 1.0/2.0/3.0, little-endian `<f4`, `<f8`, `<i8`, `<i4`, `<i2`, C order):
//! golden arrays (`gsv parity`, tests) and the g2p_en weights of the English frontend. Floats come back as f32,
//! integers as i64, with their shape; a file that is missing, truncated or of another layout is an [`NpyError`].

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
}

#[derive(Debug, Clone)]
pub enum NpyData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

#[derive(Debug, Clone)]
pub struct Npy {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

impl Npy {
    pub fn f32(&self) -> Vec<f32> {
        match &self.data {
            NpyData::F32(v) => v.clone(),
            NpyData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    pub fn i64(&self) -> Vec<i64> {
        match &self.data {
            NpyData::I64(v) => v.clone(),
            NpyData::F32(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }
}

fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let k = format!("'{key}':");
    let i = header.find(&k)? + k.len();
    Some(header[i..].trim_start())
}

/// Read one array.
pub fn read(path: &Path) -> Result<Npy, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io { path: path.display().to_string(), source })?;
    parse(&bytes).map_err(|msg| NpyError::Format { path: path.display().to_string(), msg })
}

/// Parse the bytes of an `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<Npy, String> {
    let err = |msg: String| msg;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(err("not an .npy file".into()));
    }
    let major = bytes[6];
    let (hlen, start) = if major == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        if bytes.len() < 12 {
            return Err(err("truncated header".into()));
        }
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(bytes.get(start..start + hlen).ok_or_else(|| err("truncated header".into()))?).map_err(|e| err(e.to_string()))?;
    let descr = header_value(header, "descr").ok_or_else(|| err("no descr".into()))?;
    let descr = descr.trim_start_matches('\'');
    let descr = &descr[..descr.find('\'').ok_or_else(|| err("bad descr".into()))?];
    let descr = descr.replace('|', "<");
    if header_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(err("fortran order not supported".into()));
    }
    let shape_s = header_value(header, "shape").ok_or_else(|| err("no shape".into()))?;
    let shape_s = &shape_s[1..shape_s.find(')').ok_or_else(|| err("bad shape".into()))?];
    let shape: Vec<usize> = shape_s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().map_err(|_| err(format!("bad dim {s}")))).collect::<Result<_, _>>()?;
    let count: usize = shape.iter().product();
    let body = &bytes[start + hlen..];
    let need = |w: usize| if body.len() < count * w { Err(err(format!("data too short for {count} items of {w} bytes"))) } else { Ok(()) };
    let data = match descr.as_str() {
        "<f4" => {
            need(4)?;
            NpyData::F32(body.chunks_exact(4).take(count).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        "<f8" => {
            need(8)?;
            NpyData::F32(body.chunks_exact(8).take(count).map(|c| f64::from_le_bytes(arr8(c)) as f32).collect())
        }
        "<i8" => {
            need(8)?;
            NpyData::I64(body.chunks_exact(8).take(count).map(|c| i64::from_le_bytes(arr8(c))).collect())
        }
        "<i4" => {
            need(4)?;
            NpyData::I64(body.chunks_exact(4).take(count).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect())
        }
        "<i2" => {
            need(2)?;
            NpyData::I64(body.chunks_exact(2).take(count).map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect())
        }
        other => return Err(err(format!("unsupported dtype {other}"))),
    };
    Ok(Npy { shape, data })
}

fn arr8(c: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&c[..8]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b.extend(body);
        b
    }

    #[test]
    fn reads_types_and_refuses_short_data() {
        let f: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = parse(&file("<f4", "(2,)", &f)).unwrap();
        assert_eq!((a.shape.clone(), a.f32()), (vec![2], vec![1.5, -2.0]));
        let i: Vec<u8> = [3i32, -4, 5, 6].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = parse(&file("<i4", "(2, 2)", &i)).unwrap();
        assert_eq!((b.shape.clone(), b.i64()), (vec![2, 2], vec![3, -4, 5, 6]));
        assert!(parse(&file("<f4", "(3,)", &f)).is_err(), "truncated data");
        assert!(parse(&file("<c8", "(1,)", &f)).is_err(), "unsupported dtype");
        assert!(parse(b"not numpy").is_err());
    }
}
