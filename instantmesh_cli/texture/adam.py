"""Adam for the texture refinement, in torch's multi-tensor operations (what ``torch.optim.Adam(foreach=True)`` runs).

Why not ``torch.optim.Adam``: constructing any torch optimizer imports ``torch._dynamo`` (torch wraps
``Optimizer.__init__`` in its lazy dynamo-disable decorator), 1.5 s on the 2-core VM, and nothing
else in a default run imports it any more. On the H200 that import, done in a thread beside a
cold process's first views, made those views 0.6-1.3 s slower than with the import in the load.

The update is torch's ``_multi_tensor_adam`` without amsgrad, weight decay, maximize or capturable
steps: the same operations in the same order, so on the CPU the parameters match
``torch.optim.Adam(foreach=True)`` bit for bit (a test holds it to that). On CUDA torch's default
here was its fused kernel, which rounds differently (float32 units in the last place).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Adam:
    """``groups``: (parameters, learning rate) pairs; ``betas`` and ``eps`` as torch's defaults."""

    groups: list[tuple[list[torch.Tensor], float]]
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    steps: int = field(default=0, init=False)  # updates made
    # Per group: the first and second moments of each parameter.
    _moments: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._moments = [([torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
                          [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params])
                         for params, _ in self.groups]

    def zero_grad(self) -> None:
        for params, _ in self.groups:
            for p in params:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        beta1, beta2 = self.betas
        self.steps += 1
        step = float(self.steps)  # torch's float32 step count, read back as a Python float: exact to 2**24
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        for (params, lr), (exp_avgs, exp_avg_sqs) in zip(self.groups, self._moments):
            live = [n for n, p in enumerate(params) if p.grad is not None]
            if not live:
                continue
            ps = [params[n] for n in live]
            grads = [params[n].grad for n in live]
            avgs = [exp_avgs[n] for n in live]
            sqs = [exp_avg_sqs[n] for n in live]
            torch._foreach_lerp_(avgs, grads, 1 - beta1)
            torch._foreach_mul_(sqs, beta2)
            torch._foreach_addcmul_(sqs, grads, grads, 1 - beta2)
            denom = torch._foreach_sqrt(sqs)
            torch._foreach_div_(denom, bias_correction2**0.5)
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(ps, avgs, denom, (lr / bias_correction1) * -1)
