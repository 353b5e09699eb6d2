//! The voice library: a folder of named voices that survives restarts, with their computed features.
//!
//! Layout (`--voices DIR`):
//! ```text
//! DIR/NAME/voice.json            {"format":1,"name","text","language","model"?,"audio","audio_sha256","aux":[..],"created_at"}
//! DIR/NAME/ref.<ext>             the reference recording (3-10 s, any container the reference decoder reads)
//! DIR/NAME/aux-N.<ext>           optional extra references (timbre averaged, as api.py's inp_refs)
//! DIR/NAME/features/B-A.gsvf     prompt codes + speaker vector of the audio with sha256 A... for the bundle whose
//!                                manifest.json has sha256 B... (16 hex digits each; the file header has both whole)
//! ```
//! In: uploads (name, audio bytes, transcript, language, optional model and aux audio) from `POST /voices` or
//! `gsv voices add`; out: [`Voice`]s the routes resolve by name, and a [`VoiceStore`] the engines' feature caches
//! consult, so a voice's features are computed once per bundle and read back after a restart.
//!
//! Writes are atomic: a new voice is written whole into a hidden `.tmp-*` folder (files synced) and renamed
//! into place with `RENAME_NOREPLACE` (a name taken meanwhile is a conflict, never an overwrite); a half-written
//! upload stays a hidden folder, which the loader ignores and removes. Deletion renames the folder away first.
//! Features files are written to a temporary name and renamed. Stale features (other audio bytes, another bundle,
//! another format version) are ignored and recomputed. A read-only folder (a Kubernetes volume) serves its voices
//! and features; only writes are refused.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::engine::features::{VoiceFeatures, VoiceStore};
use crate::reference::{self, content_hash, ContentHash};
use crate::text::Language;

/// Version of `voice.json`.
pub const VOICE_FORMAT: u32 = 1;
/// Longest voice name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest transcript of a reference, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;
/// Most extra references per voice.
pub const MAX_AUX: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    /// The upload is wrong (name, transcript, language, audio); the message is safe to show.
    #[error("{0}")]
    Invalid(String),
    #[error("voice `{0}` already exists")]
    Exists(String),
    #[error("voice `{0}` not found")]
    NotFound(String),
    #[error("the voice library is read-only on this server")]
    ReadOnly,
    /// A fault of the folder (disk full, permissions); details for the log.
    #[error("voice library: {0}")]
    Io(String),
}

/// A voice name: 1-64 characters, letters (any script), digits, `-`, `_`, `.`; starts with a letter or digit
/// (so no hidden folders, `.` or `..`); no path separators; `default` is the server's default reference.
pub fn validate_name(name: &str) -> Result<(), VoiceError> {
    let bad = |why: &str| Err(VoiceError::Invalid(format!("invalid voice name {name:?}: {why}")));
    let n = name.chars().count();
    if n == 0 {
        return bad("empty");
    }
    if n > MAX_NAME_CHARS {
        return bad(&format!("longer than {MAX_NAME_CHARS} characters"));
    }
    if !name.chars().next().is_some_and(char::is_alphanumeric) {
        return bad("must start with a letter or digit");
    }
    if let Some(c) = name.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return bad(&format!("character {c:?} not allowed (letters, digits, - _ . only)"));
    }
    if name == "default" {
        return bad("`default` is the server's default reference");
    }
    Ok(())
}

/// `voice.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VoiceMeta {
    pub format: u32,
    pub name: String,
    /// Transcript of the reference recording.
    pub text: String,
    /// Language of the transcript (api2/api.py codes: zh, en, ja, yue, ko, auto, all_zh, ...).
    pub language: String,
    /// Model this voice is meant for (a loaded model name); the OpenAI route uses it when the request names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// File name of the reference recording inside the voice folder.
    pub audio: String,
    pub audio_sha256: String,
    #[serde(default)]
    pub aux: Vec<AuxMeta>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuxMeta {
    pub audio: String,
    pub sha256: String,
}

