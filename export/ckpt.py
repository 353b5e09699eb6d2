"""Safe loading of GPT-SoVITS checkpoints without GPT-SoVITS's code and without running arbitrary pickles.

In:  a GPT `.ckpt` or SoVITS `.pth` (a `torch.save` zip, any internal root folder, first two bytes possibly
     rewritten by GPT-SoVITS to mark the version: 03/04 = v3/v4 LoRA, 05/06 = v2Pro/v2ProPlus).
Out: `Checkpoint(weights: {name: np.ndarray float32}, config: plain dict, info, head, sha256)`.

The pickle is read with an allow-list unpickler: only OrderedDict, the tensor rebuild helpers, the storage
types and GPT-SoVITS's `utils.HParams` (mapped to a plain dict) may be named. Anything else raises
`CheckpointError` naming the global. fp16/bf16 weights are widened to float32.
"""
from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field

import numpy as np


class CheckpointError(Exception):
    """A checkpoint file that cannot be used; the message says why and names the file."""


_STORAGE_DTYPES = {
    "HalfStorage": np.float16,
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}

# Version marks GPT-SoVITS writes over the zip's leading "PK" (process_ckpt.py: ASCII "00".."06").
HEAD_VERSIONS = {
    b"00": "v1",
    b"01": "v2",
    b"02": "v3",
    b"03": "v3 (LoRA)",
    b"04": "v4 (LoRA)",
    b"05": "v2Pro",
    b"06": "v2ProPlus",
}


class HParamsStandIn(dict):
    """Receives the state of a pickled `utils.HParams`; becomes a plain (nested) dict."""

    def __setstate__(self, state):
        self.update(state)


class _StorageType:
    def __init__(self, name):
        self.name = name


@dataclass
class _Storage:
    dtype: object
    key: str


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return ("tensor", storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("utils", "HParams"): HParamsStandIn,
    ("GPT_SoVITS.utils", "HParams"): HParamsStandIn,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, path):
        super().__init__(fh)
        self.path = path

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise CheckpointError(
                f"{self.path}: the checkpoint's pickle names {module}.{name}, which a GPT-SoVITS checkpoint never "
                f"contains; refusing to load it (only weights and configs are accepted)"
            )
        return obj

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointError(f"{self.path}: unexpected persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self.path}: unexpected storage type {storage_type!r}")
        return _Storage(_STORAGE_DTYPES[storage_type.name], key)


def _to_plain(obj):
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not (obj and obj[0] == "tensor"):
        return type(obj)(_to_plain(v) for v in obj)
    return obj


