"""minires.viz.graph: the DOT text, a residual block's graph, names, gradient norms, rendering."""
import os
import shutil

import numpy as np
import pytest

import minires as mr
from minires import backend, nn, viz
from minires.models import BasicBlock

HAS_DOT = shutil.which("dot") is not None
NEEDS_DOT = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's `dot` is not installed (apt-get install graphviz)")


def matmul_sum():
    x = mr.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    w = mr.tensor(np.ones((3, 4)), requires_grad=True)
    return x, w, (x @ w).sum()


def test_dot_text_of_a_two_operation_graph():
    x, w, loss = matmul_sum()
    g = viz.graph(loss, params={"x": x, "w": w})
    assert g.source.splitlines() == [
        "digraph minires {",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
        '  t0 [label="x\\n(2, 3) float64", shape=box, style=filled, fillcolor="#cfe2f3"];',
        '  t1 [label="w\\n(3, 4) float64", shape=box, style=filled, fillcolor="#cfe2f3"];',
        '  op0 [label="MatMul", shape=box, style="rounded,filled", fillcolor="#e8e8e8"];',
        '  op1 [label="Sum", shape=box, style="rounded,filled", fillcolor="#e8e8e8"];',
        '  out [label="output\\n() float64", shape=box, style=filled, fillcolor="#d9ead3"];',
        '  t0 -> op0 [label="(2, 3)"];',
        '  t1 -> op0 [label="(3, 4)"];',
        '  op0 -> op1 [label="(2, 4)"];',
        '  op1 -> out [label="()"];',
        "}",
    ]
    assert str(g) == g.source
    assert repr(g) == "<Graph: 2 operations, 2 leaf tensors; print() it for DOT text>"


def residual_block():
    mr.manual_seed(0)
    downsample = nn.Sequential(nn.Conv2d(3, 4, 1, stride=2, bias=False), nn.BatchNorm2d(4))
    block = BasicBlock(3, 4, stride=2, downsample=downsample)
    x = mr.randn(2, 3, 8, 8, requires_grad=True)
    return block, x, block(x).sum()


def test_a_basic_block_with_downsample_shows_the_residual_add_with_two_inputs():
    block, x, loss = residual_block()
    g = viz.graph(loss, params={"x": x, **dict(block.named_parameters())})
    ops = {n.id: n.label.split("\n")[0] for n in g.nodes if n.kind == "op"}
    assert sorted(ops.values()) == sorted(["Conv2d"] * 3 + ["BatchNorm"] * 3 + ["ReLU"] * 2 + ["Add", "Sum"])
    leaves = [n.label.split("\n")[0] for n in g.nodes if n.kind == "leaf"]
    assert sorted(leaves) == sorted(["x"] + [name for name, _ in block.named_parameters()])
    (add,) = [i for i, name in ops.items() if name == "Add"]
    into_add = [a for a, b, _ in g.edges if b == add]
    assert [ops[a] for a in into_add] == ["BatchNorm", "BatchNorm"]     # main path and shortcut
    (x_id,) = [n.id for n in g.nodes if n.label.startswith("x\n")]
    assert [ops[b] for a, b, _ in g.edges if a == x_id] == ["Conv2d", "Conv2d"]   # x feeds both paths
    labels = {n.label for n in g.nodes}
    assert "Conv2d\nstride=(2, 2), padding=(1, 1)" in labels       # conv1: hyper-parameters shown
    assert "Conv2d\nstride=(2, 2)" in labels                        # the 1x1 shortcut: defaults hidden
    assert "BatchNorm\ntraining=True" in labels


def test_unnamed_leaves_are_called_tensor_and_a_leaf_alone_is_its_own_graph():
    x, w, loss = matmul_sum()
    g = viz.graph(loss, params={"w": w})
    assert [n.label.split("\n")[0] for n in g.nodes if n.kind == "leaf"] == ["tensor", "w"]
    alone = viz.graph(x, params={"x": x})
    assert [(n.kind, n.label) for n in alone.nodes] == [("leaf", "x\n(2, 3) float64")] and alone.edges == []


def test_gradient_norms_appear_when_drawn_again_after_backward(xp):
    x = mr.tensor(xp.asarray(np.arange(6.0).reshape(2, 3)), requires_grad=True)
    w = mr.tensor(xp.asarray(np.linspace(-1, 1, 12).reshape(3, 4)), requires_grad=True)
    loss = mr.functional.relu(x @ w).sum()
    g = viz.graph(loss, params={"x": x, "w": w})
    assert "grad norm" not in g.source
    loss.backward()
    for name, t in (("x", x), ("w", w)):
        expected = np.linalg.norm(backend.to_numpy(t.grad.data))
        assert f'label="{name}\\n{t.shape} float64\\ngrad norm {expected:.4g}"' in g.source


def test_a_graph_freed_by_backward_is_refused_with_the_way_out():
    x, w, loss = matmul_sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"before backward\(\).*retain_graph=True"):
        viz.graph(loss)
    x, w, loss = matmul_sum()
    loss.backward(retain_graph=True)
    assert "grad norm" in viz.graph(loss, params={"x": x}).source


def test_a_5000_operation_chain_is_walked_without_recursion():
    x = mr.tensor(np.ones(3), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0
    g = viz.graph(y.sum())
    assert sum(n.kind == "op" for n in g.nodes) == 5001
    assert len(g.edges) == 5002                     # x -> Mul, 4,999 Mul -> Mul, Mul -> Sum, Sum -> out


@NEEDS_DOT
def test_svg_and_png_render_and_save_writes_whole_files(tmp_path):
    x, w, loss = matmul_sum()
    g = viz.graph(loss, params={"x": x, "w": w})
    svg = g.svg()
    assert "<svg" in svg and "MatMul" in svg
    assert g._repr_svg_() == svg
    assert g.png().startswith(b"\x89PNG")
    for name in ("g.svg", "g.png", "g.dot"):
        assert g.save(tmp_path / name).stat().st_size > 0
    assert (tmp_path / "g.dot").read_text() == g.source
    assert sorted(os.listdir(tmp_path)) == ["g.dot", "g.png", "g.svg"]     # no temporary left


def test_without_graphviz_dot_text_works_and_pictures_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    x, w, loss = matmul_sum()
    g = viz.graph(loss)
    assert g._repr_svg_() is None                    # Jupyter falls back to the text repr
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        g.svg()
    with pytest.raises(RuntimeError, match="Install Graphviz"):
        g.save(tmp_path / "g.png")
    assert os.listdir(tmp_path) == []                # a failed render leaves nothing behind
    g.save(tmp_path / "g.gv")
    assert (tmp_path / "g.gv").read_text() == g.source
    with pytest.raises(ValueError, match=r"\.dot, \.gv, \.svg or \.png"):
        g.save(tmp_path / "g.pdf")


def test_labels_escape_quotes_and_backslashes():
    x, w, loss = matmul_sum()
    source = viz.graph(loss, params={'say "hi"\\': x}).source
    assert 'label="say \\"hi\\"\\\\\\n(2, 3) float64"' in source
