//! Reference audio in the containers upstream reads through librosa (libsndfile, then ffmpeg via
//! audioread): files made at test time by Debian's `ffmpeg` (installed by scripts/setup) from a
//! 4 s, 44.1 kHz stereo WAV of two tones written here, then read with `gsv::reference::load_file`.
//! Checked: the rate, the length (within the codec's priming and one frame), the content (both tones
//! at their amplitude after the channel mean, little residual), the whole 16 kHz HuBERT chain, and
//! that a truncated file is an error or shorter audio, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gsv::reference::{self, Audio};

const RATE: u32 = 44_100;
const SECS: f64 = 4.0;
const F1: f64 = 440.0;
const F2: f64 = 1320.0;
const AMP: f64 = 0.3;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("gsv-ref-containers-{}", std::process::id()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn source_wav(path: &Path) {
    let spec = hound::WavSpec { channels: 2, sample_rate: RATE, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for i in 0..(RATE as f64 * SECS) as usize {
        let t = i as f64 / RATE as f64;
        let v = AMP * (std::f64::consts::TAU * F1 * t).sin() + AMP * (std::f64::consts::TAU * F2 * t + 0.5).sin();
        let s = (v * 32768.0).round() as i16;
        // the same signal on both channels: the channel mean is the signal
        w.write_sample(s).expect("write");
        w.write_sample(s).expect("write");
    }
    w.finalize().expect("finalize wav");
}

fn ffmpeg(src: &Path, dst: &Path, args: &[&str]) {
    let ok = Command::new("ffmpeg").arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "ffmpeg is missing: scripts/setup installs Debian's ffmpeg package (it makes these test files)");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-y", "-v", "error", "-i"])
        .arg(src)
        .args(args)
        .arg(dst)
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "ffmpeg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Amplitudes of the two tones (least squares) and the residual energy share, away from the edges.
fn tone_fit(a: &Audio) -> (f64, f64, f64) {
    let rate = a.sample_rate as f64;
    let skip = a.sample_rate as usize / 5;
    let x = &a.samples[skip..a.samples.len() - skip];
    let n = x.len() as f64;
    let mut resid: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut amps = [0.0; 2];
    for (k, f) in [F1, F2].iter().enumerate() {
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let ph = std::f64::consts::TAU * f * (i + skip) as f64 / rate;
            s += v as f64 * ph.sin();
            c += v as f64 * ph.cos();
        }
        let (p, q) = (2.0 * s / n, 2.0 * c / n);
        amps[k] = (p * p + q * q).sqrt();
        for (i, r) in resid.iter_mut().enumerate() {
            let ph = std::f64::consts::TAU * f * (i + skip) as f64 / rate;
            *r -= p * ph.sin() + q * ph.cos();
        }
    }
    let total: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let r: f64 = resid.iter().map(|v| v * v).sum();
    (amps[0], amps[1], r / total)
}

#[test]
fn containers_upstream_reads_decode() {
    let dir = TempDir::new();
    let src = dir.0.join("src.wav");
    source_wav(&src);
    // (file name, ffmpeg output options, expected rate, allowed extra samples: priming + a frame)
    let cases: [(&str, &[&str], u32, usize); 9] = [
        ("aac.m4a", &["-c:a", "aac", "-b:a", "128k"], 44_100, 2 * 1024 + 1024),
        ("phone.mp4", &["-c:a", "aac", "-b:a", "96k", "-af", "pan=mono|c0=0.5*c0+0.5*c1"], 44_100, 2 * 1024 + 1024),
        ("adts.aac", &["-c:a", "aac", "-b:a", "128k", "-f", "adts"], 44_100, 2 * 1024 + 1024),
        ("opus.opus", &["-c:a", "libopus", "-b:a", "64k"], 48_000, 960),
        ("opus.ogg", &["-c:a", "libopus", "-b:a", "64k", "-af", "pan=mono|c0=0.5*c0+0.5*c1"], 48_000, 960),
        ("opus.webm", &["-c:a", "libopus", "-b:a", "64k"], 48_000, 960),
        ("vorbis.webm", &["-c:a", "libvorbis", "-q:a", "4"], 44_100, 2048),
        ("vorbis.ogg", &["-c:a", "libvorbis", "-q:a", "4"], 44_100, 2048),
        ("lame.mp3", &["-c:a", "libmp3lame", "-b:a", "128k"], 44_100, 2 * 1152 + 1105),
    ];
    for (name, args, rate, extra) in cases {
        let path = dir.0.join(name);
        ffmpeg(&src, &path, args);
        let a = reference::load_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(a.sample_rate, rate, "{name}: rate");
        let want = (SECS * rate as f64) as usize;
        assert!(a.samples.len() + 64 >= want && a.samples.len() <= want + extra, "{name}: {} samples, expected {want} (+ up to {extra})", a.samples.len());
        let (a1, a2, resid) = tone_fit(&a);
        eprintln!("{name}: {} Hz, {} samples, tones {a1:.4} {a2:.4}, residual {resid:.5}", a.sample_rate, a.samples.len());
        for (amp, f) in [(a1, F1), (a2, F2)] {
            assert!((amp - AMP).abs() < 0.1 * AMP, "{name}: {f} Hz amplitude {amp:.4}, expected {AMP}");
        }
        assert!(resid < 0.02, "{name}: residual energy {resid:.4}");
        // the reference chain runs on it: 16 kHz HuBERT input (4 s + 0.3 s of padding)
        let h = reference::hubert_input(&a).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want16 = (a.samples.len() as f64 * 16_000.0 / rate as f64).round() as i64 + 9_600;
        assert!((h.len() as i64 - want16).abs() <= 1, "{name}: hubert input {} samples, expected {want16}", h.len());
        // a truncated upload is an error or shorter audio, never a panic
        let bytes = std::fs::read(&path).expect("read back");
        for cut in [bytes.len() / 2, 40, 3] {
            let ext = Path::new(name).extension().and_then(|e| e.to_str());
            let _ = reference::decode_bytes(&bytes[..cut], ext);
        }
    }
}

/// Inputs the audio_decode fuzz target found (kept as its seeds): an MP4 whose `stsc` claims ~4 billion entries made
/// symphonia ask for 64 GB and abort the process; a truncated Matroska size made its EBML reader overflow (a panic,
/// caught). Both must be plain decode errors (a 400 on the server), the process unharmed.
#[test]
fn fuzz_found_containers_are_refused_not_fatal() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/audio_decode");
    for (file, hint) in [("m4a-stsc-count", "m4a"), ("mkv-vint-overflow", "mp3")] {
        let data = std::fs::read(dir.join(file)).unwrap();
        // byte 0 is the fuzz target's hint selector; the rest is the file
        let r = gsv::reference::decode_bytes(&data[1..], Some(hint));
        assert!(matches!(r, Err(gsv::reference::ReferenceError::Decode(_))), "{file}: {:?}", r.map(|a| a.samples.len()));
    }
}
