//! ONNX Runtime access: the only module that touches `ort`.
//!
//! * [`find_library`] picks the `libonnxruntime` shared library: `--ort-lib` flag, then `ORT_DYLIB_PATH`,
//!   then `.ort/lib/<libname>` in the executable's directory or any ancestor of it (so `target/debug/gsv`,
//!   `target/debug/deps/<test>` and `cargo run` from the repo all find `<repo>/.ort/lib`), then the same
//!   search upwards from the current directory.
//! * [`Runtime::init`] loads it once per process (ONNX Runtime allows one environment per process) and
//!   reports a missing or too old library as a [`RuntimeError`], never a panic.
//! * [`SessionOptions`] chooses the execution provider by name at run time (`cpu`, `cuda`, `coreml`/`mps`,
//!   `tensorrt`); a provider that cannot start falls back to CPU with a warning, or errors when `strict`.
//! * [`Graph`] wraps one `ort::Session` under a name its caller chooses; [`io`] is the generic typed API over it:
//!   [`Graph::run`] takes named [`Input`]s (f32/i64/i32 slices with a shape) and returns [`Outputs`] to extract
//!   by name and element type; [`Graph::alloc`] + [`Binding`] bind ONNX Runtime-owned [`OrtTensor`]s to inputs and
//!   outputs once and run without copies (state that a graph updates in place lives in such tensors).
//!
//! The runtime knows no model: graph names, input/output names and shapes belong to the model structs that run
//! them, which declare them as `bundle::GraphContract`s next to their code. [`IoSpec`] is what a loaded session
//! reports, for those checks.

pub mod io;

pub use io::{Binding, Element, Input, OrtTensor, Outputs};

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProviderDispatch};
#[cfg(any(feature = "cuda", feature = "coreml", feature = "tensorrt"))]
use ort::ep::ExecutionProvider;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

/// Errors of the runtime layer. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found; tried: {tried}. Pass --ort-lib PATH or set ORT_DYLIB_PATH (scripts/setup installs it to <repo>/.ort/lib)")]
    LibraryNotFound { tried: String },
    #[error("cannot load ONNX Runtime: {0}")]
    Load(String),
    #[error("cannot create the ONNX Runtime environment: {0}")]
    Environment(String),
    #[error("unknown execution provider `{0}` (expected cpu, cuda, coreml, mps or tensorrt)")]
    UnknownProvider(String),
    #[error("unknown graph optimisation level `{0}` (expected disable, basic, extended, all)")]
    UnknownOptLevel(String),
    #[error("execution provider {provider} could not start: {msg}")]
    Provider { provider: String, msg: String },
    #[error("cannot load graph {graph} from {path}: {msg}")]
    Session { graph: String, path: String, msg: String },
    #[error("graph {graph}: run failed: {msg}")]
    Run { graph: String, msg: String },
    #[error("graph {graph}: output `{output}`: {msg}")]
    Output { graph: String, output: String, msg: String },
    #[error("graph {graph}: bad input: {msg}")]
    Input { graph: String, msg: String },
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// File name of the ONNX Runtime shared library on this platform.
pub fn library_file_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libonnxruntime.dylib"
    } else if cfg!(windows) {
        "onnxruntime.dll"
    } else {
        "libonnxruntime.so"
    }
}

/// Candidate paths, in lookup order (see the module doc). Pure function of its inputs, for tests.
pub fn library_candidates(flag: Option<&Path>, env_var: Option<&str>, exe: Option<&Path>, cwd: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(f) = flag {
        out.push(f.to_path_buf());
        return out;
    }
    if let Some(e) = env_var.filter(|e| !e.is_empty()) {
        out.push(PathBuf::from(e));
        return out;
    }
    let name = library_file_name();
    let push_ancestors = |start: &Path, out: &mut Vec<PathBuf>| {
        for dir in start.ancestors() {
            let c = dir.join(".ort").join("lib").join(name);
            if !out.contains(&c) {
                out.push(c);
            }
        }
    };
    if let Some(exe_dir) = exe.and_then(|e| e.parent()) {
        out.push(exe_dir.join(name));
        out.push(exe_dir.join("lib").join(name));
        push_ancestors(exe_dir, &mut out);
    }
    if let Some(c) = cwd {
        push_ancestors(c, &mut out);
    }
    out
}

