//! Opening and reading a reference file without races, blocking or unbounded memory.
//!
//! In:  a path (as a client or the operator wrote it), the allowed roots (`--ref-root`; none = any readable path, as
//!      api2 does) and a size limit (`--max-ref-bytes`).
//! Out: [`RefFile`]: an open descriptor of a **regular** file no larger than the limit; [`RefFile::read_all`] reads it
//!      in bounded chunks (at most the limit, a stop flag checked between chunks).
//!
//! How (Linux): the path is resolved and opened **once**, with `O_PATH` (no read access: a FIFO or a device is never
//! really opened, so nothing blocks and no device sees an open); under roots the open is
//! `openat2(root, rel, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, so the kernel refuses any resolution that leaves the
//! root (`..`, an absolute symlink, a relative one that climbs out) in the same call that opens the file. `fstat` of
//! that descriptor must say "regular file" and "not larger than the limit"; then the same inode is reopened for
//! reading through `/proc/self/fd` (dev/inode compared). The file that was checked is therefore the file that is read,
//! whatever symlink is swapped in meanwhile. Kernels without `openat2` (before 5.6) get the opened descriptor's real
//! path (`/proc/self/fd` link) checked against the roots instead; other systems canonicalise, open, and compare
//! dev/inode of both.
//!
//! Answers do not tell whether a file outside the roots exists: an absolute path outside every root is refused
//! before the file system is touched, a relative path is only looked up inside the roots (and in the working
//! directory where that lies inside a root), and a symlink that leaves a root is refused whether or not its target
//! exists (`EXDEV` comes before the target is looked up).

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use super::ReferenceError;

/// Default of `--max-ref-bytes`: 10 s of 48 kHz stereo 32-bit float WAV (3,840,000 bytes) plus container slack.
pub const DEFAULT_MAX_REF_BYTES: u64 = 4 << 20;

/// Bytes read per chunk (the stop flag is checked between chunks).
const CHUNK: usize = 256 << 10;

/// An opened, checked reference file (read with `pread`, so one descriptor can be read by several callers).
#[derive(Debug)]
pub struct RefFile {
    file: File,
    /// Size at open time (`fstat`).
    pub size: u64,
    /// The size limit it was opened under; [`RefFile::read_all`] never reads more.
    pub max_bytes: u64,
    /// Extension of the path as given (a format hint for decoding).
    pub ext: Option<String>,
}

/// Why a candidate path could not be opened.
enum OpenFail {
    /// Resolution would leave the root.
    Escape,
    NotFound,
    Io(std::io::Error),
}

impl RefFile {
    /// Reads the whole file (at most `max_bytes`; a file that grew past it is refused), in chunks, calling `stop`
    /// between them: `stop()` true ends the read with [`ReferenceError::Interrupted`].
    pub fn read_all(&self, stop: &dyn Fn() -> bool) -> Result<Vec<u8>, ReferenceError> {
        use std::os::unix::fs::FileExt;
        let mut out = Vec::with_capacity(self.size.min(self.max_bytes) as usize);
        let mut buf = vec![0u8; CHUNK];
        loop {
            if stop() {
                return Err(ReferenceError::Interrupted);
            }
            let n = match self.file.read_at(&mut buf, out.len() as u64) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(ReferenceError::Io { path: PathBuf::new(), source }),
            };
            if n == 0 {
                return Ok(out);
            }
            if out.len() as u64 + n as u64 > self.max_bytes {
                return Err(ReferenceError::TooLarge { max: self.max_bytes });
            }
            out.extend_from_slice(&buf[..n]);
        }
    }
}

