//! Features of a request: the text's phones and BERT features, and the voice's prompt codes and speaker vector.
//!
//! * [`Engine::text_features`]: text + language -> phone ids `N` and BERT features `[H, N]` (H = 1024; BERT for
//!   Chinese pieces, `hidden_states[-3]` repeated per word2ph; zeros for other languages, as upstream does).
//! * [`Engine::voice`]: reference audio -> [`VoiceFeatures`]: prompt codes (25 Hz, from 16 kHz audio through
//!   HuBERT and the quantizer) and the [`Speaker`] (ref_enc on the 32 kHz spectrogram `[1025, F]`; for v2Pro and
//!   v2ProPlus also on the speaker-verification embedding that the `sv` graph computes from the same normalised
//!   32 kHz signal, so the cached speaker vector is the fused one and the 20480-d embedding is not kept).
//!
//! Both are cached in a [`FeatureCache`]: bounded LRUs behind a mutex, keyed by content (the sha256 of the
//! reference file's bytes; the prompt transcript and its language), shared by every engine of one model
//! generation (all workers of a server). Values are computed outside the lock, once: a second request for a key
//! that is being computed waits for that result instead of computing it again.
//!
//! A cache may have a [`VoiceStore`] behind it (the server's voice library): on a miss the store is asked first
//! (features persisted by an earlier process), and what is computed is handed to it. Its unit is the versioned
//! serialisation of [`VoiceFeatures`] ([`VoiceFeatures::to_bytes`] / [`VoiceFeatures::from_bytes`]): named,
//! typed arrays under a header that records the audio's and the bundle's sha256, so stale files are ignored.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use ndarray::{concatenate, Array2, Axis};

use super::{Engine, EngineError, RefAudio, Result};
use crate::reference::{self, ContentHash, ReferenceCache, SpecParams};
use crate::text::{self, FrontendData, Lang, Language, TextError};
use crate::vocoder::Speaker;

/// What a reference costs once: prompt codes (25 Hz) and the speaker vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceFeatures {
    pub prompt_codes: Vec<i64>,
    pub speaker: Speaker,
}

/// One named array of a persisted [`VoiceFeatures`].
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureArray {
    I64(Vec<i64>),
    F32(Vec<f32>),
}

/// Magic bytes of a persisted voice (`features/<bundle sha256>.gsvf` in a voice folder).
const FEATURES_MAGIC: &[u8; 8] = b"GSVVOICE";
/// Version of the container below. Adding a field to [`VoiceFeatures`] does not change it (fields are named);
/// changing what an existing field means does.
pub const FEATURES_FORMAT: u32 = 1;

/// Header of a persisted voice: what it was computed from and the arrays that follow.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct FeaturesHeader {
    format: u32,
    /// sha256 of the reference audio's bytes.
    audio_sha256: String,
    /// [`crate::bundle`] identity the features were computed with (sha256 of its manifest.json).
    bundle_sha256: String,
    /// `(name, dtype, length)` of each array, in file order.
    fields: Vec<(String, String, usize)>,
}

impl VoiceFeatures {
    /// The named arrays of these features. **A new field of `VoiceFeatures` (e.g. v2Pro's SV embedding) is one
    /// entry here and one in [`VoiceFeatures::from_fields`]**; files written before it simply lack the name, and
    /// `from_fields` decides whether that is acceptable (an optional field) or a miss (recompute).
    pub fn fields(&self) -> Vec<(&'static str, FeatureArray)> {
        vec![("prompt_codes", FeatureArray::I64(self.prompt_codes.clone())), ("speaker.ge", FeatureArray::F32(self.speaker.ge.clone()))]
    }

    /// Inverse of [`VoiceFeatures::fields`]; `None` when a required field is missing or has the wrong type.
    pub fn from_fields(fields: &std::collections::BTreeMap<String, FeatureArray>) -> Option<VoiceFeatures> {
        let prompt_codes = match fields.get("prompt_codes")? {
            FeatureArray::I64(v) => v.clone(),
            _ => return None,
        };
        let ge = match fields.get("speaker.ge")? {
            FeatureArray::F32(v) => v.clone(),
            _ => return None,
        };
        Some(VoiceFeatures { prompt_codes, speaker: Speaker { ge } })
    }

