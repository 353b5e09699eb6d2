//! Rate conversion in front of a codec: PCM16 at the input rate -> PCM16 at the codec's rate.
//!
//! libsoxr HQ through [`crate::reference::SoxrStream`] (the library the reference path already links,
//! used here streaming). `i16 / 32768` in, `round(x * 32768)` saturated back to `i16` out.

use super::CodecError;
use crate::reference::SoxrStream;

pub(crate) struct RateStage {
    soxr: SoxrStream,
    fin: Vec<f32>,
    fout: Vec<f32>,
}

impl RateStage {
    pub(crate) fn new(in_rate: u32, out_rate: u32) -> Result<RateStage, CodecError> {
        let soxr = SoxrStream::new(in_rate as f64, out_rate as f64).map_err(|e| CodecError::Resample(e.to_string()))?;
        Ok(RateStage { soxr, fin: Vec::new(), fout: Vec::new() })
    }

    /// Appends the converted samples that are ready to `out`.
    pub(crate) fn process(&mut self, pcm: &[i16], out: &mut Vec<i16>) -> Result<(), CodecError> {
        self.fin.clear();
        self.fin.extend(pcm.iter().map(|&s| s as f32 / 32768.0));
        self.fout.clear();
        self.soxr.process(&self.fin, &mut self.fout).map_err(|e| CodecError::Resample(e.to_string()))?;
        out.extend(self.fout.iter().map(|&x| to_i16(x)));
        Ok(())
    }

    /// End of input: appends the rest.
    pub(crate) fn flush(&mut self, out: &mut Vec<i16>) -> Result<(), CodecError> {
        self.fout.clear();
        self.soxr.flush(&mut self.fout).map_err(|e| CodecError::Resample(e.to_string()))?;
        out.extend(self.fout.iter().map(|&x| to_i16(x)));
        Ok(())
    }
}

fn to_i16(x: f32) -> i16 {
    let v = (x * 32768.0).round();
    if v.is_nan() {
        0
    } else {
        v.clamp(i16::MIN as f32, i16::MAX as f32) as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_rounds_and_saturates() {
        assert_eq!(to_i16(0.5), 16384);
        assert_eq!(to_i16(1.2), i16::MAX);
        assert_eq!(to_i16(-1.2), i16::MIN);
        assert_eq!(to_i16(f32::NAN), 0);
        assert_eq!(to_i16(-0.4 / 32768.0), 0);
    }

    #[test]
    fn length_follows_the_ratio() {
        let mut st = RateStage::new(32_000, 24_000).unwrap();
        let mut out = Vec::new();
        for _ in 0..10 {
            st.process(&[1000; 3200], &mut out).unwrap();
        }
        st.flush(&mut out).unwrap();
        assert_eq!(out.len(), 24_000);
        // a constant stays constant away from the edges
        assert!(out[1000..23000].iter().all(|&s| (s - 1000).abs() <= 2), "dc not kept");
    }
}
