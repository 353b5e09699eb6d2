//! The batched GPT: one model copy whose step graph advances many sequences at once (issue 16).
//!
//! In:  per sequence, a prefill input ([`GptInput`]: phones `N`, BERT `[1024, N]`, prompt codes `P`), run alone
//!      (batch 1) by [`BatchGpt::prefill`] into a free slot; then, once per step, `(slot, token, position)` for every
//!      running sequence ([`BatchGpt::step`]).
//! Out: logits `[V]` per sequence (after its prefill, and after each step).
//!
//! The K/V cache is one buffer per layer and per K/V, `[B, H, C, Dk]` (B = the current *bucket*, C = rows per
//! sequence, fixed at construction), bound in place to the batched `gpt_step` graph as past and present (the same
//! tensor), with the small per-step inputs `token [B,1]`, `position [B]`, `seqlens_k [B]` and `logits [B,V]` bound
//! too: a step allocates nothing. A slot is one sequence's `[H, C, Dk]` block. GroupQueryAttention reads each
//! sequence's own rows `0..T_b` (`seqlens_k[b] = T_b`) and writes its row `T_b`: sequences never see each other.
//!
//! Buckets: B is a power of two (1, 2, 4, ..., up to `max_batch`), chosen as the smallest that holds the running
//! sequences; free slots inside a bucket run as padding (`seqlens_k = 0`: one row of each GEMM, writing only their own
//! row 0). Fixed shapes per bucket are what CUDA graphs capture; on the CPU they keep the GEMM sizes to a few. When
//! the sequences outgrow the bucket the next one is allocated and each sequence's valid rows are copied over (same
//! slot index); when they fall to a quarter of it or less they are compacted into the smaller one (the caller is told
//! the new slot of each), and when none is left the smallest bucket is all that stays allocated. Memory is `B * C * H * Dk * 4 bytes * 2 * n_layer` for the current bucket only.

use super::kv::StepTensors;
use super::{GptDims, GptError, GptInput, Result};
use crate::bundle::{Bundle, LoadError, Precision};
use crate::runtime::{Device, Graph, Runtime, SessionOptions};

/// The batch sizes the step graph runs at (each a fixed shape): powers of two from `min_batch` (the graph's
/// [`super::kv::step_min_batch`], 1 for fp32) up to `max_batch` (just `min_batch` when that is larger).
pub fn buckets(max_batch: usize, min_batch: usize) -> Vec<usize> {
    let max_batch = max_batch.max(1);
    let mut v = vec![min_batch.max(1)];
    while *v.last().unwrap_or(&1) < max_batch {
        let next = v.last().copied().unwrap_or(1) * 2;
        v.push(next.min(max_batch));
    }
    v
}

struct Buffers {
    bucket: usize,
    /// K/V `[bucket, H, R, Dk]` per layer and the small per-step tensors, bound to the step graph
    t: StepTensors,
}

/// The prefill and batched step graphs of one bundle, and the shared K/V cache.
pub struct BatchGpt {
    prefill: Graph,
    step: Graph,
    dims: GptDims,
    /// rows per sequence (C)
    rows: usize,
    max_batch: usize,
    /// the step graph's minimum batch ([`super::kv::step_min_batch`]): the smallest bucket
    min_batch: usize,
    bufs: Option<Buffers>,
    /// valid rows of each slot of the current bucket; `None` = free
    slots: Vec<Option<usize>>,
}

fn input(msg: String) -> GptError {
    GptError::Input(msg)
}

impl BatchGpt {
    /// Load the GPT graphs of `bundle` for batched use. The bundle must have a batched step graph
    /// (`gpt.batched_step`, BUNDLE.md): older bundles are refused with a re-export message.
    pub fn load(rt: &Runtime, bundle: &Bundle, opts: &SessionOptions, precision: Precision, max_batch: usize, rows: usize) -> std::result::Result<BatchGpt, LoadError> {
        if !bundle.manifest.gpt.batched_step {
            return Err(LoadError::Bundle(crate::bundle::BundleError::Field {
                field: "gpt.batched_step".into(),
                msg: "this bundle's gpt_step graph takes one sequence only; the batched engine (--scheduler batched) needs the batched step graph: re-export the bundle with `python -m export convert` (or run with --scheduler pool)".into(),
            }));
        }
        let [pc, sc] = super::Gpt::contracts(&bundle.manifest);
        let prefill = bundle.load_graph(rt, &pc, precision, opts)?;
        let step = bundle.load_graph(rt, &sc, precision, opts)?;
        let g = &bundle.manifest.gpt;
        let dims = GptDims { n_layer: g.n_layer, n_head: g.n_head, hidden: g.hidden_dim, kv_head_dim: g.kv_head_dim, vocab: g.vocab_size, eos: g.eos };
        let min_batch = super::kv::step_min_batch(&step);
        Ok(BatchGpt { prefill, step, dims, rows: rows.max(2), max_batch: max_batch.max(1), min_batch, bufs: None, slots: Vec::new() })
    }