/// The `--ref-root` folders as the checks need them: each one's canonical path, plus its absolute spelling when the
/// operator wrote it differently (a client may use either prefix). Each must exist and be a folder.
pub fn canonical_roots(roots: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("working directory: {e}"))?;
    let mut out: Vec<PathBuf> = Vec::new();
    for r in roots {
        let real = r.canonicalize().map_err(|e| format!("{}: {e}", r.display()))?;
        if !real.is_dir() {
            return Err(format!("{}: not a folder", r.display()));
        }
        let given = if r.is_absolute() { r.clone() } else { cwd.join(r) };
        for p in [real, given] {
            if !p.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) && !out.contains(&p) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Opens the reference at `path` (see the module documentation). With no `roots` any path is accepted (symlinks
/// followed, as api2 does); with roots it must resolve inside one of them ([`ReferenceError::Forbidden`] otherwise).
/// Refuses anything but a regular file ([`ReferenceError::NotRegular`]) and files over `max_bytes`
/// ([`ReferenceError::TooLarge`]) without reading them.
pub fn open_reference(path: &Path, roots: &[PathBuf], max_bytes: u64) -> Result<RefFile, ReferenceError> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_string);
    let io = |source: std::io::Error| ReferenceError::Io { path: path.to_path_buf(), source };
    if path.as_os_str().is_empty() {
        return Err(io(std::io::ErrorKind::NotFound.into()));
    }
    let file = if roots.is_empty() {
        match sys::open_plain(path) {
            Ok(f) => f,
            Err(OpenFail::NotFound) => return Err(io(std::io::ErrorKind::NotFound.into())),
            Err(OpenFail::Io(e)) => return Err(io(e)),
            Err(OpenFail::Escape) => return Err(ReferenceError::Forbidden),
        }
    } else {
        open_confined(path, roots).map_err(|f| match f {
            OpenFail::Escape => ReferenceError::Forbidden,
            OpenFail::NotFound => io(std::io::ErrorKind::NotFound.into()),
            OpenFail::Io(e) => io(e),
        })?
    };
    let (file, size) = sys::checked_reader(file, path, roots, max_bytes)?;
    Ok(RefFile { file, size, max_bytes, ext })
}

/// The candidates `(root, path relative to it)` a client path may name, tried in order.
fn candidates(path: &Path, roots: &[PathBuf]) -> Result<Vec<(PathBuf, PathBuf)>, OpenFail> {
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(OpenFail::Escape);
    }
    let mut out: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut push = |r: &Path, rel: PathBuf| {
        let rel: PathBuf = rel.components().filter(|c| matches!(c, Component::Normal(_))).collect();
        if !out.iter().any(|(a, b)| a == r && *b == rel) {
            out.push((r.to_path_buf(), rel));
        }
    };
    let under = |abs: &Path, push: &mut dyn FnMut(&Path, PathBuf)| {
        for r in roots {
            if let Ok(rel) = abs.strip_prefix(r) {
                push(r, rel.to_path_buf());
            }
        }
    };
    if path.is_absolute() {
        under(path, &mut push);
        if out.is_empty() {
            // outside every root: refused without looking at the file system (same answer whether it exists or not)
            return Err(OpenFail::Escape);
        }
    } else {
        // the working directory first where it lies inside a root (api2 reads relative paths from there), then each root
        if let Ok(cwd) = std::env::current_dir() {
            under(&cwd.join(path), &mut push);
        }
        for r in roots {
            push(r, path.to_path_buf());
        }
    }
    Ok(out)
}

fn open_confined(path: &Path, roots: &[PathBuf]) -> Result<File, OpenFail> {
    let mut escaped = false;
    let mut other: Option<std::io::Error> = None;
    for (root, rel) in candidates(path, roots)? {
        match sys::open_beneath(&root, &rel) {
            Ok(f) => return Ok(f),
            Err(OpenFail::Escape) => escaped = true,
            Err(OpenFail::NotFound) => {}
            Err(OpenFail::Io(e)) => other = Some(e),
        }
    }
    if escaped {
        Err(OpenFail::Escape)
    } else if let Some(e) = other {
        Err(OpenFail::Io(e))
    } else {
        Err(OpenFail::NotFound)
    }
}

fn classify(e: std::io::Error) -> OpenFail {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => OpenFail::NotFound,
        Some(libc::EXDEV) => OpenFail::Escape,
        _ => OpenFail::Io(e),
    }
}

fn file_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "special file"
    }
}

