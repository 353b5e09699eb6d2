//! The audio encoders (`gsv::codec`) checked with an independent decoder: FFmpeg's `ffprobe` and
//! `ffmpeg` command-line tools (Debian `ffmpeg`, installed by scripts/setup). For every format, input
//! rate and delivery mode: the stream decodes without a single decoder error, with the expected codec,
//! sample rate and channel count, the expected length (within one codec frame, after the priming the
//! format cannot signal), and the content (two tones at their amplitudes, little residual; lossless
//! formats bit-exact). Streaming: the bytes returned by the first push decode to audio on their own,
//! and random-length pushes (0, 1, odd sizes) still give a valid stream.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use gsv::codec::{encode_whole, AudioFormat, Delivery, Encoder, EncoderOptions, ALL_FORMATS};
use rand::{Rng, SeedableRng};

const F1: f64 = 440.0;
const F2: f64 = 1320.0;
const AMP: f64 = 0.3;

/// Two tones at `rate` (amplitude 0.3 each, so the peak stays below 0.6), `n` samples.
fn tones(n: usize, rate: u32) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            let v = AMP * (std::f64::consts::TAU * F1 * t).sin() + AMP * (std::f64::consts::TAU * F2 * t + 0.5).sin();
            (v * 32768.0).round() as i16
        })
        .collect()
}

fn tool(name: &str) -> String {
    let ok = Command::new(name).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "{name} is missing: scripts/setup installs Debian's ffmpeg package (the independent decoder of these tests)");
    name.to_string()
}

struct TempFile(PathBuf);

impl TempFile {
    fn new(bytes: &[u8], ext: &str) -> TempFile {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("gsv-codec-test-{}-{k}.{ext}", std::process::id()));
        std::fs::File::create(&p).and_then(|mut f| f.write_all(bytes)).expect("write temp file");
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Debug)]
struct Probe {
    codec: String,
    rate: u32,
    channels: u32,
}

