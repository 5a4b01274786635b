"""Sequential and ModuleList: order, names, indexing, slicing, iteration."""
from collections import OrderedDict

import numpy as np
import pytest

import minires
from minires import nn


def test_sequential_applies_in_order_and_names_children_0_1_2():
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = minires.randn(5, 3)
    expected = seq[2](seq[1](seq[0](x)))
    np.testing.assert_array_equal(seq(x).numpy(), expected.numpy())
    assert [n for n, _ in seq.named_children()] == ["0", "1", "2"]
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_sequential_indexing_slicing_iteration_and_length():
    layers = [nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.Identity()]
    seq = nn.Sequential(*layers)
    assert len(seq) == 4 and list(seq) == layers
    assert seq[-1] is layers[3] and seq[0] is layers[0]
    tail = seq[1:3]
    assert isinstance(tail, nn.Sequential) and list(tail) == layers[1:3]
    assert [n for n, _ in tail.named_children()] == ["1", "2"]          # names kept, as in PyTorch
    with pytest.raises(IndexError, match="out of range"):
        seq[4]
    with pytest.raises(TypeError, match="ints or slices"):
        seq["0"]
    seq[1] = nn.Identity()
    assert isinstance(seq[1], nn.Identity) and seq._modules["1"] is seq[1]
    seq.append(nn.ReLU())
    assert len(seq) == 5 and [n for n, _ in seq.named_children()][-1] == "4"


def test_sequential_from_an_ordered_dict_keeps_the_names():
    seq = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("act", nn.ReLU())]))
    assert seq.conv is seq[0] and list(seq.state_dict()) == ["conv.weight", "conv.bias"]
    assert "(conv): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1))" in repr(seq)


def test_module_list_registers_its_members():
    blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(blocks) == 3 and len(list(blocks.parameters())) == 6
    assert list(blocks.state_dict())[:2] == ["0.weight", "0.bias"]
    blocks.append(nn.ReLU()).extend([nn.Identity()])
    assert len(blocks) == 5 and isinstance(blocks[-1], nn.Identity)
    assert [type(m).__name__ for m in blocks[3:]] == ["ReLU", "Identity"]
    blocks[0] = nn.Linear(2, 5)
    assert blocks[0].out_features == 5 and blocks._modules["0"] is blocks[0]
    with pytest.raises(NotImplementedError, match="forward"):
        blocks(minires.zeros(2))
    with pytest.raises(TypeError, match="Module or None"):
        blocks[1] = 3
