"""``SGD``: stochastic gradient descent, with momentum, Nesterov momentum and weight decay."""
from __future__ import annotations

from typing import Any, Dict

from minires.backend import Array
from minires.optim.optimizer import Optimizer, ParamsLike
from minires.tensor import Tensor


class SGD(Optimizer):
    r"""Stochastic gradient descent, exactly as PyTorch's ``torch.optim.SGD``.

    For each parameter $\theta$ with gradient $g_t$ at step $t$, learning rate $\gamma$,
    weight decay $\lambda$, momentum $\mu$ and dampening $\tau$:

    - (maximize: $g_t \leftarrow -g_t$)
    - weight decay: $g_t \leftarrow g_t + \lambda \theta_{t-1}$
    - momentum ($\mu \ne 0$): $b_1 = g_1$ at the first step (no dampening), then
      $b_t = \mu b_{t-1} + (1 - \tau) g_t$; the step direction is
      $g_t \leftarrow g_t + \mu b_t$ with Nesterov momentum, else $g_t \leftarrow b_t$
    - $\theta_t = \theta_{t-1} - \gamma g_t$

    The buffer $b$ is ``state["momentum_buffer"]``. Derivations and examples: docs/optim.md.
    """

    def __init__(self, params: ParamsLike, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group: Dict[str, Any], index: int) -> None:
        super()._check_group(group, index)
        if not group["momentum"] >= 0:
            raise ValueError(f"SGD: momentum must be >= 0, got {group['momentum']} in parameter group {index}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: Nesterov momentum needs a momentum > 0 and zero dampening, got momentum="
                             f"{group['momentum']}, dampening={group['dampening']} in parameter group {index}; "
                             f"set momentum (e.g. 0.9) and dampening=0, or nesterov=False")

    def update(self, param: Tensor, grad: Array, state: Dict[str, Any], group: Dict[str, Any]) -> None:
        momentum, dampening = group["momentum"], group["dampening"]
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param.data
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:                                   # first step: b_1 = g_1
                buf = state["momentum_buffer"] = grad.copy()
            else:                                             # b_t = mu b_{t-1} + (1 - tau) g_t
                buf *= momentum
                buf += grad if dampening == 0 else (1 - dampening) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        param.sub_(grad, alpha=group["lr"])                   # theta_t = theta_{t-1} - lr g_t