    /// The persisted form: magic, format, a JSON header (audio and bundle sha256, field list), then each array
    /// little-endian in header order.
    pub fn to_bytes(&self, audio_sha256: &str, bundle_sha256: &str) -> Vec<u8> {
        let fields = self.fields();
        let header = FeaturesHeader {
            format: FEATURES_FORMAT,
            audio_sha256: audio_sha256.to_string(),
            bundle_sha256: bundle_sha256.to_string(),
            fields: fields
                .iter()
                .map(|(n, a)| match a {
                    FeatureArray::I64(v) => (n.to_string(), "i64".to_string(), v.len()),
                    FeatureArray::F32(v) => (n.to_string(), "f32".to_string(), v.len()),
                })
                .collect(),
        };
        let h = serde_json::to_vec(&header).unwrap_or_default();
        let mut out = Vec::with_capacity(16 + h.len() + fields.len() * 1024);
        out.extend_from_slice(FEATURES_MAGIC);
        out.extend_from_slice(&FEATURES_FORMAT.to_le_bytes());
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        out.extend_from_slice(&h);
        for (_, a) in &fields {
            match a {
                FeatureArray::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                FeatureArray::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            }
        }
        out
    }

    /// Reads [`VoiceFeatures::to_bytes`]' output. `None` (= recompute) when the bytes are not such a file, are
    /// truncated, come from another format version, or were computed from other audio or another bundle.
    pub fn from_bytes(b: &[u8], audio_sha256: &str, bundle_sha256: &str) -> Option<VoiceFeatures> {
        if b.len() < 16 || &b[..8] != FEATURES_MAGIC {
            return None;
        }
        let format = u32::from_le_bytes(b[8..12].try_into().ok()?);
        let hlen = u32::from_le_bytes(b[12..16].try_into().ok()?) as usize;
        if format != FEATURES_FORMAT || b.len() < 16 + hlen {
            return None;
        }
        let header: FeaturesHeader = serde_json::from_slice(&b[16..16 + hlen]).ok()?;
        if header.format != FEATURES_FORMAT || header.audio_sha256 != audio_sha256 || header.bundle_sha256 != bundle_sha256 {
            return None;
        }
        let mut at = 16 + hlen;
        let mut fields = std::collections::BTreeMap::new();
        for (name, dtype, len) in header.fields {
            let bytes = len.checked_mul(8 / if dtype == "f32" { 2 } else { 1 })?;
            let chunk = b.get(at..at.checked_add(bytes)?)?;
            at += bytes;
            let arr = match dtype.as_str() {
                "i64" => FeatureArray::I64(chunk.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()),
                "f32" => FeatureArray::F32(chunk.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4]))).collect()),
                _ => return None,
            };
            fields.insert(name, arr);
        }
        if at != b.len() {
            return None;
        }
        VoiceFeatures::from_fields(&fields)
    }
}

/// Persistent storage of voice features behind a [`FeatureCache`] (the server's voice library). Keys: the sha256
/// of the reference audio and the bundle's identity. Only audio the store knows (a library voice) is stored;
/// errors are the store's to log, never the request's.
pub trait VoiceStore: Send + Sync {
    fn load(&self, audio: &ContentHash, bundle_sha256: &str) -> Option<VoiceFeatures>;
    fn save(&self, audio: &ContentHash, bundle_sha256: &str, features: &VoiceFeatures);
}

/// Phones and BERT features of one piece of text.
#[derive(Debug, Clone)]
pub struct TextFeatures {
    pub norm_text: String,
    pub phone_ids: Vec<i64>,
    /// `[H, N]`
    pub bert: Array2<f32>,
    /// Time spent in the BERT graph (included in the frontend time), for the request's timings.
    pub bert_ms: f64,
}