/// A loaded voice.
#[derive(Debug, Clone)]
pub struct Voice {
    pub meta: VoiceMeta,
    pub dir: PathBuf,
    /// sha256 of the audio as it is on disk now (what the feature cache is keyed by).
    pub audio_hash: ContentHash,
    pub aux_hashes: Vec<ContentHash>,
    /// (voice.json mtime, audio mtime, audio length): a rescan reuses the voice while these are unchanged.
    stamp: (Option<SystemTime>, Option<SystemTime>, u64),
}

impl Voice {
    pub fn name(&self) -> &str {
        &self.meta.name
    }
    pub fn audio_path(&self) -> PathBuf {
        self.dir.join(&self.meta.audio)
    }
    pub fn aux_paths(&self) -> Vec<PathBuf> {
        self.meta.aux.iter().map(|a| self.dir.join(&a.audio)).collect()
    }
    /// The JSON clients see (`GET /voices`, `gsv voices list --json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.meta.name,
            "text": self.meta.text,
            "language": self.meta.language,
            "model": self.meta.model,
            "aux": self.meta.aux.len(),
            "created_at": self.meta.created_at,
            "audio_sha256": self.audio_hash.to_string(),
            "source": "library",
        })
    }
}

/// An upload to become a voice.
pub struct NewVoice {
    pub name: String,
    pub text: String,
    pub language: String,
    pub model: Option<String>,
    /// Bytes and the original file name (its extension helps the decoder; it is kept).
    pub audio: (Vec<u8>, Option<String>),
    pub aux: Vec<(Vec<u8>, Option<String>)>,
}

/// A folder of voices. Cheap to share (`Arc`); all methods take `&self`.
pub struct Library {
    root: PathBuf,
    voices: RwLock<BTreeMap<String, Arc<Voice>>>,
    last_scan: Mutex<Option<Instant>>,
    read_only_logged: AtomicBool,
    seq: AtomicU64,
}

/// sha256 of a bundle's `manifest.json`: the identity features are stored under (the manifest records every
/// graph's sha256, so any change of a graph changes it).
pub fn bundle_sha256(bundle_dir: &Path) -> std::io::Result<String> {
    Ok(content_hash(&std::fs::read(bundle_dir.join("manifest.json"))?).to_string())
}

/// Audio check of an upload: decodable, and 3-10 s as the engine will measure it (length at 16 kHz).
pub fn check_audio(bytes: &[u8], file_name: Option<&str>, what: &str) -> Result<f64, VoiceError> {
    let ext = file_name.and_then(|f| Path::new(f).extension()).and_then(|e| e.to_str());
    let audio = reference::decode_bytes(bytes, ext).map_err(|e| VoiceError::Invalid(format!("{what}: {e}")))?;
    if audio.sample_rate == 0 || audio.samples.is_empty() {
        return Err(VoiceError::Invalid(format!("{what}: no audio")));
    }
    let n16 = (audio.samples.len() as f64 * reference::HUBERT_RATE as f64 / audio.sample_rate as f64).ceil() as usize;
    reference::check_duration_16k(n16).map_err(|e| VoiceError::Invalid(format!("{what}: {e}")))?;
    Ok(audio.duration_secs())
}

/// A safe extension from an uploaded file name (letters and digits, at most 5), else `audio`.
fn extension(file_name: Option<&str>) -> String {
    file_name
        .and_then(|f| Path::new(f).extension())
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "audio".into())
}

/// RFC 3339 (UTC, seconds) of a time.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil date from days since 1970-01-01 (proleptic Gregorian; eras of 400 years)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `rename(from, to)` that fails with `AlreadyExists` instead of replacing `to`.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let (a, b) = (std::ffi::CString::new(from.as_os_str().as_bytes())?, std::ffi::CString::new(to.as_os_str().as_bytes())?);
        // SAFETY: both are valid NUL-terminated paths; renameat2 only reads them.
        let r = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_NOREPLACE) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        // filesystems without RENAME_NOREPLACE: check, then rename (a race is then possible, not a torn voice)
        if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(e);
        }
    }
    if to.exists() {
        return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists"));
    }
    std::fs::rename(from, to)
}

fn is_read_only(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EROFS)
}

fn file_stamp(p: &Path) -> (Option<SystemTime>, u64) {
    match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    }
}

