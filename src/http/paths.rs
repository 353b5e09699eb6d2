//! Paths: model folders (`-s`/`-g`, `--bundle`, `/set_model`) and their confinement (`--model-root`), and finding
//! the demo bundle. Reference files are opened and confined by [`crate::reference::open_reference`].

use std::path::{Component, Path, PathBuf};

use super::error::HttpError;

/// The model roots (`--model-root`; default: the bundle folders given at start-up and `onnx/` of the working
/// directory), each canonical and, where written differently, in its absolute spelling.
pub fn model_roots(given: &[PathBuf], start_bundles: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    if !given.is_empty() {
        return crate::reference::canonical_roots(given).map_err(|e| format!("--model-root {e}"));
    }
    let mut dirs: Vec<PathBuf> = start_bundles.to_vec();
    if Path::new("onnx").is_dir() {
        dirs.push(PathBuf::from("onnx"));
    }
    crate::reference::canonical_roots(&dirs).map_err(|e| format!("model folder {e}"))
}

/// Refuses (403) a model folder named by a client (`/set_model`, `/set_*_weights`) that is not inside a model root.
/// An absolute (or working-directory-relative) path outside every root is refused before the file system is
/// touched, so the answer is the same whether or not it exists; `..` is refused; a folder inside a root whose real
/// path leaves it (a symlink) is refused too.
pub fn confine_model(p: &Path, roots: &[PathBuf]) -> Result<(), HttpError> {
    let forbidden = || HttpError::Forbidden(format!("模型路径不在允许的目录内 / model path is outside the allowed folders (--model-root): {}", p.display()));
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(forbidden());
    }
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().map_err(|_| forbidden())?.join(p) };
    let abs: PathBuf = abs.components().filter(|c| !matches!(c, Component::CurDir)).collect();
    if !roots.iter().any(|r| abs.starts_with(r)) {
        return Err(forbidden());
    }
    match abs.canonicalize() {
        Ok(real) if !roots.iter().any(|r| real.starts_with(r)) => Err(forbidden()),
        // inside (or missing inside a root: the bundle check says what is wrong)
        _ => Ok(()),
    }
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
    fn model_confinement() {
        let dir = std::env::temp_dir().join(format!("gsv-paths-{}", std::process::id()));
        let root = dir.join("models");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        let roots = model_roots(std::slice::from_ref(&root), &[]).unwrap();
        assert!(confine_model(&root.join("a"), &roots).is_ok());
        assert!(confine_model(&root.join("missing"), &roots).is_ok(), "inside: the bundle check answers");
        for bad in [dir.join("outside"), dir.join("nope"), root.join("../outside"), PathBuf::from("/etc")] {
            assert!(matches!(confine_model(&bad, &roots), Err(HttpError::Forbidden(_))), "{}", bad.display());
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.join("outside"), root.join("link")).unwrap();
            assert!(matches!(confine_model(&root.join("link"), &roots), Err(HttpError::Forbidden(_))));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