/// Find the library: the flag or the env var is taken as given (an error if it does not exist); otherwise the
/// first existing candidate.
pub fn find_library(flag: Option<&Path>) -> Result<PathBuf> {
    let env_var = std::env::var("ORT_DYLIB_PATH").ok();
    let exe = std::env::current_exe().ok();
    let cwd = std::env::current_dir().ok();
    let cands = library_candidates(flag, env_var.as_deref(), exe.as_deref(), cwd.as_deref());
    if let Some(found) = cands.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let shown: Vec<String> = cands.iter().take(6).map(|p| p.display().to_string()).collect();
    let more = if cands.len() > 6 { format!(" (+{} more ancestors)", cands.len() - 6) } else { String::new() };
    Err(RuntimeError::LibraryNotFound { tried: format!("{}{}", shown.join(", "), more) })
}

static ENV: OnceLock<(Environment, PathBuf)> = OnceLock::new();
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A loaded ONNX Runtime (process-wide; cheap to clone).
#[derive(Clone)]
pub struct Runtime {
    env: Environment,
    pub library: PathBuf,
}

impl Runtime {
    /// Load the library (once per process) and create the environment. Later calls return the first one,
    /// whatever path they pass.
    pub fn init(flag: Option<&Path>) -> Result<Runtime> {
        let _g = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((env, lib)) = ENV.get() {
            return Ok(Runtime { env: env.clone(), library: lib.clone() });
        }
        let lib = find_library(flag)?;
        let builder = ort::init_from(&lib).map_err(|e| RuntimeError::Load(e.to_string()))?;
        let env = builder.with_name("gsv").build().map_err(|e| RuntimeError::Environment(e.to_string()))?;
        let _ = ENV.set((env.clone(), lib.clone()));
        Ok(Runtime { env, library: lib })
    }

    /// Load one graph with the given options.
    pub fn load(&self, name: &str, path: &Path, opts: &SessionOptions) -> Result<Graph> {
        let sess_err = |msg: String| RuntimeError::Session { graph: name.into(), path: path.display().to_string(), msg };
        if !path.is_file() {
            return Err(sess_err("file not found".into()));
        }
        let mut used = opts.device;
        let session = match opts.device {
            Device::Cpu => build_session(&self.env, path, opts, vec![ep::CPU::default().build()]).map_err(sess_err)?,
            dev => {
                let attempt = match dev.availability() {
                    Ok(()) => build_session(&self.env, path, opts, vec![dev.dispatch().error_on_failure(), ep::CPU::default().build()]),
                    Err(e) => Err(e),
                };
                match attempt {
                    Ok(s) => s,
                    Err(msg) if opts.strict => return Err(RuntimeError::Provider { provider: dev.name().into(), msg }),
                    Err(msg) => {
                        tracing::warn!("graph {name}: execution provider {} could not start ({msg}); falling back to CPU", dev.name());
                        used = Device::Cpu;
                        build_session(&self.env, path, opts, vec![ep::CPU::default().build()]).map_err(sess_err)?
                    }
                }
            }
        };
        Graph::new(name, session, used)
    }
}

fn build_session(env: &Environment, path: &Path, opts: &SessionOptions, eps: Vec<ExecutionProviderDispatch>) -> std::result::Result<Session, String> {
    let level = opts.opt_level.to_ort();
    let r = (|| -> ort::Result<Session> {
        let mut b = Session::builder(env)?.with_execution_providers(eps)?.with_optimization_level(level)?;
        if opts.intra_threads > 0 {
            b = b.with_intra_threads(opts.intra_threads)?;
        }
        if opts.inter_threads > 0 {
            b = b.with_inter_threads(opts.inter_threads)?;
        }
        // Benchmark hook (issue 15, item 7): GSV_ORT_SPIN=0|1 sets ONNX Runtime's `session.intra_op.allow_spinning`
        // (default: ONNX Runtime's, spinning on) so that scripts/bench can measure both; the flag and default come
        // with the engine refactor.
        match std::env::var("GSV_ORT_SPIN").as_deref() {
            Ok("0") => b = b.with_intra_op_spinning(false)?,
            Ok("1") => b = b.with_intra_op_spinning(true)?,
            _ => {}
        }
        b.commit_from_file(path)
    })();
    r.map_err(|e| e.to_string().replace('\n', " "))
}

/// Execution provider choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(i32),
    CoreMl,
    TensorRt(i32),
}

