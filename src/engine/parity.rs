//! Parity against a golden folder (`../shared/golden` and sets of its layout): manifest-driven (its `arrays` and `inputs`).
//!
//! Each check yields one [`Check`]: `PASS|FAIL name max_err=.. tol=..`. Float checks report the max
//! absolute difference with a tolerance `atol + rtol * max|ref|`; id checks count mismatches (tol 0).
//!
//! GPT token checks: we keep every generated token; upstream's callers take `y[:, -idx:]`, which after
//! an early stop drops the first generated token. So we compare our tokens with `y_full[P:]` (all
//! generated tokens), our upstream-style slice (last `idx` tokens) with `*_pred_semantic`, and `idx`.
//!
//! A set holding several SoVITS models (`../shared/golden-v2pro`: a v2Pro and a v2ProPlus one) keeps each
//! model's arrays under `<model_version>/` (`v2Pro/decode_audio`); [`run`] reads the bundle's version's arrays
//! first and the shared ones otherwise, as `python -m export verify` does, and fails (not skips) when the set has
//! per-version arrays but none for the bundle's version. v2Pro/v2ProPlus bundles add, like verify: the `sv`
//! graph on the golden 32 kHz signal (its 16 kHz signal, Kaldi fbank and embedding), `ref_enc` on the golden
//! spectrogram + embedding (`ge_refenc`, `sv_proj`, the fused `ge`), the same with the graph's own embedding,
//! and the decoder's `ge512`; plus, Rust only, the embedding of our own 32 kHz signal decoded from the reference
//! file and the voice's fused `ge` as the engine computes a voice ([`Engine::voice_uncached`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::Deserialize;

