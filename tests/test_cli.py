"""The `minires` command: each subcommand runs and says what it did."""
import pytest

from minires.cli import main


def test_gradcheck_all_passes(capsys):
    assert main(["gradcheck", "all"]) == 0
    out = capsys.readouterr().out
    for name in ("conv2d", "max_pool2d", "batch_norm", "cross_entropy", "basic_block", "bottleneck"):
        assert f"{name}" in out and "passed" in out


def test_gradcheck_of_an_unknown_operation_names_the_choices():
    with pytest.raises(SystemExit, match="unknown operation 'conv3d'; choose one of: .*conv2d"):
        main(["gradcheck", "conv3d"])


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
