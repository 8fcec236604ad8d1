"""Autograd functions with hand-written backward passes, and the layer initialisers of the fused model."""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import nn

def _centred(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row minus its mean, the mean and the standard deviation (``sqrt(variance + 1e-8)``), both (n, 1).

    The variance as the squared norm of the centred rows: one read where ``((x - m) ** 2).mean()``
    writes a full-size square first (measured 2-3x faster on (256, 2,000) rows; ``torch.var_mean``
    was slower still on the CPU).
    """
    mean = raw.mean(dim=1, keepdim=True)
    centred = raw - mean
    norm = torch.linalg.vector_norm(centred, dim=1, keepdim=True)
    return centred, mean, torch.sqrt(norm * norm / max(raw.shape[1], 1) + 1e-8)


def _mean_and_spread(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of each row (see :func:`_centred`)."""
    _, mean, spread = _centred(raw)
    return mean, spread


def _weighted_sum(weights: torch.Tensor, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_s weights[:, s:s+1] * tensors[s]``, one fused multiply-add per tensor after the first."""
    total = weights[:, :1] * tensors[0]
    for position, tensor in enumerate(tensors[1:], start=1):
        total.addcmul_(weights[:, position:position + 1], tensor)
    return total


class _Standardise(torch.autograd.Function):
    """``z = (x - mean) / spread`` per row (see :func:`_mean_and_spread`), with the gradient in closed form.

    ``dx = (dz - mean(dz) - z * mean(dz * z)) / spread``: five full-size passes backward where
    autograd's chain through the mean and the norm takes about eight. Returns ``z`` and the
    (non-differentiable) mean and spread.
    """

    @staticmethod
    def forward(ctx, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        centred, mean, spread = _centred(raw)
        z = centred.div_(spread)
        ctx.save_for_backward(z, spread)
        ctx.mark_non_differentiable(mean, spread)
        return z, mean, spread

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _mean_grad, _spread_grad) -> torch.Tensor:
        z, spread = ctx.saved_tensors
        width = max(z.shape[1], 1)
        inverse = 1.0 / spread
        grad_mean = grad.mean(dim=1, keepdim=True)
        result = grad * z   # one full-size buffer: first for mean(dz * z), then for the result
        grad_along_z = result.sum(dim=1, keepdim=True).div_(width)
        # dz / spread - mean(dz) / spread - z * mean(dz * z) / spread, in two multiply-adds
        torch.addcmul(-grad_mean * inverse, grad, inverse, out=result)
        return result.addcmul_(z, grad_along_z * inverse, value=-1.0)


def _columns(raw: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
    """``raw``, or its columns ``reference`` (those whose statistics standardise the rest)."""
    return raw if reference is None else raw[:, reference]


def _standardised(raw: torch.Tensor, reference: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                  statistics: dict | None = None, name: str = "") -> torch.Tensor:
    """``(raw - mean) / spread`` per row, the statistics over the columns ``reference`` (all by default),
    times ``mask`` (per column) if given; records ``mean_<name>`` and ``spread_<name>`` in ``statistics``."""
    if reference is None and mask is None and raw.requires_grad:
        z, mean, spread = _Standardise.apply(raw)     # closed-form gradient (training)
    else:
        mean, spread = _mean_and_spread(_columns(raw, reference))
        scale = 1.0 / spread
        z = torch.addcmul(-mean * scale, raw, scale)
        if mask is not None:
            z.mul_(mask)
    if statistics is not None and name:
        statistics[f"mean_{name}"], statistics[f"spread_{name}"] = mean, spread
    return z


class _Mix(torch.autograd.Function):
    """The fused scores (n, c): ``sum_s w[:, s] z_s``, plus ``column_scale * sum_s d[:, s] z_s`` on ``columns``.

    ``weights`` and ``cold_weights`` (the change of the weights on ``columns``, the items without
    an id vector) are (n, S); each of the S ``scores`` is (n, c), possibly a broadcast row (the
    popularity source). Autograd's chain of multiply-adds and column gathers writes a full-size
    product per source backward just to sum it into a weight's gradient, and a full-size zero
    tensor per gathered score; here a weight's gradient is one dot product per row, and a
    score's gradient (only for the scores that need one: the profile and history sources; the
    others are fixed) is one product plus an update of its cold columns.
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, cold_weights: torch.Tensor, columns: torch.Tensor,
                column_scale: torch.Tensor, *scores: torch.Tensor) -> torch.Tensor:
        mixed = _weighted_sum(weights, scores)
        selected = [score.index_select(1, columns) for score in scores]
        if len(columns):
            mixed.index_add_(1, columns, _weighted_sum(cold_weights, selected).mul_(column_scale))
        ctx.save_for_backward(weights, cold_weights, columns, column_scale, *scores, *selected)
        return mixed

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weights, cold_weights, columns, column_scale, *saved = ctx.saved_tensors
        n_scores = len(saved) // 2
        scores, selected = saved[:n_scores], saved[n_scores:]

        def dots(grad: torch.Tensor, tensors) -> torch.Tensor:
            """Row-wise dot products (n, S); a broadcast row is one matrix-vector product.

            The products go through one reused buffer (``vecdot`` allocates a full-size product
            per call: 2-3x slower on the CPU)."""
            result = grad.new_empty(grad.shape[0], len(tensors))
            buffer = None
            for position, tensor in enumerate(tensors):
                if tensor.stride(0) == 0:
                    torch.mv(grad, tensor[0], out=result[:, position])
                    continue
                buffer = torch.mul(grad, tensor, out=buffer) if buffer is not None else grad * tensor
                torch.sum(buffer, dim=1, out=result[:, position])
            return result

        grad_columns = grad.index_select(1, columns).mul_(column_scale)
        grad_weights = dots(grad, scores) if ctx.needs_input_grad[0] else None
        grad_cold = dots(grad_columns, selected) if ctx.needs_input_grad[1] and len(columns) else None
        if grad_cold is None and ctx.needs_input_grad[1]:
            grad_cold = torch.zeros_like(cold_weights)
        grad_scores = []
        for position in range(n_scores):
            if not ctx.needs_input_grad[4 + position]:
                grad_scores.append(None)
                continue
            grad_score = grad * weights[:, position:position + 1]
            if len(columns):
                grad_score.index_add_(1, columns, grad_columns * cold_weights[:, position:position + 1])
            grad_scores.append(grad_score)
        return grad_weights, grad_cold, None, None, *grad_scores


