"""CPU and GPU agree: every operation, and a ResNet training step, on NumPy and on CuPy.

Each case runs the same inputs on the CPU and on the GPU and compares the output and every
gradient. Skipped where CuPy or a CUDA device is missing; ``compare`` itself is also run
CPU-against-CPU here, so the harness is exercised on every machine.
"""
import numpy as np
import pytest

import minires
import minires.functional as F
from minires import backend
from minires.models import resnet18

RNG_SEED = 20261123


def _inputs(shapes, dtype):
    rng = np.random.default_rng(RNG_SEED)
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


def _distinct(shape, dtype):
    n = int(np.prod(shape))
    values = (np.random.default_rng(RNG_SEED).permutation(n) - n / 2 + 0.5) / n
    return values.reshape(shape).astype(dtype)


CASES = {
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2),
               lambda dt: _inputs([(2, 4, 9, 9), (6, 2, 3, 3), (6,)], dt)),
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
                   lambda dt: [_distinct((2, 3, 9, 9), dt)]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
                   lambda dt: _inputs([(2, 3, 9, 9)], dt)),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (3, 5)),
                            lambda dt: _inputs([(2, 3, 7, 4)], dt)),
    "batch_norm_train": (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                         lambda dt: _inputs([(4, 3, 5, 5), (3,), (3,)], dt)),
    "cross_entropy": (lambda z: F.cross_entropy(z, minires.tensor(np.array([0, 3, 1, 4]), device=z.device),
                                                label_smoothing=0.1),
                      lambda dt: _inputs([(4, 5)], dt)),
    "linear_relu": (lambda x, w, b: F.relu(F.linear(x, w, b)),
                    lambda dt: _inputs([(4, 6), (5, 6), (5,)], dt)),
}


def _run(case, dtype, device):
    """Output and input gradients on the host, with one fixed random upstream gradient."""
    fn, make = CASES[case]
    inputs = [minires.tensor(a, requires_grad=True, device=device) for a in make(dtype)]
    out = fn(*inputs)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    out.backward(backend.to_device(dout, device))
    return [out.numpy()] + [backend.to_numpy(t.grad) for t in inputs]


def compare(case, dtype, device_a, device_b):
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    for a, b in zip(_run(case, dtype, device_a), _run(case, dtype, device_b)):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_harness_compares_outputs_and_gradients(case):
    compare(case, np.float64, "cpu", "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_cpu_and_gpu_agree(case, dtype):
    if not backend.cuda_is_available():
        pytest.skip("CuPy with a CUDA device is not available on this machine")
    compare(case, dtype, "cpu", "cuda")


@pytest.mark.gpu
def test_a_resnet18_training_step_agrees_on_cpu_and_gpu():
    if not backend.cuda_is_available():
        pytest.skip("CuPy with a CUDA device is not available on this machine")
    minires.manual_seed(0)
    cpu_model = resnet18(num_classes=10).to("float64").train()
    gpu_model = resnet18(num_classes=10).to("float64").train()
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.to("cuda")
    x, = _inputs([(2, 3, 64, 64)], np.float64)
    target = np.array([3, 7])
    grads = []
    for model, device in ((cpu_model, "cpu"), (gpu_model, "cuda")):
        loss = F.cross_entropy(model(minires.tensor(x, device=device)), minires.tensor(target, device=device))
        loss.backward()
        grads.append({k: backend.to_numpy(p.grad) for k, p in model.named_parameters()})
        grads[-1]["loss"] = np.asarray(loss.item())
    for key in grads[0]:
        np.testing.assert_allclose(grads[1][key], grads[0][key], rtol=1e-8, atol=1e-10, err_msg=key)
    for (key, a), b in zip(cpu_model.state_dict().items(), gpu_model.state_dict().values()):
        np.testing.assert_allclose(backend.to_numpy(b.data), backend.to_numpy(a.data), rtol=1e-10, err_msg=key)
