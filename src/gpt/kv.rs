//! The GPT's K/V cache: ONNX Runtime tensors bound in place to the `gpt_step` graph.
//!
//! Per layer, K and V are `[1, H, C, Dk]` f32 (head-major, `H` heads, `C` = capacity rows, `Dk` = the head size
//! `D / H` rounded up to a multiple of 8, the extra channels zero; see `gpt.kv_head_dim` in BUNDLE.md), allocated
//! once and bound both as the step's `past_k_i`/`past_v_i` input and as its `present_k_i`/`present_v_i` output
//! (a [`Binding`]), so GroupQueryAttention appends the new row at index `len` and reads rows `0..=len` without
//! any copy (`export/models/gpt_onnx.py`). The prefill's rows (`[N+P, D]` per layer, row-major) are scattered in
//! by [`KvCache::write_rows`]. The small per-step inputs (`token` `[1,1]` i64, `position` `[1]` i64,
//! `seqlens_k` `[1]` i32 = `len`, `total_len` scalar i32 = `len + 1`) and the `logits` output `[1, V]` are bound
//! tensors too, rewritten in place: a step allocates nothing.

use super::{GptDims, GptError, Result};
use crate::runtime::{Binding, Graph, OrtTensor};

pub struct KvCache {
    n_layer: usize,
    heads: usize,
    /// `D / H`: the channels of a head that hold data
    head_dim: usize,
    /// `Dk >= head_dim`: the channels of a head in the buffer
    kv_head_dim: usize,
    capacity: usize,
    len: usize,
    /// K/V and the per-step tensors bound to the step graph (the sequence is row 0 of their batch)
    t: StepTensors,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("n_layer", &self.n_layer)
            .field("heads", &self.heads)
            .field("head_dim", &self.head_dim)
            .field("kv_head_dim", &self.kv_head_dim)
            .field("capacity", &self.capacity)
            .field("len", &self.len)
            .finish()
    }
}

/// The tensors bound to a `gpt_step` graph for `batch` sequences of `rows` K/V rows each: per layer K and V
/// `[batch, H, rows, Dk]` (bound as past and present), `token` `[batch, 1]`, `position` `[batch]`, `seqlens_k`
/// `[batch]`, `total_len` scalar, `logits` `[batch, V]`. The one cache of [`super::Gpt`] (batch 1) and each bucket of
/// the batched GPT ([`super::batch`]) are made by [`StepTensors::bind`].
pub(super) struct StepTensors {
    pub k: Vec<OrtTensor<f32>>,
    pub v: Vec<OrtTensor<f32>>,
    pub token: OrtTensor<i64>,
    pub position: OrtTensor<i64>,
    pub seqlens_k: OrtTensor<i32>,
    pub total_len: OrtTensor<i32>,
    pub logits: OrtTensor<f32>,
    pub binding: Binding,
}

impl StepTensors {
    pub(super) fn bind(step: &Graph, dims: GptDims, batch: usize, rows: usize) -> Result<StepTensors> {
        let shape = [batch, dims.n_head, rows, dims.kv_head_dim];
        let mut k = Vec::with_capacity(dims.n_layer);
        let mut v = Vec::with_capacity(dims.n_layer);
        for _ in 0..dims.n_layer {
            k.push(step.alloc::<f32>(&shape)?);
            v.push(step.alloc::<f32>(&shape)?);
        }
        let token = step.alloc::<i64>(&[batch, 1])?;
        let position = step.alloc::<i64>(&[batch])?;
        let seqlens_k = step.alloc::<i32>(&[batch])?;
        let total_len = step.alloc::<i32>(&[])?;
        let mut logits = step.alloc::<f32>(&[batch, dims.vocab])?;
        let mut binding = step.binding()?;
        binding.input("token", &token)?;
        binding.input("position", &position)?;
        binding.input("seqlens_k", &seqlens_k)?;
        binding.input("total_len", &total_len)?;
        for i in 0..dims.n_layer {
            binding.input(&format!("past_k_{i}"), &k[i])?;
            binding.input(&format!("past_v_{i}"), &v[i])?;
            binding.output(&format!("present_k_{i}"), &mut k[i])?;
            binding.output(&format!("present_v_{i}"), &mut v[i])?;
        }
        binding.output("logits", &mut logits)?;
        Ok(StepTensors { k, v, token, position, seqlens_k, total_len, logits, binding })
    }
}

fn input(msg: String) -> GptError {
    GptError::Input(msg)
}

