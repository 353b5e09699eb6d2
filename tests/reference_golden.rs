//! Golden tests for `gsv::reference` and `gsv::wav` against what GPT-SoVITS computed
//! (`$GSV_GOLDEN_DIR`, default `<crate>/../shared/golden`). A missing golden folder fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gsv::reference::{self, Audio, ReferenceError, SpecParams};

fn golden_dir() -> PathBuf {
    let dir = match std::env::var_os("GSV_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden"),
    };
    assert!(dir.join("manifest.json").is_file(), "golden data not found at {} (set GSV_GOLDEN_DIR)", dir.display());
    dir
}

/// A .npy array: shape and values widened to f64.
struct Npy {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Npy {
    fn f32s(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }
    fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A golden array through the crate's `.npy` reader, widened to f64.
fn read_npy(path: &Path) -> Npy {
    let a = gsv::npy::read(path).unwrap_or_else(|e| panic!("{e}"));
    let data: Vec<f64> = match &a.data {
        gsv::npy::NpyData::F32(v) => v.iter().map(|&x| x as f64).collect(),
        gsv::npy::NpyData::I64(v) => v.iter().map(|&x| x as f64).collect(),
    };
    assert_eq!(data.len(), a.shape.iter().product::<usize>(), "{} truncated", path.display());
    Npy { shape: a.shape, data }
}

fn npy(name: &str) -> Npy {
    read_npy(&golden_dir().join("arrays").join(format!("{name}.npy")))
}

fn native() -> Audio {
    reference::load_file(&golden_dir().join("ref_audio/ref_native.wav")).expect("decode ref_native.wav")
}

/// (SNR dB, max abs error) of `got` against `want`.
fn compare(got: &[f32], want: &[f32]) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    let (mut sig, mut err, mut maxabs) = (0.0f64, 0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(want) {
        let d = g as f64 - w as f64;
        sig += (w as f64).powi(2);
        err += d * d;
        maxabs = maxabs.max(d.abs());
    }
    let snr = if err == 0.0 { f64::INFINITY } else { 10.0 * (sig / err).log10() };
    (snr, maxabs)
}

#[test]
fn decode_native_wav() {
    let a = native();
    assert_eq!(a.sample_rate, 22050);
    assert!(!a.samples.is_empty());
    assert!(a.samples.iter().all(|v| (-1.0..1.0).contains(v)));
}

#[test]
fn wav16k_matches_librosa() {
    let want = npy("wav16k");
    assert_eq!(want.shape.len(), 1);
    let got = reference::resample_librosa(&native(), 16000).unwrap();
    assert_eq!(got.len(), want.len(), "16 kHz length");
    let (snr, maxabs) = compare(&got, &want.f32s());
    eprintln!("wav16k vs librosa golden: SNR {snr:.1} dB, max abs err {maxabs:.3e}");
    assert!(snr >= 60.0, "SNR {snr} dB");
}

#[test]
fn wav16k_padded_matches() {
    let want = npy("wav16k_padded");
    let got = reference::hubert_input(&native()).unwrap();
    assert_eq!(got.len(), want.len(), "padded length");
    assert_eq!(got.len(), npy("wav16k").len() + reference::HUBERT_PAD_SAMPLES);
    assert!(got[got.len() - reference::HUBERT_PAD_SAMPLES..].iter().all(|&v| v == 0.0));
    let (snr, maxabs) = compare(&got, &want.f32s());
    eprintln!("wav16k_padded: SNR {snr:.1} dB, max abs err {maxabs:.3e}");
    assert!(snr >= 60.0);
}

#[test]
fn wav32k_matches_torchaudio() {
    let want = npy("wav32k");
    assert_eq!(want.shape[0], 1);
    let got = reference::vits_input(&native(), 32000).unwrap();
    assert_eq!(got.len(), want.shape[1], "32 kHz length");
    let (snr, maxabs) = compare(&got, &want.f32s());
    eprintln!("wav32k vs torchaudio golden: SNR {snr:.1} dB, max abs err {maxabs:.3e}");
    assert!(maxabs <= 1e-5, "max abs err {maxabs}");
}

fn check_spec(got: &reference::Spectrogram, want: &Npy, label: &str) {
    assert_eq!(want.shape.len(), 3);
    assert_eq!((got.bins, got.frames), (want.shape[1], want.shape[2]), "{label} shape");
    let (mut worst, mut maxabs) = (0.0f64, 0.0f64);
    for (&g, &w) in got.data.iter().zip(&want.data) {
        let d = (g as f64 - w).abs();
        maxabs = maxabs.max(d);
        worst = worst.max(d / (1e-4 + 1e-3 * w.abs()));
    }
    eprintln!("{label}: max abs err {maxabs:.3e}, worst err/(atol+rtol*|x|) {worst:.3}");
    assert!(worst <= 1.0, "{label} outside atol 1e-4 rtol 1e-3");
}

#[test]
fn spectrogram_from_golden_wav32k() {
    let wav = npy("wav32k").f32s();
    let got = reference::spectrogram(&wav, SpecParams { n_fft: 2048, hop: 640, win: 2048 }).unwrap();
    check_spec(&got, &npy("refer_spec"), "refer_spec (golden wav32k)");
}

#[test]
fn prepare_end_to_end() {
    let p = reference::prepare(&golden_dir().join("ref_audio/ref_native.wav"), 32000, SpecParams::default()).unwrap();
    assert_eq!(p.wav16k_padded.len(), npy("wav16k_padded").len());
    check_spec(&p.spec, &npy("refer_spec"), "refer_spec (our wav32k)");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(golden_dir().join("manifest.json")).unwrap()).unwrap();
    let sha = manifest["files"]["ref_audio/ref_native.wav"]["sha256"].as_str().unwrap();
    assert_eq!(p.hash.to_string(), sha);
}

#[test]
fn float32_golden_wavs_decode_exactly() {
    // The golden folder also stores wav16k / wav32k as float32 WAVs: hound's float path must be bit-exact.
    let a = reference::load_file(&golden_dir().join("ref_audio/ref_16k_librosa_float32.wav")).unwrap();
    assert_eq!(a.sample_rate, 16000);
    assert_eq!(a.samples, npy("wav16k").f32s());
    let b = reference::load_file(&golden_dir().join("ref_audio/ref_32k_torchaudio_float32.wav")).unwrap();
    assert_eq!(b.sample_rate, 32000);
    assert_eq!(b.samples, npy("wav32k").f32s());
}

#[test]
fn webui_int16_conversion_matches() {
    // get_tts_wav: decode_audio, /max|x| if > 1, + 0.3 s zeros, * 32767 -> int16 (truncation).
    let audio = npy("decode_audio");
    let want = npy("webui_output_int16");
    let mut x = audio.f32s();
    gsv::wav::normalize_peak(&mut x);
    x.resize(x.len() + (32000.0 * 0.3) as usize, 0.0);
    let got = gsv::wav::to_pcm16(&x, gsv::wav::WEBUI_SCALE);
    assert_eq!(got.len(), want.len());
    let mismatches = got.iter().zip(&want.data).filter(|(g, w)| **g as f64 != **w).count();
    assert_eq!(mismatches, 0, "{mismatches} samples differ");
}

#[test]
fn duration_rule() {
    assert!(reference::check_duration_16k(48_000).is_ok());
    assert!(reference::check_duration_16k(160_000).is_ok());
    assert!(matches!(reference::check_duration_16k(47_999), Err(ReferenceError::Duration { .. })));
    assert!(matches!(reference::check_duration_16k(160_001), Err(ReferenceError::Duration { .. })));
    // 2 s and 11 s at 22.05 kHz through the full path.
    for secs in [2usize, 11] {
        let a = Audio { samples: vec![0.01; 22050 * secs], sample_rate: 22050 };
        assert!(matches!(reference::hubert_input(&a), Err(ReferenceError::Duration { .. })), "{secs} s");
    }
    let ok = Audio { samples: vec![0.01; 22050 * 5], sample_rate: 22050 };
    assert_eq!(reference::hubert_input(&ok).unwrap().len(), 80_000 + 9_600);
}

fn write_wav(spec: hound::WavSpec, frames: &[Vec<f64>]) -> Vec<u8> {
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
        for f in frames {
            for &v in f {
                match (spec.sample_format, spec.bits_per_sample) {
                    (hound::SampleFormat::Float, _) => w.write_sample(v as f32).unwrap(),
                    (_, 8) => w.write_sample((v * 128.0) as i8).unwrap(),
                    (_, 16) => w.write_sample((v * 32768.0) as i16).unwrap(),
                    (_, 24) => w.write_sample((v * 8388608.0) as i32).unwrap(),
                    (_, 32) => w.write_sample((v * 2147483648.0) as i32).unwrap(),
                    _ => unreachable!(),
                }
            }
        }
        w.finalize().unwrap();
    }
    cur.into_inner()
}