class _TargetLogLikelihood(torch.autograd.Function):
    """Per row, the weighted multinomial log-likelihood of its targets: ``sum_t w_t log softmax(x)[r_t, c_t]``,
    with logits ``x = scale * scores - shift`` (``scale`` a learnt temperature, so positive, and
    ``shift`` the sampled softmax's correction; both optional).

    The same value and gradient as autograd's chain (scale, shift, ``log_softmax``, gather;
    ``tests/models/test_fused_autograd.py`` checks both), with the gradient in closed form: ``w_t`` at
    each target minus ``softmax(x) * sum_t w_t`` per row. The exponentials of the forward pass
    are kept for the backward one (one ``exp`` over the scores per step, not two); the scale
    goes into the per-row factors, and its own gradient is a single dot product.
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None,
                rows: torch.Tensor, columns: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if scale is not None and shift is None:
            # x - max(x) in one multiply-add: max(scale * scores) = scale * max(scores) for scale > 0
            top = scores.amax(dim=1, keepdim=True).mul_(scale)
            shifted = torch.addcmul(-top, scores, scale)
        else:
            logits = scores if scale is None else scores * scale
            if shift is not None:
                logits = logits - shift
            top = logits.amax(dim=1, keepdim=True)
            # in place when ``logits`` is already a buffer of this function's own
            shifted = logits.sub_(top) if logits is not scores else logits - top
        picked = shifted[rows, columns]
        exponentials = shifted.exp_()
        total = exponentials.sum(dim=1)
        ctx.save_for_backward(exponentials, total, scores if ctx.needs_input_grad[1] else None, scale,
                              rows, columns, weights)
        return torch.zeros(scores.shape[0], dtype=scores.dtype, device=scores.device).index_add_(
            0, rows, (picked - torch.log(total)[rows]) * weights)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        exponentials, total, scores, scale, rows, columns, weights = ctx.saved_tensors
        row_weight = torch.zeros_like(grad).index_add_(0, rows, weights)
        factor = (-grad * row_weight / total)[:, None]
        at_targets = grad[rows] * weights
        if scale is not None:   # d/dscores = scale * d/dlogits
            factor, at_targets = factor * scale, at_targets * scale
        grad_scores = exponentials * factor
        grad_scores.index_put_((rows, columns), at_targets, accumulate=True)
        grad_scale = None
        if ctx.needs_input_grad[1]:
            grad_scale = (torch.dot(grad_scores.reshape(-1), scores.reshape(-1)) / scale).reshape(scale.shape)
        return grad_scores if ctx.needs_input_grad[0] else None, grad_scale, None, None, None, None


def _csr_and_transpose(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``matrix`` and its transpose as sparse CSR tensors (what :class:`_SparseLinear` multiplies)."""
    # torch calls its sparse CSR tensors beta; the two products used here (addmm, CSR @ dense) are
    # checked against the dense layer in tests/models/test_fused_autograd.py.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support", category=UserWarning)
        return matrix.to_sparse_csr(), matrix.T.to_sparse_csr()


