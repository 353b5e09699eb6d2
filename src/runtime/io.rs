//! The typed run/extract API over one [`Graph`], and the IoBinding wrapper. Generic: every name is the caller's.
//!
//! * [`Graph::run`]: named [`Input`]s, each a borrowed f32/i64/i32 slice with its shape (row-major, no copy), in;
//!   [`Outputs`] out, read by name with [`Outputs::get`] as `(shape, &[T])` borrowed from ONNX Runtime's buffers.
//! * [`Graph::alloc`]: an [`OrtTensor`] (zero-filled, allocated by the session's allocator) that the caller reads
//!   and writes in place; [`Graph::binding`] + [`Binding::input`]/[`Binding::output`] bind such tensors to the
//!   graph's inputs and outputs once (the same tensor may be bound as an input and an output: the graph then
//!   updates it in place), and [`Graph::run_bound`] runs with them: no allocation and no copy per run.
//!
//! Errors are [`RuntimeError`]s naming the graph; nothing here panics on a wrong name, shape or type.

use ort::session::{IoBinding, SessionInputValue, SessionOutputs};
use ort::value::{PrimitiveTensorElementType, Tensor, TensorRef};

use super::{Graph, Result, RuntimeError};

/// Element types the API moves: f32, i64, i32.
pub trait Element: PrimitiveTensorElementType + Copy + Default + std::fmt::Debug + 'static {}
impl Element for f32 {}
impl Element for i64 {}
impl Element for i32 {}

enum Data<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
    I32(&'a [i32]),
}

/// One named input: a borrowed row-major slice and its shape.
pub struct Input<'a> {
    name: &'a str,
    shape: Vec<usize>,
    data: Data<'a>,
}

impl<'a> Input<'a> {
    pub fn f32(name: &'a str, shape: &[usize], data: &'a [f32]) -> Input<'a> {
        Input { name, shape: shape.to_vec(), data: Data::F32(data) }
    }
    pub fn i64(name: &'a str, shape: &[usize], data: &'a [i64]) -> Input<'a> {
        Input { name, shape: shape.to_vec(), data: Data::I64(data) }
    }
    pub fn i32(name: &'a str, shape: &[usize], data: &'a [i32]) -> Input<'a> {
        Input { name, shape: shape.to_vec(), data: Data::I32(data) }
    }
}

/// The outputs of one [`Graph::run`], borrowed from ONNX Runtime until dropped.
pub struct Outputs<'s> {
    graph: String,
    outs: SessionOutputs<'s>,
}

impl Outputs<'_> {
    fn err(&self, name: &str, msg: String) -> RuntimeError {
        RuntimeError::Output { graph: self.graph.clone(), output: name.into(), msg }
    }

    /// Whether the graph produced an output of this name.
    pub fn contains(&self, name: &str) -> bool {
        !name.is_empty() && self.outs.get(name).is_some()
    }

    /// Output `name` as `(shape, values)`; a missing output or another element type is an error.
    pub fn get<T: Element>(&self, name: &str) -> Result<(Vec<usize>, &[T])> {
        if name.is_empty() {
            return Err(self.err(name, "empty output name".into()));
        }
        let v = self.outs.get(name).ok_or_else(|| self.err(name, "missing".into()))?;
        let (shape, data) = v.try_extract_tensor::<T>().map_err(|e| self.err(name, e.to_string()))?;
        Ok((shape.iter().map(|&d| d.max(0) as usize).collect(), data))
    }
}

impl Graph {
    fn input_err(&self, msg: impl Into<String>) -> RuntimeError {
        RuntimeError::Input { graph: self.name.clone(), msg: msg.into() }
    }

