"""`minires train`: the main job, its outputs, resuming exactly, Ctrl-C, recipes and bad arguments."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import minires
import minires.train as T
from minires.cli import main
from minires.recipes import RECIPES, Settings, SettingsError, build_model, check

# A quick digits run: the main job's settings, for 2 epochs of 12 batches.
QUICK = dict(RECIPES["digits"], epochs=2, batch_size=128)


def read_metrics(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in T.TIMING} for row in rows]


# --------------------------------------------------------------------------------- the main job
def test_the_main_job_reaches_97_percent_on_the_bundled_digits(tmp_path, capsys):
    start = time.perf_counter()
    assert main(["train", "--out", str(tmp_path)]) == 0
    seconds = time.perf_counter() - start
    lines = capsys.readouterr().out.strip().splitlines()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert len(rows) == RECIPES["digits"]["epochs"]
    accuracy = float(rows[-1]["test_acc"])
    assert accuracy >= 0.97, f"test accuracy {accuracy:.4f} after {seconds:.1f} s"
    assert lines[-1].startswith(f"test accuracy {100 * accuracy:.2f}%")
    print(f"main job: {100 * accuracy:.2f}% in {seconds:.1f} s")


def test_a_run_writes_its_outputs(tmp_path, capsys):
    rows = T.train(Settings(**QUICK), str(tmp_path))
    names = sorted(os.listdir(tmp_path))
    assert names == sorted([T.BEST, T.CHECKPOINT, T.CURVES, T.METRICS, T.SETTINGS])
    assert (tmp_path / T.CURVES).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / T.SETTINGS).read_text())
    assert saved["model"] == "resnet20" and saved["epochs"] == 2
    on_disk = read_metrics(tmp_path / T.METRICS)
    assert list(on_disk[0]) == T.COLUMNS and len(on_disk) == 2
    assert [int(r["epoch"]) for r in on_disk] == [1, 2]
    # best.safetensors is a plain state dict that loads into the model
    model = minires.models.resnet20(num_classes=10, in_channels=1)
    model.load_state_dict(minires.load(tmp_path / T.BEST))
    assert rows[-1]["test_acc"] == float(on_disk[-1]["test_acc"])


def test_the_same_seed_gives_the_same_metrics(tmp_path):
    a = T.train(Settings(**QUICK), str(tmp_path / "a"), log=lambda m: None)
    b = T.train(Settings(**QUICK), str(tmp_path / "b"), log=lambda m: None)
    c = T.train(Settings(**dict(QUICK, seed=1)), str(tmp_path / "c"), log=lambda m: None)
    assert T.compare_metrics(a, b)
    assert not T.compare_metrics(a, c)


# ------------------------------------------------------------------------- resuming exactly
_STOP_ON_CTRL_C = T._StopOnCtrlC


class StopAfter:
    """Stands in for Ctrl-C: asks the loop to stop after ``steps`` training steps."""

    def __init__(self, steps):
        self.steps = steps

    def __call__(self):
        outer = self

        class Stop(_STOP_ON_CTRL_C):
            @property
            def requested(self):
                outer.steps -= 1
                return outer.steps == 0

            @requested.setter
            def requested(self, value):
                pass

        return Stop()


@pytest.mark.parametrize("stop_after", [3, 12, 19], ids=["mid-epoch-1", "end-of-epoch-1", "mid-epoch-2"])
def test_resuming_gives_exactly_the_metrics_of_a_run_never_stopped(tmp_path, monkeypatch, stop_after):
    settings = Settings(**QUICK)                                 # 2 epochs of 12 batches of 128
    never_stopped = T.train(settings, str(tmp_path / "whole"), log=lambda m: None)
    out = str(tmp_path / "stopped")
    with monkeypatch.context() as m:
        m.setattr(T, "_StopOnCtrlC", StopAfter(stop_after))
        with pytest.raises(T.Interrupted, match=f"--resume {out}"):
            T.train(settings, out, log=lambda m: None)
    minires.manual_seed(12345)                                   # whatever happened in between
    resumed = T.train(settings, out, resume=True, log=lambda m: None)
    assert without_timing(never_stopped) == without_timing(resumed)
    assert without_timing(read_metrics(os.path.join(out, T.METRICS))) == \
        without_timing(read_metrics(tmp_path / "whole" / T.METRICS))


def test_resume_from_the_command_line(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "run")
    with monkeypatch.context() as m:
        m.setattr(T, "_StopOnCtrlC", StopAfter(5))
        assert main(["train", "--epochs", "2", "--batch-size", "128", "--out", out]) == 130
    assert "Continue with: minires train --resume" in capsys.readouterr().err
    assert main(["train", "--resume", out]) == 0
    assert "resuming" in capsys.readouterr().out
    assert len(read_metrics(os.path.join(out, T.METRICS))) == 2


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "minires.cli", "train", "--epochs", "50", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()                             # the model line: training has started
        assert line.startswith("resnet20"), line
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out_text, err_text = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err_text
    assert "checkpoint saved" in err_text and "Traceback" not in err_text
    assert (out / T.CHECKPOINT).is_file()


# ---------------------------------------------------------------------------------- recipes
def test_every_recipe_is_a_valid_set_of_settings():
    for name, recipe in RECIPES.items():
        settings = Settings(**recipe)
        if settings.dataset == "folder":
            continue                                              # needs --data-dir and --weights: tested below
        check(settings)


def test_the_recipes_say_what_the_tutorials_say():
    cifar, d2l, transfer = RECIPES["cifar10-resnet18"], RECIPES["fashion-mnist-d2l"], RECIPES["transfer-resnet34"]
    assert (cifar["lr"], cifar["momentum"], cifar["weight_decay"], cifar["schedule"]) == (0.1, 0.9, 5e-4, "cosine")
    assert (d2l["resize"], d2l["lr"], d2l["batch_size"], d2l["epochs"]) == (96, 0.05, 256, 10)
    assert transfer["model"] == "resnet34" and transfer["lr"] == 0.001


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("argv, message", [
    (["--model", "resnet7"], "unknown model 'resnet7'; choose one of: resnet18"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'; choose one of: digits, mnist"),
    (["--data-dir", "no/such/folder", "--dataset", "folder"], "is not a folder"),
    (["--dataset", "mnist", "--root", "no/such/root"], "--download"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--device", "cuda"], "needs CuPy and a CUDA GPU"),
    (["--train-only", "fc"], "needs --weights FILE"),
    (["--resume", "no/such/run"], "has no settings.json"),
    (["--device", "gpu"], "unknown device 'gpu'; choose cpu, cuda or cuda:N"),
    (["--momentum", "-1"], "--momentum must be a non-negative number"),
    (["--weight-decay", "-1"], "--weight-decay must be a non-negative number"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--seed", "-1"], "--seed must be at least 0"),
    (["--resize", "0"], "--resize must be at least 1"),
    (["--data-dir", ".", "--dataset", "mnist"], "--data-dir is an image folder, but the dataset is 'mnist'"),
])
def test_bad_arguments_give_one_line_naming_the_fix(argv, message, capsys):
    if argv[:2] == ["--device", "cuda"] and minires.cuda_is_available():
        pytest.skip("this machine has a GPU")
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_resume_refuses_other_settings_and_a_checkpoint_of_another_model(tmp_path, capsys):
    out = str(tmp_path / "run")
    T.train(Settings(**dict(QUICK, epochs=1)), out, log=lambda m: None)
    assert main(["train", "--resume", out, "--lr", "0.5"]) == 2
    assert "leave out --lr" in capsys.readouterr().err
    settings_path = os.path.join(out, T.SETTINGS)
    saved = json.loads(open(settings_path).read())
    with open(settings_path, "w") as f:
        json.dump(dict(saved, model="resnet32"), f)               # the checkpoint is a ResNet-20's
    assert main(["train", "--resume", out]) == 2
    err = capsys.readouterr().err
    assert "does not fit this run's model" in err and err.count("\n") == 1


def test_weights_of_another_model_are_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    minires.save(minires.models.resnet20(num_classes=10, in_channels=1), path)
    settings = Settings(**dict(QUICK, model="resnet32", weights=str(path)))
    with pytest.raises(SettingsError, match="does not fit resnet32"):
        build_model(settings, 10, 1)


def test_a_new_run_never_overwrites_another_and_a_failed_start_leaves_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    T.train(Settings(**dict(QUICK, epochs=1)), str(out), log=lambda m: None)
    assert main(["train", "--epochs", "1", "--out", str(out)]) == 2
    assert f"already holds a run; continue it with --resume {out}" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["train", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["train", "--dataset", "mnist", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "m")]) == 2
    capsys.readouterr()
    assert not (tmp_path / "m").exists()
    monkeypatch.chdir(tmp_path)                                   # the default folder moves on to runs/digits-2
    os.makedirs("runs/digits")
    open("runs/digits/settings.json", "w").close()
    from minires.cli import build_parser, train_settings
    assert train_settings(build_parser().parse_args(["train"]))[1] == os.path.join("runs", "digits-2")


def test_data_dir_implies_the_folder_dataset_and_only_digits_uses_nesterov():
    from minires.cli import build_parser, train_settings
    settings, _, _ = train_settings(build_parser().parse_args(["train", "--data-dir", "photos"]))
    assert settings.dataset == "folder"
    assert [name for name, r in RECIPES.items() if r["nesterov"]] == ["digits"]


def test_resuming_a_run_that_stopped_before_its_first_checkpoint_says_so(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / T.SETTINGS).write_text(json.dumps(QUICK))
    assert main(["train", "--resume", str(tmp_path / "run")]) == 2
    assert "stopped before its first checkpoint" in capsys.readouterr().err


# --------------------------------------------------------------------------- gradient norms
def test_log_grad_norms_writes_each_layers_norm_per_epoch_and_plots_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--batch-size", "128", "--log-grad-norms", "--out", str(out)]) == 0
    assert json.loads((out / T.SETTINGS).read_text())["log_grad_norms"] is True
    rows = read_metrics(out / T.GRAD_NORMS)
    layers = [name for name, _ in T.weight_layers(minires.models.resnet20(in_channels=1))]
    assert len(layers) == 20 and layers[0] == "conv1.weight" and layers[-1] == "fc.weight"
    assert [(int(r["epoch"]), int(r["depth"]), r["layer"]) for r in rows] == \
        [(e, d, name) for e in (1, 2) for d, name in enumerate(layers, 1)]
    assert all(0 < float(r["grad_norm"]) < float("inf") for r in rows)
    assert (out / T.GRAD_NORMS_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "plain").exists()
    T.train(Settings(**dict(QUICK, epochs=1)), str(tmp_path / "plain"), log=lambda m: None)
    assert not (tmp_path / "plain" / T.GRAD_NORMS).exists()          # only when asked for


def test_the_grad_norms_are_the_mean_over_the_epochs_steps(tmp_path, monkeypatch):
    """One epoch of one batch: the logged norm is that step's ||dL/dW||, measured before the update."""
    seen = {}
    real = T._add_grad_norms

    def spy(layers, progress):
        seen.update({name: float((p.grad.numpy().astype("float64") ** 2).sum()) ** 0.5 for name, p in layers})
        real(layers, progress)

    monkeypatch.setattr(T, "_add_grad_norms", spy)
    T.train(Settings(**dict(QUICK, epochs=1, batch_size=2000, log_grad_norms=True)), str(tmp_path), log=lambda m: None)
    rows = read_metrics(tmp_path / T.GRAD_NORMS)
    assert [float(r["grad_norm"]) for r in rows] == pytest.approx([seen[r["layer"]] for r in rows], rel=1e-6)