use super::Engine;
use crate::gpt::{GenerateConfig, GptInput, SamplingParams};
use crate::npy;
use crate::reference::SpecParams;
use crate::vocoder::{self, DecodeParams, Int16Scale, Speaker};

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub max_err: f64,
    pub tol: f64,
    pub note: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} max_err={:.3e} tol={:.3e}", if self.pass { "PASS" } else { "FAIL" }, self.name, self.max_err, self.tol)?;
        if !self.note.is_empty() {
            write!(f, " ({})", self.note)?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct ArrayEntry {
    file: String,
    shape: Vec<usize>,
}

#[derive(Debug, Deserialize)]
struct GoldenManifest {
    arrays: BTreeMap<String, ArrayEntry>,
    inputs: serde_json::Value,
}

pub struct Golden {
    pub dir: PathBuf,
    m: GoldenManifest,
    /// `"<model_version>/"` when reading one model's arrays of a several-model set ([`Golden::for_version`]).
    prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ParityError {
    #[error("golden: {0}")]
    Golden(String),
    #[error(transparent)]
    Npy(#[from] npy::NpyError),
}

impl Golden {
    pub fn open(dir: &Path) -> Result<Golden, ParityError> {
        let p = dir.join("manifest.json");
        let t = std::fs::read_to_string(&p).map_err(|e| ParityError::Golden(format!("{}: {e}", p.display())))?;
        let m: GoldenManifest = serde_json::from_str(&t).map_err(|e| ParityError::Golden(format!("{}: {e}", p.display())))?;
        Ok(Golden { dir: dir.to_path_buf(), m, prefix: String::new() })
    }
    /// The model versions a several-model set keeps arrays for (the `<version>/` prefixes of its array names).
    pub fn versions(&self) -> Vec<String> {
        let mut v: Vec<String> = self.m.arrays.keys().filter_map(|k| k.split_once('/').map(|(p, _)| p.to_string())).collect();
        v.dedup();
        v
    }
    /// This set read for a bundle of `model_version`: its `<model_version>/` arrays first, then the shared ones.
    /// `None` when the set keeps per-version arrays but none for this version.
    pub fn for_version(&self, model_version: &str) -> Option<Golden> {
        let versions = self.versions();
        let prefix = if versions.iter().any(|v| v == model_version) {
            format!("{model_version}/")
        } else if versions.is_empty() {
            String::new()
        } else {
            return None;
        };
        let m = GoldenManifest {
            arrays: self.m.arrays.iter().map(|(k, e)| (k.clone(), ArrayEntry { file: e.file.clone(), shape: e.shape.clone() })).collect(),
            inputs: self.m.inputs.clone(),
        };
        Some(Golden { dir: self.dir.clone(), m, prefix })
    }
    /// Whether array `name` is in the manifest (this version's or shared).
    pub fn has(&self, name: &str) -> bool {
        self.m.arrays.contains_key(&format!("{}{name}", self.prefix)) || self.m.arrays.contains_key(name)
    }
    pub fn array(&self, name: &str) -> Result<npy::Npy, ParityError> {
        let versioned = format!("{}{name}", self.prefix);
        let e = self
            .m
            .arrays
            .get(&versioned)
            .or_else(|| self.m.arrays.get(name))
            .ok_or_else(|| ParityError::Golden(format!("array `{versioned}` not in manifest")))?;
        let a = npy::read(&self.dir.join(&e.file))?;
        if a.shape != e.shape {
            return Err(ParityError::Golden(format!("{name}: shape {:?} differs from manifest {:?}", a.shape, e.shape)));
        }
        Ok(a)
    }
    pub fn input_str(&self, key: &str) -> Option<&str> {
        self.m.inputs.get(key).and_then(|v| v.as_str())
    }
    /// A file the manifest's `inputs` names, relative to the set (`"ref_audio/x.wav"`; a note after the path, as
    /// in `"ref_audio/x.wav (copy of ...)"`, is ignored).
    pub fn input_path(&self, key: &str) -> Option<PathBuf> {
        let v = self.input_str(key)?;
        let whole = self.dir.join(v);
        if whole.is_file() {
            return Some(whole);
        }
        let first = v.split(" (").next().unwrap_or(v).trim();
        Some(self.dir.join(first))
    }
    pub fn input_i64(&self, key: &str) -> Option<i64> {
        self.m.inputs.get(key).and_then(|v| v.as_i64())
    }
    pub fn input_f64_list(&self, key: &str) -> Vec<f64> {
        match self.m.inputs.get(key) {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_f64()).collect(),
            Some(v) => v.as_f64().into_iter().collect(),
            None => vec![],
        }
    }
}

/// numpy `allclose` semantics: every element within `atol + rtol * |ref|`. Reports the max abs error and, as
/// `tol`, the allowance at the element that used most of its allowance.
fn float_check(name: &str, ours: &[f32], reference: &[f32], atol: f64, rtol: f64) -> Check {
    if ours.len() != reference.len() {
        return Check { name: name.into(), pass: false, max_err: f64::INFINITY, tol: atol, note: format!("length {} vs {}", ours.len(), reference.len()) };
    }
    let mut max_err = 0.0f64;
    let mut worst_ratio = 0.0f64;
    let mut worst_tol = atol;
    for (&a, &b) in ours.iter().zip(reference) {
        let d = (a as f64 - b as f64).abs();
        let d = if d.is_nan() { f64::INFINITY } else { d };
        let allow = atol + rtol * (b as f64).abs();
        max_err = max_err.max(d);
        if d / allow > worst_ratio {
            worst_ratio = d / allow;
            worst_tol = allow;
        }
    }
    let note = format!("worst element at {:.0}% of its allowance atol {atol:e} + rtol {rtol:e}*|ref|", worst_ratio * 100.0);
    Check { name: name.into(), pass: worst_ratio <= 1.0, max_err, tol: worst_tol, note }
}

fn snr_db(ours: &[f32], reference: &[f32]) -> f64 {
    let (mut sig, mut err) = (0.0f64, 0.0f64);
    for (&a, &b) in ours.iter().zip(reference) {
        sig += (b as f64) * (b as f64);
        err += (a as f64 - b as f64).powi(2);
    }
    if ours.len() != reference.len() {
        return f64::NEG_INFINITY;
    }
    if err == 0.0 { f64::INFINITY } else { 10.0 * (sig / err).log10() }
}

fn id_check(name: &str, ours: &[i64], reference: &[i64]) -> Check {
    let mut mism = ours.iter().zip(reference).filter(|(a, b)| a != b).count();
    mism += ours.len().abs_diff(reference.len());
    let note = if ours.len() != reference.len() { format!("length {} vs {}", ours.len(), reference.len()) } else { String::new() };
    Check { name: name.into(), pass: mism == 0, max_err: mism as f64, tol: 0.0, note }
}

fn fail(name: &str, msg: String) -> Check {
    Check { name: name.into(), pass: false, max_err: f64::INFINITY, tol: 0.0, note: msg.replace('\n', " ") }
}

/// Run every check; `report` is called with each as it completes.
pub fn run(engine: &mut Engine, golden: &Golden, report: &mut dyn FnMut(&Check)) -> Vec<Check> {
    let mut out = Vec::new();
    let mut push = |c: Check, out: &mut Vec<Check>| {
        report(&c);
        out.push(c);
    };
    let version = engine.manifest().model_version.clone();
    let Some(golden) = golden.for_version(&version) else {
        push(fail("model_version", format!("the golden set holds arrays for {}, not for the bundle's {version}", golden.versions().join(", "))), &mut out);
        return out;
    };
    let golden = &golden;
    let is_v2pro = engine.manifest().is_v2pro();
    macro_rules! tryc {
        ($name:expr, $e:expr) => {
            match $e {
                Ok(v) => v,
                Err(err) => {
                    push(fail($name, err.to_string()), &mut out);
                    return out;
                }
            }
        };
    }
    // features and logits: atol 1e-4, rtol 1e-3 (golden README); waveforms: max abs <= 1e-3.
    let (fa, fr) = (1e-4, 1e-3);
    let man = engine.manifest().clone();
    let e_dim = man.ssl_dim();
    let bins = man.spec_bins();
    let sp = SpecParams { n_fft: man.filter_length, hop: man.hop_length, win: man.win_length };

    // 0. reference audio from the recording itself (inputs.reference_wav): resamplers and spectrogram
    let mut native_wav16k: Option<Vec<f32>> = None;
    let mut native_wav32k: Option<Vec<f32>> = None;
    let native_path = golden.input_path("reference_wav");
    if let Some(path) = &native_path {
        match crate::reference::load_file(path) {
            Ok(audio) => {
                match crate::reference::resample_librosa(&audio, man.hubert_rate) {
                    Ok(w16) => {
                        if let Ok(r) = golden.array("wav16k") {
                            let mut c = float_check("reference 16 kHz (soxr_hq)", &w16, &r.f32(), 1e-4, 0.0);
                            c.note = format!("SNR {:.1} dB", snr_db(&w16, &r.f32()));
                            push(c, &mut out);
                        }
                        let mut padded = w16.clone();
                        padded.resize(w16.len() + crate::reference::HUBERT_PAD_SAMPLES, 0.0);
                        native_wav16k = Some(padded);
                    }
                    Err(e) => push(fail("reference 16 kHz (soxr_hq)", e.to_string()), &mut out),
                }
                match crate::reference::vits_input(&audio, man.sample_rate) {
                    Ok(w32) => {
                        if let Ok(r) = golden.array("wav32k") {
                            let mut c = float_check("reference 32 kHz (torchaudio sinc)", &w32, &r.f32(), 1e-4, 0.0);
                            c.note = format!("SNR {:.1} dB", snr_db(&w32, &r.f32()));
                            push(c, &mut out);
                        }
                        if let (Ok(spec), Ok(r)) = (crate::reference::spectrogram(&w32, sp), golden.array("refer_spec")) {
                            push(float_check("spectrogram (from our 32 kHz)", &spec.data, &r.f32(), fa, fr), &mut out);
                        }
                        native_wav32k = Some(w32);
                    }
                    Err(e) => push(fail("reference 32 kHz (torchaudio sinc)", e.to_string()), &mut out),
                }
            }
            Err(e) => push(fail("reference decode", e.to_string()), &mut out),
        }
    }
    if let (Ok(w32), Ok(r)) = (golden.array("wav32k"), golden.array("refer_spec")) {
        match crate::reference::spectrogram(&w32.f32(), sp) {
            Ok(spec) => push(float_check("spectrogram (from golden wav32k)", &spec.data, &r.f32(), fa, fr), &mut out),
            Err(e) => push(fail("spectrogram (from golden wav32k)", e.to_string()), &mut out),
        }
    }

    // 1. SSL
    let wav = tryc!("ssl", golden.array("wav16k_padded")).f32();
    let ssl = tryc!("ssl", engine.hubert_mut().ssl(&wav));
    let ssl_ref = tryc!("ssl", golden.array("ssl_content")).f32();
    push(float_check("ssl", ssl.as_slice().unwrap_or(&ssl.iter().copied().collect::<Vec<_>>()), &ssl_ref, fa, fr), &mut out);

    // 2. prompt codes from the golden SSL, from ours, and from the native recording
    let ssl_g = tryc!("prompt_codes", Array2::from_shape_vec((e_dim, ssl_ref.len() / e_dim), ssl_ref.clone()).map_err(|e| e.to_string()));
    let (codes, proj) = tryc!("prompt_codes", engine.hubert_mut().vq_encode(ssl_g.view()));
    let codes_ref = tryc!("prompt_codes", golden.array("prompt_semantic")).i64();
    push(id_check("prompt_codes", &codes, &codes_ref), &mut out);
    let proj_ref = tryc!("ssl_proj", golden.array("ssl_proj_out")).f32();
    push(float_check("ssl_proj", &proj.iter().copied().collect::<Vec<_>>(), &proj_ref, fa, fr), &mut out);
    let (codes2, _) = tryc!("prompt_codes_chain", engine.hubert_mut().vq_encode(ssl.view()));
    push(id_check("prompt_codes_chain", &codes2, &codes_ref), &mut out);
    if let Some(w) = &native_wav16k {
        // informational: the native-wav chain goes through our soxr port; report agreement, pass when lengths match
        match engine.hubert_mut().prompt_codes(w) {
            Ok(c) => {
                let same = c.iter().zip(&codes_ref).filter(|(a, b)| a == b).count();
                let ok = c.len() == codes_ref.len();
                push(
                    Check {
                        name: "prompt_codes_from_native_wav".into(),
                        pass: ok,
                        max_err: (codes_ref.len() - same.min(codes_ref.len())) as f64,
                        tol: codes_ref.len() as f64,
                        note: format!("agreement {:.1}% ({same}/{}), reported, not required", 100.0 * same as f64 / codes_ref.len().max(1) as f64, codes_ref.len()),
                    },
                    &mut out,
                );
            }
            Err(e) => push(fail("prompt_codes_from_native_wav", e.to_string()), &mut out),
        }
    }

    // 2b. BERT hidden_states[-3] (the text frontend's checks add the tokenizer and word2ph expansion)
    if let (Ok(ids), Ok(r)) = (golden.array("prompt_bert_input_ids"), golden.array("prompt_bert_hidden_state_m3")) {
        let ids = ids.i64();
        let ones = vec![1i64; ids.len()];
        let zeros = vec![0i64; ids.len()];
        match engine.bert_mut().hidden_states(&ids, &ones, &zeros) {
            Ok(h) => push(float_check("bert_hidden_state_m3", &h.iter().copied().collect::<Vec<_>>(), &r.f32(), fa, fr), &mut out),
            Err(e) => push(fail("bert_hidden_state_m3", e.to_string()), &mut out),
        }
    }

    // 3a. v2Pro: speaker verification on the golden 32 kHz signal (16 kHz signal, Kaldi fbank, embedding), and on
    // ours from the reference file
    let mut own_emb: Option<Vec<f32>> = None;
    let mut sv_ref: Option<Vec<f32>> = None;
    if is_v2pro {
        let w32 = tryc!("sv_emb", golden.array("wav32k")).f32();
        let emb_ref = tryc!("sv_emb", golden.array("sv_emb")).f32();
        let mut sv = tryc!("sv_emb", engine.sv_mut().ok_or("the engine did not load the sv graph"));
        let o = tryc!("sv_emb", sv.run(&w32, true));
        for (name, arr) in &o.extras {
            let gname = format!("sv_{name}");
            if golden.has(&gname) {
                match golden.array(&gname) {
                    Ok(r) => push(float_check(&gname, &arr.iter().copied().collect::<Vec<_>>(), &r.f32(), fa, fr), &mut out),
                    Err(e) => push(fail(&gname, e.to_string()), &mut out),
                }
            }
        }
        push(float_check("sv_emb", &o.sv_emb, &emb_ref, fa, fr), &mut out);
        if let Some(w) = &native_wav32k {
            match sv.embedding(w) {
                Ok(e) => push(float_check("sv_emb (from our 32 kHz of the reference file)", &e, &emb_ref, fa, fr), &mut out),
                Err(e) => push(fail("sv_emb (from our 32 kHz of the reference file)", e.to_string()), &mut out),
            }
        }
        own_emb = Some(o.sv_emb);
        sv_ref = Some(emb_ref);
    }

    // 3b. ref_enc (v2Pro: with the golden embedding, then with the sv graph's own: the fused ge)
    let spec = tryc!("ref_enc", golden.array("refer_spec"));
    let f = *spec.shape.last().unwrap_or(&0);
    let spec = tryc!("ref_enc", Array2::from_shape_vec((bins, f), spec.f32()).map_err(|e| e.to_string()));
    let (speaker, extras) = tryc!("ref_enc", engine.vocoder_mut().speaker_with_extras(spec.view(), sv_ref.as_deref(), true));
    let ge_ref = tryc!("ref_enc", golden.array("decode_ge")).f32();
    for (name, arr) in &extras {
        let gname = format!("decode_{name}");
        match golden.array(&gname) {
            Ok(r) => push(float_check(&format!("ref_enc_{name}"), &arr.iter().copied().collect::<Vec<_>>(), &r.f32(), fa, fr), &mut out),
            Err(e) => push(fail(&format!("ref_enc_{name}"), e.to_string()), &mut out),
        }
    }
    push(float_check(if is_v2pro { "ref_enc_ge (fused)" } else { "ref_enc_ge" }, &speaker.ge, &ge_ref, fa, fr), &mut out);
    if let Some(e) = &own_emb {
        match engine.vocoder_mut().speaker(spec.view(), Some(e)) {
            Ok(s) => push(float_check("ref_enc_ge (fused, sv graph's own embedding)", &s.ge, &ge_ref, fa, fr), &mut out),
            Err(e) => push(fail("ref_enc_ge (fused, sv graph's own embedding)", e.to_string()), &mut out),
        }
    }
    // 3c. the voice as the server computes it (reference file -> voice features; the engine's cache is left alone),
    // speaker vector only (its prompt codes go through the soxr port: reported above, not required)
    if let Some(path) = &native_path {
        match engine.voice_uncached(&super::RefAudio::Path(path.clone()), &|| false) {
            Ok(v) => push(float_check("voice ge (engine, from the reference file)", &v.speaker.ge, &ge_ref, fa, fr), &mut out),
            Err(e) => push(fail("voice ge (engine, from the reference file)", e.to_string()), &mut out),
        }
    }

    // 4. GPT
    let ids = tryc!("gpt", golden.array("gpt_all_phoneme_ids")).i64();
    let bert_a = tryc!("gpt", golden.array("gpt_bert"));
    let bert = tryc!("gpt", Array2::from_shape_vec((man.bert_hidden(), ids.len()), bert_a.f32()).map_err(|e| e.to_string()));
    let prompt = tryc!("gpt", golden.array("gpt_prompt_semantic")).i64();
    let early = golden.input_i64("early_stop_num").unwrap_or(-1);
    let mut first_done = false;
    let mut rps = golden.input_f64_list("repetition_penalty");
    if rps.is_empty() {
        rps = vec![1.35, 1.0];
    }
    for rp64 in rps {
        let rp = rp64 as f32;
        // golden array tags: 1.35 -> rp135, 1.0 -> rp10 (digits of the shortest decimal with one decimal at least)
        let tag = format!("rp{}", format!("{rp64:?}").replace('.', ""));
        let cfg = GenerateConfig {
            params: SamplingParams { top_k: 1, top_p: 1.0, temperature: 1.0, repetition_penalty: rp },
            seed: 0,
            early_stop_num: early,
            max_steps: crate::gpt::MAX_STEPS,
            record_logits: true,
            ignore_eos: false,
        };
        let name = format!("gpt_{tag}");
        let input = GptInput { phone_ids: &ids, bert: bert.view(), prompt: &prompt };
        let gpt = tryc!(&name, engine.gpt_mut().ok_or("parity needs the engine's own GPT"));
        let res = tryc!(&name, gpt.generate(&input, &cfg, &mut |_| true));
        if !first_done {
            let fl = tryc!("gpt_first_step_logits", golden.array("gpt_first_step_logits")).f32();
            push(float_check("gpt_first_step_logits", &res.step_logits[0], &fl, fa, fr), &mut out);
            first_done = true;
        }
        let y_full = tryc!(&name, golden.array(&format!("gpt_{tag}_y_full"))).i64();
        let gen_ref = &y_full[prompt.len().min(y_full.len())..];
        let mut c = id_check(&format!("gpt_{tag}_tokens"), &res.tokens, gen_ref);
        c.note = format!("{} tokens, stop {:?}; vs y_full[P:]", res.tokens.len(), res.stop);
        push(c, &mut out);
        let idx_ref = tryc!(&name, golden.array(&format!("gpt_{tag}_idx"))).i64()[0];
        push(id_check(&format!("gpt_{tag}_idx"), &[res.idx as i64], &[idx_ref]), &mut out);
        let pred_ref = tryc!(&name, golden.array(&format!("gpt_{tag}_pred_semantic"))).i64();
        let k = res.idx.min(res.tokens.len());
        let mut c = id_check(&format!("gpt_{tag}_pred_semantic"), &res.tokens[res.tokens.len() - k..], &pred_ref);
        c.note = "upstream slice y[:, -idx:] of our tokens".into();
        push(c, &mut out);
        let sl = tryc!(&name, golden.array(&format!("gpt_{tag}_step_logits")));
        let v = sl.shape[1];
        let slv = sl.f32();
        let ours: Vec<f32> = res.step_logits.iter().flatten().copied().collect();
        let n = (slv.len() / v).min(res.step_logits.len());
        let mut c = float_check(&format!("gpt_{tag}_step_logits"), &ours[..n * v], &slv[..n * v], fa, fr);
        if n * v != slv.len() {
            c.pass = false;
            c.note = format!("{} steps vs {}", res.step_logits.len(), slv.len() / v);
        } else {
            c.note = format!("{n} steps");
        }
        push(c, &mut out);
    }

    // 5. decode
    let dcodes = tryc!("decode", golden.array("decode_codes")).i64();
    let dtext = tryc!("decode", golden.array("decode_text")).i64();
        let p0 = DecodeParams { noise_scale: 0.0, speed: 1.0, seed: 0 };
    let speaker = Speaker { ge: ge_ref };
    let d0 = tryc!("decode_audio", engine.vocoder_mut().decode(&dcodes, &dtext, &speaker, p0, None, true));
    let a_ref = tryc!("decode_audio", golden.array("decode_audio")).f32();
    push(float_check("decode_audio", &d0.audio, &a_ref, 1e-3, 0.0), &mut out);
    for (name, arr) in &d0.extras {
        let gname = format!("decode_{name}");
        if let Ok(r) = golden.array(&gname) {
            push(float_check(&gname, &arr.iter().copied().collect::<Vec<_>>(), &r.f32(), fa, fr), &mut out);
        }
    }
    let noise_a = tryc!("decode_noise0p5", golden.array("decode_noise"));
    let noise = tryc!("decode_noise0p5", Array2::from_shape_vec((noise_a.shape[1], noise_a.shape[2]), noise_a.f32()).map_err(|e| e.to_string()));
    let p5 = DecodeParams { noise_scale: 0.5, speed: 1.0, seed: 0 };
    let d5 = tryc!("decode_noise0p5", engine.vocoder_mut().decode(&dcodes, &dtext, &speaker, p5, Some(noise), false));
    let r5 = tryc!("decode_noise0p5", golden.array("decode_audio_noise0p5")).f32();
    push(float_check("decode_audio_noise0p5", &d5.audio, &r5, 1e-3, 0.0), &mut out);
    let ps = DecodeParams { noise_scale: 0.0, speed: 1.25, seed: 0 };
    let ds = tryc!("decode_speed1p25", engine.vocoder_mut().decode(&dcodes, &dtext, &speaker, ps, None, false));
    let rs = tryc!("decode_speed1p25", golden.array("decode_audio_speed1p25")).f32();
    push(float_check("decode_audio_speed1p25", &ds.audio, &rs, 1e-3, 0.0), &mut out);

    // 6. final int16 (webui scaling, one segment)
    let sr = engine.sample_rate();
    let pcm = vocoder::postprocess(std::slice::from_ref(&d0.audio), sr, 0.3, Int16Scale::Webui);
    let w_ref = tryc!("webui_output_int16", golden.array("webui_output_int16")).i64();
    let ours: Vec<f32> = pcm.iter().map(|&x| x as f32).collect();
    let refs: Vec<f32> = w_ref.iter().map(|&x| x as f32).collect();
    push(float_check("webui_output_int16", &ours, &refs, 2.0, 0.0), &mut out);
    out
}

/// The text frontend + BERT of the engine against the set's own text arrays (`prompt_phone_ids`,
/// `prompt_bert_features`, `target_phone_ids`, `target_bert_features`), for the manifest's `inputs` texts, planned
/// as upstream's api_v2 path made them (`TextPreprocessor`: the transcript with its end punctuation, the target cut
/// by `text_split_method`, the segments' phones concatenated). Sets with a `text_frontend/` folder are checked
/// case by case by [`crate::text::golden::check`] as well; this check is the one a set without that folder (the
/// v2Pro set, whose README says the v2 frontend goldens apply unchanged) still gets. Nothing is checked when the set
/// has neither the texts nor the arrays.
pub fn run_text(engine: &mut Engine, golden: &Golden, data: &crate::text::FrontendData, report: &mut dyn FnMut(&Check)) -> Vec<Check> {
    use super::{RefAudio, TextSplit, TtsRequest, V2Cut};
    use crate::text::Language;
    let mut out = Vec::new();
    let mut push = |c: Check, out: &mut Vec<Check>| {
        report(&c);
        out.push(c);
    };
    let (fa, fr) = (1e-4, 1e-3);
    let lang = |key: &str| golden.input_str(key).and_then(Language::from_code).map(Language::for_api_v2);
    let (Some(prompt), Some(target), Some(pl), Some(tl)) =
        (golden.input_str("prompt_text"), golden.input_str("target_text"), lang("prompt_language"), lang("target_language"))
    else {
        return out;
    };
    let cut = golden.input_str("text_split_method").and_then(V2Cut::parse).unwrap_or(V2Cut::Cut1);
    let mut req = TtsRequest::new(target, tl, RefAudio::Bytes(std::sync::Arc::new(Vec::new()), None), prompt, pl);
    req.split = TextSplit::V2(cut);
    let plan = match super::pipeline::plan(&req) {
        Ok(p) => p,
        Err(e) => {
            push(fail("text plan", e.to_string()), &mut out);
            return out;
        }
    };
    let mut one = |name: &str, texts: &[String], lang: Language, out: &mut Vec<Check>| {
        let (ids_name, bert_name) = (format!("{name}_phone_ids"), format!("{name}_bert_features"));
        if !golden.has(&ids_name) {
            return;
        }
        let mut ids = Vec::new();
        let mut bert: Vec<Array2<f32>> = Vec::new();
        for t in texts {
            match engine.text_features(data, t, lang) {
                Ok(f) => {
                    ids.extend(f.phone_ids);
                    bert.push(f.bert);
                }
                Err(e) => {
                    push(fail(&format!("text {ids_name}"), e.to_string()), out);
                    return;
                }
            }
        }
        match golden.array(&ids_name) {
            Ok(r) => push(id_check(&format!("text {ids_name}"), &ids, &r.i64()), out),
            Err(e) => push(fail(&format!("text {ids_name}"), e.to_string()), out),
        }
        if golden.has(&bert_name) {
            let views: Vec<_> = bert.iter().map(|a| a.view()).collect();
            match (ndarray::concatenate(ndarray::Axis(1), &views), golden.array(&bert_name)) {
                (Ok(b), Ok(r)) => push(float_check(&format!("text {bert_name}"), &b.iter().copied().collect::<Vec<_>>(), &r.f32(), fa, fr), out),
                (Err(e), _) => push(fail(&format!("text {bert_name}"), e.to_string()), out),
                (_, Err(e)) => push(fail(&format!("text {bert_name}"), e.to_string()), out),
            }
        }
    };
    one("prompt", std::slice::from_ref(&plan.prompt_text), pl, &mut out);
    one("target", &plan.segments, tl, &mut out);
    out
}