    /// Run the graph on named inputs.
    pub fn run(&mut self, inputs: &[Input<'_>]) -> Result<Outputs<'_>> {
        let mut values: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for i in inputs {
            let shape = i.shape.as_slice();
            let bad = |e: ort::Error| RuntimeError::Input { graph: self.name.clone(), msg: format!("`{}`: {e}", i.name) };
            let v: SessionInputValue<'_> = match i.data {
                Data::F32(d) => TensorRef::from_array_view((shape, d)).map_err(bad)?.into(),
                Data::I64(d) => TensorRef::from_array_view((shape, d)).map_err(bad)?.into(),
                Data::I32(d) => TensorRef::from_array_view((shape, d)).map_err(bad)?.into(),
            };
            values.push((i.name, v));
        }
        let graph = self.name.clone();
        let outs = self.session.run(values).map_err(|e| RuntimeError::Run { graph: graph.clone(), msg: e.to_string() })?;
        Ok(Outputs { graph, outs })
    }

    /// A zero-filled tensor in ONNX Runtime memory (this graph's allocator), for binding.
    pub fn alloc<T: Element>(&self, shape: &[usize]) -> Result<OrtTensor<T>> {
        let mut t = Tensor::<T>::new(self.session.allocator(), shape.to_vec())
            .map_err(|e| self.input_err(format!("cannot allocate a {shape:?} tensor: {e}")))?;
        t.try_extract_tensor_mut::<T>().map_err(|e| self.input_err(e.to_string()))?.1.fill(T::default());
        Ok(OrtTensor { tensor: t, shape: shape.to_vec() })
    }

    /// An empty binding for this graph.
    pub fn binding(&self) -> Result<Binding> {
        let binding = self.session.create_binding().map_err(|e| self.input_err(format!("cannot create an I/O binding: {e}")))?;
        Ok(Binding { graph: self.name.clone(), binding })
    }

    /// Run with the tensors bound in `b`; bound outputs are written in place.
    pub fn run_bound(&mut self, b: &Binding) -> Result<()> {
        let graph = &self.name;
        let _outs = self.session.run_binding(&b.binding).map_err(|e| RuntimeError::Run { graph: graph.clone(), msg: e.to_string() })?;
        Ok(())
    }
}

/// A tensor held by ONNX Runtime, readable and writable in place.
pub struct OrtTensor<T: Element> {
    tensor: Tensor<T>,
    shape: Vec<usize>,
}

impl<T: Element> OrtTensor<T> {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The values, row-major.
    pub fn data(&self) -> Result<&[T]> {
        self.tensor.try_extract_tensor::<T>().map(|(_, d)| d).map_err(access)
    }
    pub fn data_mut(&mut self) -> Result<&mut [T]> {
        self.tensor.try_extract_tensor_mut::<T>().map(|(_, d)| d).map_err(access)
    }
}

/// Tensors created by [`Graph::alloc`] have the element type they were made with, so access cannot fail; if it ever
/// did, it is an error, not a panic.
fn access(e: ort::Error) -> RuntimeError {
    RuntimeError::Output { graph: "bound tensor".into(), output: String::new(), msg: format!("tensor access: {e}") }
}

/// Tensors bound to one graph's inputs and outputs (an ONNX Runtime IoBinding).
pub struct Binding {
    graph: String,
    binding: IoBinding,
}

impl Binding {
    fn err(&self, name: &str, e: ort::Error) -> RuntimeError {
        RuntimeError::Input { graph: self.graph.clone(), msg: format!("cannot bind `{name}`: {e}") }
    }

    /// Bind `t` to input `name`. ONNX Runtime reads the tensor's memory at every run, so later writes are seen.
    pub fn input<T: Element>(&mut self, name: &str, t: &OrtTensor<T>) -> Result<()> {
        self.binding.bind_input(name, &t.tensor).map_err(|e| self.err(name, e))
    }

    /// Bind output `name` to `t`: runs write into it.
    pub fn output<T: Element>(&mut self, name: &str, t: &mut OrtTensor<T>) -> Result<()> {
        let r = self.binding.bind_output(name, &mut t.tensor);
        r.map_err(|e| self.err(name, e))
    }
}
