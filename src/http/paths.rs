//! Paths: reference audio confinement (`--ref-root`), model folders (`-s`/`-g`, `--bundle`, `/set_model`),
//! and finding the demo bundle.

use std::path::{Component, Path, PathBuf};

use super::error::HttpError;

/// Resolves a reference path sent by a client.
///
/// Without roots: the path as given (relative to the working directory, as api2 does). With roots: a path
/// with a `..` component is refused; a relative path is looked up in the working directory and then in each
/// root; the file found is canonicalised (symlinks followed) and must lie inside one of the canonical roots,
/// else 403. Messages name only what the client sent.
pub fn resolve_reference(p: &str, roots: &[PathBuf]) -> Result<PathBuf, HttpError> {
    if roots.is_empty() {
        return Ok(PathBuf::from(p));
    }
    let forbidden = || HttpError::Forbidden(format!("参考音频路径不在允许的目录内 / reference path is outside the allowed folders: {p}"));
    let path = Path::new(p);
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(forbidden());
    }
    let mut candidates = Vec::new();
    if path.is_absolute() {
        candidates.push(path.to_path_buf());
    } else {
        if let Ok(cwd) = std::env::current_dir() {
            candidates.push(cwd.join(path));
        }
        candidates.extend(roots.iter().map(|r| r.join(path)));
    }
    let mut outside = false;
    for c in candidates {
        if let Ok(real) = c.canonicalize() {
            if roots.iter().any(|r| real.starts_with(r)) {
                return Ok(real);
            }
            outside = true;
        }
    }
    if outside {
        Err(forbidden())
    } else {
        Err(HttpError::BadRequest(format!("无法读取参考音频 / cannot read the reference audio: file not found: {p}")))
    }
}

/// Canonical forms of the `--ref-root` folders (each must exist).
pub fn canonical_roots(roots: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    roots
        .iter()
        .map(|r| r.canonicalize().map_err(|e| format!("--ref-root {}: {e}", r.display())))
        .collect()
}

const DEFAULT_HUBERT: &str = "GPT_SoVITS/pretrained_models/chinese-hubert-base";
const DEFAULT_BERT: &str = "GPT_SoVITS/pretrained_models/chinese-roberta-wwm-ext-large";
/// The speaker-verification model GPT-SoVITS ships for v2Pro/v2ProPlus (upstream's `sv.py` `sv_path`).
const DEFAULT_SV: &str = "GPT_SoVITS/pretrained_models/sv/pretrained_eres2netv2w24s4ep4.ckpt";

/// Whether a SoVITS `.pth` is a v2Pro/v2ProPlus file: upstream writes those with the head bytes `05`/`06` instead of
/// the zip's `PK` (`process_ckpt.my_save2`). An unreadable file is not.
fn is_v2pro_sovits(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 2];
    std::fs::File::open(p).and_then(|mut f| f.read_exact(&mut head)).is_ok() && matches!(&head, b"05" | b"06")
}

fn is_checkpoint(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(), Some("pth" | "ckpt"))
}

