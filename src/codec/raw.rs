//! Raw PCM: the pushed samples as 16-bit little-endian bytes, no header (api_v2 `raw`, OpenAI `pcm`).

use super::{AudioEncoder, CodecError, Patch};

pub(crate) struct RawEncoder;

impl AudioEncoder for RawEncoder {
    fn push(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.reserve(pcm.len() * 2);
        for s in pcm {
            out.extend_from_slice(&s.to_le_bytes());
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<Vec<Patch>, CodecError> {
        Ok(Vec::new())
    }
}