/// The fewest sequences `step` runs with: its `gsv.step_min_batch` stamp (BUNDLE.md), 1 when absent. A quantised
/// step graph whose one-row MatMulNBits takes another ONNX Runtime kernel than a batch is stamped 2 by the exporter
/// (`export/models/gpt_onnx.py::step_min_batch`); running a single sequence with a padding row then gives the same
/// logits as running it in any batch, so the pool and the batched scheduler compute the same numbers.
pub(super) fn step_min_batch(step: &Graph) -> usize {
    step.meta("gsv.step_min_batch").and_then(|v| v.parse::<usize>().ok()).unwrap_or(1).clamp(1, 16)
}

impl KvCache {
    /// A zero-filled cache of `capacity` rows bound to `step` (the `gpt_step` graph of [`super::Gpt`]). The sequence
    /// is row 0 of the batch; a graph stamped with a minimum batch ([`step_min_batch`]) gets padding rows
    /// (`seqlens_k` 0, zero K/V) up to it, at the cost of their K/V memory.
    pub(super) fn new(step: &Graph, dims: GptDims, capacity: usize) -> Result<KvCache> {
        let GptDims { n_layer, n_head: heads, hidden, kv_head_dim, .. } = dims;
        if heads == 0 || !hidden.is_multiple_of(heads) || kv_head_dim < hidden / heads {
            return Err(input(format!("K/V cache: hidden {hidden}, {heads} heads, head size {kv_head_dim}")));
        }
        let head_dim = hidden / heads;
        let batch = step_min_batch(step);
        let t = StepTensors::bind(step, dims, batch, capacity)?;
        Ok(KvCache { n_layer, heads, head_dim, kv_head_dim, capacity, len: 0, t })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn n_layer(&self) -> usize {
        self.n_layer
    }
    pub fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }
    /// Forget the content (keeps the allocation and the binding).
    pub fn reset(&mut self) {
        self.len = 0;
    }
    /// Mark `len` rows valid.
    pub fn set_len(&mut self, len: usize) -> Result<()> {
        if len > self.capacity {
            return Err(self.full());
        }
        self.len = len;
        Ok(())
    }
    fn full(&self) -> GptError {
        input(format!("KV cache full: capacity {} rows", self.capacity))
    }

    /// Write `rows.len() / D` rows (row-major `[n, D]`, as the prefill returns them) at row `start` of one
    /// layer's K (or V). Does not change `len`.
    pub fn write_rows(&mut self, layer: usize, is_v: bool, start: usize, rows: &[f32]) -> Result<()> {
        let (h, dh, dk, cap) = (self.heads, self.head_dim, self.kv_head_dim, self.capacity);
        let d = h * dh;
        if layer >= self.n_layer || !rows.len().is_multiple_of(d) {
            return Err(input(format!("K/V rows: layer {layer}, {} values for D={d}", rows.len())));
        }
        let n = rows.len() / d;
        if start + n > cap {
            return Err(self.full());
        }
        let t = if is_v { &mut self.t.v[layer] } else { &mut self.t.k[layer] };
        let buf = t.data_mut()?;
        for (r, row) in rows.chunks_exact(d).enumerate() {
            for (head, src) in row.chunks_exact(dh).enumerate() {
                let at = (head * cap + start + r) * dk;
                buf[at..at + dh].copy_from_slice(src);
            }
        }
        Ok(())
    }

    /// One row of one layer's K (or V) as `D` values (head after head), for checks.
    pub fn row(&self, layer: usize, is_v: bool, r: usize) -> Result<Vec<f32>> {
        let (h, dh, dk, cap) = (self.heads, self.head_dim, self.kv_head_dim, self.capacity);
        if layer >= self.n_layer || r >= cap {
            return Err(input(format!("K/V row {r} of layer {layer}: out of range")));
        }
        let t = if is_v { &self.t.v[layer] } else { &self.t.k[layer] };
        let buf = t.data()?;
        Ok((0..h).flat_map(|head| buf[(head * cap + r) * dk..(head * cap + r) * dk + dh].iter().copied()).collect())
    }

    /// Feed `token` at audio `position` through `step`: the graph reads the `len` valid rows, appends the new row
    /// in place and `len` grows by one. Returns the logits (`V` values).
    pub(super) fn step(&mut self, step: &mut Graph, token: i64, position: i64) -> Result<Vec<f32>> {
        let t = self.len;
        if t == 0 {
            return Err(input("empty K/V cache (run the prefill first)".into()));
        }
        if t + 1 > self.capacity {
            return Err(self.full());
        }
        self.t.token.data_mut()?[0] = token;
        self.t.position.data_mut()?[0] = position;
        self.t.seqlens_k.data_mut()?[0] = t as i32;
        self.t.total_len.data_mut()?[0] = t as i32 + 1;
        step.run_bound(&self.t.binding)?;
        self.len = t + 1;
        // row 0 of `[batch, V]` is the sequence (any further rows are padding)
        let v = self.t.logits.shape()[1];
        Ok(self.t.logits.data()?[..v].to_vec())
    }
}