    pub fn dims(&self) -> GptDims {
        self.dims
    }
    pub fn device(&self) -> Device {
        self.step.device
    }
    /// K/V rows per sequence (C).
    pub fn rows_per_sequence(&self) -> usize {
        self.rows
    }
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }
    /// The current bucket (0 before the first sequence).
    pub fn bucket(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.bucket)
    }
    pub fn running(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
    /// Bytes of K/V cache held now.
    pub fn cache_bytes(&self) -> usize {
        let d = self.dims;
        self.bucket() * self.rows * d.n_head * d.kv_head_dim * 4 * 2 * d.n_layer
    }

    fn alloc(&self, bucket: usize) -> Result<Buffers> {
        Ok(Buffers { bucket, t: StepTensors::bind(&self.step, self.dims, bucket, self.rows)? })
    }

    /// Move to `bucket`, copying each running sequence's valid rows; `map[old] = new slot`. Returns the map.
    fn rebucket(&mut self, bucket: usize) -> Result<Vec<Option<usize>>> {
        let mut fresh = self.alloc(bucket)?;
        let d = self.dims;
        let (h, c, dk) = (d.n_head, self.rows, d.kv_head_dim);
        let mut map = vec![None; self.slots.len()];
        let mut slots = vec![None; bucket];
        // keep slot indices when growing; compact into the first slots when shrinking
        let mut next = 0usize;
        for (old, len) in self.slots.iter().enumerate() {
            let Some(len) = *len else { continue };
            let new = if bucket >= self.slots.len() { old } else { next };
            next += 1;
            map[old] = Some(new);
            slots[new] = Some(len);
            if let Some(b) = &self.bufs {
                for (src_t, dst_t) in b.t.k.iter().zip(fresh.t.k.iter_mut()).chain(b.t.v.iter().zip(fresh.t.v.iter_mut())) {
                    let (src, dst) = (src_t.data()?, dst_t.data_mut()?);
                    for head in 0..h {
                        let s0 = ((old * h + head) * c) * dk;
                        let d0 = ((new * h + head) * c) * dk;
                        dst[d0..d0 + len * dk].copy_from_slice(&src[s0..s0 + len * dk]);
                    }
                }
            }
        }
        self.bufs = None; // free the old bucket
        self.bufs = Some(fresh);
        self.slots = slots;
        Ok(map)
    }

    /// A free slot for a sequence that needs `need` rows (growing the bucket if every slot is taken), or an error
    /// when `max_batch` sequences already run or `need` exceeds the rows per sequence.
    pub fn admit(&mut self, need: usize) -> Result<usize> {
        if need > self.rows {
            return Err(input(format!("the sequence needs {need} K/V rows; the batched engine holds {} per sequence (--batch-kv-rows)", self.rows)));
        }
        // (a bucket can hold more slots than max_batch: a graph with a minimum batch above it)
        let running = self.running();
        if running >= self.max_batch {
            return Err(input(format!("the batch is full ({} sequences)", self.max_batch)));
        }
        if let Some(i) = self.slots.iter().position(|s| s.is_none()) {
            self.slots[i] = Some(0);
            return Ok(i);
        }
        let bucket = buckets(self.max_batch, self.min_batch).into_iter().find(|&b| b > running).unwrap_or(self.max_batch);
        self.rebucket(bucket)?;
        let i = self.slots.iter().position(|s| s.is_none()).ok_or_else(|| input("no free slot after growing the batch".into()))?;
        self.slots[i] = Some(0);
        Ok(i)
    }

    /// Free `slot`. Returns the slot moves (`map[old] = new`) when the bucket shrank, for the caller to follow.
    pub fn release(&mut self, slot: usize) -> Result<Option<Vec<Option<usize>>>> {
        if let Some(s) = self.slots.get_mut(slot) {
            *s = None;
        }
        let running = self.running();
        let bucket = self.bucket();
        if running == 0 {
            // an idle server keeps the smallest bucket (a lone request allocates nothing) and gives the rest back: the
            // full-size model's 8 x 2048-row bucket alone is 1.5 GiB; the next burst grows again (re-allocation and
            // zero-filling, ~0.1 s for 1.5 GiB)
            let smallest = buckets(self.max_batch, self.min_batch)[0];
            if bucket > smallest {
                return self.rebucket(smallest).map(Some);
            }
            return Ok(None);
        }
        if bucket >= 4 && running * 4 <= bucket {
            let smaller = buckets(self.max_batch, self.min_batch).into_iter().find(|&b| b >= running).unwrap_or(bucket);
            if smaller < bucket {
                return self.rebucket(smaller).map(Some);
            }
        }
        Ok(None)
    }

    /// Run the prefill of `inp` (batch 1) and write its K/V rows into `slot`. Returns the last position's logits.
    pub fn prefill(&mut self, slot: usize, inp: &GptInput<'_>) -> Result<Vec<f32>> {
        let (n, p) = (inp.phone_ids.len(), inp.prompt.len());
        if n == 0 {
            return Err(input("no phones".into()));
        }
        if inp.bert.ncols() != n {
            return Err(input(format!("bert has {} columns for {} phones", inp.bert.ncols(), n)));
        }
        let t = n + p;
        if t + 1 > self.rows {
            return Err(input(format!("{t} prompt rows do not fit the {} K/V rows per sequence (--batch-kv-rows)", self.rows)));
        }
        if self.slots.get(slot).is_none_or(|s| s.is_none()) {
            return Err(input(format!("slot {slot} is not admitted")));
        }
        let hb = inp.bert.nrows();
        let bert = inp.bert.as_standard_layout();
        let bert = bert.as_slice().ok_or_else(|| input("bert features are not contiguous".into()))?;
        let d = self.dims;
        let (h, c, dk, dh) = (d.n_head, self.rows, d.kv_head_dim, d.hidden / d.n_head.max(1));
        let outs = self.prefill.run(&[
            crate::runtime::Input::i64("phone_ids", &[1, n], inp.phone_ids),
            crate::runtime::Input::f32("bert", &[1, hb, n], bert),
            crate::runtime::Input::i64("prompt", &[1, p], inp.prompt),
        ])?;
        let bufs = self.bufs.as_mut().ok_or_else(|| input("no K/V buffers".into()))?;
        for i in 0..d.n_layer {
            for (is_v, name) in [(false, format!("k_{i}")), (true, format!("v_{i}"))] {
                let (_, rows) = outs.get::<f32>(&name)?;
                if rows.len() != t * d.hidden {
                    return Err(GptError::Shape { what: name, got: rows.len(), expected: t * d.hidden });
                }
                let dst = if is_v { bufs.t.v[i].data_mut()? } else { bufs.t.k[i].data_mut()? };
                for (r, row) in rows.chunks_exact(d.hidden).enumerate() {
                    for (head, src) in row.chunks_exact(dh).enumerate() {
                        let at = ((slot * h + head) * c + r) * dk;
                        dst[at..at + dh].copy_from_slice(src);
                    }
                }
            }
        }
        let logits = outs.get::<f32>("logits")?.1.to_vec();
        self.slots[slot] = Some(t);
        Ok(logits)
    }

    /// One batched step: `feeds` = `(slot, token, audio position)` for each sequence to advance (each slot at most
    /// once). Every other slot of the bucket runs as padding. Returns the logits of each fed slot, in `feeds` order.
    pub fn step(&mut self, feeds: &[(usize, i64, i64)]) -> Result<Vec<Vec<f32>>> {
        let vocab = self.dims.vocab;
        let rows = self.rows;
        let bufs = self.bufs.as_mut().ok_or_else(|| input("no K/V buffers".into()))?;
        let b = bufs.bucket;
        let mut seqlens = vec![0i32; b];
        let mut tokens = vec![0i64; b];
        let mut positions = vec![0i64; b];
        for &(slot, tok, pos) in feeds {
            let len = self.slots.get(slot).copied().flatten().ok_or_else(|| input(format!("slot {slot} is not running")))?;
            if len == 0 {
                return Err(input(format!("slot {slot}: run the prefill first")));
            }
            if len + 1 > rows {
                return Err(input(format!("K/V cache full: {rows} rows per sequence (--batch-kv-rows)")));
            }
            seqlens[slot] = len as i32;
            tokens[slot] = tok;
            positions[slot] = pos;
        }
        bufs.t.token.data_mut()?.copy_from_slice(&tokens);
        bufs.t.position.data_mut()?.copy_from_slice(&positions);
        bufs.t.seqlens_k.data_mut()?.copy_from_slice(&seqlens);
        bufs.t.total_len.data_mut()?[0] = seqlens.iter().copied().max().unwrap_or(0) + 1;
        self.step.run_bound(&bufs.t.binding)?;
        let logits = bufs.t.logits.data()?;
        let mut out = Vec::with_capacity(feeds.len());
        for &(slot, _, _) in feeds {
            out.push(logits[slot * vocab..(slot + 1) * vocab].to_vec());
            if let Some(Some(len)) = self.slots.get_mut(slot) {
                *len += 1;
            }
        }
        Ok(out)
    }
}