/// The shared caches of one model generation.
pub struct FeatureCache {
    voices: OnceLru<ContentHash, VoiceFeatures>,
    /// Keyed by (preprocessed transcript, language): the same voice sends the same prompt text with every request,
    /// so its BERT runs once.
    prompts: OnceLru<(String, Language), TextFeatures>,
    /// Voices encoded (the reference chain run, a cache miss), and of those the speaker-verification runs.
    voices_encoded: AtomicU64,
    sv_runs: AtomicU64,
    /// Persistent voices behind the LRU, with the bundle identity they are stored under.
    store: RwLock<Option<(Arc<dyn VoiceStore>, String)>>,
}

impl Default for FeatureCache {
    fn default() -> Self {
        FeatureCache::new(64)
    }
}

impl FeatureCache {
    /// Up to `capacity` voices and as many prompt transcripts.
    pub fn new(capacity: usize) -> FeatureCache {
        FeatureCache { voices: OnceLru::new(capacity), prompts: OnceLru::new(capacity), voices_encoded: AtomicU64::new(0), sv_runs: AtomicU64::new(0), store: RwLock::new(None) }
    }

    /// Put `store` behind the voice LRU, for the bundle whose identity is `bundle_sha256`.
    pub fn set_store(&self, store: Arc<dyn VoiceStore>, bundle_sha256: String) {
        *self.store.write().unwrap_or_else(|e| e.into_inner()) = Some((store, bundle_sha256));
    }

    fn store(&self) -> Option<(Arc<dyn VoiceStore>, String)> {
        self.store.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Voices currently cached.
    pub fn voices(&self) -> usize {
        self.voices.len()
    }

    /// How many times a voice was computed (decode, HuBERT, ref_enc) for this cache, by any engine sharing it.
    pub fn voices_encoded(&self) -> u64 {
        self.voices_encoded.load(Ordering::Relaxed)
    }

    /// How many times the speaker-verification graph ran for this cache (v2Pro/v2ProPlus: once per voice).
    pub fn sv_runs(&self) -> u64 {
        self.sv_runs.load(Ordering::Relaxed)
    }
}

enum Slot<V> {
    Ready(Arc<V>),
    Pending(Arc<Pending<V>>),
}

impl<V> Clone for Slot<V> {
    fn clone(&self) -> Self {
        match self {
            Slot::Ready(v) => Slot::Ready(v.clone()),
            Slot::Pending(p) => Slot::Pending(p.clone()),
        }
    }
}

/// A computation in progress: `None` while running, then `Some(Some(v))`, or `Some(None)` if it failed.
struct Pending<V> {
    result: Mutex<Option<Option<Arc<V>>>>,
    done: Condvar,
}

/// An LRU whose values are computed once per key, outside its lock.
pub struct OnceLru<K, V> {
    map: Mutex<ReferenceCache<Slot<V>, K>>,
}

/// Resolves a pending slot when dropped without a value (the computation failed or panicked): waiters retry.
struct PendingGuard<'a, K: Hash + Eq + Clone, V> {
    lru: &'a OnceLru<K, V>,
    key: K,
    pending: Arc<Pending<V>>,
    value: Option<Arc<V>>,
}

impl<K: Hash + Eq + Clone, V> Drop for PendingGuard<'_, K, V> {
    fn drop(&mut self) {
        {
            let mut map = self.lru.map.lock().unwrap_or_else(|e| e.into_inner());
            let ours = matches!(map.get(&self.key), Some(Slot::Pending(p)) if Arc::ptr_eq(p, &self.pending));
            match &self.value {
                Some(v) => {
                    map.insert(self.key.clone(), Slot::Ready(v.clone()));
                }
                None if ours => {
                    map.remove(&self.key);
                }
                None => {}
            }
        }
        *self.pending.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.value.clone());
        self.pending.done.notify_all();
    }
}

