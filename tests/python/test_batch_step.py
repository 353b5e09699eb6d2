"""The batched gpt_step graph (issue 16): a sequence's logits and K/V rows in a batch equal its own alone (1e-4),
for the fp32 graph and for the quantised MatMulNBits variants built from it, and a damaged graph is caught."""
import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch

from export.models import gpt_onnx
from export.models.gpt import T2S
from export.nbits import to_matmul_nbits


def small_t2s(seed=0, dim=64, heads=4, layers=2, std=0.3):
    torch.manual_seed(seed)
    cfg = {"model": {"embedding_dim": dim, "hidden_dim": dim, "head": heads, "n_layer": layers, "vocab_size": 1025,
                     "phoneme_vocab_size": 732, "EOS": 1024, "dropout": 0.0}}
    m = T2S(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, std)
    return m


def write(model, path):
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def t2s():
    return small_t2s()


def test_batched_step_equals_each_sequence_alone(t2s, tmp_path):
    path = write(gpt_onnx.build_step_model(t2s), tmp_path / "gpt_step.onnx")
    dk = gpt_onnx.kv_head_dim(t2s.d, t2s.heads)
    err = gpt_onnx.batch_check(path, t2s.n_layer, t2s.heads, dk, t2s.vocab)
    assert err <= gpt_onnx.BATCH_ATOL
    # a bigger batch with a padding sequence (T = 0) and a full one (T = C - 1)
    err = gpt_onnx.batch_check(path, t2s.n_layer, t2s.heads, dk, t2s.vocab, seed=3, lens=(0, 9, 32, 4, 11, 2, 7, 20),
                               capacity=33)
    assert err <= gpt_onnx.BATCH_ATOL


