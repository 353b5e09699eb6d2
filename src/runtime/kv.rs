//! The GPT's K/V cache, held in ONNX Runtime tensors bound in place to the `gpt_step` graph.
//!
//! Per layer, K and V are `[1, H, C, Dk]` f32 (head-major, `C` = capacity rows, `Dk` = the head size `D / H`
//! rounded up to a multiple of 8, the extra channels zero; see `gpt.kv_head_dim` in BUNDLE.md), allocated once
//! and bound both as the step's `past_k_i`/`past_v_i` input and as its `present_k_i`/`present_v_i` output, so
//! GroupQueryAttention appends the new row at index `len` and reads rows `0..=len` without any copy
//! (`export/models/gpt_onnx.py`). The prefill's rows (`[N+P, D]` per layer) are scattered in by
//! [`KvCache::write_rows`]. The small per-step inputs (token, position, `seqlens_k = len`, `total_len = len+1`)
//! and the logits output are bound tensors too, rewritten in place: a step allocates nothing.

use ort::session::IoBinding;
use ort::value::Tensor;

use super::{Graph, Result, RuntimeError};

pub struct KvCache {
    n_layer: usize,
    heads: usize,
    /// `D / H`: the channels of a head that hold data
    head_dim: usize,
    /// `Dk >= head_dim`: the channels of a head in the buffer
    kv_head_dim: usize,
    capacity: usize,
    len: usize,
    k: Vec<Tensor<f32>>,
    v: Vec<Tensor<f32>>,
    pub(super) token: Tensor<i64>,
    pub(super) position: Tensor<i64>,
    pub(super) seqlens_k: Tensor<i32>,
    pub(super) total_len: Tensor<i32>,
    pub(super) logits: Tensor<f32>,
    pub(super) binding: IoBinding,
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

impl KvCache {
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
    fn full(&self) -> RuntimeError {
        RuntimeError::Input { graph: "gpt_step".into(), msg: format!("KV cache full: capacity {} rows", self.capacity) }
    }

    /// Write `rows.len() / D` rows (row-major `[n, D]`, as the prefill returns them) at row `start` of one
    /// layer's K (or V). Does not change `len`.
    pub fn write_rows(&mut self, layer: usize, is_v: bool, start: usize, rows: &[f32]) -> Result<()> {
        let (h, dh, dk, cap) = (self.heads, self.head_dim, self.kv_head_dim, self.capacity);
        let d = h * dh;
        if layer >= self.n_layer || !rows.len().is_multiple_of(d) {
            return Err(RuntimeError::Input { graph: "gpt_step".into(), msg: format!("K/V rows: layer {layer}, {} values for D={d}", rows.len()) });
        }
        let n = rows.len() / d;
        if start + n > cap {
            return Err(self.full());
        }
        let t = if is_v { &mut self.v[layer] } else { &mut self.k[layer] };
        let (_, buf) = t.try_extract_tensor_mut::<f32>().map_err(access)?;
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
            return Err(RuntimeError::Input { graph: "gpt_step".into(), msg: format!("K/V row {r} of layer {layer}: out of range") });
        }
        let t = if is_v { &self.v[layer] } else { &self.k[layer] };
        let (_, buf) = t.try_extract_tensor::<f32>().map_err(access)?;
        Ok((0..h).flat_map(|head| buf[(head * cap + r) * dk..(head * cap + r) * dk + dh].iter().copied()).collect())
    }
}

/// The cache's tensors are ours and f32/i64/i32 as created, so reading them cannot fail; if it ever did, it is an
/// error of the request, not a panic.
fn access(e: ort::Error) -> RuntimeError {
    RuntimeError::Input { graph: "gpt_step".into(), msg: format!("K/V cache access: {e}") }
}

