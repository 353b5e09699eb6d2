//! WAV: [`crate::wav`]'s 44-byte PCM16 mono header, then the samples.
//!
//! `Stream`: the header has sizes `0xFFFFFFFF` (unknown length, as the routes stream WAV today).
//! `Whole`: the same header first, then patches with the real RIFF and data sizes, which makes the
//! file byte-identical to [`crate::wav::encode_pcm16`]. Too long for a RIFF size: an error at finish.

use super::{AudioEncoder, CodecError, Delivery, Patch};
use crate::wav;

pub(crate) struct WavEncoder {
    rate: u32,
    delivery: Delivery,
    header_sent: bool,
    samples: u64,
}

impl WavEncoder {
    pub(crate) fn new(rate: u32, delivery: Delivery) -> Result<WavEncoder, CodecError> {
        // validate the rate now, not at the first push
        wav::streaming_header(rate)?;
        Ok(WavEncoder { rate, delivery, header_sent: false, samples: 0 })
    }

    fn header(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        if !self.header_sent {
            out.extend_from_slice(&wav::streaming_header(self.rate)?);
            self.header_sent = true;
        }
        Ok(())
    }
}

impl AudioEncoder for WavEncoder {
    fn push(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.header(out)?;
        self.samples += pcm.len() as u64;
        out.extend_from_slice(&wav::pcm16_bytes(pcm));
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<Vec<Patch>, CodecError> {
        self.header(out)?;
        if self.delivery == Delivery::Stream {
            return Ok(Vec::new());
        }
        let h = wav::header_for_len(self.rate, self.samples)?;
        Ok(vec![Patch { offset: 4, bytes: h[4..8].to_vec() }, Patch { offset: 40, bytes: h[40..44].to_vec() }])
    }
}
