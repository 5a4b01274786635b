"""``summary``: the tutorials' tables, its counting rules, and that it leaves the model as it found it."""
import numpy as np
import pytest

from minires import models, nn
from minires.models import summary


@pytest.fixture(scope="module")
def d2l_tables():
    """d2l_resnet18(in_channels=1, num_classes=10) on 1x1x224x224, by leaf layer and by stage."""
    model = models.d2l_resnet18(in_channels=1, num_classes=10)
    return summary(model, (1, 1, 224, 224)), summary(model, (1, 1, 224, 224), depth=1)


def test_d2l_resnet18_totals_as_the_tutorial_prints_them(d2l_tables):
    for table in d2l_tables:
        assert table.total == 11_186_186
        assert table.trainable == 11_178_378
        assert table.non_trainable == 7_808          # running mean + variance of 3,904 BN channels
        assert table.output_shape == (1, 10)
    text = str(d2l_tables[0])
    for line in ("Total params: 11,186,186", "Trainable params: 11,178,378", "Non-trainable params: 7,808"):
        assert line in text


def test_d2l_resnet18_stage_shapes(d2l_tables):
    by_stage = d2l_tables[1]
    assert [(r.name, r.layer, r.output_shape) for r in by_stage.rows] == [
        ("0", "Sequential", (1, 64, 56, 56)),
        ("1", "Sequential", (1, 64, 56, 56)),
        ("2", "Sequential", (1, 128, 28, 28)),
        ("3", "Sequential", (1, 256, 14, 14)),
        ("4", "Sequential", (1, 512, 7, 7)),
        ("5", "AdaptiveAvgPool2d", (1, 512, 1, 1)),
        ("6", "Flatten", (1, 512)),
        ("7", "Linear", (1, 10)),
    ]
    assert [r.num_params for r in by_stage.rows] == [3_200 + 256, 148_224 + 512, 525_952 + 1_024,
                                                     2_100_480 + 2_048, 8_395_264 + 4_096, 0, 0, 5_130]
    assert sum(r.num_params for r in by_stage.rows) == by_stage.total


def test_leaf_rows_add_up_to_the_total(d2l_tables):
    leaves = d2l_tables[0]
    assert leaves.rows[0] == models.SummaryRow("0.0", "Conv2d", (1, 64, 112, 112), 64 * 49 + 64)
    assert leaves.rows[1] == models.SummaryRow("0.1", "BatchNorm2d", (1, 64, 112, 112), 4 * 64)
    assert leaves.rows[3].output_shape == (1, 64, 56, 56)                     # after the max pool
    assert sum(r.num_params for r in leaves.rows) == leaves.total
    assert sum(r.layer == "Conv2d" for r in leaves.rows) == 1 + 16 + 3       # stem, 8 blocks x 2, 3 shortcuts


def test_a_layer_called_twice_gets_two_rows_and_is_counted_once(skip_initialisation):
    table = summary(models.resnet18(), (1, 3, 32, 32))
    relu_rows = [r for r in table.rows if r.name == "layer1.0.relu"]
    assert len(relu_rows) == 2
    assert sum(r.num_params for r in table.rows) == table.total


def test_frozen_backbone_with_a_new_head_counts_as_the_transfer_learning_recipe_expects(skip_initialisation):
    model = models.resnet18()
    model.requires_grad_(False)
    model.fc = nn.Linear(512, 5)
    table = summary(model, (1, 3, 32, 32))
    backbone = 11_689_512 - 513_000
    running = 2 * 4_800                                          # resnet18 has 4,800 batch-norm channels
    assert table.trainable == 512 * 5 + 5
    assert table.non_trainable == backbone + running
    assert table.total == 11_689_512 - 513_000 + 2_565 + running


def test_summary_leaves_the_model_as_it_found_it():
    model = models.cifar_resnet18()
    model.train()
    model.layer2.eval()                                          # a mix of modes must survive

    def special(x):                                              # a user's own instance-level forward
        return x

    model.layer4[1].relu.forward = special
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    summary(model, (2, 3, 32, 32))
    assert model.training and model.layer1.training and not model.layer2.training
    assert not model.layer2[0].bn1.training and model.layer3[0].bn1.training
    for name, module in model.named_modules():
        if module is model.layer4[1].relu:
            assert module.__dict__["forward"] is special
        else:
            assert "forward" not in module.__dict__, name
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), before[key], err_msg=key)   # eval mode: no update


def test_summary_restores_the_model_when_the_forward_fails(skip_initialisation):
    model = models.resnet18(in_channels=3)
    model.train()
    with pytest.raises(ValueError, match="channels"):
        summary(model, (1, 5, 32, 32))                           # 5 channels into a 3-channel stem
    assert model.training and all(m.training for m in model.modules())
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_summary_of_a_single_layer_and_dtype():
    layer = nn.Linear(3, 4).to("float64")
    table = summary(layer, (2, 3))
    assert table.rows == [models.SummaryRow("", "Linear", (2, 4), 16)]
    assert table.total == table.trainable == 16 and table.non_trainable == 0
    assert "Linear" in str(table) and repr(table) == str(table)


@pytest.mark.parametrize("bad", [224, (1, 0, 4, 4), (1, 3.5, 4, 4)])
def test_summary_explains_a_bad_input_shape(bad):
    with pytest.raises(ValueError, match="batch dimension"):
        summary(nn.Linear(3, 4), bad)


def test_summary_rejects_a_bad_depth():
    with pytest.raises(ValueError, match="depth"):
        summary(nn.Linear(3, 4), (1, 3), depth=0)