impl Library {
    /// Opens (creating it when missing and possible) the folder and loads its voices. Voices that cannot be read
    /// are logged and skipped; leftovers of interrupted uploads are removed when the folder is writable.
    pub fn open(root: &Path) -> anyhow::Result<Library> {
        if !root.exists() {
            std::fs::create_dir_all(root).map_err(|e| anyhow::anyhow!("--voices {}: cannot create it: {e}", root.display()))?;
        }
        if !root.is_dir() {
            anyhow::bail!("--voices {}: not a folder", root.display());
        }
        let lib = Library {
            root: root.to_path_buf(),
            voices: RwLock::new(BTreeMap::new()),
            last_scan: Mutex::new(None),
            read_only_logged: AtomicBool::new(false),
            seq: AtomicU64::new(0),
        };
        if let Ok(rd) = std::fs::read_dir(root) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(".tmp-") || n.starts_with(".trash-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        lib.rescan();
        Ok(lib)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Re-reads the folder (voices added or removed by another process or replica appear).
    pub fn rescan(&self) {
        let old = self.voices.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut next = BTreeMap::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&self.root).into_iter().flatten().flatten().map(|e| e.path()).collect();
        entries.sort();
        for dir in entries {
            let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
            if name.starts_with('.') || !dir.is_dir() || validate_name(&name).is_err() {
                continue;
            }
            match self.load_voice(&dir, &name, old.get(&name)) {
                Ok(v) => {
                    next.insert(name, v);
                }
                Err(e) => tracing::warn!(voice = %name, "voice skipped: {e}"),
            }
        }
        *self.voices.write().unwrap_or_else(|e| e.into_inner()) = next;
        *self.last_scan.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn load_voice(&self, dir: &Path, name: &str, old: Option<&Arc<Voice>>) -> Result<Arc<Voice>, String> {
        let json_path = dir.join("voice.json");
        let (json_mtime, _) = file_stamp(&json_path);
        let raw = std::fs::read(&json_path).map_err(|e| format!("voice.json: {e}"))?;
        let meta: VoiceMeta = serde_json::from_slice(&raw).map_err(|e| format!("voice.json: {e}"))?;
        if meta.format != VOICE_FORMAT {
            return Err(format!("voice.json format {} (this build reads {VOICE_FORMAT})", meta.format));
        }
        if meta.name != name {
            return Err(format!("voice.json names `{}`, the folder `{name}`", meta.name));
        }
        if Language::from_api(&meta.language).is_none() {
            return Err(format!("unknown language {:?}", meta.language));
        }
        for f in std::iter::once(&meta.audio).chain(meta.aux.iter().map(|a| &a.audio)) {
            if f.contains('/') || f.contains('\\') || f.starts_with('.') || f.is_empty() {
                return Err(format!("audio file name {f:?} is not a plain file name"));
            }
        }
        let audio_path = dir.join(&meta.audio);
        let (audio_mtime, audio_len) = file_stamp(&audio_path);
        let stamp = (json_mtime, audio_mtime, audio_len);
        if let Some(o) = old.filter(|o| o.stamp == stamp && o.stamp.1.is_some()) {
            return Ok(o.clone());
        }
        let audio = std::fs::read(&audio_path).map_err(|e| format!("{}: {e}", meta.audio))?;
        let audio_hash = content_hash(&audio);
        if audio_hash.to_string() != meta.audio_sha256 {
            tracing::warn!(voice = %name, "reference audio changed since the voice was added (sha256 differs from voice.json); features will be recomputed");
        }
        let mut aux_hashes = Vec::new();
        for a in &meta.aux {
            let b = std::fs::read(dir.join(&a.audio)).map_err(|e| format!("{}: {e}", a.audio))?;
            aux_hashes.push(content_hash(&b));
        }
        Ok(Arc::new(Voice { meta, dir: dir.to_path_buf(), audio_hash, aux_hashes, stamp }))
    }

    /// Every voice, by name.
    pub fn list(&self) -> Vec<Arc<Voice>> {
        self.voices.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// A voice by name; a miss rescans the folder (at most once a second) before giving up.
    pub fn get(&self, name: &str) -> Option<Arc<Voice>> {
        if let Some(v) = self.voices.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Some(v.clone());
        }
        let stale = self.last_scan.lock().unwrap_or_else(|e| e.into_inner()).is_none_or(|t| t.elapsed() > Duration::from_secs(1));
        if stale && validate_name(name).is_ok() {
            self.rescan();
            return self.voices.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        }
        None
    }

    fn tmp_name(&self, what: &str, name: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.root.join(format!(".{what}-{name}-{}-{n}", std::process::id()))
    }

    /// Checks and writes a new voice atomically. The audio is decoded and its length checked (3-10 s) first.
    pub fn add(&self, v: NewVoice) -> Result<Arc<Voice>, VoiceError> {
        validate_name(&v.name)?;
        let text = v.text.trim().to_string();
        if text.is_empty() {
            return Err(VoiceError::Invalid("text (the transcript of the reference) is required".into()));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(VoiceError::Invalid(format!("text longer than {MAX_TEXT_CHARS} characters")));
        }
        if Language::from_api(&v.language).is_none() {
            return Err(VoiceError::Invalid(format!("unknown language {:?} (zh, en, ja, yue, ko, auto, all_zh, all_ja, ...)", v.language)));
        }
        if let Some(m) = &v.model {
            if m.is_empty() || m.len() > 128 || m.chars().any(char::is_control) {
                return Err(VoiceError::Invalid("model must be a model name".into()));
            }
        }
        if v.aux.len() > MAX_AUX {
            return Err(VoiceError::Invalid(format!("at most {MAX_AUX} aux references")));
        }
        check_audio(&v.audio.0, v.audio.1.as_deref(), "audio")?;
        for (i, (b, f)) in v.aux.iter().enumerate() {
            check_audio(b, f.as_deref(), &format!("aux reference {}", i + 1))?;
        }
        if self.get(&v.name).is_some() || self.root.join(&v.name).exists() {
            return Err(VoiceError::Exists(v.name));
        }
        let tmp = self.tmp_name("tmp", &v.name);
        let io = |e: std::io::Error| if is_read_only(&e) { VoiceError::ReadOnly } else { VoiceError::Io(e.to_string()) };
        std::fs::create_dir(&tmp).map_err(io)?;
        let written = (|| -> Result<VoiceMeta, VoiceError> {
            let audio = format!("ref.{}", extension(v.audio.1.as_deref()));
            write_synced(&tmp.join(&audio), &v.audio.0).map_err(io)?;
            let mut aux = Vec::new();
            for (i, (b, f)) in v.aux.iter().enumerate() {
                let name = format!("aux-{}.{}", i + 1, extension(f.as_deref()));
                write_synced(&tmp.join(&name), b).map_err(io)?;
                aux.push(AuxMeta { audio: name, sha256: content_hash(b).to_string() });
            }
            let meta = VoiceMeta {
                format: VOICE_FORMAT,
                name: v.name.clone(),
                text: text.clone(),
                language: v.language.clone(),
                model: v.model.clone(),
                audio,
                audio_sha256: content_hash(&v.audio.0).to_string(),
                aux,
                created_at: rfc3339(SystemTime::now()),
            };
            let json = serde_json::to_vec_pretty(&meta).map_err(|e| VoiceError::Io(e.to_string()))?;
            write_synced(&tmp.join("voice.json"), &json).map_err(io)?;
            if let Ok(d) = std::fs::File::open(&tmp) {
                let _ = d.sync_all();
            }
            Ok(meta)
        })();
        let meta = match written {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let dest = self.root.join(&v.name);
        if let Err(e) = rename_noreplace(&tmp, &dest) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(match e.kind() {
                std::io::ErrorKind::AlreadyExists => VoiceError::Exists(v.name),
                _ if e.raw_os_error() == Some(libc::ENOTEMPTY) => VoiceError::Exists(v.name),
                _ => io(e),
            });
        }
        if let Ok(d) = std::fs::File::open(&self.root) {
            let _ = d.sync_all();
        }
        let voice = self.load_voice(&dest, &meta.name, None).map_err(VoiceError::Io)?;
        self.voices.write().unwrap_or_else(|e| e.into_inner()).insert(meta.name.clone(), voice.clone());
        Ok(voice)
    }

    /// Removes a voice: its folder is renamed away (atomic disappearance), then deleted.
    pub fn remove(&self, name: &str) -> Result<(), VoiceError> {
        validate_name(name)?;
        let dir = self.root.join(name);
        if !dir.join("voice.json").is_file() {
            self.voices.write().unwrap_or_else(|e| e.into_inner()).remove(name);
            return Err(VoiceError::NotFound(name.to_string()));
        }
        let trash = self.tmp_name("trash", name);
        std::fs::rename(&dir, &trash).map_err(|e| if is_read_only(&e) { VoiceError::ReadOnly } else { VoiceError::Io(e.to_string()) })?;
        self.voices.write().unwrap_or_else(|e| e.into_inner()).remove(name);
        if let Err(e) = std::fs::remove_dir_all(&trash) {
            tracing::warn!(voice = %name, "removed, but its files could not be deleted: {e}");
        }
        Ok(())
    }

    /// The voice folder that holds audio with this hash (main or aux reference), if any.
    fn dir_of(&self, audio: &ContentHash) -> Option<PathBuf> {
        let v = self.voices.read().unwrap_or_else(|e| e.into_inner());
        v.values().find(|x| x.audio_hash == *audio || x.aux_hashes.contains(audio)).map(|x| x.dir.clone())
    }

    fn features_path(dir: &Path, audio: &ContentHash, bundle: &str) -> PathBuf {
        // one file per (audio, bundle): aux references live in the same folder as the main one
        let a = audio.to_string();
        dir.join("features").join(format!("{}-{}.gsvf", &bundle[..bundle.len().min(16)], &a[..16]))
    }
}

impl VoiceStore for Library {
    fn load(&self, audio: &ContentHash, bundle_sha256: &str) -> Option<VoiceFeatures> {
        let dir = self.dir_of(audio)?;
        let bytes = std::fs::read(Self::features_path(&dir, audio, bundle_sha256)).ok()?;
        let v = VoiceFeatures::from_bytes(&bytes, &audio.to_string(), bundle_sha256);
        if v.is_none() {
            tracing::info!(dir = %dir.display(), "stored voice features are stale (other audio, bundle or format): recomputing");
        }
        v
    }

    fn save(&self, audio: &ContentHash, bundle_sha256: &str, features: &VoiceFeatures) {
        let Some(dir) = self.dir_of(audio) else { return };
        let path = Self::features_path(&dir, audio, bundle_sha256);
        let tmp = path.with_extension(format!("tmp{}", self.seq.fetch_add(1, Ordering::Relaxed)));
        let r = std::fs::create_dir_all(dir.join("features"))
            .and_then(|_| write_synced(&tmp, &features.to_bytes(&audio.to_string(), bundle_sha256)))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            if is_read_only(&e) {
                if !self.read_only_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!("voice library is read-only: features are kept in memory only (precompute them with `gsv voices add --bundle` / `gsv voices warm`)");
                }
            } else {
                tracing::warn!(dir = %dir.display(), "cannot store voice features: {e}");
            }
        }
    }
}

impl Voice {
    /// Whether features for this bundle are stored (main reference).
    pub fn has_features(&self, bundle_sha256: &str) -> bool {
        Library::features_path(&self.dir, &self.audio_hash, bundle_sha256).is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["alice", "Bob-2", "小明", "a.b_c", "x"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_NAME_CHARS + 1);
        for bad in ["", ".hidden", "..", "a/b", "a\\b", "-x", "a b", "default", "a\0b", long.as_str(), "ä/../x"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name(&"a".repeat(MAX_NAME_CHARS)).is_ok());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661)), "2000-02-29T01:01:01Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_799)), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn extensions() {
        assert_eq!(extension(Some("My Voice.WAV")), "wav");
        assert_eq!(extension(Some("x.tar.gz/../../etc")), "audio");
        assert_eq!(extension(None), "audio");
        assert_eq!(extension(Some("a.verylongext")), "audio");
    }
}