/// The checks on an opened (possibly `O_PATH`) descriptor: regular file, not over the limit.
fn check_metadata(md: &std::fs::Metadata, max_bytes: u64) -> Result<(), ReferenceError> {
    if !md.file_type().is_file() {
        return Err(ReferenceError::NotRegular(file_kind(&md.file_type())));
    }
    if md.len() > max_bytes {
        return Err(ReferenceError::TooLarge { max: max_bytes });
    }
    Ok(())
}

#[cfg(target_os = "linux")]
mod sys {
    use std::ffi::CString;
    use std::fs::File;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::{check_metadata, classify, OpenFail, ReferenceError};

    /// Set once `openat2` answered ENOSYS (kernel before 5.6) or was refused by a seccomp filter.
    static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

    fn cstr(p: &Path) -> Result<CString, OpenFail> {
        CString::new(p.as_os_str().as_bytes()).map_err(|_| OpenFail::NotFound)
    }

    fn open_raw(p: &Path, flags: libc::c_int) -> Result<File, std::io::Error> {
        let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        // SAFETY: `c` is a valid NUL-terminated string; the returned descriptor is owned by the File.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    pub(super) fn open_plain(path: &Path) -> Result<File, OpenFail> {
        open_raw(path, libc::O_PATH).map_err(classify)
    }

