"""Run a bundle's GPT graphs from Python onnxruntime the way gsv does: prefill, then one step per token with the
head-major K/V cache bound in place (IoBinding: present_x_i shares past_x_i's buffer, so only the new row is written).

    runner = GptRunner(prefill_session, step_session, manifest, capacity)
    logits = runner.prefill(phone_ids [1,N] i64, bert [1,1024,N] f32, prompt [1,P] i64)   # [1,V]
    logits = runner.step(token, position)                                                  # [1,V]

`prefill_fn` / `step_fn` adapt it to `export.infer.generate`'s (logits, ks, vs) interface (the cache is the
runner's, so ks/vs are unused there). Used by verify, quantize and the benchmark's onnxruntime-python system.
"""
from __future__ import annotations

import numpy as np

from .models.gpt_onnx import rows_to_heads


class GptRunner:
    def __init__(self, prefill, step, man: dict, capacity: int = 2048):
        import onnxruntime as ort

        g = man["gpt"]
        self.L, self.H, self.D = int(g["n_layer"]), int(g["n_head"]), int(g["hidden_dim"])
        self.dk = int(g["kv_head_dim"])
        self.pre, self.stp = prefill, step
        self.capacity = int(capacity)
        # a step graph stamped `gsv.step_min_batch` runs with that many rows, the sequence in row 0 and padding rows
        # (seqlens_k 0), as the runtime runs it: its one-row kernel differs (export/models/gpt_onnx.step_min_batch)
        meta = step.get_modelmeta().custom_metadata_map if step is not None else {}
        self.rows = max(1, int(meta.get("gsv.step_min_batch", "1")))
        shape = (self.rows, self.H, self.capacity, self.dk)
        # numpy owns the memory; the OrtValues wrap it (no copy), so prefill rows are written through the arrays
        self.k_np = [np.zeros(shape, np.float32) for _ in range(self.L)]
        self.v_np = [np.zeros(shape, np.float32) for _ in range(self.L)]
        self.k = [ort.OrtValue.ortvalue_from_numpy(a) for a in self.k_np]
        self.v = [ort.OrtValue.ortvalue_from_numpy(a) for a in self.v_np]
        self.binding = step.io_binding()
        for i in range(self.L):
            for kind, vals in (("k", self.k), ("v", self.v)):
                self.binding.bind_ortvalue_input(f"past_{kind}_{i}", vals[i])
                self.binding.bind_ortvalue_output(f"present_{kind}_{i}", vals[i])
        self.binding.bind_output("logits")
        self.t = 0
        self._names = ["logits", *[f"k_{i}" for i in range(self.L)], *[f"v_{i}" for i in range(self.L)]]

    def prefill(self, phone_ids, bert, prompt):
        o = self.pre.run(self._names, {"phone_ids": phone_ids, "bert": bert, "prompt": prompt})
        rows = o[1].shape[1]
        if rows + 1 > self.capacity:
            raise ValueError(f"prefill of {rows} rows does not fit a cache of {self.capacity}")
        for i in range(self.L):
            for arrs, out in ((self.k_np, o[1 + i]), (self.v_np, o[1 + self.L + i])):
                arrs[i][0, :, :rows, :] = rows_to_heads(out[0], self.H, self.dk)
        self.t = rows
        return o[0]

    def step(self, token, position):
        if self.t + 1 > self.capacity:
            raise ValueError(f"KV cache full ({self.capacity} rows)")
        b = self.binding
        pad = self.rows - 1
        b.bind_cpu_input("token", np.concatenate([np.asarray(token, dtype=np.int64).reshape(1, 1),
                                                  np.zeros((pad, 1), np.int64)]))
        b.bind_cpu_input("position", np.concatenate([np.asarray(position, dtype=np.int64).reshape(1),
                                                     np.zeros(pad, np.int64)]))
        b.bind_cpu_input("seqlens_k", np.array([self.t] + [0] * pad, dtype=np.int32))
        b.bind_cpu_input("total_len", np.array(self.t + 1, dtype=np.int32))
        self.stp.run_with_iobinding(b)
        self.t += 1
        return b.get_outputs()[-1].numpy()[:1]

    def prefill_fn(self, a, b, p):
        return self.prefill(a, b, p), None, None

    def step_fn(self, tok, pos, ks, vs):
        return self.step(tok, pos), None, None