impl<K: Hash + Eq + Clone, V> OnceLru<K, V> {
    pub fn new(capacity: usize) -> Self {
        OnceLru { map: Mutex::new(ReferenceCache::new(capacity)) }
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `key` and whether it was already there (or being computed by another caller), else
    /// `compute()`'s, which is then cached. `compute` runs without the lock held.
    pub fn get_or_compute<E>(&self, key: &K, compute: impl FnOnce() -> std::result::Result<V, E>) -> std::result::Result<(Arc<V>, bool), E> {
        let mut compute = Some(compute);
        loop {
            let slot = {
                let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
                match map.get(key) {
                    Some(s) => s.clone(),
                    None => {
                        // `compute` is still there: it is taken only here, and then we return
                        let Some(f) = compute.take() else { continue };
                        let pending = Arc::new(Pending { result: Mutex::new(None), done: Condvar::new() });
                        map.insert(key.clone(), Slot::Pending(pending.clone()));
                        drop(map);
                        let mut guard = PendingGuard { lru: self, key: key.clone(), pending, value: None };
                        let v = Arc::new(f()?);
                        guard.value = Some(v.clone());
                        return Ok((v, false));
                    }
                }
            };
            match slot {
                Slot::Ready(v) => return Ok((v, true)),
                Slot::Pending(p) => {
                    let mut r = p.result.lock().unwrap_or_else(|e| e.into_inner());
                    while r.is_none() {
                        r = p.done.wait(r).unwrap_or_else(|e| e.into_inner());
                    }
                    if let Some(Some(v)) = r.as_ref() {
                        return Ok((v.clone(), true));
                    }
                    // the computation failed (its caller got the error): try ourselves
                }
            }
        }
    }
}

impl Engine {
    /// Phones and BERT features of `text` in language `lang`. Upstream's retry (fewer than 6 phones: once more
    /// with "." in front) happens once, inside [`text::phonemize_with`].
    pub fn text_features(&mut self, data: &FrontendData, text: &str, lang: Language) -> Result<TextFeatures> {
        let ph = match &self.shared.g2pw {
            Some(g) => super::lock(g).phonemize(data, text, lang.code(), self.symbols)?,
            None => text::phonemize_with(data, text, lang.code(), self.symbols)?,
        };
        if ph.phone_ids.is_empty() {
            return Err(EngineError::Text(TextError::EmptyText));
        }
        let h = super::lock(&self.shared.bert).hidden_size();
        let mut parts: Vec<Array2<f32>> = Vec::with_capacity(ph.segments.len());
        let mut bert_ms = 0.0;
        for seg in &ph.segments {
            let n = seg.phone_ids.len();
            if seg.language == Lang::Zh && n > 0 {
                let t = std::time::Instant::now();
                parts.push(super::lock(&self.shared.bert).features(&seg.norm_text, &seg.word2ph)?);
                bert_ms += t.elapsed().as_secs_f64() * 1e3;
            } else {
                parts.push(Array2::zeros((h, n)));
            }
        }
        let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
        let bert = if views.is_empty() {
            Array2::zeros((h, 0))
        } else {
            concatenate(Axis(1), &views).map_err(|e| EngineError::Internal(format!("BERT features: {e}")))?
        };
        Ok(TextFeatures { norm_text: ph.norm_text, phone_ids: ph.phone_ids, bert, bert_ms })
    }

    /// [`Engine::text_features`] of a reference transcript, through the shared cache. Returns whether it was cached.
    pub fn prompt_features(&mut self, data: &FrontendData, text: &str, lang: Language) -> Result<(Arc<TextFeatures>, bool)> {
        let cache = self.features.clone();
        cache.prompts.get_or_compute(&(text.to_string(), lang), || self.text_features(data, text, lang))
    }