    pub(super) fn open_beneath(root: &Path, rel: &Path) -> Result<File, OpenFail> {
        let dir = open_raw(root, libc::O_PATH | libc::O_DIRECTORY).map_err(classify)?;
        if rel.as_os_str().is_empty() {
            return Err(OpenFail::NotFound);
        }
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let c = cstr(rel)?;
            // SAFETY: open_how is plain data; zeroed is its documented default, then the fields are set.
            let mut how: libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
            how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
            // SAFETY: valid descriptor, NUL-terminated path, a correctly sized open_how.
            let r = unsafe { libc::syscall(libc::SYS_openat2, dir.as_raw_fd(), c.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>()) };
            if r >= 0 {
                // SAFETY: a fresh descriptor nobody else owns.
                return Ok(unsafe { File::from_raw_fd(r as i32) });
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOSYS) | Some(libc::EPERM) => NO_OPENAT2.store(true, Ordering::Relaxed),
                // RESOLVE_BENEATH also refuses symlinks that only pass outside (an absolute link to a file inside
                // the root, `../root/x`): those are accepted when the opened file really lies inside; a link that
                // leaves the root stays refused, whether or not its target exists
                Some(libc::EXDEV) => return open_checked(root, rel).map_err(|_| OpenFail::Escape),
                _ => return Err(classify(e)),
            }
        }
        open_checked(root, rel)
    }

    /// Without `openat2`: open (following symlinks), then check where the descriptor really points.
    fn open_checked(root: &Path, rel: &Path) -> Result<File, OpenFail> {
        let f = open_raw(&root.join(rel), libc::O_PATH).map_err(classify)?;
        let real = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).or_else(|_| root.join(rel).canonicalize()).map_err(classify)?;
        let root_real = root.canonicalize().map_err(classify)?;
        if !real.starts_with(&root_real) {
            return Err(OpenFail::Escape);
        }
        Ok(f)
    }

    /// From the `O_PATH` descriptor to a readable one of the same inode, after the metadata checks.
    pub(super) fn checked_reader(f: File, path: &Path, roots: &[PathBuf], max_bytes: u64) -> Result<(File, u64), ReferenceError> {
        let io = |source: std::io::Error| ReferenceError::Io { path: path.to_path_buf(), source };
        let md = f.metadata().map_err(io)?;
        check_metadata(&md, max_bytes)?;
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
        let reader = match open_raw(Path::new(&format!("/proc/self/fd/{}", f.as_raw_fd())), flags) {
            Ok(r) => r,
            // no /proc: open by path again (the same resolution rules), then insist on the same inode
            Err(_) if roots.is_empty() => open_raw(path, flags).map_err(io)?,
            Err(e) => return Err(io(e)),
        };
        let md2 = reader.metadata().map_err(io)?;
        if md2.dev() != md.dev() || md2.ino() != md.ino() {
            return Err(io(std::io::Error::other("the file changed while it was opened")));
        }
        check_metadata(&md2, max_bytes)?;
        Ok((reader, md2.len()))
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::fs::File;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    use std::path::{Path, PathBuf};

    use super::{check_metadata, classify, OpenFail, ReferenceError};

    pub(super) fn open_plain(path: &Path) -> Result<File, OpenFail> {
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path).map_err(classify)
    }

    pub(super) fn open_beneath(root: &Path, rel: &Path) -> Result<File, OpenFail> {
        let p = root.join(rel);
        let real = p.canonicalize().map_err(classify)?;
        let root_real = root.canonicalize().map_err(classify)?;
        if !real.starts_with(&root_real) {
            return Err(OpenFail::Escape);
        }
        let f = open_plain(&real)?;
        // the inode opened must be the one that was checked
        let (a, b) = (f.metadata().map_err(classify)?, std::fs::metadata(&real).map_err(classify)?);
        if a.dev() != b.dev() || a.ino() != b.ino() {
            return Err(OpenFail::Escape);
        }
        Ok(f)
    }

    pub(super) fn checked_reader(f: File, path: &Path, _roots: &[PathBuf], max_bytes: u64) -> Result<(File, u64), ReferenceError> {
        let md = f.metadata().map_err(|source| ReferenceError::Io { path: path.to_path_buf(), source })?;
        check_metadata(&md, max_bytes)?;
        Ok((f, md.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gsv-reffile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn confinement_and_file_types() {
        let dir = tmp("conf");
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.wav"), b"abc").unwrap();
        std::fs::write(dir.join("secret.wav"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.join("secret.wav"), root.join("abs-link.wav")).unwrap();
        std::os::unix::fs::symlink("../secret.wav", root.join("rel-link.wav")).unwrap();
        std::os::unix::fs::symlink(dir.join("missing.wav"), root.join("dangling.wav")).unwrap();
        std::os::unix::fs::symlink("a.wav", root.join("inner-link.wav")).unwrap();
        std::os::unix::fs::symlink(root.join("a.wav"), root.join("abs-inner-link.wav")).unwrap();
        let roots = canonical_roots(std::slice::from_ref(&root)).unwrap();
        let open = |p: &str| open_reference(Path::new(p), &roots, 100);
        assert_eq!(open("a.wav").unwrap().read_all(&|| false).unwrap(), b"abc");
        assert!(open(root.join("a.wav").to_str().unwrap()).is_ok());
        assert!(open("inner-link.wav").is_ok(), "a symlink that stays inside the root is followed");
        assert!(open("abs-inner-link.wav").is_ok(), "an absolute symlink to a file inside the root too");
        for bad in ["../secret.wav", "abs-link.wav", "rel-link.wav", "dangling.wav", "/etc/passwd", "/no/such/file.wav"] {
            assert!(matches!(open(bad), Err(ReferenceError::Forbidden)), "{bad}: {:?}", open(bad).err());
        }
        let secret = dir.join("secret.wav");
        assert!(matches!(open(secret.to_str().unwrap()), Err(ReferenceError::Forbidden)));
        assert!(matches!(open("nope.wav"), Err(ReferenceError::Io { .. })));
        assert!(matches!(open("sub"), Err(ReferenceError::NotRegular("directory"))));
        std::fs::write(root.join("big.wav"), vec![0u8; 101]).unwrap();
        assert!(matches!(open("big.wav"), Err(ReferenceError::TooLarge { max: 100 })));
        // without roots: any path, symlinks followed; special files refused without blocking
        assert!(open_reference(&root.join("abs-link.wav"), &[], 100).is_ok());
        assert!(matches!(open_reference(Path::new("/dev/zero"), &[], 100), Err(ReferenceError::NotRegular("character device"))));
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(open_reference(&fifo, &[], 100), Err(ReferenceError::NotRegular("FIFO"))));
        // a stop request ends a read
        assert!(matches!(open("a.wav").unwrap().read_all(&|| true), Err(ReferenceError::Interrupted)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