impl Graph {
    /// A K/V cache of `capacity` rows for this `gpt_step` graph (hidden size `hidden`, `heads` heads stored
    /// `kv_head_dim` wide), bound in place. Zero-filled, so padding channels are zeros.
    pub fn new_kv_cache(&self, n_layer: usize, heads: usize, hidden: usize, kv_head_dim: usize, vocab: usize, capacity: usize) -> Result<KvCache> {
        if heads == 0 || !hidden.is_multiple_of(heads) || kv_head_dim < hidden / heads {
            return Err(RuntimeError::Input { graph: self.name.clone(), msg: format!("K/V cache: hidden {hidden}, {heads} heads, head size {kv_head_dim}") });
        }
        let head_dim = hidden / heads;
        let err = |e: ort::Error| RuntimeError::Input { graph: self.name.clone(), msg: format!("K/V cache of {capacity} rows: {e}") };
        let alloc = self.session.allocator();
        let shape = [1usize, heads, capacity, kv_head_dim];
        let mut k = Vec::with_capacity(n_layer);
        let mut v = Vec::with_capacity(n_layer);
        for _ in 0..n_layer {
            for list in [&mut k, &mut v] {
                let mut t = Tensor::<f32>::new(alloc, shape).map_err(err)?;
                t.try_extract_tensor_mut::<f32>().map_err(err)?.1.fill(0.0);
                list.push(t);
            }
        }
        let token = Tensor::<i64>::new(alloc, [1usize, 1]).map_err(err)?;
        let position = Tensor::<i64>::new(alloc, [1usize]).map_err(err)?;
        let seqlens_k = Tensor::<i32>::new(alloc, [1usize]).map_err(err)?;
        let total_len = Tensor::<i32>::new(alloc, Vec::<usize>::new()).map_err(err)?;
        let mut logits = Tensor::<f32>::new(alloc, [1usize, vocab]).map_err(err)?;
        let mut binding = self.session.create_binding().map_err(err)?;
        binding.bind_input("token", &token).map_err(err)?;
        binding.bind_input("position", &position).map_err(err)?;
        binding.bind_input("seqlens_k", &seqlens_k).map_err(err)?;
        binding.bind_input("total_len", &total_len).map_err(err)?;
        for i in 0..n_layer {
            binding.bind_input(format!("past_k_{i}"), &k[i]).map_err(err)?;
            binding.bind_input(format!("past_v_{i}"), &v[i]).map_err(err)?;
            binding.bind_output(format!("present_k_{i}"), &mut k[i]).map_err(err)?;
            binding.bind_output(format!("present_v_{i}"), &mut v[i]).map_err(err)?;
        }
        binding.bind_output("logits", &mut logits).map_err(err)?;
        Ok(KvCache { n_layer, heads, head_dim, kv_head_dim, capacity, len: 0, k, v, token, position, seqlens_k, total_len, logits, binding })
    }

    /// gpt_step: feed `token` at audio `position`; the graph reads the cache's `len` rows, appends the new row
    /// in place and `len` grows by one. Returns the logits (`V` values).
    pub fn gpt_step(&mut self, cache: &mut KvCache, token: i64, position: i64) -> Result<Vec<f32>> {
        let t = cache.len;
        if t == 0 {
            return Err(RuntimeError::Input { graph: self.name.clone(), msg: "empty K/V cache (run the prefill first)".into() });
        }
        if t + 1 > cache.capacity {
            return Err(cache.full());
        }
        cache.token.try_extract_tensor_mut::<i64>().map_err(access)?.1[0] = token;
        cache.position.try_extract_tensor_mut::<i64>().map_err(access)?.1[0] = position;
        cache.seqlens_k.try_extract_tensor_mut::<i32>().map_err(access)?.1[0] = t as i32;
        cache.total_len.try_extract_tensor_mut::<i32>().map_err(access)?.1[0] = t as i32 + 1;
        {
            let _outs = self.session.run_binding(&cache.binding).map_err(|e| RuntimeError::Run { graph: self.name.clone(), msg: e.to_string() })?;
        }
        cache.len = t + 1;
        Ok(cache.logits.try_extract_tensor::<f32>().map_err(access)?.1.to_vec())
    }
}
