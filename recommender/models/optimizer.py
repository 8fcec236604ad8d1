"""AdamW on PyTorch's fused kernel, without ``torch.optim``'s first-use import of the compiler stack.

Every ``torch.optim`` optimizer imports ``torch._dynamo`` the first time one of its methods runs
(the methods are wrapped to keep ``torch.compile`` out of them). That import takes about 2 s on
a 2-core CPU, once per process: 10-15 % of fitting the fused model on 100,000 interactions
(``benchmarks/RESULTS.md``). :class:`FusedAdamW` calls the same fused kernel that
``torch.optim.AdamW(fused=True)`` calls, with the same state and the same arguments, so its
steps are bit-for-bit those of ``torch.optim.AdamW`` (``tests/models/test_fused_autograd.py``). On a
device without the fused kernel, or without it in this PyTorch build, :func:`adamw` returns
``torch.optim.AdamW`` itself.
"""
from __future__ import annotations

from typing import Iterable

import torch


class FusedAdamW:
    """Decoupled weight-decay Adam (Loshchilov & Hutter) for parameters on one CPU or CUDA device.

    Only what training the fused model uses: ``step()`` and ``zero_grad()``; no closures,
    parameter groups, AMSGrad, sparse gradients or state dicts. Parameters whose gradient is ``None`` are skipped
    (their step count does not advance), as in ``torch.optim``.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        self.params = [p for p in params if p.requires_grad]
        devices = {p.device for p in self.params}
        if len(devices) > 1:
            raise ValueError(f"FusedAdamW needs every parameter on one device, got {sorted(map(str, devices))}")
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), tuple(map(float, betas)), float(eps), \
            float(weight_decay)
        self.state: dict[torch.nn.Parameter, dict[str, torch.Tensor]] = {}

    @torch.no_grad()
    def step(self) -> None:
        params, grads, averages, squares, steps = [], [], [], [], []
        for p in self.params:
            if p.grad is None:
                continue
            state = self.state.get(p)
            if state is None:   # as torch.optim.AdamW initialises it (float32 step count)
                state = self.state[p] = {
                    "step": torch.tensor(0.0, dtype=torch.float32, device=p.device),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            params.append(p)
            grads.append(p.grad)
            averages.append(state["exp_avg"])
            squares.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:
            return
        torch._foreach_add_(steps, 1)
        torch._fused_adamw_(params, grads, averages, squares, [], steps, amsgrad=False, lr=self.lr,
                            beta1=self.betas[0], beta2=self.betas[1], weight_decay=self.weight_decay,
                            eps=self.eps, maximize=False, grad_scale=None, found_inf=None)

    def zero_grad(self) -> None:
        """Drop every gradient (``torch.optim``'s default ``set_to_none=True``)."""
        for p in self.params:
            p.grad = None


def adamw(params: Iterable[torch.nn.Parameter], device: torch.device, **options):
    """:class:`FusedAdamW` where the fused kernel exists (CPU, CUDA), else ``torch.optim.AdamW``."""
    params = list(params)
    if device.type in ("cpu", "cuda") and hasattr(torch, "_fused_adamw_"):
        return FusedAdamW(params, **options)
    return torch.optim.AdamW(params, **options)