#[test]
fn decode_generated_wavs_mono_and_stereo() {
    let frames: Vec<Vec<f64>> = (0..1000).map(|i| vec![0.5 * ((i as f64) * 0.01).sin(), -0.25]).collect();
    let cases: HashMap<&str, (hound::SampleFormat, u16)> = [
        ("pcm8", (hound::SampleFormat::Int, 8)),
        ("pcm16", (hound::SampleFormat::Int, 16)),
        ("pcm24", (hound::SampleFormat::Int, 24)),
        ("pcm32", (hound::SampleFormat::Int, 32)),
        ("f32", (hound::SampleFormat::Float, 32)),
    ]
    .into_iter()
    .collect();
    for (name, (fmt, bits)) in cases {
        let tol = if bits == 8 { 1.0 / 64.0 } else { 1e-4 };
        // Stereo: mean of the channels.
        let spec = hound::WavSpec { channels: 2, sample_rate: 44100, bits_per_sample: bits, sample_format: fmt };
        let a = reference::decode_bytes(&write_wav(spec, &frames), None).unwrap();
        assert_eq!(a.sample_rate, 44100, "{name}");
        assert_eq!(a.samples.len(), 1000, "{name}");
        for (s, f) in a.samples.iter().zip(&frames) {
            assert!((*s as f64 - (f[0] + f[1]) / 2.0).abs() < tol, "{name} stereo");
        }
        // Mono.
        let spec = hound::WavSpec { channels: 1, ..spec };
        let mono: Vec<Vec<f64>> = frames.iter().map(|f| vec![f[0]]).collect();
        let a = reference::decode_bytes(&write_wav(spec, &mono), Some("wav")).unwrap();
        assert_eq!(a.samples.len(), 1000);
        for (s, f) in a.samples.iter().zip(&frames) {
            assert!((*s as f64 - f[0]).abs() < tol, "{name} mono");
        }
    }
    // 16-bit scaling is exactly /32768 (libsndfile).
    let spec = hound::WavSpec { channels: 1, sample_rate: 8000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let a = reference::decode_bytes(&write_wav(spec, &[vec![-1.0], vec![0.5]]), None).unwrap();
    assert_eq!(a.samples, vec![-1.0, 0.5]);
}

#[test]
fn decode_errors_are_typed() {
    assert!(matches!(reference::decode_bytes(&[], None), Err(ReferenceError::EmptyAudio)));
    assert!(matches!(
        reference::decode_bytes(b"this is not audio at all, just some text bytes", Some("txt")),
        Err(ReferenceError::UnsupportedFormat(_))
    ));
    let spec = hound::WavSpec { channels: 1, sample_rate: 16000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    assert!(matches!(reference::decode_bytes(&write_wav(spec, &[]), None), Err(ReferenceError::EmptyAudio)));
    let missing = reference::load_file(Path::new("/nonexistent/ref.wav"));
    assert!(matches!(missing, Err(ReferenceError::Io { .. })));
}

/// A minimal FLAC file (STREAMINFO + one frame of VERBATIM 16-bit subframes), written here so the
/// symphonia path can be tested without an encoder on the machine.
fn tiny_flac(rate: u32, channels: &[Vec<i16>]) -> Vec<u8> {
    fn crc8(data: &[u8]) -> u8 {
        let mut c = 0u8;
        for &b in data {
            c ^= b;
            for _ in 0..8 {
                c = if c & 0x80 != 0 { (c << 1) ^ 0x07 } else { c << 1 };
            }
        }
        c
    }
    fn crc16(data: &[u8]) -> u16 {
        let mut c = 0u16;
        for &b in data {
            c ^= (b as u16) << 8;
            for _ in 0..8 {
                c = if c & 0x8000 != 0 { (c << 1) ^ 0x8005 } else { c << 1 };
            }
        }
        c
    }
    let nch = channels.len();
    let n = channels[0].len();
    assert!((1..=2).contains(&nch) && (16..=65535).contains(&n));
    let mut out = b"fLaC".to_vec();
    out.extend_from_slice(&[0x80, 0, 0, 34]); // last block, STREAMINFO, 34 bytes
    out.extend_from_slice(&(n as u16).to_be_bytes()); // min block size
    out.extend_from_slice(&(n as u16).to_be_bytes()); // max block size
    out.extend_from_slice(&[0; 6]); // min/max frame size unknown
    // 20 bits rate, 3 bits channels-1, 5 bits bps-1, 36 bits total samples.
    let packed: u64 = ((rate as u64) << 44) | (((nch as u64) - 1) << 41) | (15u64 << 36) | n as u64;
    out.extend_from_slice(&packed.to_be_bytes());
    out.extend_from_slice(&[0; 16]); // MD5 unknown
    let mut frame = vec![0xFF, 0xF8]; // sync, fixed block size
    frame.push(0x70); // block size: 16-bit (n-1) follows; sample rate from STREAMINFO
    frame.push((((nch - 1) as u8) << 4) | 0x08); // channels independent, 16 bits per sample
    frame.push(0x00); // frame number 0 (UTF-8 coded)
    frame.extend_from_slice(&((n - 1) as u16).to_be_bytes());
    frame.push(crc8(&frame));
    for ch in channels {
        frame.push(0x02); // VERBATIM subframe, no wasted bits
        for s in ch {
            frame.extend_from_slice(&s.to_be_bytes());
        }
    }
    let c = crc16(&frame);
    frame.extend_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&frame);
    out
}

#[test]
fn decode_flac_via_symphonia() {
    let left: Vec<i16> = (0..4096).map(|i| ((i as f32 * 0.03).sin() * 16000.0) as i16).collect();
    let right: Vec<i16> = (0..4096).map(|i| (i % 200) as i16 * 10 - 1000).collect();
    let a = reference::decode_bytes(&tiny_flac(24000, &[left.clone(), right.clone()]), Some("flac")).unwrap();
    assert_eq!(a.sample_rate, 24000);
    assert_eq!(a.samples.len(), 4096);
    for ((s, l), r) in a.samples.iter().zip(&left).zip(&right) {
        let want = (*l as f32 / 32768.0 + *r as f32 / 32768.0) / 2.0;
        assert!((s - want).abs() < 1e-6, "{s} vs {want}");
    }
    // Without a hint the probe still finds the `fLaC` marker.
    let m = reference::decode_bytes(&tiny_flac(16000, std::slice::from_ref(&left)), None).unwrap();
    assert_eq!(m.samples, left.iter().map(|&v| v as f32 / 32768.0).collect::<Vec<_>>());
}
