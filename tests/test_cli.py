"""The `minires` command: each subcommand runs and says what it did."""
import re

import pytest

from minires.cli import main


def test_gradcheck_all_passes(capsys):
    assert main(["gradcheck", "all", "--examples", "3"]) == 0
    out = capsys.readouterr().out
    for name in ("relu", "linear", "matmul", "add", "mul", "div", "sum", "mean", "max", "conv2d", "max_pool2d",
                 "avg_pool2d", "adaptive_avg_pool2d", "batch_norm", "log_softmax", "cross_entropy", "basic_block",
                 "bottleneck", "sigmoid", "gelu", "leaky_relu", "abs", "softmax", "mse_loss", "l1_loss",
                 "binary_cross_entropy_with_logits", "cat", "stack", "where"):
        assert re.search(rf"^{name} +passed in", out, flags=re.M), out
    assert "30 of 30 operations passed (3 drawn examples each, seed 0)" in out


def test_gradcheck_reports_every_operation_and_the_smallest_failing_case(capsys, monkeypatch):
    from minires.functional.activation import ReLU

    real = ReLU.forward

    def forward(self, x):                              # planted: ReLU'(0) = 1
        out = real(self, x)
        self.mask = x >= 0
        return out
    monkeypatch.setattr(ReLU, "forward", forward)
    assert main(["gradcheck", "relu", "sum", "--examples", "2"]) == 1
    out = capsys.readouterr().out
    assert "relu                 FAILED" in out and "smallest failing case: shape=(3, 4), seed=0" in out
    assert "ReLU'(0) = 0" in out and re.search(r"^sum +passed in", out, flags=re.M)
    assert "1 of 2 operations passed; failed: relu" in out


def test_gradcheck_of_an_unknown_operation_names_the_choices():
    with pytest.raises(SystemExit, match="unknown operation 'conv3d'; choose one of: all, .*conv2d"):
        main(["gradcheck", "conv3d"])
    with pytest.raises(SystemExit, match="--examples must be at least 1"):
        main(["gradcheck", "relu", "--examples", "0"])


def test_summary_prints_the_tutorial_totals(capsys):
    assert main(["summary", "d2l_resnet18", "--input-shape", "1,1,224,224"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 11,186,186" in out and "Non-trainable params: 7,808" in out


def test_summary_rejects_a_bad_shape(capsys):
    with pytest.raises(SystemExit):
        main(["summary", "resnet18", "--input-shape", "1,3,x"])
    assert "expected a shape like 1,3,224,224" in capsys.readouterr().err


def test_demo_runs_forward_backward_and_the_checks(capsys):
    main(["demo"])
    out = capsys.readouterr().out
    assert "forward + backward on x(8, 16, 32, 32) -> (8, 32, 16, 16)" in out
    assert out.count("passed in") == 6


# ---------------------------------------------------------------------------- summary's defaults, --version
@pytest.mark.parametrize("model, first_row", [
    ("d2l_resnet18", "(1, 64, 112, 112)"),          # 1x1x224x224: the book's Fashion-MNIST input
    ("resnet20", "(1, 16, 32, 32)"),                # the paper's CIFAR models: 32x32
    ("plain20", "(1, 16, 32, 32)"),
    ("cifar_resnet18", "(1, 64, 32, 32)"),
    ("preact_resnet18", "(1, 64, 32, 32)"),
    ("resnet18", "(1, 64, 112, 112)"),              # torchvision's: 3x224x224
])
def test_summary_picks_each_models_natural_input(capsys, model, first_row):
    assert main(["summary", model]) == 0
    table = capsys.readouterr().out.splitlines()
    assert first_row in table[2], table[2]


def test_every_model_has_a_natural_input():
    from minires.cli import NATURAL_INPUT
    import minires.models as models
    from minires.recipes import model_names
    families = {getattr(models, name).__module__.rsplit(".", 1)[-1] for name in model_names()}
    assert families <= set(NATURAL_INPUT)


def test_summary_takes_an_input_shape_without_a_batch_dimension(capsys):
    assert main(["summary", "resnet20", "--input-shape", "3,32,32"]) == 0
    assert "(1, 16, 32, 32)" in capsys.readouterr().out.splitlines()[2]
    assert main(["summary", "resnet20", "--input-shape", "2,3,16,16"]) == 0
    assert "(2, 16, 16, 16)" in capsys.readouterr().out.splitlines()[2]


@pytest.mark.parametrize("shape", ["32,32", "1,1,3,32,32", "0,3,32,32", "3,-32,32", ""])
def test_summary_says_what_an_input_shape_lacks(capsys, shape):
    with pytest.raises(SystemExit):
        main(["summary", "resnet20", "--input-shape", shape])
    assert "(N,C,H,W) or 3,32,32 (C,H,W, a batch of 1)" in capsys.readouterr().err


def test_summary_of_an_unknown_model_lists_only_models():
    with pytest.raises(SystemExit) as error:
        main(["summary", "ResNet"])
    message = str(error.value)
    assert "unknown model 'ResNet'" in message and "d2l_resnet18" in message and "resnet20" in message
    for not_a_model in ("ResNet", "BasicBlock", "conv3x3", "summary", "ModelSummary", "resnet_block"):
        assert f" {not_a_model}," not in message and not message.endswith(f" {not_a_model}")


def test_version(capsys):
    import minires
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"minires {minires.__version__}"