    /// Prompt codes and speaker vector of a reference, from the shared cache when the same bytes were seen before
    /// (by any worker). Returns whether it was cached. `cancel` is polled between the stages of a voice that has to
    /// be computed (read, decode + resample, HuBERT, speaker verification, reference encoder).
    pub fn voice(&mut self, r: &RefAudio, cancel: &dyn Fn() -> bool) -> Result<(Arc<VoiceFeatures>, bool)> {
        let mut bytes_owned = Vec::new();
        let (bytes, ext) = ref_bytes(r, &mut bytes_owned, cancel)?;
        if cancel() {
            return Err(EngineError::Cancelled);
        }
        let hash = reference::content_hash(bytes);
        let cache = self.features.clone();
        let store = cache.store();
        let mut stored = false;
        let (v, hit) = cache.voices.get_or_compute(&hash, || -> Result<VoiceFeatures> {
            // persisted by an earlier process: as good as cached
            if let Some(v) = store.as_ref().and_then(|(s, b)| s.load(&hash, b)) {
                stored = true;
                return Ok(v);
            }
            let v = self.encode_voice(bytes, ext.as_deref(), cancel)?;
            if let Some((s, b)) = &store {
                s.save(&hash, b, &v);
            }
            Ok(v)
        })?;
        Ok((v, hit || stored))
    }

    /// [`Engine::voice`] computed afresh and not cached (parity checks; the cache is left as it was, but
    /// [`FeatureCache::voices_encoded`]/[`FeatureCache::sv_runs`] count the run).
    pub fn voice_uncached(&mut self, r: &RefAudio, cancel: &dyn Fn() -> bool) -> Result<VoiceFeatures> {
        let mut bytes_owned = Vec::new();
        let (bytes, ext) = ref_bytes(r, &mut bytes_owned, cancel)?;
        self.encode_voice(bytes, ext.as_deref(), cancel)
    }

    /// The whole voice computation: decode, resample, spectrogram, HuBERT + quantizer, (v2Pro: the
    /// speaker-verification embedding of the normalised model-rate signal,) reference encoder.
    fn encode_voice(&mut self, bytes: &[u8], ext: Option<&str>, cancel: &dyn Fn() -> bool) -> Result<VoiceFeatures> {
        self.features.voices_encoded.fetch_add(1, Ordering::Relaxed);
        let m = &self.bundle.manifest;
        let sp = SpecParams { n_fft: m.filter_length, hop: m.hop_length, win: m.win_length };
        let prepared = reference::prepare_bytes(bytes, ext, m.sample_rate, sp)?;
        if cancel() {
            return Err(EngineError::Cancelled);
        }
        let prompt_codes = super::lock(&self.shared.hubert).prompt_codes(&prepared.wav16k_padded)?;
        if cancel() {
            return Err(EngineError::Cancelled);
        }
        let spec = Array2::from_shape_vec((prepared.spec.bins, prepared.spec.frames), prepared.spec.data)
            .map_err(|e| EngineError::Internal(format!("spectrogram: {e}")))?;
        let sv_emb = match self.shared.sv.as_deref() {
            Some(sv) => {
                if cancel() {
                    return Err(EngineError::Cancelled);
                }
                self.features.sv_runs.fetch_add(1, Ordering::Relaxed);
                Some(super::lock(sv).embedding(&prepared.wav32k)?)
            }
            None => None,
        };
        let speaker = self.vocoder.lock().speaker(spec.view(), sv_emb.as_deref())?;
        Ok(VoiceFeatures { prompt_codes, speaker })
    }
}

/// The bytes of a reference (a path is opened as a local file, no confinement; an opened [`reference::RefFile`] is
/// read under `cancel`) and its file extension (a format hint).
fn ref_bytes<'a>(r: &'a RefAudio, owned: &'a mut Vec<u8>, cancel: &dyn Fn() -> bool) -> Result<(&'a [u8], Option<String>)> {
    Ok(match r {
        RefAudio::Path(p) => {
            let f = reference::open_reference(p, &[], reference::LOCAL_MAX_REF_BYTES)?;
            *owned = read_stoppable(&f, cancel)?;
            (owned.as_slice(), f.ext.clone())
        }
        RefAudio::File(f) => {
            *owned = read_stoppable(f, cancel)?;
            (owned.as_slice(), f.ext.clone())
        }
        RefAudio::Bytes(b, ext) => (b.as_slice(), ext.clone()),
    })
}