@pytest.mark.parametrize("stop_after", [3, 19], ids=["mid-epoch-1", "mid-epoch-2"])
def test_resuming_gives_exactly_the_grad_norms_of_a_run_never_stopped(tmp_path, monkeypatch, stop_after):
    settings = Settings(**dict(QUICK, log_grad_norms=True))      # 2 epochs of 12 batches of 128
    T.train(settings, str(tmp_path / "whole"), log=lambda m: None)
    out = str(tmp_path / "stopped")
    with monkeypatch.context() as m:
        m.setattr(T, "_StopOnCtrlC", StopAfter(stop_after))
        with pytest.raises(T.Interrupted):
            T.train(settings, out, log=lambda m: None)
    minires.manual_seed(12345)
    T.train(settings, out, resume=True, log=lambda m: None)
    assert (tmp_path / "stopped" / T.GRAD_NORMS).read_text() == (tmp_path / "whole" / T.GRAD_NORMS).read_text()


def test_the_paper_recipe_divides_the_lr_by_10_at_half_and_three_quarters():
    from minires.recipes import build_optimizer
    settings = Settings(**dict(RECIPES["cifar10-paper"], epochs=4))
    optimizer, schedule = build_optimizer(settings, minires.models.resnet20(), steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(optimizer.param_groups[0]["lr"])
        schedule.step()
    assert lrs[19] == 0.1 and lrs[20] == pytest.approx(0.01) and lrs[29] == pytest.approx(0.01)
    assert lrs[30] == pytest.approx(0.001)