class _SparseRows:
    """A fixed dense matrix with its CSR form and its transpose's (see :class:`_SparseLinear`).

    Copied and pickled as the dense matrix alone, the CSR forms rebuilt (torch cannot deep-copy a
    CSR tensor): a deep copy of a fitted model keeps the sparse path, since ``copy.deepcopy``'s
    memo maps the model's content matrix and this one's ``dense`` to the same copy.
    """

    def __init__(self, dense: torch.Tensor) -> None:
        self.dense = dense
        self.matrix, self.transposed = _csr_and_transpose(dense)

    def __reduce__(self):
        return _SparseRows, (self.dense,)


class _SparseLinear(torch.autograd.Function):
    """``features @ weight.T + bias`` for a fixed sparse (CSR) ``features`` matrix: ``nn.Linear``'s value,
    with the weight's gradient ``(features.T @ grad).T`` from the transpose's CSR form (``transposed``),
    so neither pass touches the zeros. No gradient for the features (they are data)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor,
                transposed: torch.Tensor) -> torch.Tensor:
        ctx.transposed = transposed
        return torch.sparse.addmm(bias.expand(features.shape[0], -1), features, weight.T)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (ctx.transposed @ grad).T, grad.sum(dim=0), None, None


def _init_linear(layer: nn.Linear, generator: torch.Generator, gain: float = 1.0) -> nn.Linear:
    with torch.no_grad():
        nn.init.xavier_uniform_(layer.weight, gain=gain, generator=generator)
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


def _linear(n_in: int, n_out: int, generator: torch.Generator, bias: bool = True, gain: float = 1.0) -> nn.Linear:
    """A Linear layer initialised from ``generator`` (never from torch's global random state).

    Built on the meta device (no initialisation, no draw from the global generator), then given
    real parameters: ``torch.nn.utils.skip_init`` does the same through ``Module.to_empty``, whose
    first call imports sympy and mpmath (0.6-0.9 s of a 100k fit).
    """
    layer = nn.Linear(n_in, n_out, bias=bias, device="meta")
    layer.weight = nn.Parameter(torch.empty(n_out, n_in))
    if bias:
        layer.bias = nn.Parameter(torch.empty(n_out))
    return _init_linear(layer, generator, gain)


def _normal(shape: tuple[int, ...], std: float, generator: torch.Generator) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape, generator=generator) * std)
