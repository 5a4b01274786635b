"""``Adam`` and ``AdamW``: moving averages of the gradient and of its square, bias-corrected."""
from __future__ import annotations

from typing import Any, Dict, Tuple

from minires import backend
from minires.backend import Array
from minires.optim.optimizer import Optimizer, ParamsLike
from minires.tensor import Tensor


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), exactly as PyTorch's ``torch.optim.Adam``.

    For each parameter $\theta$ with gradient $g_t$ at step $t = 1, 2, \dots$, learning rate
    $\gamma$, betas $(\beta_1, \beta_2)$, eps $\epsilon$ and weight decay $\lambda$:

    - (maximize: $g_t \leftarrow -g_t$)
    - weight decay, L2 form (Adam): $g_t \leftarrow g_t + \lambda \theta_{t-1}$;
      decoupled form (AdamW): $\theta_{t-1} \leftarrow \theta_{t-1} (1 - \gamma \lambda)$
    - $m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t$ and $v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2$,
      from $m_0 = v_0 = 0$
    - bias corrections: $\hat m_t = m_t / (1 - \beta_1^t)$, $\hat v_t = v_t / (1 - \beta_2^t)$;
      with amsgrad, $\hat v_t = \max(v^{max}_{t-1}, v_t) / (1 - \beta_2^t)$ where
      $v^{max}_t = \max(v^{max}_{t-1}, v_t)$
    - $\theta_t = \theta_{t-1} - \gamma \hat m_t / (\sqrt{\hat v_t} + \epsilon)$

    The state is ``step`` ($t$), ``exp_avg`` ($m$), ``exp_avg_sq`` ($v$) and, with amsgrad,
    ``max_exp_avg_sq`` ($v^{max}$). Derivations and examples: docs/optim.md.
    """

    def __init__(self, params: ParamsLike, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False) -> None:
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_group(self, group: Dict[str, Any], index: int) -> None:
        super()._check_group(group, index)
        name = type(self).__name__
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"{name}: betas is a pair (beta1, beta2), got {betas!r} in parameter group {index}")
        for i, beta in enumerate(betas):
            if not 0 <= beta < 1:
                raise ValueError(f"{name}: betas[{i}] must be in [0, 1), got {beta} in parameter group {index}; "
                                 f"the usual values are (0.9, 0.999)")
        if not group["eps"] >= 0:
            raise ValueError(f"{name}: eps must be >= 0, got {group['eps']} in parameter group {index}")

    def update(self, param: Tensor, grad: Array, state: Dict[str, Any], group: Dict[str, Any]) -> None:
        xp = backend.get_array_module(grad)
        lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:                                          # m_0 = v_0 = 0
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(param.data)
            state["exp_avg_sq"] = xp.zeros_like(param.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(param.data)
        state["step"] += 1
        step = state["step"]
        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param.mul_(1 - lr * weight_decay)              # theta <- theta (1 - lr wd)
            else:
                grad = grad + weight_decay * param.data        # g <- g + wd theta
        # One scratch array of the parameter's size serves every step below, in turn. Measured over
        # the CIFAR ResNet-18's 11.2 M parameters on 2 cores: a fresh array per term (six of them)
        # took 25 ms a step, this 19 ms (torch: 12.6 ms in benchmarks/results/train-cpu.md).
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        scratch = xp.multiply(grad, 1 - beta1)                 # (1 - b1) g
        exp_avg *= beta1                                       # m_t = b1 m_{t-1} + (1 - b1) g
        exp_avg += scratch
        xp.multiply(grad, 1 - beta2, out=scratch)              # (1 - b2) g g
        scratch *= grad
        exp_avg_sq *= beta2                                    # v_t = b2 v_{t-1} + (1 - b2) g^2
        exp_avg_sq += scratch
        if group["amsgrad"]:
            xp.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            exp_avg_sq = state["max_exp_avg_sq"]
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        denom = xp.sqrt(exp_avg_sq, out=scratch)               # sqrt(v_hat) + eps
        denom /= bias_correction2 ** 0.5
        denom += eps
        step_size = xp.divide(exp_avg, denom, out=scratch)     # m_t / denom
        step_size *= -lr / bias_correction1
        param.add_(step_size)                                  # theta -= lr m_hat / denom


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``.

    The same rule as ``Adam`` except for the weight decay, which shrinks the parameter
    directly instead of entering the gradient (and so the moving averages):
    $\theta_{t-1} \leftarrow \theta_{t-1} (1 - \gamma \lambda)$, then Adam's step. Its default
    ``weight_decay`` is ``1e-2``.
    """

    def __init__(self, params: ParamsLike, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