fn quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=+:@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The `python -m export convert` command for PyTorch checkpoints (with `--sv` when the SoVITS file is v2Pro or
/// v2ProPlus).
pub fn convert_command(gpt: Option<&Path>, sovits: Option<&Path>, hubert: Option<&str>, bert: Option<&str>) -> (String, String) {
    let stem = sovits
        .or(gpt)
        .and_then(|p| p.file_stem())
        .and_then(|s| s.to_str())
        .map(|s| s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect::<String>())
        .unwrap_or_else(|| "myvoice".into());
    let out = format!("onnx/{stem}");
    let g = gpt.map(|p| quote(&p.display().to_string())).unwrap_or_else(|| "<your GPT .ckpt>".into());
    let s = sovits.map(|p| quote(&p.display().to_string())).unwrap_or_else(|| "<your SoVITS .pth>".into());
    let sv = if sovits.is_some_and(is_v2pro_sovits) { format!(" --sv {DEFAULT_SV}") } else { String::new() };
    let cmd = format!(
        ".venv/bin/python -m export convert --gpt {g} --sovits {s} --hubert {} --bert {}{sv} --out {out}",
        quote(hubert.unwrap_or(DEFAULT_HUBERT)),
        quote(bert.unwrap_or(DEFAULT_BERT))
    );
    (cmd, out)
}

/// The bundle folder named by `-s`/`-g` (or `/set_model`'s two paths). `Ok(None)` when neither is given.
pub fn bundle_from_models(sovits: Option<&Path>, gpt: Option<&Path>, hubert: Option<&str>, bert: Option<&str>) -> Result<Option<PathBuf>, String> {
    if sovits.is_none() && gpt.is_none() {
        return Ok(None);
    }
    let ckpt_s = sovits.filter(|p| is_checkpoint(p));
    let ckpt_g = gpt.filter(|p| is_checkpoint(p));
    if ckpt_s.is_some() || ckpt_g.is_some() {
        let (cmd, out) = convert_command(ckpt_g, ckpt_s, hubert, bert);
        return Err(format!(
            "gsv serves exported ONNX bundles, not PyTorch checkpoints. Convert them once (scripts/setup --export installs .venv): {cmd}   then start with: gsv -s {out}"
        ));
    }
    let mut dirs = Vec::new();
    for (flag, p) in [("-s", sovits), ("-g", gpt)] {
        let Some(p) = p else { continue };
        if !p.join("manifest.json").is_file() {
            return Err(format!("{flag} {}: not a gsv bundle folder (no manifest.json); export one with `python -m export convert`", p.display()));
        }
        dirs.push(p.canonicalize().map_err(|e| format!("{flag} {}: {e}", p.display()))?);
    }
    if dirs.len() == 2 && dirs[0] != dirs[1] {
        return Err(format!(
            "-s and -g name different bundles ({} and {}); an exported bundle holds both models: give the same folder, or only one",
            sovits.map(|p| p.display().to_string()).unwrap_or_default(),
            gpt.map(|p| p.display().to_string()).unwrap_or_default()
        ));
    }
    Ok(dirs.into_iter().next())
}

/// `onnx/demo` relative to the working directory, else next to the executable or in one of its ancestors.
pub fn find_demo_bundle() -> Option<PathBuf> {
    let rel = Path::new("onnx").join("demo");
    if rel.join("manifest.json").is_file() {
        return Some(rel);
    }
    let exe = std::env::current_exe().ok()?;
    exe.parent()?.ancestors().map(|d| d.join(&rel)).find(|d| d.join("manifest.json").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_get_the_convert_command() {
        let e = bundle_from_models(Some(Path::new("SoVITS_weights/my voice.pth")), Some(Path::new("GPT_weights/v-e15.ckpt")), None, None).unwrap_err();
        assert!(e.contains("--gpt GPT_weights/v-e15.ckpt --sovits 'SoVITS_weights/my voice.pth'"), "{e}");
        assert!(e.contains("--out onnx/my_voice"), "{e}");
        assert!(!e.contains("--sv"), "{e}");
        assert_eq!(bundle_from_models(None, None, None, None), Ok(None));
    }

    #[test]
    fn v2pro_checkpoints_get_the_sv_flag() {
        let dir = std::env::temp_dir().join(format!("gsv-paths-sv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (head, sv) in [(&b"05"[..], true), (b"06", true), (b"PK", false), (b"0", false)] {
            let p = dir.join("voice.pth");
            std::fs::write(&p, [head, b"\x03\x04rest"].concat()).unwrap();
            let (cmd, _) = convert_command(None, Some(&p), None, None);
            assert_eq!(cmd.contains(&format!("--sv {DEFAULT_SV} --out")), sv, "{head:?}: {cmd}");
        }
        let (cmd, _) = convert_command(None, Some(&dir.join("missing.pth")), None, None);
        assert!(!cmd.contains("--sv"), "{cmd}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn confinement() {
        let dir = std::env::temp_dir().join(format!("gsv-paths-{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("a.wav"), b"x").unwrap();
        std::fs::write(dir.join("secret.wav"), b"x").unwrap();
        let roots = canonical_roots(std::slice::from_ref(&root)).unwrap();
        assert!(resolve_reference("a.wav", &roots).is_ok());
        assert!(resolve_reference(root.join("a.wav").to_str().unwrap(), &roots).is_ok());
        assert!(matches!(resolve_reference("../secret.wav", &roots), Err(HttpError::Forbidden(_))));
        assert!(matches!(resolve_reference(dir.join("secret.wav").to_str().unwrap(), &roots), Err(HttpError::Forbidden(_))));
        #[cfg(unix)]
        {
            let _ = std::os::unix::fs::symlink(dir.join("secret.wav"), root.join("link.wav"));
            assert!(matches!(resolve_reference("link.wav", &roots), Err(HttpError::Forbidden(_))));
        }
        assert!(matches!(resolve_reference("nope.wav", &roots), Err(HttpError::BadRequest(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
