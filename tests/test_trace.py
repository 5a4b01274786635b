"""minires.trace(): the rows of a backward pass, their order, shapes, saved bytes, table, and no side effects."""
import threading

import numpy as np
import pytest

import minires as mr
from minires import autograd, backend, nn
from minires import functional as F
from minires.autograd import _topological_order
from minires.models import BasicBlock
from minires.trace import Trace, TraceRow, trace


def small(xp, dtype=np.float32):
    """relu(x @ w + b).sum() with x (4, 3), w (3, 2), b (2,)."""
    rng = np.random.default_rng(0)
    x, w, b = (mr.tensor(xp.asarray(rng.standard_normal(s), dtype=dtype), requires_grad=True)
               for s in ((4, 3), (3, 2), (2,)))
    return x, w, b, F.relu(x @ w + b).sum()


def test_rows_follow_the_backward_pass_with_shapes_dtypes_and_saved_bytes(xp):
    x, w, b, loss = small(xp)
    pre = F.relu(x @ w + b)                          # to know independently what ReLU kept: x @ w + b > 0
    with trace() as t:
        loss.backward()
    assert isinstance(t, Trace) and all(isinstance(row, TraceRow) for row in t.rows)
    assert [row.name for row in t.rows] == ["Sum", "ReLU", "Add", "MatMul"]
    assert [row.step for row in t.rows] == [1, 2, 3, 4]
    assert [row.dout for row in t.rows] == [((), "float32"), ((4, 2), "float32"), ((4, 2), "float32"),
                                            ((4, 2), "float32")]
    assert [row.grads for row in t.rows] == [
        (((4, 2), "float32"),),
        (((4, 2), "float32"),),
        (((4, 2), "float32"), ((2,), "float32")),
        (((4, 3), "float32"), ((3, 2), "float32")),
    ]
    assert t.rows[1].saved == (("mask", (4, 2), "bool", pre.data.size * 1),)
    assert t.rows[3].saved == (("a", (4, 3), "float32", x.data.nbytes), ("b", (3, 2), "float32", w.data.nbytes))
    assert [row.saved_bytes for row in t.rows] == [0, 8, 0, 4 * 3 * 4 + 3 * 2 * 4]
    assert t.total_saved_bytes == 8 + 48 + 24
    assert all(row.seconds >= 0 for row in t.rows)
    assert t.total_seconds == pytest.approx(sum(row.seconds for row in t.rows))


def test_a_residual_block_runs_in_reverse_topological_order_and_frees_what_it_saved():
    mr.manual_seed(0)
    block = BasicBlock(3, 4, stride=2, downsample=nn.Sequential(nn.Conv2d(3, 4, 1, stride=2, bias=False),
                                                                 nn.BatchNorm2d(4)))
    x = mr.randn(2, 3, 8, 8, requires_grad=True)
    loss = block(x).sum()
    order = _topological_order(loss)
    expected_saved = [sum(v.nbytes for k, v in vars(fn).items() if not k.startswith("_") and backend.is_array(v))
                      for fn in reversed(order)]
    with trace() as t:
        loss.backward()
    assert [row.name for row in t.rows] == [type(fn).__name__ for fn in reversed(order)]
    assert [row.saved_bytes for row in t.rows] == expected_saved
    conv1 = [row for row in t.rows if row.name == "Conv2d" and row.grads[1][0] == (4, 3, 3, 3)]
    assert len(conv1) == 1 and conv1[0].dout[0] == (2, 4, 4, 4) and conv1[0].grads[0][0] == (2, 3, 8, 8)


def test_the_table_prints_shapes_names_and_bytes_and_times_on_request():
    x, w, b, loss = small(np, np.float64)
    with trace(times=False) as t:
        loss.backward()
    assert str(t) == t.table() == (
        "step  function  dout (in)       grads (out)     saved               bytes\n"
        "   1  Sum       () float64      (4, 2)          -                     0 B\n"
        "   2  ReLU      (4, 2) float64  (4, 2)          mask (4, 2)           8 B\n"
        "   3  Add       (4, 2) float64  (4, 2), (2,)    -                     0 B\n"
        "   4  MatMul    (4, 2) float64  (4, 3), (3, 2)  a (4, 3), b (3, 2)  144 B\n"
        "total: 4 Functions, 152 B saved")
    timed = t.table(times=True).splitlines()
    assert timed[0].endswith("bytes     ms") and timed[-1].startswith("total: 4 Functions, 152 B saved, ")
    for line, row in zip(timed[1:-1], t.rows):
        assert line.endswith(f"{row.seconds * 1e3:.3f}")
    assert repr(t) == "<Trace: 4 Functions, 152 B saved>"


def test_large_sizes_read_in_kib_and_mib():
    from minires.trace import _bytes
    assert [_bytes(n) for n in (0, 1023, 1536, 3 * 1024 ** 2)] == ["0 B", "1023 B", "1.5 KiB", "3.0 MiB"]


def test_gradients_are_identical_with_and_without_a_trace_and_the_hook_is_off_after(xp):
    plain = small(xp)
    plain[3].backward()
    traced = small(xp)
    assert autograd._observer is None
    with trace():
        assert autograd._observer is not None
        traced[3].backward()
    assert autograd._observer is None
    for a, b in zip(plain[:3], traced[:3]):
        assert np.array_equal(backend.to_numpy(a.grad.data), backend.to_numpy(b.grad.data))


def test_an_error_inside_the_block_still_turns_the_hook_off():
    with pytest.raises(ZeroDivisionError):
        with trace():
            1 / 0
    assert autograd._observer is None


def test_nested_traces_both_see_the_inner_pass_and_the_outer_sees_all():
    with trace() as outer:
        small(np)[3].backward()
        with trace() as inner:
            small(np)[3].backward()
    assert len(inner.rows) == 4 and len(outer.rows) == 8
    assert [row.step for row in outer.rows] == list(range(1, 9))


def test_only_the_thread_that_opened_the_trace_is_recorded():
    results = {}

    def other():
        x, w, b, loss = small(np)
        loss.backward()
        results["dw"] = backend.to_numpy(w.grad.data)

    with trace() as t:
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
        small(np)[3].backward()
    assert [row.name for row in t.rows] == ["Sum", "ReLU", "Add", "MatMul"]
    x, w, b, loss = small(np)
    loss.backward()
    assert np.array_equal(results["dw"], backend.to_numpy(w.grad.data))


def test_minires_trace_is_the_context_manager():
    assert mr.trace is trace