/// A reference file's bytes; a stop request is [`EngineError::Cancelled`].
fn read_stoppable(f: &reference::RefFile, cancel: &dyn Fn() -> bool) -> Result<Vec<u8>> {
    f.read_all(cancel).map_err(|e| match e {
        reference::ReferenceError::Interrupted => EngineError::Cancelled,
        e => e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn persisted_features_round_trip_and_refuse_stale_files() {
        let v = VoiceFeatures { prompt_codes: vec![1, -2, 1023, i64::MAX], speaker: Speaker { ge: vec![0.5, -1.25e-7, f32::MAX, 3.0] } };
        let b = v.to_bytes("aa", "bb");
        assert_eq!(VoiceFeatures::from_bytes(&b, "aa", "bb"), Some(v.clone()));
        // another audio file, another bundle, a truncated or extended file, another magic: recompute
        assert_eq!(VoiceFeatures::from_bytes(&b, "ax", "bb"), None);
        assert_eq!(VoiceFeatures::from_bytes(&b, "aa", "bx"), None);
        assert_eq!(VoiceFeatures::from_bytes(&b[..b.len() - 1], "aa", "bb"), None);
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(VoiceFeatures::from_bytes(&longer, "aa", "bb"), None);
        let mut bad = b.clone();
        bad[0] = b'X';
        assert_eq!(VoiceFeatures::from_bytes(&bad, "aa", "bb"), None);
        assert_eq!(VoiceFeatures::from_bytes(b"", "aa", "bb"), None);
        // a file with an extra (future) field still gives the fields this build knows
        let mut fields: std::collections::BTreeMap<String, FeatureArray> = v.fields().into_iter().map(|(n, a)| (n.to_string(), a)).collect();
        fields.insert("future.sv".into(), FeatureArray::F32(vec![1.0; 3]));
        assert_eq!(VoiceFeatures::from_fields(&fields), Some(v.clone()));
        fields.remove("prompt_codes");
        assert_eq!(VoiceFeatures::from_fields(&fields), None);
    }

    #[test]
    fn computes_once_and_caches() {
        let lru: OnceLru<u32, String> = OnceLru::new(4);
        let (v, hit) = lru.get_or_compute(&1, || Ok::<_, ()>("a".to_string())).unwrap();
        assert_eq!((v.as_str(), hit), ("a", false));
        let (v, hit) = lru.get_or_compute(&1, || -> std::result::Result<String, ()> { panic!("not called") }).unwrap();
        assert_eq!((v.as_str(), hit), ("a", true));
        // a failure is not cached
        assert!(lru.get_or_compute(&2, || Err::<String, _>("bad")).is_err());
        assert!(!lru.get_or_compute(&2, || Ok::<_, ()>("b".into())).unwrap().1);
    }

    #[test]
    fn concurrent_callers_share_one_computation() {
        let lru: Arc<OnceLru<u32, u32>> = Arc::new(OnceLru::new(4));
        let calls = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (lru, calls) = (lru.clone(), calls.clone());
                std::thread::spawn(move || {
                    lru.get_or_compute(&7, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        Ok::<_, ()>(42)
                    })
                    .unwrap()
                })
            })
            .collect();
        let results: Vec<(Arc<u32>, bool)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(results.iter().all(|(v, _)| **v == 42));
        assert_eq!(results.iter().filter(|(_, hit)| !hit).count(), 1, "one computed, the others waited");
    }

    #[test]
    fn a_panicking_computation_releases_waiters() {
        let lru: Arc<OnceLru<u32, u32>> = Arc::new(OnceLru::new(4));
        let l2 = lru.clone();
        let t = std::thread::spawn(move || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = l2.get_or_compute(&1, || -> std::result::Result<u32, ()> {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    panic!("boom")
                });
            }));
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (v, hit) = lru.get_or_compute(&1, || Ok::<_, ()>(5)).unwrap();
        t.join().unwrap();
        assert_eq!((*v, hit), (5, false), "the waiter computed it after the panic");
    }
}