@dataclass
class Checkpoint:
    path: str
    weights: dict
    config: dict
    info: object
    head: bytes
    sha256: str
    extra: dict = field(default_factory=dict)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_head(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(2)


def load_torch_zip(path: str, kind: str = "checkpoint"):
    """Unpickle a torch.save zip safely; tensors become numpy arrays (floats widened to float32).

    Returns (object, head bytes, sha256 of the file)."""
    if not os.path.exists(path):
        raise CheckpointError(f"{kind} not found: {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"{kind} {path} is a directory, expected a file")
    with open(path, "rb") as f:
        raw = f.read()
    head = raw[:2]
    if head != b"PK":
        if head in HEAD_VERSIONS and raw[2:4] == b"\x03\x04":
            raw = b"PK" + raw[2:]
        else:
            raise CheckpointError(
                f"{kind} {path} is not a PyTorch checkpoint (expected a torch.save zip archive; "
                f"first bytes {raw[:8]!r})"
            )
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile as e:
        # it starts like a zip (checked above) but has no readable directory at its end: cut short or damaged
        raise CheckpointError(f"{kind} {path} is truncated or corrupt ({len(raw)} bytes): it starts like a "
                              f"torch.save archive but its zip directory is unreadable ({e}); copy or download "
                              f"the file again") from None
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise CheckpointError(f"{kind} {path}: no single <root>/data.pkl in the archive (found {pkl})")
    root = pkl[0].split("/")[0]
    byteorder = "little"
    if f"{root}/byteorder" in names:
        byteorder = zf.read(f"{root}/byteorder").decode().strip()
    def read_entry(name):
        try:
            return zf.read(name)
        except KeyError:
            raise CheckpointError(f"{kind} {path} is corrupt: the archive has no entry {name}") from None
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
            raise CheckpointError(f"{kind} {path} is truncated or corrupt: cannot read {name} ({e})") from None

    try:
        obj = _Unpickler(io.BytesIO(read_entry(pkl[0])), path).load()
    except CheckpointError:
        raise
    except Exception as e:  # malformed pickle
        raise CheckpointError(f"{kind} {path}: cannot read its pickle: {e}") from None

    cache = {}

    def materialise(t):
        _, storage, offset, size, stride = t
        if storage.key not in cache:
            data = read_entry(f"{root}/data/{storage.key}")
            if storage.dtype == "bfloat16":
                u16 = np.frombuffer(data, dtype=np.dtype("<u2" if byteorder == "little" else ">u2"))
                arr = (u16.astype(np.uint32) << 16).view(np.float32)
            else:
                dt = np.dtype(storage.dtype).newbyteorder("<" if byteorder == "little" else ">")
                arr = np.frombuffer(data, dtype=dt)
            cache[storage.key] = arr
        base = cache[storage.key]
        item = base.itemsize
        if any(n < 0 for n in size) or any(st < 0 for st in stride) or offset < 0:
            raise CheckpointError(f"{kind} {path} is corrupt: a tensor has a negative size, stride or offset")
        if all(n > 0 for n in size) and offset + sum((n - 1) * st for n, st in zip(size, stride)) >= base.size:
            raise CheckpointError(f"{kind} {path} is truncated or corrupt: a tensor of shape {list(size)} reaches "
                                  f"past the end of its storage ({base.size} elements)")
        view = np.lib.stride_tricks.as_strided(
            base[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False
        )
        out = np.array(view)
        if out.dtype in (np.float16, np.float64):
            out = out.astype(np.float32)
        return out

    def walk(o):
        if isinstance(o, tuple) and len(o) == 5 and o[0] == "tensor":
            return materialise(o)
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    return walk(obj), head, hashlib.sha256(open(path, "rb").read()).hexdigest()


def load_checkpoint(path: str, kind: str = "checkpoint") -> Checkpoint:
    """Load a GPT-SoVITS `.ckpt`/`.pth` safely. `kind` names the file in messages ("GPT .ckpt", ...)."""
    obj, head, digest = load_torch_zip(path, kind)
    if not isinstance(obj, dict) or "weight" not in obj:
        raise CheckpointError(
            f"{kind} {path}: not a GPT-SoVITS checkpoint (expected a dict with 'weight' and 'config'; "
            f"got {type(obj).__name__} with keys {list(obj)[:8] if isinstance(obj, dict) else '-'})"
        )
    weights = obj["weight"]
    if not isinstance(weights, dict):
        raise CheckpointError(f"{kind} {path}: 'weight' is not a state dict")
    config = _to_plain(obj.get("config", {}))
    if not isinstance(config, dict):
        raise CheckpointError(f"{kind} {path}: 'config' is neither a dict nor an HParams object")
    extra = {k: v for k, v in obj.items() if k not in ("weight", "config", "info")}
    return Checkpoint(path=path, weights=dict(weights), config=config, info=obj.get("info"), head=head,
                      sha256=digest, extra=extra)


def fold_weight_norm(state: dict) -> dict:
    """Replace every `<p>.weight_g` / `<p>.weight_v` pair by `<p>.weight = g * v / ||v||`.

    The norm runs over every axis where `g` has size 1 (torch.nn.utils.weight_norm keeps `dim` in g),
    so dim=0 convolutions, dim=0 transposed convolutions and HuBERT's dim=2 positional conv all fold.
    Also accepts the new parametrization names `<p>.parametrizations.weight.original0/1`."""
    out = {}
    pairs = {}
    for k, v in state.items():
        for g_suffix, v_suffix in ((".weight_g", ".weight_v"), (".parametrizations.weight.original0",
                                                                  ".parametrizations.weight.original1")):
            if k.endswith(g_suffix):
                pairs.setdefault(k[: -len(g_suffix)], {})["g"] = v
                break
            if k.endswith(v_suffix):
                pairs.setdefault(k[: -len(v_suffix)], {})["v"] = v
                break
        else:
            out[k] = v
    for prefix, gv in pairs.items():
        if "g" not in gv or "v" not in gv:
            raise CheckpointError(f"weight-norm pair for {prefix} is incomplete (has only {sorted(gv)})")
        g, v = gv["g"].astype(np.float64), gv["v"].astype(np.float64)
        if g.ndim != v.ndim:
            raise CheckpointError(f"{prefix}: weight_g {g.shape} and weight_v {v.shape} do not match")
        axes = tuple(i for i in range(v.ndim) if g.shape[i] == 1)
        norm = np.sqrt((v * v).sum(axis=axes, keepdims=True))
        out[prefix + ".weight"] = (g * v / norm).astype(np.float32)
    return out


def strict_load(module, state: dict, source: str, ignore_prefixes=()):
    """Load numpy `state` into torch `module`: every module key must be present with the right shape and every
    state key must be used (apart from `ignore_prefixes`, e.g. training-only parts). Raises CheckpointError naming
    the first offending keys."""
    import torch

    expected = module.state_dict()
    used = {k: v for k, v in state.items() if not any(k.startswith(p) for p in ignore_prefixes)}
    missing = [k for k in expected if k not in used]
    unexpected = [k for k in used if k not in expected]
    if missing:
        raise CheckpointError(f"{source}: missing key(s) {missing[:6]}{' ...' if len(missing) > 6 else ''} "
                              f"({len(missing)} missing); the file does not fit this model")
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key(s) {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''} "
                              f"({len(unexpected)} unused); the file does not fit this model")
    for k, t in expected.items():
        a = used[k]
        if tuple(a.shape) != tuple(t.shape):
            raise CheckpointError(f"{source}: key {k} has shape {tuple(a.shape)}, the model expects {tuple(t.shape)}")
    tensors = {k: torch.from_numpy(np.ascontiguousarray(used[k])).to(expected[k].dtype) for k in expected}
    module.load_state_dict(tensors, strict=True)
    return module
