"""The fused model's hand-written gradients and its optimizer, against PyTorch's own.

``_Standardise``, ``_Mix``, ``_TargetLogLikelihood`` and ``_SparseLinear`` replace chains of autograd operations
(for speed: fewer full-size passes per training step); each must give the same values and
gradients as the chain it replaces, checked here on random inputs in float64 (values, and
gradients of a random linear function of the output) and by ``torch.autograd.gradcheck`` (finite
differences). ``FusedAdamW`` must take exactly the steps of ``torch.optim.AdamW(fused=True)``.
"""
import copy
import pickle
import sys

import numpy as np
import pytest
import torch

from recommender.models.fused import FusedRecommender
from recommender.models.fused import network as fused_network
from recommender.models.fused.layers import _csr_and_transpose, _Mix, _SparseLinear, _Standardise, _TargetLogLikelihood
from recommender.models.fused.network import _FusedNetwork
from recommender.models.optimizer import FusedAdamW, adamw


def _random(*shape, seed=0, grad=True):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.float64, generator=generator).requires_grad_(grad)


def _same_values_and_gradients(ours, reference, inputs, seed=1):
    """``ours(*inputs)`` equals ``reference(*inputs)``, and so do the gradients of ``sum(R * out)``."""
    out, expected = ours(*inputs), reference(*inputs)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    weights = _random(*out.shape, seed=seed, grad=False)
    ours_grads = torch.autograd.grad((out * weights).sum(), inputs)
    reference_grads = torch.autograd.grad((expected * weights).sum(), inputs)
    for mine, theirs in zip(ours_grads, reference_grads):
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------- _Standardise
def _standardise_reference(raw):
    mean = raw.mean(dim=1, keepdim=True)
    return (raw - mean) / torch.sqrt(((raw - mean) ** 2).mean(dim=1, keepdim=True) + 1e-8)


@pytest.mark.parametrize("shape", [(4, 9), (1, 50), (7, 2)])
def test_standardise_matches_the_autograd_chain(shape):
    raw = _random(*shape) * 3 + 1
    _same_values_and_gradients(lambda x: _Standardise.apply(x)[0], _standardise_reference, (raw,))
    assert torch.autograd.gradcheck(lambda x: _Standardise.apply(x)[0], (raw,))


def test_standardise_returns_the_mean_and_spread_and_leaves_its_input_alone():
    raw = _random(5, 8)
    before = raw.detach().clone()
    z, mean, spread = _Standardise.apply(raw)
    torch.testing.assert_close(mean, before.mean(dim=1, keepdim=True))
    torch.testing.assert_close(spread, before.std(dim=1, correction=0, keepdim=True), rtol=1e-6, atol=0)
    assert torch.equal(raw.detach(), before)
    assert not mean.requires_grad and not spread.requires_grad


def test_a_constant_row_standardises_to_zeros_with_finite_gradients():
    raw = torch.ones(2, 6, dtype=torch.float64, requires_grad=True)
    z, _, _ = _Standardise.apply(raw)
    z.sum().backward()
    assert torch.equal(z, torch.zeros_like(z)) and torch.isfinite(raw.grad).all()


# ---------------------------------------------------------------------- _Mix
def _mix_reference(weights, cold_weights, columns, column_scale, *scores):
    mixed = sum(weights[:, s:s + 1] * score for s, score in enumerate(scores))
    change = sum(cold_weights[:, s:s + 1] * score[:, columns] for s, score in enumerate(scores))
    return mixed.index_add(1, columns, change * column_scale)


@pytest.mark.parametrize("columns", [[1, 4, 7], [], list(range(9))])
def test_mix_matches_the_autograd_chain(columns):
    n, c = 5, 9
    weights, cold_weights = _random(n, 4, seed=2), _random(n, 4, seed=3)
    learnt = _random(n, c, seed=4)                                   # a score with a gradient
    fixed = _random(n, c, seed=5, grad=False)                        # a score without one
    row = _random(1, c, seed=6, grad=False).expand(n, -1)            # a broadcast row (popularity)
    also_learnt = _random(n, c, seed=7)
    columns = torch.tensor(columns, dtype=torch.long)
    column_scale = torch.rand(len(columns), dtype=torch.float64)

    def ours(w, d, a, b):
        return _Mix.apply(w, d, columns, column_scale, a, fixed, row, b)

    def reference(w, d, a, b):
        return _mix_reference(w, d, columns, column_scale, a, fixed, row, b)

    _same_values_and_gradients(ours, reference, (weights, cold_weights, learnt, also_learnt))
    assert torch.autograd.gradcheck(ours, (weights, cold_weights, learnt, also_learnt))


def test_mix_with_the_broadcast_row_first():
    n, c = 3, 6
    weights, cold_weights = _random(n, 2, seed=8), _random(n, 2, seed=9)
    row = _random(1, c, seed=10, grad=False).expand(n, -1)
    learnt = _random(n, c, seed=11)
    columns, column_scale = torch.tensor([0, 5]), torch.ones(2, dtype=torch.float64)
    _same_values_and_gradients(lambda w, d, a: _Mix.apply(w, d, columns, column_scale, row, a),
                               lambda w, d, a: _mix_reference(w, d, columns, column_scale, row, a),
                               (weights, cold_weights, learnt))