def test_batched_step_matches_torch_per_sequence(t2s, tmp_path):
    """B = 2 through the graph vs T2S.step (via ReferenceStep) on each sequence: the batch does not change the model."""
    import onnxruntime as ort
    path = write(gpt_onnx.build_step_model(t2s), tmp_path / "gpt_step.onnx")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    exs = [gpt_onnx.example(t2s, 6, 20, 3, 1), gpt_onnx.example(t2s, 13, 20, 40, 2)]
    ref = gpt_onnx.ReferenceStep(t2s).eval()
    names = gpt_onnx.input_names(t2s.n_layer)
    feeds = {}
    for j, n in enumerate(names):
        if n == "total_len":
            feeds[n] = np.array(14, np.int32)
        else:
            feeds[n] = np.concatenate([ex[j].numpy().reshape((1,) + tuple(ex[j].shape[1:]) if ex[j].dim() > 0 else (1,))
                                       for ex in exs])
    feeds["seqlens_k"] = np.array([6, 13], np.int32)
    feeds["position"] = np.array([3, 40], np.int64)
    out = sess.run(None, feeds)
    for b, ex in enumerate(exs):
        with torch.no_grad():
            want = ref(*ex)[0].numpy()
        np.testing.assert_allclose(out[0][b], want[0], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("bits,block", [(8, 128), (4, 32)])
def test_quantised_step_variants_stay_exact_per_sequence(t2s, tmp_path, bits, block):
    fp = gpt_onnx.build_step_model(t2s)
    q, _ = to_matmul_nbits(fp, bits, block, 4)
    path = write(q, tmp_path / f"gpt_step.int{bits}.onnx")
    dk = gpt_onnx.kv_head_dim(t2s.d, t2s.heads)
    assert gpt_onnx.batch_check(path, t2s.n_layer, t2s.heads, dk, t2s.vocab) <= gpt_onnx.BATCH_ATOL


def test_batch_check_catches_a_graph_that_mixes_sequences(t2s, tmp_path):
    """A step that sums the batch into every row (what a broken reshape would do) must fail the check."""
    m = gpt_onnx.build_step_model(t2s)
    g = m.graph
    for nd in g.node:
        if nd.op_type == "Add" and nd.output[0] == "x_0":
            nd.output[0] = "x_0_own"
    g.initializer.append(onnx.numpy_helper.from_array(np.array([0], np.int64), "test_axis0"))
    g.node.append(onnx.helper.make_node("ReduceMean", ["x_0_own", "test_axis0"], ["x_0_mean"], keepdims=1))
    g.node.append(onnx.helper.make_node("Add", ["x_0_own", "x_0_mean"], ["x_0"]))
    # keep topological order: move the two new nodes right after x_0_own's producer
    nodes = list(g.node)
    new = nodes[-2:]
    del g.node[:]
    for nd in nodes[:-2]:
        g.node.append(nd)
        if nd.output[0] == "x_0_own":
            g.node.extend(new)
    path = write(m, tmp_path / "bad.onnx")
    dk = gpt_onnx.kv_head_dim(t2s.d, t2s.heads)
    with pytest.raises(ValueError, match="differ from alone"):
        gpt_onnx.batch_check(path, t2s.n_layer, t2s.heads, dk, t2s.vocab)


def test_a_step_exact_only_from_two_rows_runs_with_a_padding_row(tmp_path):
    """ONNX Runtime's CPU MatMulNBits (accuracy_level 4) multiplies one row with another kernel than two or more
    (seen from K = 512 up: the full-size GPT's logits move by 2e-2; every batch of 2..16 rows is identical to the
    bit). step_min_batch finds the fewest rows at which the graph is exact per sequence; quantize stamps it as
    gsv.step_min_batch and the Python runner (like gsv) pads a single sequence to it, so its logits are those of
    the sequence in any batch."""
    import onnxruntime as ort

    from export.stepper import GptRunner

    m = small_t2s(dim=512, heads=8, layers=1, std=0.05)
    q, _ = to_matmul_nbits(gpt_onnx.build_step_model(m), 8, 128, 4)
    path = write(q, tmp_path / "gpt_step.int8.onnx")
    dk = gpt_onnx.kv_head_dim(m.d, m.heads)
    rows, err = gpt_onnx.step_min_batch(path, m.n_layer, m.heads, dk, m.vocab)
    assert rows in (1, 2) and err <= gpt_onnx.BATCH_ATOL
    if rows == 2:  # this CPU's one-row kernel differs: the one-row check must have failed
        with pytest.raises(ValueError, match="differ from alone"):
            gpt_onnx.batch_check(path, m.n_layer, m.heads, dk, m.vocab)
    p = q.metadata_props.add()
    p.key, p.value = "gsv.step_min_batch", str(rows)
    path = write(q, tmp_path / "stamped.onnx")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    man = {"gpt": {"n_layer": m.n_layer, "n_head": m.heads, "hidden_dim": m.d, "kv_head_dim": dk}}
    r = GptRunner(None, sess, man, capacity=16)
    assert r.rows == rows
    rng = np.random.default_rng(1)
    past = [rng.standard_normal((1, m.heads, 16, dk)).astype(np.float32) for _ in range(2)]
    for arr, src in zip((r.k_np[0], r.v_np[0]), past):
        arr[:1] = src
    r.t = 7
    got = r.step(5, 30)
    # the same sequence in a batch of three (with two other sequences)
    other = [rng.standard_normal((2, m.heads, 16, dk)).astype(np.float32) for _ in range(2)]
    feeds = {"token": np.array([[5], [9], [77]], np.int64), "position": np.array([30, 4, 11], np.int64),
             "seqlens_k": np.array([7, 3, 12], np.int32), "total_len": np.array(13, np.int32),
             "past_k_0": np.concatenate([past[0], other[0]]), "past_v_0": np.concatenate([past[1], other[1]])}
    want = sess.run(["logits"], feeds)[0][:1]
    assert got.shape == (1, m.vocab)
    np.testing.assert_allclose(got, want, atol=gpt_onnx.BATCH_ATOL, rtol=0)