fn probe(file: &TempFile, raw_rate: Option<u32>) -> Probe {
    let mut cmd = Command::new(tool("ffprobe"));
    cmd.args(["-v", "error"]);
    if let Some(r) = raw_rate {
        cmd.args(["-f", "s16le", "-ar", &r.to_string(), "-ac", "1"]);
    }
    let out = cmd.args(["-show_streams", "-of", "json"]).arg(&file.0).output().expect("run ffprobe");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let streams = v["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 1, "one audio stream expected: {v}");
    let s = &streams[0];
    Probe {
        codec: s["codec_name"].as_str().unwrap_or("").to_string(),
        rate: s["sample_rate"].as_str().and_then(|r| r.parse().ok()).unwrap_or(0),
        channels: s["channels"].as_u64().unwrap_or(0) as u32,
    }
}

/// Decodes with ffmpeg to PCM16 mono at the stream's own rate. `strict`: any decoder message fails.
fn ffdecode(file: &TempFile, raw_rate: Option<u32>, strict: bool) -> Vec<i16> {
    let mut cmd = Command::new(tool("ffmpeg"));
    cmd.args(["-nostdin", "-hide_banner", "-v", "error"]);
    if strict {
        cmd.args(["-xerror", "-err_detect", "crccheck+bitstream+buffer"]);
    }
    if let Some(r) = raw_rate {
        cmd.args(["-f", "s16le", "-ar", &r.to_string(), "-ac", "1"]);
    }
    let out = cmd.arg("-i").arg(&file.0).args(["-f", "s16le", "-acodec", "pcm_s16le", "-"]).output().expect("run ffmpeg");
    assert!(out.status.success(), "ffmpeg could not decode: {}", String::from_utf8_lossy(&out.stderr));
    if strict {
        assert!(out.stderr.is_empty(), "decoder reported: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.stdout.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// What ffprobe must report and how long the decoded audio must be.
struct Expect {
    codec: &'static str,
    rate: u32,
    /// Decoded length: `len` plus `extra` (priming/delay the container cannot carry), within `frame`.
    len: usize,
    extra: usize,
    frame: usize,
}

fn expect(format: AudioFormat, in_rate: u32, n: usize, delivery: Delivery) -> Expect {
    let rate = format.output_rate(in_rate);
    let len = (n as u64 * rate as u64 + in_rate as u64 / 2) as usize / in_rate as usize;
    match format {
        AudioFormat::Wav => Expect { codec: "pcm_s16le", rate, len, extra: 0, frame: 0 },
        AudioFormat::Raw => Expect { codec: "pcm_s16le", rate, len, extra: 0, frame: 0 },
        AudioFormat::Flac => Expect { codec: "flac", rate, len, extra: 0, frame: 0 },
        // granule positions trim both ends exactly (a resampled length may differ by one sample)
        AudioFormat::OggVorbis => Expect { codec: "vorbis", rate, len, extra: 0, frame: 1 },
        AudioFormat::OggOpus => Expect { codec: "opus", rate, len, extra: 0, frame: 1 },
        // LAME tag (whole files): exact; a stream: LAME's delay (576 + 529) and the last frame's padding
        AudioFormat::Mp3 => {
            let frame = if rate >= 32_000 { 1152 } else { 576 };
            match delivery {
                Delivery::Whole => Expect { codec: "mp3", rate, len, extra: 0, frame: 1 },
                Delivery::Stream => Expect { codec: "mp3", rate, len, extra: 1105, frame },
            }
        }
        // ADTS: FFmpeg's 1024-sample priming comes out as leading silence; the last frame is padded
        AudioFormat::Aac => Expect { codec: "aac", rate, len, extra: 1024, frame: 1024 },
    }
}

/// Least-squares amplitude of a sinusoid at `f` over `x` (at `rate`), and the residual energy share
/// after removing both tones: a lag-free content check that works for any codec delay.
fn tone_fit(x: &[i16], rate: u32) -> (f64, f64, f64) {
    // skip the edges (priming, fades of the codec's first/last block)
    let skip = (rate as usize / 10).min(x.len() / 4);
    let body: Vec<f64> = x[skip..x.len() - skip].iter().map(|&s| s as f64 / 32768.0).collect();
    let n = body.len() as f64;
    let mut fitted = body.clone();
    let mut amps = [0.0; 2];
    for (k, f) in [F1, F2].iter().enumerate() {
        let (mut s, mut c) = (0.0, 0.0);
        for (i, v) in body.iter().enumerate() {
            let ph = std::f64::consts::TAU * f * (i + skip) as f64 / rate as f64;
            s += v * ph.sin();
            c += v * ph.cos();
        }
        let (a, b) = (2.0 * s / n, 2.0 * c / n);
        amps[k] = (a * a + b * b).sqrt();
        for (i, v) in fitted.iter_mut().enumerate() {
            let ph = std::f64::consts::TAU * f * (i + skip) as f64 / rate as f64;
            *v -= a * ph.sin() + b * ph.cos();
        }
    }
    let total: f64 = body.iter().map(|v| v * v).sum();
    let resid: f64 = fitted.iter().map(|v| v * v).sum();
    (amps[0], amps[1], resid / total.max(1e-12))
}

fn check_decoded(label: &str, format: AudioFormat, pcm: &[i16], bytes: &[u8], in_rate: u32, delivery: Delivery, forced: Option<u32>) {
    let file = TempFile::new(bytes, format.extension());
    let e = expect(format, forced.unwrap_or(in_rate), pcm.len() * forced.unwrap_or(in_rate) as usize / in_rate as usize, delivery);
    let raw_rate = (format == AudioFormat::Raw).then_some(e.rate);
    let p = probe(&file, raw_rate);
    assert_eq!(p.codec, e.codec, "{label}: codec");
    assert_eq!(p.rate, e.rate, "{label}: sample rate");
    assert_eq!(p.channels, 1, "{label}: channels");
    // A streamed WAV says 0xFFFFFFFF bytes: ffmpeg flags its short last read as a corrupt packet, so
    // that one is decoded leniently (and must then still be bit-exact, below).
    let strict = !(format == AudioFormat::Wav && delivery == Delivery::Stream);
    let dec = ffdecode(&file, raw_rate, strict);
    let want = e.len + e.extra;
    let diff = dec.len() as i64 - want as i64;
    assert!(diff.unsigned_abs() as usize <= e.frame, "{label}: decoded {} samples, expected {} (+{} priming) within {}", dec.len(), e.len, e.extra, e.frame);
    eprintln!("{label}: {} bytes, {} Hz, decoded {} samples for {} pushed (+{} priming)", bytes.len(), p.rate, dec.len(), e.len, e.extra);
    if format.lossless() && forced.is_none() {
        assert!(dec == pcm, "{label}: lossless format not bit-exact");
    }
    let (a1, a2, resid) = tone_fit(&dec, e.rate);
    let want_amp = AMP;
    for (a, f) in [(a1, F1), (a2, F2)] {
        assert!((a - want_amp).abs() < 0.15 * want_amp, "{label}: tone {f} Hz amplitude {a:.4}, expected {want_amp}");
    }
    assert!(resid < 0.03, "{label}: residual energy {resid:.4} after removing the tones");
}

fn stream_all(format: AudioFormat, in_rate: u32, opts: EncoderOptions, pieces: &[&[i16]]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut e = Encoder::new(format, in_rate, opts).unwrap();
    let outs: Vec<Vec<u8>> = pieces.iter().map(|p| e.push(p).unwrap()).collect();
    let fin = e.finish().unwrap();
    assert!(fin.patches.is_empty(), "{format:?}: a stream has no patches");
    (outs, fin.tail)
}

#[test]
fn every_format_decodes_with_ffmpeg_at_32k_and_24k() {
    for in_rate in [32_000u32, 24_000] {
        let pcm = tones(in_rate as usize * 17 / 10 + 321, in_rate);
        for format in ALL_FORMATS.into_iter().filter(|f| f.available()) {
            // whole file (patches applied)
            let whole = encode_whole(format, in_rate, &pcm, EncoderOptions::default()).unwrap();
            check_decoded(&format!("{format:?} {in_rate} Hz whole"), format, &pcm, &whole, in_rate, Delivery::Whole, None);
            // stream in segment-sized pieces
            let pieces: Vec<&[i16]> = pcm.chunks(9_600).collect();
            let (outs, tail) = stream_all(format, in_rate, EncoderOptions::default(), &pieces);
            let mut all: Vec<u8> = outs.concat();
            all.extend_from_slice(&tail);
            check_decoded(&format!("{format:?} {in_rate} Hz stream"), format, &pcm, &all, in_rate, Delivery::Stream, None);
        }
    }
}

#[test]
fn first_push_delivers_decodable_audio_before_finish() {
    let in_rate = 32_000;
    let pcm = tones(in_rate as usize, in_rate);
    for format in ALL_FORMATS.into_iter().filter(|f| f.available()) {
        let mut e = Encoder::new(format, in_rate, EncoderOptions::default()).unwrap();
        // a quarter of a second: the first segment or token chunk of a response is at least this
        let first = e.push(&pcm[..8_000]).unwrap();
        assert!(!first.is_empty(), "{format:?}: nothing after the first push");
        let file = TempFile::new(&first, format.extension());
        let raw_rate = (format == AudioFormat::Raw).then_some(e.output_rate());
        let got = ffdecode(&file, raw_rate, false);
        assert!(got.len() >= 1_000, "{format:?}: the first push's bytes decode to only {} samples", got.len());
        let second = e.push(&pcm[8_000..]).unwrap();
        assert!(!second.is_empty(), "{format:?}: nothing after the second push");
        e.finish().unwrap();
    }
}

#[test]
fn random_length_pushes_give_valid_streams() {
    let in_rate = 32_000;
    let pcm = tones(48_123, in_rate);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(10);
    for format in ALL_FORMATS.into_iter().filter(|f| f.available()) {
        let mut pieces: Vec<&[i16]> = Vec::new();
        let mut i = 0;
        while i < pcm.len() {
            let n = match rng.random_range(0..10) {
                0 => 0,
                1 => 1,
                _ => rng.random_range(2..4_000),
            }
            .min(pcm.len() - i);
            pieces.push(&pcm[i..i + n]);
            i += n;
        }
        let (outs, tail) = stream_all(format, in_rate, EncoderOptions::default(), &pieces);
        let mut all = outs.concat();
        all.extend_from_slice(&tail);
        check_decoded(&format!("{format:?} random pushes"), format, &pcm, &all, in_rate, Delivery::Stream, None);
    }
}

#[test]
fn openai_pcm_is_resampled_to_24k() {
    let spec = AudioFormat::from_openai(Some("pcm")).unwrap();
    let in_rate = 32_000;
    let pcm = tones(50_000, in_rate);
    let opts = EncoderOptions { sample_rate: spec.sample_rate, ..Default::default() };
    let mut e = Encoder::new(spec.format, in_rate, opts).unwrap();
    assert_eq!(e.output_rate(), 24_000);
    let mut bytes = Vec::new();
    for p in pcm.chunks(3_000) {
        bytes.extend(e.push(p).unwrap());
    }
    bytes.extend(e.finish().unwrap().tail);
    assert_eq!(bytes.len() / 2, 37_500, "n * 24000 / 32000 samples");
    check_decoded("openai pcm", spec.format, &pcm, &bytes, in_rate, Delivery::Stream, Some(24_000));
}

#[test]
fn whole_files_carry_their_length() {
    let in_rate = 32_000;
    let pcm = tones(40_000, in_rate);
    // FLAC: the STREAMINFO rewritten at finish has the total sample count and an MD5
    let flac = encode_whole(AudioFormat::Flac, in_rate, &pcm, EncoderOptions::default()).unwrap();
    assert_eq!(&flac[..4], b"fLaC");
    let si = &flac[8..8 + 34];
    let total = (((si[13] & 0x0f) as u64) << 32) | u32::from_be_bytes(si[14..18].try_into().unwrap()) as u64;
    assert_eq!(total, 40_000);
    assert!(si[18..34].iter().any(|&b| b != 0), "MD5 written");
    let flac_stream = {
        let (outs, tail) = stream_all(AudioFormat::Flac, in_rate, EncoderOptions::default(), &[&pcm]);
        [outs.concat(), tail].concat()
    };
    let si = &flac_stream[8..8 + 34];
    assert_eq!(u32::from_be_bytes(si[14..18].try_into().unwrap()), 0, "a stream's total is unknown");
    // MP3: the first frame of a whole file is LAME's Info tag
    let mp3 = encode_whole(AudioFormat::Mp3, in_rate, &pcm, EncoderOptions::default()).unwrap();
    assert!(mp3[..600].windows(4).any(|w| w == b"Info"), "LAME Info tag in the first frame");
    let (outs, tail) = stream_all(AudioFormat::Mp3, in_rate, EncoderOptions::default(), &[&pcm]);
    let mp3s = [outs.concat(), tail].concat();
    assert!(!mp3s[..600].windows(4).any(|w| w == b"Info" || w == b"Xing"), "no tag in a stream");
    // WAV: real sizes
    let wav = encode_whole(AudioFormat::Wav, in_rate, &pcm, EncoderOptions::default()).unwrap();
    assert_eq!(u32::from_le_bytes(wav[40..44].try_into().unwrap()), 80_000);
}

#[test]
fn bitrate_option_reaches_the_codec() {
    let in_rate = 32_000;
    // 2 s of seeded noise at -12 dBFS: unlike tones, it needs every bit the codec is given
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let pcm: Vec<i16> = (0..64_000).map(|_| rng.random_range(-8_000i16..8_000)).collect();
    for (format, low, high) in [(AudioFormat::Mp3, 64_000, 160_000), (AudioFormat::Aac, 96_000, 192_000), (AudioFormat::OggOpus, 24_000, 96_000)] {
        if !format.available() {
            continue;
        }
        let size = |b: u32| encode_whole(format, in_rate, &pcm, EncoderOptions { bitrate: Some(b), ..Default::default() }).unwrap().len();
        let (s_low, s_high) = (size(low), size(high));
        assert!(s_high as f64 > 1.3 * s_low as f64, "{format:?}: {s_low} bytes at {low} b/s vs {s_high} at {high}");
        // roughly the asked rate (2 s of audio): within a factor of 1.5
        let kbps = s_high as f64 * 8.0 / 2.0;
        assert!(kbps > high as f64 / 1.5 && kbps < high as f64 * 1.5, "{format:?}: {kbps} b/s for {high}");
    }
}