# ---------------------------------------------------------------------- _TargetLogLikelihood
def _likelihood_reference(scores, scale, shift, rows, columns, weights):
    logits = scores if scale is None else scores * scale
    if shift is not None:
        logits = logits - shift
    log_probs = torch.log_softmax(logits, dim=1)
    picked = log_probs[rows, columns] * weights
    return torch.zeros(scores.shape[0], dtype=scores.dtype).index_add(0, rows, picked)


_ROWS = torch.tensor([0, 0, 1, 3, 3, 3, 4])     # row 2 has no target; row 3 has one target twice
_COLUMNS = torch.tensor([1, 2, 6, 0, 0, 5, 3])


@pytest.mark.parametrize("with_scale", [False, True])
@pytest.mark.parametrize("with_shift", [False, True])
def test_target_log_likelihood_matches_log_softmax(with_scale, with_shift):
    scores = _random(5, 7, seed=12) * 4
    weights = torch.rand(len(_ROWS), dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    shift = _random(5, 7, seed=14, grad=False) if with_shift else None
    inputs = (scores, torch.tensor([1.7], dtype=torch.float64, requires_grad=True)) if with_scale else (scores,)

    def call(function, *args):
        scale = args[1] if with_scale else None
        return function(args[0], scale, shift, _ROWS, _COLUMNS, weights)

    before = scores.detach().clone()
    _same_values_and_gradients(lambda *a: call(_TargetLogLikelihood.apply, *a),
                               lambda *a: call(_likelihood_reference, *a), inputs)
    assert torch.equal(scores.detach(), before)      # the scores are not overwritten in place
    assert torch.autograd.gradcheck(lambda *a: call(_TargetLogLikelihood.apply, *a), inputs)


@pytest.mark.parametrize("scale", [None, 2.0])
def test_target_log_likelihood_is_stable_for_large_logits(scale):
    scores = torch.tensor([[1000.0, 0.0, -1000.0]], dtype=torch.float32, requires_grad=True)
    value = _TargetLogLikelihood.apply(scores, None if scale is None else torch.tensor([scale]), None,
                                       torch.tensor([0]), torch.tensor([1]), torch.ones(1))
    value.sum().backward()
    factor = 1.0 if scale is None else scale
    assert value.item() == pytest.approx(-1000.0 * factor)
    assert torch.isfinite(scores.grad).all()
    torch.testing.assert_close(scores.grad, torch.tensor([[-1.0, 1.0, 0.0]]) * factor)


# ---------------------------------------------------------------------- _SparseLinear
def _sparse_features(n_rows, n_columns, density, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(n_rows, n_columns, dtype=dtype, generator=generator)
    return values * (torch.rand(n_rows, n_columns, dtype=dtype, generator=generator) < density)


@pytest.mark.parametrize("shape", [(12, 7), (1, 5), (30, 40)])
def test_sparse_linear_matches_the_dense_layer(shape):
    features = _sparse_features(*shape, density=0.2)
    features[0] = 0.0                                   # a row without any feature
    weight, bias = _random(3, shape[1], seed=2), _random(3, seed=3)
    csr, transposed = _csr_and_transpose(features)
    _same_values_and_gradients(lambda w, b: _SparseLinear.apply(w, b, csr, transposed),
                               lambda w, b: torch.nn.functional.linear(features, w, b), (weight, bias))
    assert torch.autograd.gradcheck(lambda w, b: _SparseLinear.apply(w, b, csr, transposed), (weight, bias))


def _content_net(n_items, n_content):
    return _FusedNetwork(n_items=n_items, n_static=2, n_behaviour=1, n_content=n_content, dim=4, hidden=6,
                         gate_hidden=3, n_item_item=0, generator=torch.Generator().manual_seed(0))


def test_sparse_content_gives_the_dense_towers_values_and_gradients(monkeypatch):
    net = _content_net(40, 15)
    content = _sparse_features(40, 15, density=0.05, seed=4, dtype=torch.float32)
    id_mask = torch.ones(40)
    dense_vectors = net.item_parts(content, id_mask)[1]
    dense_grad = torch.autograd.grad(dense_vectors.square().sum(), net.content_hidden.weight)[0]
    assert net.use_sparse_content(content)
    sparse_vectors = net.item_parts(content, id_mask)[1]
    sparse_grad = torch.autograd.grad(sparse_vectors.square().sum(), net.content_hidden.weight)[0]
    torch.testing.assert_close(sparse_vectors, dense_vectors, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sparse_grad, dense_grad, rtol=1e-5, atol=1e-6)
    # Only for that very matrix: a sampled softmax's rows (a copy) take the dense layer.
    calls = []
    original = _SparseLinear.apply
    monkeypatch.setattr(_SparseLinear, "apply", lambda *args: calls.append(1) or original(*args))
    net.item_parts(content[:10], id_mask[:10], torch.arange(10))
    assert calls == []
    net.item_parts(content, id_mask)
    assert calls == [1]


def test_dense_content_keeps_the_dense_layer():
    net = _content_net(40, 15)
    assert not net.use_sparse_content(_sparse_features(40, 15, density=0.5, dtype=torch.float32))
    assert not net.use_sparse_content(None)
    assert net._sparse_content is None


def test_a_fitted_and_a_loaded_model_use_the_sparse_content(tmp_path):
    from recommender import Dataset
    from recommender.synthetic import generate
    data = generate(n_users=150, n_items=60, n_interactions=1500, seed=1)
    dataset = Dataset.from_frames(data.interactions, data.users, data.items, name="sparse")
    assert np.count_nonzero(dataset.item_features) <= fused_network.SPARSE_CONTENT_DENSITY * dataset.item_features.size
    # The CSR path is the CPU's (dense products are fast on a GPU).
    model = FusedRecommender(dim=8, hidden=8, gate_hidden=4, max_epochs=2, seed=0, device="cpu").fit(dataset)
    assert model._net._sparse_content is not None and model._net._sparse_content.dense is model._content
    model.save(tmp_path / "bundle")
    loaded = FusedRecommender.load(tmp_path / "bundle", dataset=dataset)
    # A deep copy (torch cannot deep-copy CSR tensors themselves) and a pickle keep the sparse path too.
    copied = copy.deepcopy(model)
    unpickled = pickle.loads(pickle.dumps(model))
    users = np.arange(dataset.n_users)
    for other in (loaded, copied, unpickled):
        assert other._net._sparse_content is not None and other._net._sparse_content.dense is other._content
        np.testing.assert_allclose(other.score_users(users), model.score_users(users), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------- FusedAdamW
def _small_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Embedding(30, 6), torch.nn.Flatten(), torch.nn.Linear(12, 3))


def test_fused_adamw_takes_exactly_the_steps_of_torch_optim_adamw():
    ours_net, reference_net = _small_net(), _small_net()
    ours = FusedAdamW(ours_net.parameters(), lr=0.01, weight_decay=0.1)
    reference = torch.optim.AdamW(reference_net.parameters(), lr=0.01, weight_decay=0.1, fused=True)
    generator = torch.Generator().manual_seed(1)
    for _ in range(12):
        x = torch.randint(0, 30, (16, 2), generator=generator)
        for net, optimizer in ((ours_net, ours), (reference_net, reference)):
            optimizer.zero_grad()
            net(x).pow(2).mean().backward()
            optimizer.step()
    for mine, theirs in zip(ours_net.parameters(), reference_net.parameters()):
        assert torch.equal(mine, theirs)


def test_fused_adamw_skips_parameters_without_a_gradient():
    used, unused = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    optimizer = FusedAdamW([used, unused], lr=0.1, weight_decay=0.5)
    (used * 2).sum().backward()
    optimizer.step()
    assert not torch.equal(used.detach(), torch.ones(3))
    assert torch.equal(unused.detach(), torch.ones(3)) and unused not in optimizer.state


def test_adamw_falls_back_to_torch_optim_on_devices_without_the_fused_kernel():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(adamw(params, torch.device("cpu"), lr=0.1), FusedAdamW)
    assert isinstance(adamw(params, torch.device("meta"), lr=0.1), torch.optim.AdamW)


def test_a_fit_does_not_import_the_compiler_stack():
    """torch.optim's first use imports torch._dynamo (about 2 s), ``skip_init`` imports sympy
    (about 0.7 s); the fused model's fit needs neither."""
    import subprocess

    code = (
        "import sys\n"
        "from recommender.synthetic import generate\n"
        "from recommender import Dataset, FusedRecommender\n"
        "data = generate(n_users=300, n_items=60, n_interactions=3000, seed=0)\n"
        "dataset = Dataset.from_frames(data.interactions, data.users, data.items)\n"
        "FusedRecommender(max_epochs=2, dim=8, hidden=16, threads=1).fit(dataset)\n"
        "print([name for name in ('torch._dynamo', 'sympy') if name in sys.modules])\n")
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_seeded_fit_is_reproducible_with_the_hand_written_gradients():
    from recommender import Dataset
    from recommender.synthetic import generate

    data = generate(n_users=300, n_items=60, n_interactions=3000, seed=0)
    dataset = Dataset.from_frames(data.interactions, data.users, data.items)
    # Bit for bit on the CPU; a GPU's atomic additions may differ in the last bits from run to run.
    params = dict(max_epochs=3, dim=8, hidden=16, threads=1, seed=5, device="cpu")
    first, second = FusedRecommender(**params).fit(dataset), FusedRecommender(**params).fit(dataset)
    assert [h["val_ndcg@10"] for h in first.training_history] == [h["val_ndcg@10"] for h in second.training_history]
    np.testing.assert_array_equal(first.score_users(np.arange(5)), second.score_users(np.arange(5)))