impl Device {
    /// `cpu`, `cuda`, `cuda:1`, `coreml`, `mps` (alias of coreml), `tensorrt`, `tensorrt:0`.
    pub fn parse(s: &str) -> Result<Device> {
        let lower = s.trim().to_ascii_lowercase();
        let (head, idx) = match lower.split_once(':') {
            Some((h, i)) => (h.to_string(), Some(i.parse::<i32>().map_err(|_| RuntimeError::UnknownProvider(s.into()))?)),
            None => (lower.clone(), None),
        };
        Ok(match head.as_str() {
            "cpu" => Device::Cpu,
            "cuda" | "gpu" => Device::Cuda(idx.unwrap_or(0)),
            "coreml" | "mps" => Device::CoreMl,
            "tensorrt" | "trt" => Device::TensorRt(idx.unwrap_or(0)),
            _ => return Err(RuntimeError::UnknownProvider(s.into())),
        })
    }
    pub fn name(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda(_) => "cuda",
            Device::CoreMl => "coreml",
            Device::TensorRt(_) => "tensorrt",
        }
    }
    /// Whether this binary was built with the provider's cargo feature and the loaded library offers it.
    /// `Err` carries the reason it is not.
    fn availability(&self) -> std::result::Result<(), String> {
        let avail: std::result::Result<bool, String> = match self {
            Device::Cpu => Ok(true),
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => ep::CUDA::is_available().map_err(|e| e.to_string()),
            #[cfg(feature = "coreml")]
            Device::CoreMl => ep::CoreML::is_available().map_err(|e| e.to_string()),
            #[cfg(feature = "tensorrt")]
            Device::TensorRt(_) => ep::TensorRT::is_available().map_err(|e| e.to_string()),
            #[allow(unreachable_patterns)]
            other => return Err(format!("gsv was built without the `{}` cargo feature", other.name())),
        };
        match avail {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("{} is not available in the loaded ONNX Runtime library", self.name())),
            Err(e) => Err(e),
        }
    }
    fn dispatch(&self) -> ExecutionProviderDispatch {
        match *self {
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => ep::CUDA::default().with_device_id(i).build(),
            #[cfg(feature = "coreml")]
            Device::CoreMl => ep::CoreML::default().build(),
            #[cfg(feature = "tensorrt")]
            Device::TensorRt(i) => ep::TensorRT::default().with_device_id(i).build(),
            #[allow(unreachable_patterns)]
            _ => ep::CPU::default().build(),
        }
    }
}

/// Graph optimisation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptLevel {
    Disable,
    Basic,
    Extended,
    All,
}

impl OptLevel {
    pub fn parse(s: &str) -> Result<OptLevel> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "disable" | "none" | "0" => OptLevel::Disable,
            "basic" | "1" => OptLevel::Basic,
            "extended" | "2" => OptLevel::Extended,
            "all" | "3" => OptLevel::All,
            _ => return Err(RuntimeError::UnknownOptLevel(s.into())),
        })
    }
    fn to_ort(self) -> GraphOptimizationLevel {
        match self {
            OptLevel::Disable => GraphOptimizationLevel::Disable,
            OptLevel::Basic => GraphOptimizationLevel::Level1,
            OptLevel::Extended => GraphOptimizationLevel::Level2,
            OptLevel::All => GraphOptimizationLevel::Level3,
        }
    }
}

/// Session options shared by all graphs of a bundle. `0` threads = ONNX Runtime's default.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub device: Device,
    pub strict: bool,
    pub intra_threads: usize,
    pub inter_threads: usize,
    pub opt_level: OptLevel,
    /// Load graphs without comparing their sha256 with the manifest's (`--skip-integrity`; see `bundle::verify_file`).
    pub skip_integrity: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { device: Device::Cpu, strict: false, intra_threads: 0, inter_threads: 0, opt_level: OptLevel::All, skip_integrity: false }
    }
}

/// One input or output of a graph as declared in the ONNX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoSpec {
    pub name: String,
    /// Number of dimensions (`None` for non-tensors).
    pub rank: Option<usize>,
    /// Element type in lower case (`float32`, `int64`, ...).
    pub dtype: String,
}

/// A loaded graph.
pub struct Graph {
    pub name: String,
    pub device: Device,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    /// `metadata_props` of the model (custom keys only).
    pub metadata: Vec<(String, String)>,
    session: Session,
}

fn io_spec(name: &str, ty: &ort::value::ValueType) -> IoSpec {
    let rank = ty.tensor_shape().map(|s| s.len());
    let dtype = match ty.tensor_type() {
        Some(t) => format!("{t:?}").to_ascii_lowercase(),
        None => "non-tensor".into(),
    };
    IoSpec { name: name.to_string(), rank, dtype }
}

impl Graph {
    fn new(name: &str, session: Session, device: Device) -> Result<Graph> {
        let inputs = session.inputs().iter().map(|o| io_spec(o.name(), o.dtype())).collect();
        let outputs = session.outputs().iter().map(|o| io_spec(o.name(), o.dtype())).collect();
        let mut metadata = Vec::new();
        if let Ok(md) = session.metadata() {
            if let Ok(keys) = md.custom_keys() {
                for k in keys {
                    if let Some(v) = md.custom(&k) {
                        metadata.push((k, v));
                    }
                }
            }
        }
        Ok(Graph { name: name.to_string(), device, inputs, outputs, metadata, session })
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

}
