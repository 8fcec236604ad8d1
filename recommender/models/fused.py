"""FusedRecommender: collaborative, profile and content signals fused per person by a learned gate.

The model (PyTorch, trained end to end) has six *sources*, each of which scores every item
for a person ``u``:

======================  ===================================================================
``profile``             ``p(u) . v_i``: an MLP over the static profile and the behaviour
                        features
``history``             ``h(u) . v_i``: an L2-normalised bag of learned embeddings of the
                        items in the person's history, then a projection (a Mult-DAE encoder)
``item_item``           ``(x_u B)_i``: EASE item-item weights ``B`` computed in closed form
                        (penalty 8x the mean count per item; the training part's interactions
                        while training, every interaction once fitted), covering the
                        ``item_item_max_items`` most popular items
``content_similarity``  content kNN: the item's cosine similarity (on the item features) to
                        the history items it is among the ``content_neighbours`` nearest of
``similar_people``      profile kNN: the similarity-weighted share of the ``similar_people``
                        training users most like the person (static profile, plus category
                        shares when there is a history) who picked the item
``popularity``          ``log(1 + count_i)`` (the training part's counts while training, every
                        interaction once fitted, like the popularity baseline); for a new item, a
                        ridge regression of it on content
======================  ===================================================================

with item vectors ``v_i = E_i + C(content_i)`` (a collaborative id vector plus a content
tower). Each source's scores are standardised over the catalogue for the person
(``z_s = (s - mean) / std``), so the sources speak on the same scale, and a gate ``g(u)`` --
a softmax computed by a small MLP from the two towers' hidden states and the history length
-- mixes them::

    score(u, i) = temperature * sum_s g_s(u) * z_s(u, i)

Items without interactions (new items) use a second gate ``g'(u) = softmax(log g(u) + b)``
with a learnt offset ``b`` (trained on the id-dropped items), and the two interaction-based
sources (``item_item``, ``similar_people``), which know nothing about such an item, give it
their average score (``z = 0``) rather than the score of an item nobody picked.

Nothing non-linear follows the gate, so every score splits *exactly* into per-source
contributions, and the profile and history contributions further into their collaborative
(``E_i``) and content (``C(content_i)``) parts (:meth:`FusedRecommender.explain`); the gate
itself says how much each signal is trusted for each person (:meth:`FusedRecommender.gate_weights`).
Sources a person cannot have (history, item-item and content similarity without a history)
get exactly zero weight.

After training the gate is corrected on the validation people: for people without history an
offset on the popularity logit (a grid that reaches popularity alone, chosen by NDCG@10 on
held-out new people), for people with a history one offset per source (coordinate search on
NDCG@10: of the few-shot validation people for histories of up to :data:`SHORT_HISTORY` items,
of the warm ones for longer histories), then a fixed lift for the item-item source (long
histories) or the similar-people source (short ones), which the likelihood-trained gate
under-weights (:data:`LONG_HISTORY_GATE_LIFT`, :data:`SHORT_HISTORY_GATE_LIFT`). New items are
ordered among themselves by a gate that leans further on content similarity
(:data:`NEW_ITEM_CONTENT_SIMILARITY_OFFSET`), and placed among the other items by a shift of their
scores chosen on every validation person (:data:`NEW_ITEM_SHIFT_GRID`). See
``FusedRecommender._calibrate_gate``.

Degrading gracefully:

* a person with no history is scored from the profile, similar people and popularity;
* a person with a handful of interactions: profile, those items, similar people and
  popularity (the gate learns how much to trust each at each history length);
* a warm user: everything;
* a new item (no interaction in training): its id vector is switched off, so it is scored
  from its content vector, its content similarity to the person's history and its
  content-predicted popularity; item-id dropout during training teaches the content tower
  (and the new-item gate) to stand alone. :meth:`FusedRecommender.score_new_items` scores
  items that are not in the data at all the same way.

Training is DropoutNet-style denoising with a multinomial likelihood (Mult-DAE): every epoch
each user is shown, at random, *no* history (cold-start practice), 1-5 items (few-shot
practice: half the time their first ones by time, as a new person has them) or 50-80 % of it
(warm; a quarter of the time the earliest part, the latest to predict), with behaviour features
recomputed from the shown items by the dataset's own
:class:`~recommender.features.BehaviourEncoder` (the very code that encodes new people at
inference), and the model predicts the hidden items with a softmax over the whole catalogue (a
sampled softmax with a log-Q correction above ``full_softmax_items``).
Auxiliary losses (``source_loss_weight``) make the profile and history sources rank well on
their own, which keeps each source a meaningful recommender -- and measurably improves the
fused model for new people. Early stopping on NDCG@10 of a validation split carved from the
training data: known users with 20 % of their items hidden, plus held-out users scored as new
people with none or their first three items revealed (like the ``warm``, ``cold_user`` and
``few_shot`` protocols of :mod:`recommender.evaluation`). What is validated, and kept when best,
is an exponential moving average of the weights over about an epoch (``weight_average``): a
single step's weights score validation noisily, and early stopping on noise picks bad epochs.

Explicit ratings: every rated item is part of a person's history (a 2-star review still says
what the person looked at), but as a *target* an item rated below the relevance threshold
(``0.7 * max rating`` on a star scale, the rule of :mod:`recommender.evaluation`) counts only
``low_rating_weight``. Implicit data (and counts) count every interaction fully.

Divergence: a NaN or infinite loss stops training with :class:`~recommender.errors.ModelFitError`
naming the learning rate; if an epoch had finished, the best weights so far stay on the model
(it remains usable), otherwise the model is left unfitted.
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from ..dataset import Dataset, new_user_labels
from ..errors import ModelFitError
from .base import SCORE_BATCH, Callback, Recommender, register, top_k
from .content_knn import _unit_rows, top_k_similarity
from .profile_knn import _share_columns, neighbour_scores
from .device import resolve_device
from .optimizer import FusedAdamW, adamw

logger = logging.getLogger(__name__)

#: Sources of the gate, in order.
SOURCES = ("profile", "history", "item_item", "content_similarity", "similar_people", "popularity")
#: Training users kept as the neighbour pool of the ``similar_people`` source (a random subset above this).
NEIGHBOUR_POOL = 5_000
#: Entries of one (people x pool) similarity block (smaller than profile kNN's: it runs every training step).
_BLOCK_FLOATS = 8_000_000
#: Added after training to the content-similarity logit of the new-item gate. For a new item
#: the content tower's parts look better in training than they are (the tower has seen the items
#: with their interactions), while content similarity to the history is as good as in training.
#: On the synthetic data's cold-item splits (two data sets, three splits each) adding 2-6 beat
#: the learnt gate by 0.01-0.05 NDCG@10 when new items are ranked among themselves (the learnt
#: offset itself barely moves from 0). Larger offsets rank new items better among themselves
#: but lift the few catalogue items without interactions into everyone's lists (content
#: similarity z-scores are heavy-tailed): 5.0 cost up to 0.04 NDCG@10 on the warm, temporal and
#: few-shot protocols, so 2.5. A pseudo-new-item validation could not pick it: it shares the
#: tower's optimism.
NEW_ITEM_CONTENT_SIMILARITY_OFFSET = 2.5
#: Scores added to every item without interactions (new items), chosen after training by NDCG@10
#: of all validation people (0 kept unless another value is better). The new-item gate decides
#: how new items are ordered among themselves; this shift decides how far up the whole list they
#: come. Without it the learnt gate over-promoted them: on the synthetic data's warm, temporal and
#: few-shot splits a shift of -2 gained 0.002-0.007 NDCG@10 (the few catalogue items that nobody
#: had picked yet kept entering lists through their content similarity).
NEW_ITEM_SHIFT_GRID = (0.0, -0.5, -1.0, -2.0, -4.0, -8.0)
#: Ranking cut-off of the validation metric.
VALIDATION_K = 10
#: Gate calibration: each source's best items per validation person kept as candidates, and the
#: people scored at once while collecting them (see ``FusedRecommender._calibration_candidates``).
CALIBRATION_CANDIDATES = 50
CALIBRATION_BATCH = 256
#: Most floats that keeping the validation people's fixed-source scores between epochs may take.
VALIDATION_CACHE_FLOATS = 16_000_000
#: Item features at most this dense (share of non-zero values) go through the content tower's
#: first layer as a sparse (CSR) matrix on the CPU, forward and backward. One-hot categories,
#: brands and tags are sparse: the 100k benchmark's 2,000 x 123 features are 4.6 % non-zero, and
#: their first layer, forward and backward, took 1.6 instead of 5.3 ms a step (a whole step 0.92x).
#: On random matrices the sparse product wins by 2.3x at 5 % non-zero (123 and 300 features), by
#: 2x and 1.15x at 10 %, and loses from 20 % on 300 features (measured on this 2-core CPU).
SPARSE_CONTENT_DENSITY = 0.08
#: At most this many CPU threads train a sampled-softmax catalogue by default (one fewer than
#: torch's own count, so the batch thread keeps a core). Measured only on 2 and 16 cores: on 2
#: cores one thread beat two by 1.3x an epoch at 1,000,000 interactions (side by side; a whole fit
#: 127.5 against 162.7 s), and torch's 16 threads on a 16-core machine were barely faster than this
#: 2-core one (13.8 against 18.4 s an epoch). The cap of 4 is a judgement between those, not a
#: measurement: small operations gain little from more threads.
SAMPLED_SOFTMAX_THREADS = 4
#: Offsets tried on the popularity logit of people without history after training (30: popularity alone, in
#: effect). None is negative: the gate learnt on training people already trusts the profile more than
#: strangers warrant, and on ~125 validation people a "trust it even more" offset won on noise (second
#: weak-profile draw: -2 and -1 chosen, 0.947x popularity on the test people; see benchmarks/RESULTS.md).
NEW_PERSON_POPULARITY_GRID = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 30.0)
#: People with at most this many history items (and at least one) get their own gate offsets,
#: calibrated on the few-shot validation people (their first three items shown); longer histories
#: get offsets calibrated on the warm validation people. A few first items can say much less than
#: a random share of a long history: on MovieLens-100K (users' first three ratings shown) every
#: history-based model scored below popularity (EASE 0.250, ALS 0.247, the fused model 0.282
#: against 0.333 NDCG@10), while the fused model led on known users (see benchmarks/RESULTS.md,
#: "MovieLens-100K").
SHORT_HISTORY = 5
#: Validation holds out at least this many new people (no more than ``NEW_VALIDATION_CAP`` of the
#: users with something relevant), on data where half the validation share would be fewer. The
#: new-person and short-history gate offsets are chosen on them, and on about 47 people (MovieLens-100K,
#: 943 users) that choice followed noise: few-shot 0.3272 NDCG@10 against 0.3420 with 100, warm 0.3764
#: against 0.3779, new users 0.3738 against 0.3724 (three splits); 150 (at most 20 %) lost warm and new
#: users (0.3697, 0.3659). With the default share, data with 2,000 such users or more is unchanged.
MIN_NEW_VALIDATION_PEOPLE = 100
NEW_VALIDATION_CAP = 0.12
#: Share of the few-shot practice in training that shows a user's *first* items by time (data with
#: timestamps), as a new person arrives with them; the rest shows random items of the history. First
#: items can differ from the rest: on MovieLens-100K, whose users rated their first films at sign-up,
#: few-shot NDCG@10 went 0.3420 -> 0.3786 over three splits (0.3726 with first items only); on the
#: synthetic data, whose order within a user is random, it moved within a fit's noise (weak few-shot,
#: three training seeds: 0.2697 against 0.2712). See benchmarks/RESULTS.md.
FIRST_ITEMS_SHARE = 0.5
#: Share of the warm practice that shows a user's *earliest* 50-80 % of items and hides the latest
#: (data with timestamps), as the model is used: to say what comes next; the rest hides random items.
#: MovieLens-100K, three splits: temporal (latest ratings held out) 0.1733 -> 0.1806 NDCG@10 (EASE
#: 0.1717), warm 0.3769 -> 0.3764; a share of 0.5 gave temporal 0.1794 but warm 0.3697. On the
#: synthetic data, whose order within a user is random, warm and temporal moved within a fit's noise.
PAST_ITEMS_SHARE = 0.25
#: Steps of the offsets' coordinate search after training; for people with a short history the
#: popularity offset may also take the larger steps, up to popularity alone in effect (as for
#: people without history).
OFFSET_STEPS = (-1.0, 1.0, -2.0, 2.0)
SHORT_HISTORY_POPULARITY_STEPS = (4.0, 8.0, 30.0)
#: Added after the calibration to the gate logits of people with a history: of the item-item source
#: for histories longer than SHORT_HISTORY items, of the similar-people source for shorter ones.
#: The gate is learnt by the log-likelihood of *all* of a person's hidden items, which favours
#: sources that give every hidden item a fair score; these two score a few items very high (heavy
#: upper tails), which NDCG@10 rewards, so the learnt gate under-weights them (MovieLens-1M warm:
#: the item-item source alone 0.3686 NDCG@10, at the learnt 9 % 0.3556). The calibration's few
#: hundred validation people cannot see gains this small. Replayed on seven data sets x three
#: splits (benchmarks/RESULTS.md, "Tenth stop"): item-item +0.5 gained on 14 of 21 warm and 15 of
#: 20 temporal fits, lost on 4 and 3 (mean +0.0027 and +0.0019 NDCG@10; +1 gained more on average
#: but lost more often); similar people +1 gained on 14 of 21 few-shot fits and lost on 4 (+0.0019;
#: +2 lost 0.010 on MovieLens latest-small). Checked afterwards on an eighth data set (InstEval).
LONG_HISTORY_GATE_LIFT = {"item_item": 0.5}
SHORT_HISTORY_GATE_LIFT = {"similar_people": 1.0}


# ---------------------------------------------------------------------- small helpers
def positive_threshold(dataset: Dataset) -> float | None:
    """Rating from which an interaction is a full positive (None: every interaction is).

    Same rule as :func:`recommender.evaluation.protocols.relevance_threshold` with ``"auto"``:
    explicit star ratings (more than two distinct values, all within 0..10) use
    ``0.7 * max rating``; implicit data and counts have no threshold.
    """
    if not dataset.has_ratings or dataset.n_interactions == 0:
        return None
    values = np.unique(dataset.weights)
    if len(values) <= 2 or values.min() < 0 or values.max() > 10:
        return None
    return float(0.7 * values.max())


def _binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    """Presence (1.0) of every stored non-zero entry: CSR float32, duplicates summed, indices sorted."""
    result = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    result.eliminate_zeros()
    result.sum_duplicates()
    result.data[:] = 1.0
    return result


def _gather_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Entries of some CSR rows, vectorised.

    Returns
    -------
    row_of : ndarray of int64, shape (nnz,)
        Position in ``rows`` of each entry (sorted ascending).
    columns : ndarray of int64, shape (nnz,)
    values : ndarray of float32, shape (nnz,)
    counts : ndarray of int64, shape (len(rows),)
    """
    starts = matrix.indptr[rows].astype(np.int64)
    counts = matrix.indptr[rows + 1].astype(np.int64) - starts
    row_of = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    source = starts[row_of] + (np.arange(len(row_of), dtype=np.int64) - first[row_of])
    return row_of, matrix.indices[source].astype(np.int64), matrix.data[source].astype(np.float32), counts


def _rank_in_rows(row_of: np.ndarray, keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Rank (0-based) of each entry within its row when sorted by ``keys``; ``counts`` = entries per row."""
    order = np.lexsort((keys, row_of))
    first = np.cumsum(counts) - counts
    rank = np.empty(len(row_of), dtype=np.int64)
    rank[order] = np.arange(len(row_of)) - first[row_of[order]]
    return rank


def _ndcg(scores: np.ndarray, exclude: sp.csr_matrix, relevant: sp.csr_matrix, k: int = VALIDATION_K) -> np.ndarray:
    """NDCG@k per row (binary relevance), float64, shape (n_rows,); modifies ``scores``."""
    items, _ = top_k(scores, k, exclude)
    dense = relevant.toarray() > 0
    hits = np.take_along_axis(dense, np.maximum(items, 0), axis=1) & (items >= 0)
    return _ndcg_of_hits(hits, dense.sum(axis=1))


def _ndcg_of_hits(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """NDCG per row from the relevance (bool, (n_rows, k)) of each row's ranked top k and its number of relevant items."""
    discount = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    ideal = np.concatenate(([0.0], np.cumsum(discount)))[np.minimum(n_relevant, hits.shape[1])]
    return (hits * discount).sum(axis=1) / np.where(ideal > 0, ideal, 1.0)


def _popularity_from_content(features: np.ndarray, log_popularity: np.ndarray, known: np.ndarray,
                             penalty: float = 1.0) -> tuple[np.ndarray, float]:
    """Ridge regression of the log popularity of known items on their content features.

    Returns the weights (float32, shape (n_features,)) and the intercept.
    """
    if not known.any():
        return np.zeros(features.shape[1], dtype=np.float32), 0.0
    x = features[known].astype(np.float64)
    y = log_popularity[known].astype(np.float64)
    x_mean, y_mean = x.mean(axis=0), y.mean()
    centred = x - x_mean
    gram = centred.T @ centred + penalty * np.eye(x.shape[1])
    weight = np.linalg.solve(gram, centred.T @ (y - y_mean))
    return weight.astype(np.float32), float(y_mean - x_mean @ weight)


def _content_neighbours(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``k`` most similar items by content (cosine), most similar first.

    Returns the neighbours (int64, shape (n_items, k')) and their similarities (float32, same
    shape; 0 pads rows with fewer than ``k'`` positive similarities), ``k' = min(k, n_items - 1)``
    (0 without item features).
    """
    n_items = features.shape[0]
    k = min(int(k), max(n_items - 1, 0))
    if k <= 0 or features.shape[1] == 0:
        return np.zeros((n_items, 0), dtype=np.int64), np.zeros((n_items, 0), dtype=np.float32)
    matrix = top_k_similarity(_unit_rows(features), k).tocsr()
    matrix.sort_indices()
    counts = np.diff(matrix.indptr)
    row_of = np.repeat(np.arange(n_items), counts)
    rank = _rank_in_rows(row_of, -matrix.data.astype(np.float64), counts)
    neighbours = np.tile(np.arange(n_items, dtype=np.int64)[:, None], (1, k))  # padding: the item itself, weight 0
    similarity = np.zeros((n_items, k), dtype=np.float32)
    neighbours[row_of, rank] = matrix.indices
    similarity[row_of, rank] = matrix.data
    return neighbours, similarity


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


@contextmanager
def _torch_threads(threads: int):
    """Run the block on ``threads`` torch threads, torch's previous count restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


# ---------------------------------------------------------------------- network
class _FusedNetwork(nn.Module):
    """The towers, the gate and the item side (see the module docstring).

    Every source yields one score per item, standardised per person over the catalogue
    (mean 0, standard deviation 1), so the gate weights compare like with like; the final
    score is ``temperature * sum_s gate_s * z_s``.
    """

    def __init__(self, *, n_items: int, n_static: int, n_behaviour: int, n_content: int, dim: int, hidden: int,
                 gate_hidden: int, n_item_item: int, n_content_neighbours: int = 0,
                 similar_people: bool = False, generator: torch.Generator):
        super().__init__()
        self.n_items, self.dim, self.hidden = n_items, dim, hidden
        # History tower: a bag of item embeddings (Mult-DAE encoder), then a projection.
        self.history_embedding = _normal((n_items, hidden), 1.0 / math.sqrt(hidden), generator)
        self.history_bias = nn.Parameter(torch.zeros(hidden))
        self.history_out = _linear(hidden, dim, generator)
        # Profile tower: static profile + behaviour features.
        n_profile = n_static + n_behaviour
        self.profile_hidden = _linear(max(n_profile, 1), hidden, generator, gain=math.sqrt(2))
        self.profile_out = _linear(hidden, dim, generator)
        # Gate over the sources (always all of SOURCES; unavailable ones are masked).
        self.gate_hidden = _linear(2 * hidden + 2, gate_hidden, generator)
        self.gate_out = _linear(gate_hidden, len(SOURCES), generator, gain=0.1)
        self.log_temperature = nn.Parameter(torch.full((1,), math.log(3.0)))  # 1-d: bundles store no 0-d arrays
        # Temperatures of the profile and history sources scored on their own (auxiliary losses).
        self.log_source_temperature = nn.Parameter(torch.full((2,), math.log(3.0)))
        # Added to the gate logits of people without history; calibrated on validation after training.
        self.register_buffer("new_person_gate_offset", torch.zeros(len(SOURCES)))
        # Added to the gate logits of people with a history longer than SHORT_HISTORY items, and of
        # people with a shorter one; calibrated on validation after training.
        self.register_buffer("history_gate_offset", torch.zeros(len(SOURCES)))
        self.register_buffer("short_history_gate_offset", torch.zeros(len(SOURCES)))
        # Added to the gate logits for items without an id vector (new items; id-dropped ones in
        # training), which are scored by their content only; learnt end to end, then corrected
        # towards content similarity after training (see NEW_ITEM_CONTENT_SIMILARITY_OFFSET).
        self.cold_item_gate_offset = nn.Parameter(torch.zeros(len(SOURCES)))
        # Added to the score of every item without an id vector (placement among the items with
        # one); 0 in training, calibrated on validation after training (NEW_ITEM_SHIFT_GRID).
        self.register_buffer("new_item_shift", torch.zeros(1))
        # Item side: id vectors, content tower, popularity prior.
        self.item_embedding = _normal((n_items, dim), 0.01, generator)
        self.register_buffer("log_popularity", torch.zeros(n_items))
        self.n_content = n_content
        # The catalogue's content matrix and its CSR forms, when sparse (see use_sparse_content).
        self._sparse_content: _SparseRows | None = None
        # The catalogue's item vectors at inference, kept while nothing they depend on changes (item_parts).
        self._item_parts_cache: tuple | None = None
        if n_content:
            self.content_hidden = _linear(n_content, hidden, generator, gain=math.sqrt(2))
            self.content_out = _linear(hidden, dim, generator)
            # Popularity of a new item: a ridge regression of log(1 + count) on content (fixed).
            self.register_buffer("content_popularity_weight", torch.zeros(n_content))
            self.register_buffer("content_popularity_bias", torch.zeros(1))
        # Content kNN: each item's most similar items by content (cosine of the features, fixed).
        self.n_content_neighbours = n_content_neighbours if n_content else 0
        self.similar_people = bool(similar_people)
        if self.n_content_neighbours:
            self.register_buffer("content_neighbours", torch.zeros(n_items, n_content_neighbours, dtype=torch.long))
            self.register_buffer("content_neighbour_similarity", torch.zeros(n_items, n_content_neighbours))
        # Closed-form item-item component (fixed weights, computed before training).
        self.n_item_item = n_item_item
        if n_item_item:
            self.register_buffer("item_item_weights", torch.zeros(n_item_item, n_item_item))
            self.register_buffer("item_item_items", torch.zeros(n_item_item, dtype=torch.long))
            self.register_buffer("item_item_position", torch.full((n_items,), -1, dtype=torch.long))

    def __getstate__(self) -> dict:
        """Copies and pickles leave the kept catalogue vectors behind (they are recomputed on use)."""
        return {**self.__dict__, "_item_parts_cache": None}

    @property
    def temperature(self) -> torch.Tensor:
        return torch.exp(self.log_temperature)

    @property
    def source_temperature(self) -> torch.Tensor:
        return torch.exp(self.log_source_temperature)

    # -- item side --------------------------------------------------------------
    def use_sparse_content(self, content: torch.Tensor | None) -> bool:
        """Give the content tower this content matrix (the catalogue's) in CSR form when it is sparse.

        At most ``SPARSE_CONTENT_DENSITY`` non-zero and on the CPU (dense products are fast on a
        GPU, and MPS has no sparse CSR), the first layer then multiplies the CSR matrix whenever
        :meth:`content_vectors` is given this very tensor (the same values up to rounding). Returns
        whether it does.
        """
        self._sparse_content = None
        if content is None or not self.n_content or content.device.type != "cpu" or not content.numel():
            return False
        if int(torch.count_nonzero(content)) > SPARSE_CONTENT_DENSITY * content.numel():
            return False
        self._sparse_content = _SparseRows(content)
        return True

    def content_vectors(self, content: torch.Tensor) -> torch.Tensor:
        """The content tower: vectors (n, dim) of items described by ``content`` (needs item features)."""
        sparse = self._sparse_content
        if sparse is not None and content is sparse.dense:
            hidden = _SparseLinear.apply(self.content_hidden.weight, self.content_hidden.bias, sparse.matrix,
                                         sparse.transposed)
        else:
            hidden = self.content_hidden(content)
        return self.content_out(torch.relu(hidden))

    def item_parts(self, content: torch.Tensor | None, id_mask: torch.Tensor, index: torch.Tensor | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Collaborative and content vectors of every item (or of ``index``).

        ``content`` (n, n_content) and ``id_mask`` (n,) describe the items returned.

        Returns
        -------
        collaborative : (n, dim)  ``E_i`` (zero where ``id_mask`` is 0: new items)
        content : (n, dim)        ``C(content_i)`` (zeros without item features)
        """
        # Every request for new people and every validation chunk scores the same catalogue with the
        # same weights: outside training, the vectors of the whole catalogue are kept and reused
        # until a tensor they depend on is replaced or changed in place (its version counter moves).
        key = None
        if index is None and not self.training and not torch.is_grad_enabled():
            tensors = [id_mask, self.item_embedding]
            if self.n_content:
                tensors += [content, self.content_hidden.weight, self.content_hidden.bias, self.content_out.weight,
                            self.content_out.bias]
            key = tuple((id(t), t._version) for t in tensors)
            cached = self._item_parts_cache
            if cached is not None and cached[0] == key:
                return cached[1]
        embedding = self.item_embedding if index is None else self.item_embedding[index]
        collaborative = embedding * id_mask[:, None]
        content_vectors = self.content_vectors(content) if self.n_content else torch.zeros_like(collaborative)
        # The tensors themselves are kept with the key, so no id in it can be reused by another tensor.
        self._item_parts_cache = None if key is None else (key, (collaborative, content_vectors), tensors)
        return collaborative, content_vectors

    def item_popularity(self, content: torch.Tensor | None, id_mask: torch.Tensor,
                        index: torch.Tensor | None = None) -> torch.Tensor:
        """Popularity prior (n,) of every item (or of ``index``): log training frequency, or predicted
        from content where ``id_mask`` is 0."""
        log_popularity = self.log_popularity if index is None else self.log_popularity[index]
        return id_mask * log_popularity + (1 - id_mask) * self.predicted_popularity(content, len(id_mask))

    def predicted_popularity(self, content: torch.Tensor | None, n: int) -> torch.Tensor:
        """Popularity (n,) predicted from the content of ``n`` items (zeros without item features)."""
        if self.n_content:
            return content @ self.content_popularity_weight + self.content_popularity_bias
        return self.log_popularity.new_zeros(n)

    def new_item_parts(self, content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Content vectors (m, dim) and predicted popularity (m,) of brand-new items described by ``content``."""
        m = content.shape[0]
        vectors = self.content_vectors(content) if self.n_content else content.new_zeros(m, self.dim)
        return vectors, self.predicted_popularity(content, m)

    # -- user side --------------------------------------------------------------
    def user_parts(self, profile: torch.Tensor, items: torch.Tensor, offsets: torch.Tensor,
                   n_history: torch.Tensor, statistics: dict | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gate, profile vector and history vector of a batch of people.

        Parameters
        ----------
        profile : (n, n_static + n_behaviour) float
        items : (nnz,) long
            History items of all people, grouped by person.
        offsets : (n,) long
            Start of each person's items in ``items``.
        n_history : (n,) float
            History length of each person.

        Returns
        -------
        gate : (n, len(SOURCES))
        profile_vector, history_vector : (n, dim)
        """
        n = profile.shape[0]
        weights = torch.rsqrt(torch.clamp(n_history, min=1.0))
        per_item = torch.repeat_interleave(weights, n_history.long(), output_size=items.shape[0])
        bag = F.embedding_bag(items, self.history_embedding, offsets, mode="sum", per_sample_weights=per_item)
        has_history = (n_history > 0).to(profile.dtype)
        history_hidden = torch.tanh(bag + self.history_bias) * has_history[:, None]
        history_vector = self.history_out(history_hidden)
        if profile.shape[1]:
            profile_hidden = torch.relu(self.profile_hidden(profile))
        else:
            profile_hidden = torch.relu(self.profile_hidden.bias).expand(n, -1)
        profile_vector = self.profile_out(profile_hidden)
        gate_input = torch.cat([history_hidden, profile_hidden, torch.log1p(n_history)[:, None],
                                has_history[:, None]], dim=1)
        gate_logits = self.gate_out(torch.tanh(self.gate_hidden(gate_input)))
        # Sources a person cannot have get exactly zero weight.
        unavailable = torch.zeros_like(gate_logits, dtype=torch.bool)
        no_history = (has_history == 0)[:, None]
        unavailable[:, 1:2] = no_history
        unavailable[:, 2:3] = no_history if self.n_item_item else True
        unavailable[:, 3:4] = no_history if self.n_content_neighbours else True
        unavailable[:, 4:5] = not self.similar_people
        short = has_history * (n_history <= SHORT_HISTORY).to(profile.dtype)
        if statistics is not None:
            statistics.update(gate_logits=gate_logits, has_history=has_history, short_history=short,
                              unavailable=unavailable)
        return (self.gate_from_logits(gate_logits, has_history, short, unavailable), profile_vector,
                history_vector)

    def gate_from_logits(self, gate_logits: torch.Tensor, has_history: torch.Tensor, short_history: torch.Tensor,
                         unavailable: torch.Tensor) -> torch.Tensor:
        """The gate (n, S) from the gate network's logits: calibrated offsets added, unavailable sources off.

        ``has_history`` and ``short_history`` (1 for people with 1 to :data:`SHORT_HISTORY`
        history items) choose which of the three calibrated offsets a person gets.
        """
        gate_logits = (gate_logits + (1 - has_history)[:, None] * self.new_person_gate_offset
                       + (has_history - short_history)[:, None] * self.history_gate_offset
                       + short_history[:, None] * self.short_history_gate_offset)
        return torch.softmax(gate_logits.masked_fill(unavailable, float("-inf")), dim=1)

    def cold_gate(self, gate: torch.Tensor) -> torch.Tensor:
        """The gate (n, S) for items without an id vector: ``softmax(log g + b)`` over the available sources."""
        cold_logits = torch.log(gate.clamp(min=1e-30)) + self.cold_item_gate_offset
        return torch.softmax(cold_logits.masked_fill(gate == 0, float("-inf")), dim=1)

    def item_item_scores(self, items: torch.Tensor, n_history: torch.Tensor, index: torch.Tensor | None = None
                         ) -> torch.Tensor:
        """Raw EASE scores (n, n_items), or (n, len(index)): 0 for the items the item-item matrix does not cover.

        Each row is a bag of rows of B over the person's covered history items (the others are skipped).
        """
        n = n_history.shape[0]
        position = self.item_item_position[items]
        known = position >= 0
        owner = torch.repeat_interleave(torch.arange(n, device=items.device), n_history.long(),
                                        output_size=items.shape[0])
        counts = torch.zeros(n, dtype=torch.long, device=items.device)
        counts.index_add_(0, owner[known], torch.ones_like(owner[known]))
        item_item = F.embedding_bag(position[known], self.item_item_weights, torch.cumsum(counts, 0) - counts,
                                    mode="sum")
        if index is None and self.n_item_item == self.n_items:
            return item_item  # covers the whole catalogue in index order
        position = self.item_item_position if index is None else self.item_item_position[index]
        covered = (position >= 0).to(item_item.dtype)
        return item_item.index_select(1, position.clamp(min=0)).mul_(covered)

    def content_similarity_scores(self, items: torch.Tensor, n_history: torch.Tensor,
                                  index: torch.Tensor | None = None) -> torch.Tensor:
        """Content kNN scores: each item's summed similarity to the history items whose neighbour it is.

        Returns (n, n_items), or (n, len(index)) (built for those columns only: a sampled
        softmax over a large catalogue never touches a full-catalogue row); a person without
        history gets zeros.
        """
        n = n_history.shape[0]
        owner = torch.repeat_interleave(torch.arange(n, device=items.device), n_history.long(),
                                        output_size=items.shape[0])
        neighbours = self.content_neighbours[items]                    # (nnz, k)
        values = self.content_neighbour_similarity[items]
        width = self.n_items
        if index is not None:
            width = index.shape[0]
            lookup = torch.full((self.n_items,), -1, dtype=torch.long, device=items.device)
            lookup[index] = torch.arange(width, device=items.device)
            neighbours = lookup[neighbours]
            kept = neighbours >= 0
            flat = (owner[:, None] * width + neighbours)[kept]
            values = values[kept]
        else:
            flat = (owner[:, None] * width + neighbours).reshape(-1)
            values = values.reshape(-1)
        scores = torch.zeros(n * width, device=items.device, dtype=values.dtype).index_add_(0, flat, values)
        return scores.view(n, width)

    def new_item_neighbour_similarity(self, content: torch.Tensor, new_item_content: torch.Tensor,
                                      items: torch.Tensor | None = None) -> torch.Tensor:
        """Similarity (len(items) or n_items, m) of catalogue items to brand-new items, where the new
        item would be among the catalogue item's content neighbours (at least as similar as its
        last kept neighbour), else 0."""
        unit = F.normalize(content if items is None else content[items], dim=1)
        similarity = unit @ F.normalize(new_item_content, dim=1).T
        last_kept = self.content_neighbour_similarity[:, -1:] if items is None else \
            self.content_neighbour_similarity[items, -1:]
        return similarity * ((similarity > 0) & (similarity >= last_kept)).to(similarity.dtype)

    def new_item_content_similarity(self, items: torch.Tensor, n_history: torch.Tensor, content: torch.Tensor,
                                    new_item_content: torch.Tensor) -> torch.Tensor:
        """Content kNN scores (n, m) of brand-new items: summed over each person's history items."""
        n = n_history.shape[0]
        owner = torch.repeat_interleave(torch.arange(n, device=items.device), n_history.long(),
                                        output_size=items.shape[0])
        similarity = self.new_item_neighbour_similarity(content, new_item_content, items)   # (nnz, m)
        return torch.zeros(n, similarity.shape[1], device=items.device, dtype=similarity.dtype).index_add_(
            0, owner, similarity)

    # -- scores -----------------------------------------------------------------
    def source_scores(self, profile: torch.Tensor, items: torch.Tensor, offsets: torch.Tensor,
                      n_history: torch.Tensor, neighbour_scores: torch.Tensor | None,
                      content: torch.Tensor | None, id_mask: torch.Tensor,
                      index: torch.Tensor | None = None, reference: torch.Tensor | None = None,
                      split_item_parts: bool = False, new_item_content: torch.Tensor | None = None,
                      statistics: dict | None = None, fixed: Mapping[str, torch.Tensor] | None = None,
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The gates and each source's standardised scores.

        Parameters
        ----------
        neighbour_scores : (n, n_items), optional
            Raw scores of the ``similar_people`` source (see :class:`_NeighbourPool`), all items.
        content, id_mask
            Of the items scored (all, or ``index``).
        index : (c,) long, optional
            Score only these items (sampled softmax); all items by default.
        reference : (r,) long, optional
            Columns of the scored items whose mean and spread standardise the scores (a uniform
            sample of the catalogue when ``index`` is a sample); all columns by default.
        split_item_parts : bool
            Return the profile and history scores split into collaborative and content parts.
        new_item_content : (m, n_content), optional
            Brand-new items appended after the scored ones (needs ``index`` None): scored like a
            catalogue item without interactions (id vector off, content vector, popularity
            predicted from content, no item-item score, content kNN against the history),
            standardised with the catalogue's mean and spread only, so their scores are on the
            scale of the catalogue's.
        statistics : dict, optional
            Filled with what scoring a new item needs besides its content (see
            :meth:`FusedRecommender.score_new_items`): ``profile_vector``, ``history_vector``
            (n, dim) and, per source, ``mean_<source>`` and ``spread_<source>`` (n, 1).
        fixed : dict, optional
            The sources without trainable weights, already standardised by :meth:`fixed_scores`
            with the same arguments (training prepares them in the batch thread); computed here
            when not given.

        Returns
        -------
        gate : (n, 2, len(SOURCES))
            ``gate[:, 0]`` weighs the sources for items with an id vector, ``gate[:, 1]`` for
            items without one (new items), see :meth:`fuse`.
        scores : dict of (n, c [+ m])
            ``profile``, ``history``, ``item_item``, ``content_similarity``, ``popularity`` (or,
            with ``split_item_parts``, ``profile_collaborative``, ``profile_content``,
            ``history_collaborative``, ``history_content`` instead of ``profile`` and ``history``).
        """
        gate, profile_vector, history_vector = self.user_parts(profile, items, offsets, n_history, statistics)
        collaborative, content_vectors = self.item_parts(content, id_mask, index)
        if new_item_content is not None and new_item_content.shape[0]:
            if reference is None:
                reference = torch.arange(collaborative.shape[0], device=collaborative.device)
            new_content_vectors, _ = self.new_item_parts(new_item_content)
            collaborative = torch.cat([collaborative, torch.zeros_like(new_content_vectors)])
            content_vectors = torch.cat([content_vectors, new_content_vectors])
        scores: dict[str, torch.Tensor] = {}
        for name, vector in (("profile", profile_vector), ("history", history_vector)):
            if split_item_parts:
                parts = {"collaborative": vector @ collaborative.T, "content": vector @ content_vectors.T}
                mean, spread = _mean_and_spread(_columns(parts["collaborative"] + parts["content"], reference))
                for part, raw in parts.items():
                    scores[f"{name}_{part}"] = (raw - _columns(raw, reference).mean(dim=1, keepdim=True)) / spread
            else:
                scores[name] = _standardised(vector @ (collaborative + content_vectors).T, reference,
                                             statistics=statistics, name=name)
            if statistics is not None:
                statistics[f"{name}_vector"] = vector
        if fixed is None:
            fixed = self.fixed_scores(items, n_history, neighbour_scores, content, id_mask, index, reference,
                                      new_item_content, statistics)
        scores.update(fixed)
        return torch.stack([gate, self.cold_gate(gate)], dim=1), scores

    def fixed_scores(self, items: torch.Tensor, n_history: torch.Tensor, neighbour_scores: torch.Tensor | None,
                     content: torch.Tensor | None, id_mask: torch.Tensor, index: torch.Tensor | None = None,
                     reference: torch.Tensor | None = None, new_item_content: torch.Tensor | None = None,
                     statistics: dict | None = None) -> dict[str, torch.Tensor]:
        """Standardised scores (n, c [+ m]) of the sources without trainable weights: ``item_item``,
        ``content_similarity``, ``similar_people`` and ``popularity`` (a broadcast row); the
        arguments as in :meth:`source_scores`.

        They depend only on the history, the profile and the id mask, so training computes them in
        the batch thread, beside the network's step (:meth:`FusedRecommender._step_inputs`).
        """
        n, n_scored = n_history.shape[0], id_mask.shape[0]
        n_new = 0 if new_item_content is None else new_item_content.shape[0]
        if n_new and reference is None:
            reference = torch.arange(n_scored, device=id_mask.device)
        # Item-item and similar-people scores come from interactions: about an item without an
        # id vector (new, or id-dropped in training, which must look new) they know nothing, so
        # it gets their average score (0 after standardising), not that of an item nobody picked.
        known = id_mask if not n_new else torch.cat([id_mask, id_mask.new_zeros(n_new)])
        scores: dict[str, torch.Tensor] = {}
        if self.n_item_item:
            raw = self.item_item_scores(items, n_history, index)
            if n_new:
                raw = torch.cat([raw, raw.new_zeros(n, n_new)], dim=1)
            scores["item_item"] = _standardised(raw, reference, known)
        if self.n_content_neighbours:
            raw = self.content_similarity_scores(items, n_history, index)
            if n_new:
                raw = torch.cat([raw, self.new_item_content_similarity(items, n_history, content,
                                                                        new_item_content)], dim=1)
            scores["content_similarity"] = _standardised(raw, reference, statistics=statistics,
                                                         name="content_similarity")
        if self.similar_people and neighbour_scores is not None:
            # Already restricted to ``index`` by the caller when it has as many columns.
            raw = neighbour_scores if index is None or neighbour_scores.shape[1] == index.shape[0] \
                else neighbour_scores[:, index]
            if n_new:
                raw = torch.cat([raw, raw.new_zeros(n, n_new)], dim=1)
            scores["similar_people"] = _standardised(raw, reference, known)
        popularity = self.item_popularity(content, id_mask, index)
        if n_new:
            popularity = torch.cat([popularity, self.predicted_popularity(new_item_content, n_new)])
        mean, spread = _mean_and_spread(_columns(popularity[None, :], reference))
        if statistics is not None:
            statistics["mean_popularity"], statistics["spread_popularity"] = mean, spread
        scores["popularity"] = ((popularity[None, :] - mean) / spread).expand(n, -1)
        missing = [source for source in SOURCES[2:] if source not in scores]
        if missing:   # one shared zero tensor for the sources this model or these people lack
            scores.update(dict.fromkeys(missing, id_mask.new_zeros(n, n_scored + n_new)))
        return scores

    def fuse(self, gate: torch.Tensor, scores: Mapping[str, torch.Tensor], id_mask: torch.Tensor,
             n_new: int = 0) -> torch.Tensor:
        """``temperature * sum_s gate_s * z_s``, with the cold gate (and, after training, the new-item
        shift) for items whose id vector is off.

        ``id_mask`` (c,) is that of the scored items; ``n_new`` brand-new items follow them.
        """
        cold = 1.0 - id_mask
        if n_new:
            cold = torch.cat([cold, cold.new_ones(n_new)])
        # T sum_s (g_s (1 - cold) + g'_s cold) z_s: one mix over every item, plus a correction on
        # the cold items only (this runs at every training step; a per-source blend over every
        # item, or one batched product over stacked sources, measured slower on the CPU). The
        # temperature goes into the (n, S) gate, and each source is one fused multiply-add.
        weights = self.temperature * gate
        columns = torch.nonzero(cold > 0).squeeze(1)
        mixed = _Mix.apply(weights[:, 0], weights[:, 1] - weights[:, 0], columns, cold[columns],
                           *(scores[source] for source in SOURCES))
        if len(columns) and not self.training:   # the shift is 0 while training: no read of it (a GPU sync)
            # In place: no backward node keeps ``mixed`` itself.
            mixed.index_add_(1, columns, (self.new_item_shift * cold[columns]).expand(mixed.shape[0], -1))
        return mixed

    def logits(self, profile: torch.Tensor, items: torch.Tensor, offsets: torch.Tensor, n_history: torch.Tensor,
               neighbour_scores: torch.Tensor | None, content: torch.Tensor | None, id_mask: torch.Tensor,
               index: torch.Tensor | None = None, reference: torch.Tensor | None = None,
               new_item_content: torch.Tensor | None = None, fixed: Mapping[str, torch.Tensor] | None = None
               ) -> torch.Tensor:
        """Scores (n, n_items), or (n, len(index)) for the items ``index`` only (then the new items, if any)."""
        gate, scores = self.source_scores(profile, items, offsets, n_history, neighbour_scores, content, id_mask,
                                          index, reference, new_item_content=new_item_content, fixed=fixed)
        n_new = 0 if new_item_content is None else new_item_content.shape[0]
        return self.fuse(gate, scores, id_mask, n_new)


class _NeighbourPool:
    """The ``similar_people`` source: what people like this person picked (profile kNN).

    Similarity of a person to a pool user is the cosine of their static profiles plus, when
    the person has a history, the cosine of their category shares (like
    :class:`~recommender.models.profile_knn.ProfileKNNRecommender`); a person's raw score for
    an item is the similarity-weighted share of their ``k`` nearest pool users who picked it.
    Computed with numpy/scipy outside the network (it has no weights to learn).

    Parameters
    ----------
    columns : ndarray of float32, shape (n_static + n_shares, n_pool)
        Unit static profile and unit category shares of the pool users, as columns.
    users : ndarray of int64, shape (n_pool,)
        Training index of each pool user (sorted), so training never uses a person as their own neighbour.
    items : scipy.sparse.csr_matrix, shape (n_pool, n_items)
        Binary training interactions of the pool users.
    share_columns : ndarray of int64
        Positions of the category shares among the behaviour features.
    k : int
    """

    def __init__(self, columns: np.ndarray, users: np.ndarray, items: sp.csr_matrix, share_columns: np.ndarray,
                 k: int):
        self.columns = np.ascontiguousarray(columns, dtype=np.float32)
        self.users = np.asarray(users, dtype=np.int64)
        self.items = sp.csr_matrix(items, dtype=np.float32)
        self.share_columns = np.asarray(share_columns, dtype=np.int64)
        self.k = int(k)

    @classmethod
    def build(cls, prepared: "_Prepared", share_columns: np.ndarray, k: int, rng: np.random.Generator
              ) -> "_NeighbourPool | None":
        users = prepared.train_users
        if k < 1 or len(users) == 0:
            return None
        if len(users) > NEIGHBOUR_POOL:
            users = np.sort(rng.choice(users, size=NEIGHBOUR_POOL, replace=False))
        items = prepared.train_binary[users]
        last = None if prepared.last_time is None else prepared.last_time[users]
        behaviour = prepared.encoder.transform(items, last, prepared.item_categories)
        columns = np.hstack([_unit_rows(prepared.static[users]), _unit_rows(behaviour[:, share_columns])]).T
        return cls(columns, users, items, share_columns, k)

    def scores(self, static: np.ndarray, behaviour: np.ndarray, has_history: np.ndarray,
               exclude: np.ndarray | None = None, columns: np.ndarray | None = None) -> np.ndarray:
        """Raw scores, float32 (n, n_items), or (n, len(columns)) for the items ``columns`` only.

        ``exclude``: training index of each person (never their own neighbour).
        """
        weight = np.asarray(has_history, dtype=np.float32)[:, None]
        queries = np.hstack([_unit_rows(static), weight * _unit_rows(behaviour[:, self.share_columns])])
        return neighbour_scores(queries, self.columns, self.users, self.items, self.k, exclude=exclude,
                                columns=columns, block_floats=_BLOCK_FLOATS)

    def state(self) -> dict[str, np.ndarray]:
        return {"pool_columns": self.columns, "pool_users": self.users,
                "pool_indptr": self.items.indptr.astype(np.int64), "pool_indices": self.items.indices.astype(np.int32),
                "pool_share_columns": self.share_columns}

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], n_items: int, n_static: int, n_behaviour: int,
                   k: int) -> "_NeighbourPool":
        columns = np.asarray(arrays["pool_columns"], dtype=np.float32)
        users = np.asarray(arrays["pool_users"], dtype=np.int64)
        indptr = np.asarray(arrays["pool_indptr"], dtype=np.int64)
        indices = np.asarray(arrays["pool_indices"], dtype=np.int32)
        share_columns = np.asarray(arrays["pool_share_columns"], dtype=np.int64)
        n_pool = len(users)
        if (columns.ndim != 2 or columns.shape != (n_static + len(share_columns), n_pool)
                or (len(share_columns) and (share_columns.min() < 0 or share_columns.max() >= n_behaviour))
                or indptr.shape != (n_pool + 1,) or indptr[0] != 0
                or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0)
                or (len(indices) and (indices.min() < 0 or indices.max() >= n_items))):
            raise ValueError("the neighbour pool of the bundle does not fit the data")
        items = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(n_pool, n_items))
        return cls(columns, users, items, share_columns, k)


# ---------------------------------------------------------------------- training data
@dataclass
class _Validation:
    """Held-out inputs and targets scored like one protocol (``warm``, ``few_shot`` or ``cold_user``)."""

    users: np.ndarray          # int64 (n,)
    history: sp.csr_matrix     # binary (n, n_items): what the model is shown
    behaviour: np.ndarray      # float32 (n, B)
    relevant: sp.csr_matrix    # binary (n, n_items): what it should find


def _ease(binary: sp.csr_matrix, items: np.ndarray, regularisation: float, device: torch.device) -> torch.Tensor:
    """EASE weights (Steck 2019) restricted to ``items``: float32 (len(items), len(items)), zero diagonal."""
    sub = binary[:, items].tocsc()
    gram = torch.from_numpy((sub.T @ sub).toarray().astype(np.float32)).to(device)
    gram.diagonal().add_(float(regularisation))
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(gram))
    weights = -inverse / inverse.diagonal()[None, :]
    weights.diagonal().zero_()
    return weights


@dataclass
class _Batch:
    """One training step's inputs (corrupted histories) and targets (the hidden items)."""

    users: np.ndarray           # int64 (n,)
    items: np.ndarray           # int64 (nnz,) shown items, grouped by user
    offsets: np.ndarray         # int64 (n,)
    n_history: np.ndarray       # float32 (n,)
    profile: np.ndarray         # float32 (n, n_static + n_behaviour)
    target_rows: np.ndarray     # int64 (n_targets,)
    target_items: np.ndarray    # int64 (n_targets,)
    target_weights: np.ndarray  # float32 (n_targets,)
    user_weight: np.ndarray     # float32 (n,) total target weight per user
    n_learning: int             # users with a positive target weight


@dataclass
class _Prepared:
    """Training matrices, validation sets and the batch factory of one fit."""

    n_items: int
    train_binary: sp.csr_matrix      # (n_users, n_items) 1.0 per training interaction
    train_targets: sp.csr_matrix     # same pattern, target weight per interaction
    train_users: np.ndarray          # int64: users with at least one training interaction
    item_counts: np.ndarray          # int64 (n_items,) training interactions per item
    static: np.ndarray               # float32 (n_users, n_static)
    encoder: object                  # the dataset's BehaviourEncoder
    item_categories: sp.csr_matrix
    last_time: np.ndarray | None     # float64 (n_users,) latest training interaction
    validation: dict
    n_validation_users: int
    # Each validation set's fixed-source scores per scoring chunk, kept from the first epoch's
    # validation for the next ones (see FusedRecommender._validate).
    validation_fixed: dict = field(default_factory=dict)
    # Same pattern as train_targets: 1 + each interaction's rank in its user's history by time (None
    # without timestamps), for practice that shows a user's first or earliest items (see make_batch).
    train_order: sp.csr_matrix | None = None

    @classmethod
    def build(cls, dataset: Dataset, threshold: float | None, low_rating_weight: float, share: float,
              max_users: int, rng: np.random.Generator) -> "_Prepared":
        n_users, n_items = dataset.n_users, dataset.n_items
        user = dataset.user_index.astype(np.int64)
        item = dataset.item_index.astype(np.int64)
        positive = (np.ones(len(user), dtype=bool) if threshold is None
                    else dataset.weights >= threshold - 1e-6)
        target_weight = np.where(positive, 1.0, float(low_rating_weight)).astype(np.float32)
        counts = np.bincount(user, minlength=n_users)
        relevant_counts = np.bincount(user[positive], minlength=n_users)
        # Each interaction's rank in its user's history by time: the validation's few-shot people
        # are shown their first items, and so is part of the training practice (see make_batch).
        by_time = None if dataset.timestamps is None else _rank_in_rows(user, dataset.timestamps, counts)
        encoder, categories = dataset.behaviour_encoder, dataset.item_categories
        times = dataset.timestamps if encoder.has_recency else None

        def matrix(mask: np.ndarray, rows: np.ndarray, n_rows: int, values: np.ndarray | None = None):
            data = np.ones(int(mask.sum()), dtype=np.float32) if values is None else values[mask]
            result = sp.csr_matrix((data, (rows[user[mask]], item[mask])), shape=(n_rows, n_items), dtype=np.float32)
            result.sum_duplicates()
            return result

        def latest(mask: np.ndarray) -> np.ndarray | None:
            if times is None:
                return None
            last = np.full(n_users, -np.inf)
            np.maximum.at(last, user[mask], times[mask])
            return np.where(np.isfinite(last), last, np.nan)

        train = np.ones(len(user), dtype=bool)
        validation: dict[str, _Validation] = {}
        n_active = int((relevant_counts > 0).sum())
        n_validation = int(min(max_users, round(share * n_active))) if share > 0 else 0
        if n_validation >= 20:
            order = rng.permutation(np.flatnonzero(relevant_counts > 0))
            n_warm = n_validation - n_validation // 2
            n_new = max(n_validation // 2, int(min(MIN_NEW_VALIDATION_PEOPLE, NEW_VALIDATION_CAP * n_active,
                                                   max_users - n_warm)))
            new_users = np.sort(order[:n_new])
            rest = order[n_new:]
            warm_users = np.sort(rest[counts[rest] >= 3][:n_warm])
            is_new = np.zeros(n_users, dtype=bool)
            is_new[new_users] = True
            is_warm = np.zeros(n_users, dtype=bool)
            is_warm[warm_users] = True
            random_rank = _rank_in_rows(user, rng.random(len(user)), counts)
            n_test = np.clip(np.floor(0.2 * counts + 0.5), 1, np.maximum(counts - 1, 1))
            held_out = is_warm[user] & (random_rank < n_test[user])
            train = ~is_new[user] & ~held_out
            last_train = latest(train)
            row = np.full(n_users, -1, dtype=np.int64)
            # Warm: known users, a random 20 % of their interactions hidden.
            row[warm_users] = np.arange(len(warm_users))
            history = matrix(train & is_warm[user], row, len(warm_users))
            behaviour = encoder.transform(history, None if last_train is None else last_train[warm_users],
                                          categories)
            validation["warm"] = _Validation(warm_users, _binary(history), behaviour,
                                              _binary(matrix(held_out & positive, row, len(warm_users))))
            # New people: none (cold_user) or their first three interactions (few_shot) revealed.
            row[:] = -1
            row[new_users] = np.arange(len(new_users))
            first_rank = by_time if by_time is not None else _rank_in_rows(user, rng.random(len(user)), counts)
            revealed = is_new[user] & (first_rank < 3)
            empty = sp.csr_matrix((len(new_users), n_items), dtype=np.float32)
            now = None if times is None else np.full(len(new_users), np.nan)
            validation["cold_user"] = _Validation(new_users, empty, encoder.transform(empty, now, categories),
                                                  _binary(matrix(is_new[user] & positive, row, len(new_users))))
            shown = _binary(matrix(revealed, row, len(new_users)))
            if now is not None:
                now = np.where(np.diff(shown.indptr) > 0, encoder.reference_time, np.nan)
            validation["few_shot"] = _Validation(new_users, shown, encoder.transform(shown, now, categories),
                                                 _binary(matrix(is_new[user] & positive & ~revealed, row,
                                                                len(new_users))))
            for kind in list(validation):  # keep only people with something to find
                entry = validation[kind]
                has = np.diff(entry.relevant.indptr) > 0
                if has.sum() < 5:
                    del validation[kind]
                    continue
                validation[kind] = _Validation(entry.users[has], entry.history[has], entry.behaviour[has],
                                               entry.relevant[has])
            n_validation = len(new_users) + len(warm_users)
        else:
            n_validation = 0
        identity = np.arange(n_users, dtype=np.int64)
        train_order = None if by_time is None else matrix(train, identity, n_users, (by_time + 1).astype(np.float32))
        train_binary = matrix(train, identity, n_users)
        train_binary.data[:] = 1.0
        train_targets = matrix(train, identity, n_users, target_weight)
        return cls(n_items=n_items, train_binary=train_binary, train_targets=train_targets,
                   train_users=np.flatnonzero(np.diff(train_binary.indptr) > 0).astype(np.int64),
                   item_counts=np.bincount(item[train], minlength=n_items).astype(np.int64),
                   static=np.asarray(dataset.user_features, dtype=np.float32), encoder=encoder,
                   item_categories=categories, last_time=latest(train), validation=validation,
                   n_validation_users=n_validation, train_order=train_order)

    def make_batch(self, users: np.ndarray, cold_rate: float, few_shot_rate: float,
                   rng: np.random.Generator) -> _Batch | None:
        """Corrupt the histories of ``users``: none, 1-5 or 50-80 % of their items shown, the rest to predict.

        With timestamps, few-shot practice (1-5 items) shows a user's first items by time in a
        share :data:`FIRST_ITEMS_SHARE` of cases, and warm practice the earliest items (the latest
        to predict) in a share :data:`PAST_ITEMS_SHARE`; random items otherwise.
        """
        row_of, items, weights, counts = _gather_rows(self.train_targets, users)
        n = len(users)
        draw = rng.random(n)
        cold = (draw < cold_rate) | (counts < 2)
        few = ~cold & (draw < cold_rate + few_shot_rate)
        few_count = rng.integers(1, 6, size=n)
        warm_count = np.clip(np.floor(rng.uniform(0.5, 0.8, size=n) * counts + 0.5), 1, np.maximum(counts - 1, 1))
        keep = np.where(cold, 0, np.where(few, np.minimum(few_count, counts - 1), warm_count)).astype(np.int64)
        key = rng.random(len(row_of))
        if self.train_order is not None:
            _, _, by_time, _ = _gather_rows(self.train_order, users)
            first = few & (rng.random(n) < FIRST_ITEMS_SHARE)
            past = ~few & ~cold & (rng.random(n) < PAST_ITEMS_SHARE)
            key = np.where((first | past)[row_of], by_time, key)
        rank = _rank_in_rows(row_of, key, counts)
        kept = rank < keep[row_of]
        shown_rows, shown_items = row_of[kept], items[kept]
        n_history = np.bincount(shown_rows, minlength=n).astype(np.int64)
        indptr = np.concatenate(([0], np.cumsum(n_history)))
        shown = sp.csr_matrix((np.ones(len(shown_items), dtype=np.float32), shown_items, indptr),
                              shape=(n, self.n_items))
        now_like = rng.random(n) < 0.5
        last = None
        if self.last_time is not None:
            # New people's recency counts as "now"; few-shot practice sees both.
            last = np.where(few & now_like, self.encoder.reference_time, self.last_time[users])
            last = np.where(n_history > 0, last, np.nan)
        behaviour = self.encoder.transform(shown, last, self.item_categories)
        target = ~kept
        target_rows, target_weights = row_of[target], weights[target]
        user_weight = np.bincount(target_rows, weights=target_weights, minlength=n).astype(np.float32)
        n_learning = int((user_weight > 0).sum())
        if n_learning == 0:
            return None
        return _Batch(users=users, items=shown_items, offsets=indptr[:-1].astype(np.int64),
                      n_history=n_history.astype(np.float32),
                      profile=np.hstack([self.static[users], behaviour]).astype(np.float32),
                      target_rows=target_rows, target_items=items[target], target_weights=target_weights,
                      user_weight=user_weight, n_learning=n_learning)

    def sample_candidates(self, batch: _Batch, n_sampled: int, batch_size: int, rng: np.random.Generator
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate items of a sampled softmax: the batch's targets plus uniformly drawn items.

        Returns the sorted candidates (int64), the log-Q correction subtracted from their logits
        (float32: log of each candidate's probability of being in the set), the targets'
        columns in the candidate list and the columns of the uniformly drawn items (the
        reference that standardises scores like the whole catalogue would).
        """
        n_items = self.n_items
        n_sampled = min(n_sampled, n_items)
        drawn = rng.choice(n_items, size=n_sampled, replace=False)
        candidates = np.union1d(np.unique(batch.target_items), drawn).astype(np.int64)
        # P(item in the batch's targets) from its frequency; P(drawn) = n_sampled / n_items.
        rate = self.item_counts[candidates] / max(len(self.train_users), 1)
        in_batch = 1.0 - np.exp(-batch_size * rate * 0.6)
        inclusion = 1.0 - (1.0 - n_sampled / n_items) * (1.0 - in_batch)
        correction = np.log(np.clip(inclusion, 1e-12, 1.0)).astype(np.float32)
        return (candidates, correction, np.searchsorted(candidates, batch.target_items),
                np.searchsorted(candidates, np.sort(drawn)))


@dataclass
class _StepInput:
    """Everything the batch thread prepares for one training step (see :meth:`FusedRecommender._step_inputs`).

    Tensors on the training device; ``c`` is the number of items scored (the catalogue, or the
    candidates of a sampled softmax).
    """

    users: np.ndarray                 # (n,) training index of each person
    n_learning: int                   # people with a positive target weight
    profile: torch.Tensor             # (n, n_static + n_behaviour)
    items: torch.Tensor               # (nnz,) shown history items, grouped by person
    offsets: torch.Tensor             # (n,)
    n_history: torch.Tensor           # (n,) float
    target_rows: torch.Tensor         # (n_targets,)
    target_columns: torch.Tensor      # (n_targets,) columns among the scored items
    target_weights: torch.Tensor      # (n_targets,)
    user_weight: torch.Tensor         # (n,) total target weight per person
    id_mask: torch.Tensor             # (c,) 0 for items without interactions and this step's id-dropped ones
    content: torch.Tensor | None      # (c, n_content) features of the scored items
    fixed: dict[str, torch.Tensor]    # standardised scores of the sources without weights, (n, c) each
    index: torch.Tensor | None = None       # sampled softmax: the candidate items (c,)
    reference: torch.Tensor | None = None   # sampled softmax: the uniformly drawn candidates' columns
    shift: torch.Tensor | None = None       # sampled softmax: the log-Q correction (c,)


class _WeightAverage:
    """An exponential moving average of the trainable parameters (Polyak averaging).

    ``update()`` after every optimizer step; ``applied()`` swaps the averages into the network
    (for validation and for keeping the best model) and the trained weights back afterwards.
    ``span`` steps is the average's window (weight ``2 / (span + 1)`` on the newest weights).
    """

    def __init__(self, params: Iterable[nn.Parameter], span: int) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.average = [p.detach().clone() for p in self.params]
        self.weight = 2.0 / (max(int(span), 1) + 1.0)

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], self.weight)

    @contextmanager
    def applied(self):
        trained = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, average in zip(self.params, self.average):
                p.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, weights in zip(self.params, trained):
                    p.copy_(weights)


class _Prefetch:
    """Iterates over ``source`` in a background thread, at most ``depth`` items ahead.

    Like a PyTorch DataLoader worker: while the network trains on one batch (torch releases
    the GIL in its kernels), the next one is built with numpy, scipy and torch (which also
    release it in theirs). Only this thread draws from the source, so its sequence, and with it a
    seeded fit, is the same as without prefetching. An exception in the source is raised by
    :meth:`__next__`; :meth:`close` stops the thread.
    """

    def __init__(self, source: Iterator, depth: int = 2) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._ended = False
        self._error: BaseException | None = None   # what ended the source, if it failed
        self._thread = threading.Thread(target=self._run, args=(source,), name="recolens-batches", daemon=True)
        self._thread.start()

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterator) -> None:
        try:
            for item in source:
                if not self._put((True, item)):
                    return
        except BaseException as error:   # handed to the consumer, raised there
            self._put((False, error))
        else:
            self._put((False, None))

    def __iter__(self) -> "_Prefetch":
        return self

    def __next__(self):
        if not self._ended:
            ok, item = self._queue.get()
            if ok:
                return item
            self._stop.set()
            self._ended, self._error = True, item
        if self._error is None:
            raise StopIteration
        raise self._error

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@register
class FusedRecommender(Recommender):
    """Collaborative + profile + content towers fused by a per-user gate (PyTorch).

    Parameters
    ----------
    dim : int
        Size of the user and item vectors.
    hidden : int
        Width of the towers' hidden layers (and of the history embeddings).
    gate_hidden : int
        Width of the gate's hidden layer.
    max_epochs : int
        Upper bound on training epochs (early stopping usually ends sooner).
    epoch_steps : int or None
        At most this many training steps make an epoch: validation, the early-stopping check,
        the progress callback (and a cancel) follow every epoch. An epoch is one pass over the
        training users when that is shorter (up to ``epoch_steps * batch_size`` = 25,600 users
        with the defaults, so medium data trains exactly as with full passes; small data, see
        ``min_epoch_steps``); on larger data an epoch is part of a pass, the next epoch continuing
        where it stopped, so training stops as soon as validation stops improving rather than a
        multiple of a whole pass later. None: every epoch is a full pass (or ``min_epoch_steps``).
    min_epoch_steps : int
        At least this many training steps make an epoch (capped by ``epoch_steps``): on small
        data an epoch is then more than one pass, the next epoch continuing where it stopped. The
        weight average spans about an epoch and patience counts epochs, so with one short pass
        per epoch (11 steps on 3,000 users) both were a few seconds of training: the average
        smoothed little, and noise in a few hundred validation people ended fits early. With
        22 steps (three splits of the three quality-benchmark data sets, five protocols, seed 0):
        sample temporal NDCG@10 0.2110 -> 0.2212 (0.991 -> 1.039x EASE), weak temporal 0.1984 ->
        0.2090, sample few-shot 0.2851 -> 0.2976; the largest losses sample cold items 0.2443 ->
        0.2395 and sample warm 0.2226 -> 0.2205; +0.032 over the 15 cells, +0.020 with seed 1
        (11 up, 4 down). Weak-profile few-shot lost with both seeds (-0.002, -0.009), and five seeds
        on one split came out even on average. Fits on such data take 1.65x as long; data with 22
        steps a pass or more (5,600 training users and up) train as before.
    patience : int
        Stop after this many epochs without a better validation NDCG@10. 2 with the weight
        average (which smooths the validation curve). Without it, 3 was needed: on 15 fits of the
        quality benchmark (three data sets x five protocols) patience 2 stopped five before their
        best epoch (sample cold-user validation NDCG@10 0.251 -> 0.224). A minimum improvement
        (Keras's ``min_delta``) of 0.001 was replayed on 40 validation histories and dropped: 2.4 %
        fewer epochs, but two fits on weak-profile data stopped 0.005-0.007 below their best.
    warmup_epochs : int
        Epochs before early stopping starts watching validation (Keras's ``start_from_epoch``):
        their models are not candidates for the best one. Just after initialisation the gate
        mixes the six sources almost evenly, which can score well on validation by chance
        (sample warm split 0: 0.193 at epoch 1, then a dip, passed only at epoch 6), and
        patience would then end the fit before the towers have learnt anything.
    batch_size : int
        Users per training step.
    learning_rate : float
        Adam step size.
    weight_decay : float
        Decoupled weight decay (AdamW).
    cold_rate, few_shot_rate : float
        Share of training examples shown no history / 1-5 items; the rest see 50-80 % of it.
    item_id_dropout : float
        Share of items whose id vector and id bias are switched off at each step (teaches the
        content tower to score new items).
    low_rating_weight : float
        Target weight of an explicit rating below the relevance threshold (see module docstring).
    source_loss_weight : float
        Weight of the auxiliary losses that train the profile and the history source to rank
        well on their own (so each source is a meaningful recommender and explanations say
        what each would recommend); 0 trains the fused score only.
    profile_dropout : float
        Dropout on the profile features during training (guards against memorising people by
        their exact attribute combination).
    item_item : bool
        Include the closed-form item-item (EASE) source.
    item_item_penalty : float or None
        The EASE ridge penalty; None: 8 times the mean number of interactions of the covered items.
    item_item_max_items : int
        The item-item matrix covers at most this many of the most popular items (memory and
        time grow with its square and cube).
    content_neighbours : int
        Neighbours per item of the content-similarity source (content kNN on the item
        features: an item scores by its similarity to the history items it resembles most);
        0 leaves the source out.
    similar_people : int
        Neighbours of the ``similar_people`` source (profile kNN: what the most similar training
        users by profile and category shares picked); 0 leaves the source out.
    threads : int or None
        CPU threads while training (torch, BLAS, OpenMP; restored afterwards). None: one thread
        for catalogues up to ``full_softmax_items`` (small steps, where a second thread mostly
        waits); above, one fewer than torch's own count (the batch thread keeps a core), at most
        :data:`SAMPLED_SOFTMAX_THREADS`; ignored on a GPU.
    validation_share : float
        Share of users used for validation (at most ``max_validation_users``): half of them
        known users with 20 % of their items hidden, half held out as new people (at least
        :data:`MIN_NEW_VALIDATION_PEOPLE` where the data allows, see there); 0 trains
        ``max_epochs`` epochs without early stopping.
    max_validation_users : int
    full_softmax_items : int
        Catalogues up to this size use the exact softmax; larger ones a sampled softmax.
    sampled_items : int
        Items sampled per step in the sampled softmax.
    weight_average : bool
        Validate and keep an exponential moving average of the weights over about one epoch's
        steps (Polyak averaging) instead of the last step's weights. A single step's weights
        are noisy, and so is their validation NDCG@10: early stopping then picks an epoch whose
        validation happens to be high (one fit kept an epoch whose cold-user validation was 0.027
        above the next epoch's, and scored 0.01 below EASE on the test people). With the average, five
        seeds of four benchmark cells scored the same or better, with a smaller spread (weak-profile
        temporal 0.187-0.205 -> 0.198-0.204), and patience 2 suffices.
    seed : int or None
        Makes CPU training reproducible (None: a fresh random seed).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` (see :func:`resolve_device`).
    """

    name = "fused"
    uses_profile = True

    def __init__(self, dim: int = 64, hidden: int = 128, gate_hidden: int = 32, max_epochs: int = 80,
                 epoch_steps: int | None = 100, min_epoch_steps: int = 22, patience: int = 2, warmup_epochs: int = 2,
                 batch_size: int = 256, learning_rate: float = 3e-3, weight_decay: float = 1e-4,
                 cold_rate: float = 0.25, few_shot_rate: float = 0.25,
                 item_id_dropout: float = 0.1, low_rating_weight: float = 0.25, source_loss_weight: float = 1.0,
                 profile_dropout: float = 0.0, item_item: bool = True, item_item_penalty: float | None = None,
                 item_item_max_items: int = 4000, content_neighbours: int = 50, similar_people: int = 50,
                 validation_share: float = 0.1, threads: int | None = None,
                 max_validation_users: int = 1500, full_softmax_items: int = 8192, sampled_items: int = 1024,
                 weight_average: bool = True, seed: int | None = 0, device: str = "auto") -> None:
        self.dim = dim
        self.hidden = hidden
        self.gate_hidden = gate_hidden
        self.max_epochs = max_epochs
        self.epoch_steps = epoch_steps
        self.min_epoch_steps = min_epoch_steps
        self.patience = patience
        self.warmup_epochs = warmup_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.cold_rate = cold_rate
        self.few_shot_rate = few_shot_rate
        self.item_id_dropout = item_id_dropout
        self.low_rating_weight = low_rating_weight
        self.source_loss_weight = source_loss_weight
        self.profile_dropout = profile_dropout
        self.item_item = item_item
        self.item_item_penalty = item_item_penalty
        self.item_item_max_items = item_item_max_items
        self.content_neighbours = content_neighbours
        self.similar_people = similar_people
        self.threads = threads
        self.validation_share = validation_share
        self.max_validation_users = max_validation_users
        self.full_softmax_items = full_softmax_items
        self.sampled_items = sampled_items
        self.weight_average = weight_average
        self.seed = seed
        self.device = device
        self._net: _FusedNetwork | None = None
        self._idle_batch_threads: int | None = None   # set while training is limited (see _thread_limit)
        self._pool: _NeighbourPool | None = None
        self._device: torch.device | None = None
        self._id_mask: torch.Tensor | None = None
        self._content: torch.Tensor | None = None
        self._config: dict = {}
        self._history: list[dict] = []
        self._new_item_cache: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        problems = []
        for name in ("dim", "hidden", "gate_hidden", "max_epochs", "min_epoch_steps", "batch_size",
                     "sampled_items", "max_validation_users"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a whole number of at least 1 (got {value!r})")
        for name in ("threads", "epoch_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                                      or value < 1):
                problems.append(f"{name} must be None or a whole number of at least 1 (got {value!r})")
        for name in ("patience", "warmup_epochs", "content_neighbours", "similar_people"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                problems.append(f"{name} must be a whole number of at least 0 (got {value!r})")
        for name in ("learning_rate",):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number (got {value!r})")
        if not isinstance(self.weight_average, (bool, np.bool_)):
            problems.append(f"weight_average must be True or False (got {self.weight_average!r})")
        for name in ("weight_decay", "low_rating_weight", "source_loss_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be a number of at least 0 (got {value!r})")
        for name in ("cold_rate", "few_shot_rate", "item_id_dropout", "profile_dropout", "validation_share"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < 1):
                problems.append(f"{name} must be between 0 and 1 (got {value!r})")
        if self.cold_rate + self.few_shot_rate >= 1:
            problems.append("cold_rate + few_shot_rate must be below 1 (some examples must be warm)")
        if problems:
            raise ValueError("invalid FusedRecommender settings: " + "; ".join(problems) + ".")

    def _require_network(self) -> _FusedNetwork:
        self._require_fitted()
        if self._net is None:
            raise RuntimeError("FusedRecommender is not fitted yet: call fit(dataset) first.")
        return self._net

    @property
    def training_history(self) -> list[dict]:
        """One dict per epoch of the last fit: ``epoch``, ``train`` loss, validation metrics, ``seconds``."""
        return list(self._history)

    # ------------------------------------------------------------------ fitting
    def _fit(self, dataset: Dataset, callback: Callback | None) -> None:
        self._check_params()
        self._new_item_cache = None
        if dataset.n_interactions == 0:
            self.dataset = None
            raise ModelFitError("the data has no interactions to learn from; load interactions first.")
        device = resolve_device(self.device)
        seed = int(self.seed) if self.seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        started = time.perf_counter()

        threshold = positive_threshold(dataset)
        prepared = _Prepared.build(dataset, threshold, self.low_rating_weight, self.validation_share,
                                   self.max_validation_users, rng)
        self._device = device
        id_mask = torch.from_numpy((prepared.item_counts > 0).astype(np.float32)).to(device)
        content = torch.from_numpy(dataset.item_features).to(device) if dataset.item_features.shape[1] else None

        item_item_items, regularisation, item_item_weights = self._fit_item_item(prepared, device)
        neighbours, similarity = _content_neighbours(dataset.item_features, int(self.content_neighbours))
        n_neighbours = neighbours.shape[1]
        self._pool = _NeighbourPool.build(prepared, _share_columns(dataset), int(self.similar_people), rng)
        net = _FusedNetwork(n_items=dataset.n_items, n_static=dataset.user_features.shape[1],
                            n_behaviour=dataset.behaviour_features.shape[1],
                            n_content=dataset.item_features.shape[1], dim=int(self.dim), hidden=int(self.hidden),
                            gate_hidden=int(self.gate_hidden), n_item_item=len(item_item_items),
                            n_content_neighbours=n_neighbours, similar_people=self._pool is not None,
                            generator=generator)
        if n_neighbours:
            net.content_neighbours.copy_(torch.from_numpy(neighbours))
            net.content_neighbour_similarity.copy_(torch.from_numpy(similarity))
        if len(item_item_items):
            net.item_item_weights.copy_(item_item_weights.cpu())
            net.item_item_items.copy_(torch.from_numpy(item_item_items.astype(np.int64)))
            net.item_item_position[torch.from_numpy(item_item_items.astype(np.int64))] = torch.arange(
                len(item_item_items))
        log_popularity = np.log1p(prepared.item_counts).astype(np.float32)
        net.log_popularity.copy_(torch.from_numpy(log_popularity))
        if content is not None:
            weight, bias = _popularity_from_content(dataset.item_features, log_popularity, prepared.item_counts > 0)
            net.content_popularity_weight.copy_(torch.from_numpy(weight))
            net.content_popularity_bias.fill_(bias)
        net.to(device)
        net.use_sparse_content(content)
        self._net, self._id_mask, self._content = net, id_mask, content
        self._config = {"version": 2, "n_items": dataset.n_items, "n_static": dataset.user_features.shape[1],
                        "n_behaviour": dataset.behaviour_features.shape[1],
                        "n_content": dataset.item_features.shape[1], "dim": int(self.dim),
                        "hidden": int(self.hidden), "gate_hidden": int(self.gate_hidden),
                        "n_item_item": int(len(item_item_items)), "item_item_penalty": regularisation,
                        "n_content_neighbours": int(n_neighbours),
                        "similar_people": 0 if self._pool is None else int(self.similar_people),
                        "positive_threshold": threshold, "seed": seed}
        logger.info("fused: prepared %d training users, %d validation users, item-item over %d items (%.1fs)",
                    len(prepared.train_users), prepared.n_validation_users, len(item_item_items),
                    time.perf_counter() - started)
        # Training and calibration counted popularity and fitted the item-item weights without the
        # validation people (they must stay unseen); the final model uses every interaction, as the
        # popularity and EASE baselines do: its popularity source ranks items exactly like the
        # popularity baseline, and the item-item weights are refitted (same items, same penalty).
        # The refit needs nothing from training, so a second thread does it meanwhile.
        with self._thread_limit(device, dataset.n_items), \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="recolens-ease") as background:
            refit = None
            if len(item_item_items) and prepared.n_validation_users:
                refit = background.submit(_ease, _binary(dataset.matrix), item_item_items, regularisation,
                                          self._ease_device(device))
            self._train(prepared, rng, generator, callback)
            if refit is not None:
                net.item_item_weights.copy_(refit.result().to(device))
        counts = np.bincount(dataset.item_index, minlength=dataset.n_items)
        known = prepared.item_counts > 0
        net.log_popularity.copy_(torch.from_numpy(np.where(known, np.log1p(counts), 0.0).astype(np.float32)))
        self._config.update(best_epoch=self._best_epoch, epochs_trained=len(self._history))

    @contextmanager
    def _thread_limit(self, device: torch.device, n_items: int):
        """Run the training loop on ``threads`` CPU threads (torch, BLAS and OpenMP), restored afterwards.

        ``threads=None`` on the CPU: one thread for catalogues that use the exact softmax (their
        steps are small matrix products, where waiting for a second thread costs more than it
        saves: 2-5x slower fits with two threads on a 2-core machine with other work), and for
        the sampled softmax one fewer than torch's own count, at most
        :data:`SAMPLED_SOFTMAX_THREADS` (see there for the measurements).
        """
        threads = self.threads
        if threads is None and device.type == "cpu":
            threads = 1 if n_items <= int(self.full_softmax_items) else \
                max(1, min(SAMPLED_SOFTMAX_THREADS, torch.get_num_threads() - 1))
        if not threads or device.type != "cpu":
            yield
            return
        self._idle_batch_threads = torch.get_num_threads()
        try:
            with _torch_threads(threads), threadpool_limits(limits=int(threads)):
                yield
        finally:
            self._idle_batch_threads = None

    @contextmanager
    def _while_batches_wait(self):
        """Torch's own thread count back for validation and the gate calibration inside :meth:`_thread_limit`.

        The batch thread is idle then (its queue is full, or training is over), and these are
        larger products over every validation person: on the 2-core CPU they took 0.65-0.76
        instead of 0.84-0.87 s (validation, 7 epochs) and 0.54-0.59 instead of 0.89-0.91 s
        (calibration) in a 100k fit, with the same validation values and offsets.
        """
        with _torch_threads(self._idle_batch_threads) if self._idle_batch_threads else nullcontext():
            yield

    def _fit_item_item(self, prepared: "_Prepared", device: torch.device
                       ) -> tuple[np.ndarray, float | None, torch.Tensor | None]:
        """Items covered by the EASE source, its penalty and weights (on the training part)."""
        counts = prepared.item_counts
        if not self.item_item or (counts > 0).sum() < 2:
            return np.zeros(0, dtype=np.int64), None, None
        n_covered = int(min(self.item_item_max_items, (counts > 0).sum()))
        if n_covered == len(counts):
            items = np.arange(len(counts), dtype=np.int64)
        else:
            items = np.sort(np.argsort(-counts, kind="stable")[:n_covered]).astype(np.int64)
        penalty = self._item_item_penalty(counts[items])
        return items, penalty, _ease(prepared.train_binary, items, penalty, self._ease_device(device))

    def _item_item_penalty(self, covered_counts: np.ndarray) -> float:
        """The EASE ridge penalty: ``item_item_penalty``, or 8x the mean interactions per covered item.

        The penalty scales with how often items occur. On the synthetic data's warm splits (three
        settings x three splits) the best penalty for EASE alone was 250-500 each time, 8x the mean
        count being about 370; choosing among 1/4, 1 and 4 times that on the validation split (about
        150 people) picked a factor of 4 away in three of the nine, costing the item-item source
        0.005-0.014 NDCG@10 there, so the rule is used as it is.
        """
        if self.item_item_penalty is not None:
            return float(self.item_item_penalty)
        return 8.0 * float(np.clip(np.mean(covered_counts), 1.0, 5000.0))

    @staticmethod
    def _ease_device(device: torch.device) -> torch.device:
        """Cholesky on a CUDA GPU is fast; MPS lacks it, so anything but CUDA inverts on the CPU."""
        return device if device.type == "cuda" else torch.device("cpu")

    def _train(self, prepared: "_Prepared", rng: np.random.Generator, generator: torch.Generator,
               callback: Callback | None) -> None:
        net, device = self._net, self._device
        # The fused (one-kernel) AdamW: 3x faster steps than the default on the CPU for the large
        # embedding tables (20 -> 6 ms a step with a 20,000-item catalogue), and without the 2 s
        # import that torch.optim's first use costs (see recommender.models.optimizer).
        optimizer = adamw(net.parameters(), device, lr=float(self.learning_rate),
                          weight_decay=float(self.weight_decay))
        self._history = []
        self._best_epoch = 0
        inputs = _Prefetch(self._step_inputs(prepared, rng))
        try:
            best_state = self._epochs(prepared, optimizer, inputs, generator, callback)
        finally:
            inputs.close()
        net.load_state_dict(best_state)
        net.eval()
        with self._while_batches_wait():
            self._calibrate_gate(prepared)

    def _epochs(self, prepared: "_Prepared", optimizer: FusedAdamW | torch.optim.Optimizer,
                inputs: Iterator[_StepInput | None], generator: torch.Generator, callback: Callback | None) -> dict:
        """Train epoch after epoch with early stopping; the state of the best epoch's model."""
        net = self._net
        best_value, best_state, waited = -np.inf, None, 0
        steps = max(-(-len(prepared.train_users) // int(self.batch_size)),    # one pass, or more on small data
                    int(self.min_epoch_steps))
        if self.epoch_steps is not None:
            steps = min(steps, int(self.epoch_steps))
        average = _WeightAverage(net.parameters(), steps) if self.weight_average else None
        for epoch in range(1, int(self.max_epochs) + 1):
            started = time.perf_counter()
            net.train()
            try:
                loss = self._train_epoch(optimizer, inputs, steps, generator, average)
            except FloatingPointError as error:
                self._diverged(epoch, best_state, str(error))
            if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
                self._diverged(epoch, best_state, "weights became NaN or infinite")
            net.eval()
            # A warm-up epoch's model is kept only as a fallback (a divergence or a cancel before
            # monitoring starts): it is never the best to beat.
            warming_up = epoch <= int(self.warmup_epochs)
            # The averaged weights are the ones validated and kept (the trained ones go on training).
            with average.applied() if average is not None else nullcontext(), self._while_batches_wait():
                metrics = self._validate(prepared) if prepared.validation else {}
                value = metrics.get(f"val_ndcg@{VALIDATION_K}", -loss)
                better = bool(np.isfinite(value)) and (warming_up or value > best_value + 1e-5)
                if better:
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            if not np.isfinite(value):
                self._diverged(epoch, best_state, "non-finite validation scores")
            if better:
                self._best_epoch = epoch
                if not warming_up:
                    best_value, waited = value, 0
            else:
                waited += 1
            record = {"epoch": epoch, "train": loss, **metrics, "seconds": time.perf_counter() - started}
            self._history.append(record)
            logger.info("fused: epoch %d loss %.4f %s", epoch, loss,
                        " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            if callback is not None and callback(epoch, {"train": loss}, dict(metrics)) is False:
                logger.info("fused: stopped by the callback after epoch %d", epoch)
                break
            if prepared.validation and waited >= int(self.patience):
                break
        return best_state

    @torch.no_grad()
    def _calibrate_gate(self, prepared: "_Prepared", steps: Sequence[float] = OFFSET_STEPS,
                        min_gain: float = 0.003) -> None:
        """Correct the gate with offsets chosen on the validation people (NDCG@10).

        On the training users the towers look more reliable than they are for strangers (they
        have seen their items), and the gate learns that optimism. For people without history,
        one offset on the popularity logit is chosen on the held-out new people; its grid reaches
        pure popularity, so the model is never knowingly worse than popularity for them. For
        people with a history, an offset per source is chosen by coordinate search, kept only
        where it gains at least ``min_gain``: for histories of up to :data:`SHORT_HISTORY` items on
        the few-shot validation people (the popularity offset may reach popularity alone), for
        longer ones on the warm validation people (when one kind is missing, both get the other's). Before
        both, the new-item gate leans on content similarity by a fixed offset, and the shift of
        new items' scores is chosen on every validation person (when the training part has items
        without interactions). After the search, fixed corrections are added for the sources that the
        likelihood-trained gate under-weights (:data:`LONG_HISTORY_GATE_LIFT`,
        :data:`SHORT_HISTORY_GATE_LIFT`).
        """
        net = self._net
        net.cold_item_gate_offset.data[SOURCES.index("content_similarity")] += NEW_ITEM_CONTENT_SIMILARITY_OFFSET
        position = SOURCES.index("popularity")

        candidates = {kind: self._calibration_candidates(prepared.static[entry.users], entry,
                                                         prepared.validation_fixed.get(kind))
                      for kind, entry in prepared.validation.items()}

        def ndcg(kinds: tuple[str, ...]) -> float:
            return float(np.mean([np.mean(self._candidate_ndcg(candidates[kind])) for kind in kinds]))

        if prepared.validation and bool((self._id_mask == 0).any()):
            every_kind = tuple(prepared.validation)
            values = []
            for shift in NEW_ITEM_SHIFT_GRID:
                net.new_item_shift.fill_(shift)
                values.append(ndcg(every_kind))
            best = NEW_ITEM_SHIFT_GRID[int(np.argmax(values))]
            net.new_item_shift.fill_(best)
            self._config["new_item_shift"] = best
            logger.info("fused: new-item shift %.1f (validation NDCG@10 %.4f vs %.4f without)", best, max(values),
                        values[0])

        cold = prepared.validation.get("cold_user")
        if cold is not None:
            grid = list(NEW_PERSON_POPULARITY_GRID)
            values = []
            for offset in grid:
                net.new_person_gate_offset[position] = offset
                values.append(ndcg(("cold_user",)))
            best = grid[int(np.argmax(values))]
            net.new_person_gate_offset[position] = best
            self._config["new_person_popularity_offset"] = best
            logger.info("fused: popularity offset for people without history %.1f (validation NDCG@10 %.4f vs "
                        "%.4f without)", best, max(values), values[grid.index(0.0)])

        def search(offsets: torch.Tensor, kind: str, extra: Mapping[int, Sequence[float]]) -> None:
            """Coordinate search of ``offsets`` (one per source) on NDCG@10 of the ``kind`` validation people."""
            current = start = ndcg((kind,))
            for source in range(len(SOURCES)):
                best_offset, best_value = 0.0, current
                for offset in (*steps, *extra.get(source, ())):
                    offsets[source] = offset
                    value = ndcg((kind,))
                    if value > best_value + min_gain:
                        best_offset, best_value = offset, value
                offsets[source] = best_offset
                current = best_value
            logger.info("fused: gate offsets for %s validation people %s (NDCG@10 %.4f vs %.4f)", kind,
                        [float(v) for v in offsets.cpu()], current, start)

        # Short histories first: the warm validation people with one to SHORT_HISTORY items shown
        # then already have theirs.
        short, long = net.short_history_gate_offset, net.history_gate_offset
        if "few_shot" in prepared.validation:
            search(short, "few_shot", {position: SHORT_HISTORY_POPULARITY_STEPS})
        if "warm" in prepared.validation:
            search(long, "warm", {})
        if "few_shot" not in prepared.validation:
            short.copy_(long)
        elif "warm" not in prepared.validation:
            long.copy_(short)
        for offsets, lift in ((long, LONG_HISTORY_GATE_LIFT), (short, SHORT_HISTORY_GATE_LIFT)):
            for source, value in lift.items():
                offsets[SOURCES.index(source)] += value
        self._config["history_gate_offset"] = [float(v) for v in long.cpu()]
        self._config["short_history_gate_offset"] = [float(v) for v in short.cpu()]

    @torch.no_grad()
    def _calibration_candidates(self, static: np.ndarray, entry: "_Validation",
                                fixed: list[dict[str, torch.Tensor]] | None = None,
                                per_source: int = CALIBRATION_CANDIDATES) -> dict:
        """What the gate calibration needs to rescore validation people cheaply under other gate offsets.

        The offsets change only the gate, not the sources' standardised scores ``z``, so the
        ``z`` of each person's candidates are computed once: the union of every source's
        ``per_source`` best items (seen items excluded), with each source's ``per_source``-th
        value as a bound. An item outside the candidates scores at most ``T * g . bound``; when
        the 10th best candidate beats that, the candidates' top 10 is the catalogue's top 10
        exactly (:meth:`_candidate_ndcg` checks it per person and rescores the others fully).

        ``fixed``: the fixed sources' scores that validation kept for these people (per chunk of
        ``SCORE_BATCH``, see :meth:`_validate`), used instead of scoring them again when complete.
        """
        net, device = self._net, self._device
        if fixed is not None and len(fixed) * SCORE_BATCH < len(entry.users):
            fixed = None
        width = min(int(per_source), net.n_items)
        # Items without interactions are scored with the new-item gate, whose bound leans on the
        # heavy-tailed content similarity and rarely proves a top 10 exact: when they are few, all
        # of them are candidates, so the bound is needed for the other items only.
        cold_items = torch.nonzero(self._id_mask == 0).squeeze(1)
        cold_complete = len(cold_items) <= width * len(SOURCES)
        parts: list[dict] = []
        # Batches never straddle two of validation's kept chunks.
        starts = sorted({*range(0, len(entry.users), CALIBRATION_BATCH), *range(0, len(entry.users), SCORE_BATCH)})
        for start, stop in zip(starts, starts[1:] + [len(entry.users)]):
            statistics: dict = {}
            kept = None
            if fixed is not None:
                chunk, offset = divmod(start, SCORE_BATCH)
                kept = {name: value[offset:offset + stop - start] for name, value in fixed[chunk].items()}
            _, scores = net.source_scores(*self._inputs(static[start:stop], entry.behaviour[start:stop],
                                                        entry.history[start:stop], neighbours=kept is None),
                                          self._content, self._id_mask, statistics=statistics, fixed=kept)
            z = torch.stack([scores[source] for source in SOURCES], dim=1)              # (b, S, n_items)
            seen = torch.from_numpy(entry.history[start:stop].toarray() > 0).to(device)
            top = z.masked_fill(seen[:, None, :], float("-inf")).topk(width, dim=2)
            items = top.indices.reshape(stop - start, -1)                               # (b, S * width)
            if cold_complete and len(cold_items):
                items = torch.cat([items, cold_items.expand(stop - start, -1)], dim=1)
            items, _ = items.sort(dim=1)
            invalid = seen.gather(1, items)
            invalid[:, 1:] |= items[:, 1:] == items[:, :-1]                              # duplicates
            relevant = torch.from_numpy(entry.relevant[start:stop].toarray() > 0).to(device)
            parts.append({
                "gate_logits": statistics["gate_logits"], "has_history": statistics["has_history"],
                "short_history": statistics["short_history"], "unavailable": statistics["unavailable"],
                "z": z.gather(2, items[:, None, :].expand(-1, len(SOURCES), -1)).masked_fill(invalid[:, None, :], 0.0),
                "items": items, "invalid": invalid, "cold": self._id_mask[items] == 0,
                # -inf: the source had fewer unseen items than ``width``, so all of them are candidates.
                "bound": torch.nan_to_num(top.values[:, :, -1], neginf=-1e30),
                "hits": relevant.gather(1, items), "n_relevant": relevant.sum(dim=1)})
        merged = {name: torch.cat([part[name] for part in parts]) for name in parts[0]} if parts else {}
        return {**merged, "static": static, "entry": entry, "cold_complete": cold_complete}

    @torch.no_grad()
    def _candidate_ndcg(self, candidates: dict) -> np.ndarray:
        """NDCG@10 per validation person under the current gate offsets (see :meth:`_calibration_candidates`)."""
        entry = candidates["entry"]
        if not len(entry.users):
            return np.zeros(0)
        net = self._net
        gate = net.gate_from_logits(candidates["gate_logits"], candidates["has_history"], candidates["short_history"],
                                    candidates["unavailable"])
        cold_gate = net.cold_gate(gate)
        z = candidates["z"]
        scores = torch.where(candidates["cold"], torch.einsum("bs,bsc->bc", cold_gate, z) * net.temperature
                             + net.new_item_shift, torch.einsum("bs,bsc->bc", gate, z) * net.temperature)
        scores = scores.masked_fill(candidates["invalid"], float("-inf"))
        k = min(VALIDATION_K, net.n_items)
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        # Beyond the candidates no item outscores this bound (with every item without interactions
        # among the candidates, only items with interactions are beyond them).
        bound = net.temperature * (gate * candidates["bound"]).sum(dim=1)
        if not candidates["cold_complete"]:
            bound = torch.maximum(bound, net.temperature * (cold_gate * candidates["bound"]).sum(dim=1)
                                  + net.new_item_shift)
        exact = (top.values[:, -1] > bound) & torch.isfinite(top.values[:, -1]) & (scores.shape[1] >= k)
        hits = (candidates["hits"].gather(1, top.indices) & torch.isfinite(top.values)).cpu().numpy()
        values = _ndcg_of_hits(hits, candidates["n_relevant"].cpu().numpy())
        rows = np.flatnonzero(~exact.cpu().numpy())
        if len(rows):   # the top 10 may hold an item outside the candidates: score those people fully
            full = self._score_arrays(candidates["static"][rows], entry.behaviour[rows], entry.history[rows])
            values[rows] = _ndcg(full, entry.history[rows], entry.relevant[rows])
        return values

    def _diverged(self, epoch: int, best_state: dict | None, detail: str) -> None:
        """Keep the last good weights (if any epoch finished) and raise :class:`ModelFitError`."""
        if best_state is not None:
            self._net.load_state_dict(best_state)
            self._net.eval()
            self._config.update(best_epoch=self._best_epoch, epochs_trained=len(self._history))
            kept = f" The model from epoch {self._best_epoch} (the best before it diverged) is kept."
        else:
            self._net = None
            self.dataset = None
            kept = " No epoch finished, so the model is not fitted."
        raise ModelFitError(
            f"training diverged in epoch {epoch} ({detail}): the loss became NaN or infinite. The learning rate "
            f"({self.learning_rate:g}) is probably too high; try a smaller one (e.g. {self.learning_rate / 10:g})."
            + kept)

    def _user_batches(self, prepared: "_Prepared", rng: np.random.Generator) -> Iterator[np.ndarray]:
        """Endless stream of training-user batches: one shuffled pass after another."""
        size = int(self.batch_size)
        while True:
            order = rng.permutation(prepared.train_users)
            for start in range(0, len(order), size):
                yield order[start:start + size]

    def _step_inputs(self, prepared: "_Prepared", rng: np.random.Generator) -> Iterator[_StepInput | None]:
        """Endless stream of what each training step needs besides the weights (None: a batch with nothing to learn).

        The corrupted histories and targets, the id dropout, for a sampled softmax the candidate
        items, and the standardised scores of the sources without trainable weights (item-item,
        content similarity, similar people, popularity): about a third of a step's arithmetic, done
        here, beside the network's step, instead of in it. Runs in the :class:`_Prefetch` thread;
        the only user of ``rng`` while training.
        """
        net, device = self._net, self._device
        sampled = prepared.n_items > int(self.full_softmax_items)
        n_static = prepared.static.shape[1]

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(device)

        for users in self._user_batches(prepared, rng):
            batch = prepared.make_batch(users, self.cold_rate, self.few_shot_rate, rng)
            if batch is None:
                yield None
                continue
            keep_ids = rng.random(prepared.n_items, dtype=np.float32) >= float(self.item_id_dropout)
            id_mask = self._id_mask * tensor(keep_ids.astype(np.float32))
            candidates = (prepared.sample_candidates(batch, int(self.sampled_items), int(self.batch_size), rng)
                          if sampled else None)
            neighbour_scores = None
            if self._pool is not None:
                neighbour_scores = tensor(self._pool.scores(
                    batch.profile[:, :n_static], batch.profile[:, n_static:], batch.n_history > 0,
                    exclude=batch.users, columns=None if candidates is None else candidates[0]))
            items, n_history = tensor(batch.items), tensor(batch.n_history)
            index = reference = shift = None
            content = self._content
            if sampled:
                index, shift, target_columns, reference = (tensor(array) for array in candidates)
                content = None if content is None else content[index]
                id_mask = id_mask[index]
            else:
                target_columns = tensor(batch.target_items)
            with torch.no_grad():
                fixed = net.fixed_scores(items, n_history, neighbour_scores, content, id_mask, index, reference)
            yield _StepInput(
                users=batch.users, n_learning=batch.n_learning, profile=tensor(batch.profile), items=items,
                offsets=tensor(batch.offsets), n_history=n_history, target_rows=tensor(batch.target_rows),
                target_columns=target_columns, target_weights=tensor(batch.target_weights),
                user_weight=tensor(batch.user_weight).clamp(min=1e-12), id_mask=id_mask, content=content,
                fixed=fixed, index=index, reference=reference, shift=shift)

    def _train_epoch(self, optimizer: FusedAdamW | torch.optim.Optimizer, inputs: Iterator[_StepInput | None],
                     steps: int, generator: torch.Generator, average: "_WeightAverage | None" = None) -> float:
        """``steps`` training steps on the next entries of ``inputs``; the mean training loss."""
        net, device = self._net, self._device
        total, weight_total = 0.0, 0.0
        for _ in range(steps):
            step = next(inputs)
            if step is None:
                continue
            profile = step.profile
            if float(self.profile_dropout) > 0:
                # Dropout on the profile features: no single attribute combination can be memorised.
                keep = (torch.rand(profile.shape, generator=generator) >= float(self.profile_dropout)).float()
                profile = profile * keep.to(device) / (1.0 - float(self.profile_dropout))
            gate, scores = net.source_scores(profile, step.items, step.offsets, step.n_history, None, step.content,
                                             step.id_mask, step.index, step.reference, fixed=step.fixed)
            user_weight = step.user_weight

            def likelihood(scores: torch.Tensor, scale: torch.Tensor | None = None,
                           users: torch.Tensor | None = None) -> torch.Tensor:
                """Mean over users of the weighted multinomial log-likelihood of their targets
                (logits ``scale * scores``)."""
                per_user = _TargetLogLikelihood.apply(scores, scale, step.shift, step.target_rows,
                                                      step.target_columns, step.target_weights)
                per_user = per_user / user_weight
                if users is None:
                    return per_user.sum() / step.n_learning
                return (per_user * users).sum() / users.sum().clamp(min=1.0)

            fused = net.fuse(gate, scores, step.id_mask)
            loss = -likelihood(fused)
            if float(self.source_loss_weight) > 0:
                # Each tower must also rank well on its own (keeps every source a real recommender).
                standalone = net.source_temperature
                has_history = (step.n_history > 0).float() * (user_weight > 1e-9).float()
                loss = loss - float(self.source_loss_weight) * (
                    likelihood(scores["profile"], standalone[:1])
                    + likelihood(scores["history"], standalone[1:], has_history))

            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss {loss.item()}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update()
            total += float(loss.item()) * step.n_learning
            weight_total += step.n_learning
        return total / max(weight_total, 1.0)

    @torch.no_grad()
    def _validate(self, prepared: "_Prepared") -> dict[str, float]:
        metrics = {}
        values = []
        # The sources without weights score the same people the same way every epoch: kept from
        # the first validation when they take at most VALIDATION_CACHE_FLOATS, they save half of
        # each later one (100k interactions: 6.4 M floats, 0.18 -> 0.10 s a validation).
        keep = prepared.n_validation_users * self._net.n_items * 3 <= VALIDATION_CACHE_FLOATS
        for kind, validation in prepared.validation.items():
            fixed = prepared.validation_fixed.setdefault(kind, []) if keep else None
            scores = self._score_arrays(prepared.static[validation.users], validation.behaviour, validation.history,
                                        fixed)
            ndcg = _ndcg(scores, validation.history, validation.relevant)
            metrics[f"val_ndcg@{VALIDATION_K}_{kind}"] = float(np.mean(ndcg))
            values.append(metrics[f"val_ndcg@{VALIDATION_K}_{kind}"])
        if values:
            metrics = {f"val_ndcg@{VALIDATION_K}": float(np.mean(values)), **metrics}
        return metrics

    # ------------------------------------------------------------------ scoring
    def _inputs(self, static: np.ndarray, behaviour: np.ndarray, history: sp.spmatrix, neighbours: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Profile, history items, offsets, history lengths and ``similar_people`` scores as tensors.

        ``neighbours=False`` skips the ``similar_people`` scores (None): the gate and the user
        vectors do not need them, and they cost a query of the neighbour pool per person.
        """
        device = self._device
        history = _binary(history)
        n_history = np.diff(history.indptr).astype(np.float32)
        offsets = (history.indptr[:-1]).astype(np.int64)
        static = np.asarray(static, dtype=np.float32)
        behaviour = np.asarray(behaviour, dtype=np.float32)
        profile = np.hstack([static, behaviour])
        neighbour_scores = None
        if self._pool is not None and neighbours:
            neighbour_scores = torch.from_numpy(self._pool.scores(static, behaviour, n_history > 0)).to(device)
        return (torch.from_numpy(np.ascontiguousarray(profile)).to(device),
                torch.from_numpy(history.indices.astype(np.int64)).to(device),
                torch.from_numpy(offsets).to(device), torch.from_numpy(n_history).to(device), neighbour_scores)

    @torch.no_grad()
    def _score_arrays(self, static: np.ndarray, behaviour: np.ndarray, history: sp.spmatrix,
                      fixed: list[dict[str, torch.Tensor]] | None = None) -> np.ndarray:
        """Scores (n, n_items) of people described by their profile and history.

        ``fixed``: a list of the fixed sources' scores per chunk of ``SCORE_BATCH`` people (see
        :meth:`_FusedNetwork.fixed_scores`), for scoring the same people again with other weights:
        filled when empty, used when full.
        """
        net = self._net
        net.eval()
        out = np.empty((history.shape[0], net.n_items), dtype=np.float32)
        for chunk, start in enumerate(range(0, history.shape[0], SCORE_BATCH)):
            stop = min(start + SCORE_BATCH, history.shape[0])
            kept = fixed is not None and chunk < len(fixed)
            inputs = self._inputs(static[start:stop], behaviour[start:stop], history[start:stop],
                                  neighbours=not kept)
            if fixed is not None and not kept:
                _, items, _, n_history, neighbour_scores = inputs
                fixed.append(net.fixed_scores(items, n_history, neighbour_scores, self._content, self._id_mask))
            scores = net.logits(*inputs, self._content, self._id_mask, fixed=None if fixed is None else fixed[chunk])
            out[start:stop] = scores.float().cpu().numpy()
        return out

    def _check_new_inputs(self, static, behaviour, history) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
        config = self._config
        static = np.asarray(static, dtype=np.float32)
        behaviour = np.asarray(behaviour, dtype=np.float32)
        history = sp.csr_matrix(history)
        n = history.shape[0]
        problems = []
        if static.ndim != 2 or static.shape != (n, config["n_static"]):
            problems.append(f"static has shape {static.shape}, expected ({n}, {config['n_static']})")
        if behaviour.ndim != 2 or behaviour.shape != (n, config["n_behaviour"]):
            problems.append(f"behaviour has shape {behaviour.shape}, expected ({n}, {config['n_behaviour']})")
        if history.shape[1] != config["n_items"]:
            problems.append(f"history has {history.shape[1]} columns, expected {config['n_items']} (one per item)")
        if problems:
            raise ValueError("inputs do not match the fitted model: " + "; ".join(problems)
                             + ". Encode people with the model's dataset.encode_new_users.")
        return static, behaviour, history

    def _known_user_inputs(self, user_index) -> tuple[np.ndarray, np.ndarray, np.ndarray, sp.csr_matrix]:
        dataset = self._require_fitted()
        index = np.asarray(user_index, dtype=np.int64).reshape(-1)
        if len(index) and (index.min() < 0 or index.max() >= dataset.n_users):
            raise IndexError(f"user index out of range 0..{dataset.n_users - 1}")
        return index, dataset.user_features[index], dataset.behaviour_features[index], dataset.matrix[index]

    def score_users(self, user_index: np.ndarray) -> np.ndarray:
        """Scores of every item for known users (their whole training history), float32 (n, n_items)."""
        self._require_network()
        _, static, behaviour, history = self._known_user_inputs(user_index)
        return self._score_arrays(static, behaviour, history)

    def score_new_users(self, static: np.ndarray, behaviour: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """Scores for new people from :meth:`Dataset.encode_new_users` output, float32 (n, n_items).

        An empty history row is scored from the profile (and content) alone.
        """
        self._require_network()
        static, behaviour, history = self._check_new_inputs(static, behaviour, history)
        return self._score_arrays(static, behaviour, history)

    # ------------------------------------------------------------------ explanations
    @torch.no_grad()
    def _parts(self, static, behaviour, history):
        net = self._net
        net.eval()
        profile, items, offsets, n_history, _ = self._inputs(static, behaviour, history, neighbours=False)
        gate, profile_vector, history_vector = net.user_parts(profile, items, offsets, n_history)
        return gate, profile_vector, history_vector, n_history

    def _resolve_people(self, static, behaviour, history, user_index):
        if user_index is not None:
            if static is not None or behaviour is not None or history is not None:
                raise ValueError("give either user_index (known users) or static/behaviour/history (new people), "
                                 "not both")
            index, static, behaviour, history = self._known_user_inputs(user_index)
            labels = np.asarray(self.dataset.user_ids, dtype=object)[index]
        else:
            if static is None or behaviour is None:
                raise ValueError("give user_index (known users) or static and behaviour (new people, from "
                                 "dataset.encode_new_users)")
            n = np.asarray(static).shape[0]
            if history is None:
                history = sp.csr_matrix((n, self._config["n_items"]), dtype=np.float32)
            static, behaviour, history = self._check_new_inputs(static, behaviour, history)
            labels = np.asarray([f"new_{i + 1}" for i in range(n)], dtype=object)
        return static, behaviour, history, labels

    def gate_weights(self, static: np.ndarray | None = None, behaviour: np.ndarray | None = None,
                     history: sp.spmatrix | None = None, *, user_index: np.ndarray | None = None) -> pd.DataFrame:
        """How much each signal is trusted for each person (the gate; rows sum to 1).

        Parameters
        ----------
        static, behaviour, history
            New people, as returned by :meth:`Dataset.encode_new_users` (``history`` may be omitted:
            no history).
        user_index : ndarray of int, optional
            Known users instead (scored with their whole training history).

        Returns
        -------
        pandas.DataFrame
            One row per person: ``person`` (user id, or ``new_1``...), ``n_history`` and one column
            per source (:data:`SOURCES`): ``profile``, ``history``, ``item_item``,
            ``content_similarity``, ``similar_people``, ``popularity``. The sources score on the
            same (standardised) scale, so the weights compare directly. A person without history
            has ``history`` = ``item_item`` = ``content_similarity`` = 0 (as does everyone for a
            source the model was built without). This is the gate of catalogue items with
            interactions; new items use the new-item gate (see :meth:`explain`).
        """
        self._require_network()
        static, behaviour, history, labels = self._resolve_people(static, behaviour, history, user_index)
        gates = [np.zeros((0, len(SOURCES)), dtype=np.float32)]
        for start in range(0, history.shape[0], SCORE_BATCH):
            stop = min(start + SCORE_BATCH, history.shape[0])
            gate, *_ = self._parts(static[start:stop], behaviour[start:stop], history[start:stop])
            gates.append(gate.float().cpu().numpy())
        gate = np.concatenate(gates)
        frame = pd.DataFrame({"person": labels, "n_history": np.diff(_binary(history).indptr).astype(np.int64)})
        for position, source in enumerate(SOURCES):
            frame[source] = gate[:, position]
        return frame

    def explain(self, static: np.ndarray | None = None, behaviour: np.ndarray | None = None,
                history: sp.spmatrix | None = None, item_index: np.ndarray | int | None = None, *,
                user_index: np.ndarray | None = None) -> pd.DataFrame:
        """Exact additive decomposition of scores into the signals that produced them.

        Parameters
        ----------
        static, behaviour, history
            New people, as returned by :meth:`Dataset.encode_new_users` (``history`` may be
            omitted: no history).
        item_index : int or ndarray of int, optional
            Items to explain (the same for every person); all items by default.
        user_index : ndarray of int, optional
            Known users instead of new people.

        Returns
        -------
        pandas.DataFrame
            One row per (person, item), persons outer, items in the order given. Columns:

            * ``person``, ``item_index``, ``item_id``, ``item`` (display label);
            * by signal (:data:`SOURCES`): ``profile`` (who the person is), ``history`` (learned
              embedding of the items they interacted with), ``item_item`` (closed-form similarity
              to those items), ``content_similarity`` (content kNN: how much the item looks like
              those items), ``similar_people`` (what people like them picked), ``popularity``
              (how popular the item is; for new items predicted from content, plus the new-item
              shift that places new items among the others), ``total``; the
              six add up to ``total``;
            * by item part: ``profile_collaborative`` + ``profile_content`` == ``profile``,
              ``history_collaborative`` + ``history_content`` == ``history``; ``collaborative``
              (the two ``*_collaborative`` parts plus ``item_item`` and ``similar_people``) and
              ``content`` (the two ``*_content`` parts plus ``content_similarity``), so
              ``collaborative + content + popularity == total``;
            * ``gate_<source>`` for each source: the weight of the source for this person and
              item (already included in the contributions): the person's gate for items with
              interactions, their new-item gate for items without.

            Each source's scores are standardised over the catalogue for the person, so a
            contribution is ``temperature * gate * z``: positive when the source ranks the item
            above its average item, negative below.

            ``total`` equals the score :meth:`score_new_users` (or :meth:`score_users`) returns,
            up to float32 rounding.
        """
        net = self._require_network()
        dataset = self.dataset
        static, behaviour, history, labels = self._resolve_people(static, behaviour, history, user_index)
        items = np.arange(net.n_items) if item_index is None else np.asarray(item_index, dtype=np.int64).reshape(-1)
        if len(items) and (items.min() < 0 or items.max() >= net.n_items):
            raise IndexError(f"item index out of range 0..{net.n_items - 1}")
        source_of = {"profile_collaborative": "profile", "profile_content": "profile",
                     "history_collaborative": "history", "history_content": "history",
                     "item_item": "item_item", "content_similarity": "content_similarity",
                     "similar_people": "similar_people", "popularity": "popularity"}
        chunks: dict[str, list[np.ndarray]] = {name: [] for name in source_of}
        gates = []
        columns = torch.from_numpy(items).to(self._device)
        cold = (1.0 - self._id_mask[columns])[None, :, None]   # items scored with the cold-item gate
        with torch.no_grad():
            for start in range(0, history.shape[0], 256):
                stop = min(start + 256, history.shape[0])
                inputs = self._inputs(static[start:stop], behaviour[start:stop], history[start:stop])
                gate, parts = net.source_scores(*inputs, self._content, self._id_mask, split_item_parts=True)
                item_gate = gate[:, None, 0, :] * (1.0 - cold) + gate[:, None, 1, :] * cold  # (n, c, S)
                weight = net.temperature * item_gate
                for name, source in source_of.items():
                    position = SOURCES.index(source)
                    values = weight[:, :, position] * parts[name][:, columns]
                    if name == "popularity":   # a new item's prior: predicted popularity and the new-item shift
                        values = values + net.new_item_shift * cold[:, :, 0]
                    chunks[name].append(values.cpu().numpy().astype(np.float64))
                gates.append(item_gate.cpu().numpy().astype(np.float64).reshape(-1, len(SOURCES)))
        parts = {name: np.concatenate(values) if values else np.zeros((0, len(items))) for name, values in
                 chunks.items()}
        gate = np.concatenate(gates) if gates else np.zeros((0, len(SOURCES)))
        n_explained = len(items)
        n_people = gate.shape[0] // max(n_explained, 1) if n_explained else history.shape[0]
        frame = pd.DataFrame({
            "person": np.repeat(labels, n_explained),
            "item_index": np.tile(items, n_people),
            "item_id": np.tile(dataset.item_ids[items], n_people),
            "item": np.tile(dataset.item_labels(items), n_people),
        })
        profile = parts["profile_collaborative"] + parts["profile_content"]
        history_part = parts["history_collaborative"] + parts["history_content"]
        frame["profile"] = profile.ravel()
        frame["history"] = history_part.ravel()
        frame["item_item"] = parts["item_item"].ravel()
        frame["content_similarity"] = parts["content_similarity"].ravel()
        frame["similar_people"] = parts["similar_people"].ravel()
        frame["popularity"] = parts["popularity"].ravel()
        frame["total"] = sum(frame[source] for source in SOURCES)
        for name in ("profile_collaborative", "profile_content", "history_collaborative", "history_content"):
            frame[name] = parts[name].ravel()
        frame["collaborative"] = (parts["profile_collaborative"] + parts["history_collaborative"]
                                  + parts["item_item"] + parts["similar_people"]).ravel()
        frame["content"] = (parts["profile_content"] + parts["history_content"]
                            + parts["content_similarity"]).ravel()
        for position, source in enumerate(SOURCES):
            frame[f"gate_{source}"] = gate[:, position]
        return frame

    def explain_new_users(self, profiles: pd.DataFrame, item_ids=None,
                          histories: Mapping[str, Sequence] | None = None) -> pd.DataFrame:
        """:meth:`explain` for people described like :meth:`recommend_new_users` takes them.

        Parameters
        ----------
        profiles : pandas.DataFrame
            A ``user_id`` column (any labels) and profile columns.
        item_ids : list of item ids, optional
            Items to explain (all by default).
        histories : dict, optional
            Label -> item ids the person already interacted with.

        Returns
        -------
        pandas.DataFrame
            As :meth:`explain`, with ``person`` holding the labels of ``profiles``.

        Raises
        ------
        KeyError
            An item id that is not in the data.
        """
        dataset = self._require_fitted()
        static, behaviour, history = dataset.encode_new_users(profiles, histories)
        items = None if item_ids is None else dataset.item_indices(
            [item_ids] if isinstance(item_ids, str) else list(item_ids))
        frame = self.explain(static, behaviour, history, items)
        labels = np.asarray(new_user_labels(profiles), dtype=object)
        frame["person"] = np.repeat(labels, len(frame) // max(len(labels), 1))
        return frame

    # ------------------------------------------------------------------ embeddings
    @torch.no_grad()
    def item_embeddings(self) -> np.ndarray:
        """Item vectors ``v_i = E_i + C(content_i)`` (new items: content only), float32 (n_items, dim)."""
        net = self._require_network()
        collaborative, content_vectors = net.item_parts(self._content, self._id_mask)
        return (collaborative + content_vectors).float().cpu().numpy()

    @torch.no_grad()
    def user_embeddings(self) -> np.ndarray:
        """Fused user vectors ``g_profile p(u) + g_history h(u)`` of the training users, float32 (n_users, dim).

        The item-item source has no vector form and is not included.
        """
        self._require_network()
        dataset = self.dataset
        return self._fused_vectors(dataset.user_features, dataset.behaviour_features, dataset.matrix)

    @torch.no_grad()
    def new_user_embeddings(self, static: np.ndarray, behaviour: np.ndarray, history: sp.spmatrix) -> np.ndarray:
        """Fused vectors ``g_profile p(u) + g_history h(u)`` of new people, float32 (n, dim).

        The same vector :meth:`user_embeddings` gives a training user, for people encoded by
        :meth:`Dataset.encode_new_users` (an empty history row: profile only).

        Parameters
        ----------
        static : ndarray of float32, shape (n, n_static)
        behaviour : ndarray of float32, shape (n, n_behaviour)
        history : sparse matrix, shape (n, n_items)

        Raises
        ------
        ValueError
            Inputs whose shapes do not match the fitted model.
        """
        self._require_network()
        static, behaviour, history = self._check_new_inputs(static, behaviour, history)
        return self._fused_vectors(static, behaviour, history)

    def _fused_vectors(self, static: np.ndarray, behaviour: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        out = np.empty((history.shape[0], self._net.dim), dtype=np.float32)
        for start in range(0, history.shape[0], SCORE_BATCH):
            stop = min(start + SCORE_BATCH, history.shape[0])
            gate, profile_vector, history_vector, _ = self._parts(static[start:stop], behaviour[start:stop],
                                                                     history[start:stop])
            out[start:stop] = (gate[:, :1] * profile_vector + gate[:, 1:2] * history_vector).float().cpu().numpy()
        return out

    @torch.no_grad()
    def score_new_items(self, item_features: np.ndarray) -> np.ndarray:
        """Every training user's score for brand-new items described only by their content.

        A new item is scored exactly as the model scores a catalogue item that had no training
        interactions: its id vector is off (content vector only), its popularity is predicted
        from its content, and the item-item source has nothing for it. Each source is
        standardised with the mean and spread of that user's scores over the *existing*
        catalogue, so the number is the fused score on the scale of :meth:`score_users`: an
        item whose score beats a user's 10th best catalogue score would enter that user's top
        10 (ties and seen-item exclusion aside).

        Parameters
        ----------
        item_features : ndarray of float32, shape (n_new, n_content)
            Content features encoded with ``dataset.item_encoder.transform``.

        Returns
        -------
        ndarray of float32, shape (n_users, n_new)
            Users in training index order (each with their whole training history).

        Raises
        ------
        ValueError
            ``item_features`` is not a 2-d array with one column per content feature.
        """
        net = self._require_network()
        dataset = self.dataset
        features = np.asarray(item_features, dtype=np.float32)
        n_content = int(self._config["n_content"])
        if features.ndim != 2 or features.shape[1] != n_content:
            raise ValueError(f"item_features has shape {features.shape}, expected (n_new, {n_content}): encode "
                             f"new items with the model's dataset.item_encoder.transform")
        if not np.isfinite(features).all():
            raise ValueError("item_features contains NaN or infinite values")
        new_content = torch.from_numpy(np.ascontiguousarray(features)).to(self._device)
        statistics = self._new_item_statistics()
        content_vectors, popularity = net.new_item_parts(new_content)

        def standardised(raw: torch.Tensor, name: str) -> torch.Tensor:
            return (raw - statistics[f"mean_{name}"]) / statistics[f"spread_{name}"]

        # The item-item and similar-people sources know nothing about a new item: 0 after
        # standardising (see _FusedNetwork.source_scores), so they add nothing here.
        gate = {source: statistics["gate"][:, position:position + 1] for position, source in enumerate(SOURCES)}
        fused = (gate["profile"] * standardised(statistics["profile_vector"] @ content_vectors.T, "profile")
                 + gate["history"] * standardised(statistics["history_vector"] @ content_vectors.T, "history")
                 + gate["popularity"] * standardised(popularity[None, :], "popularity"))
        if net.n_content_neighbours:
            # Summed over each user's history: the binary history matrix times the kept similarities.
            kept = net.new_item_neighbour_similarity(self._content, new_content).cpu().numpy()   # (n_items, m)
            raw = torch.from_numpy(np.ascontiguousarray(_binary(dataset.matrix) @ kept,
                                                        dtype=np.float32)).to(self._device)
            fused = fused + gate["content_similarity"] * standardised(raw, "content_similarity")
        return (net.temperature * fused + net.new_item_shift).float().cpu().numpy()

    @torch.no_grad()
    def _new_item_statistics(self) -> dict[str, torch.Tensor]:
        """What every training user's score of a new item needs besides the item, computed once per model.

        The new-item gate and, per source, the mean and spread of the user's scores over the
        catalogue (what standardises a new item's raw score), plus the profile and history
        vectors: with them a new item costs a few small products instead of rescoring the whole
        catalogue for everyone (about 0.5 s on the sample, now a few ms after the first call).
        """
        if self._new_item_cache is None:
            net, dataset = self._net, self.dataset
            parts, shared = [], {}
            for start in range(0, dataset.n_users, SCORE_BATCH):
                index = np.arange(start, min(start + SCORE_BATCH, dataset.n_users))
                _, static, behaviour, history = self._known_user_inputs(index)
                statistics: dict[str, torch.Tensor] = {}
                gate, _ = net.source_scores(*self._inputs(static, behaviour, history, neighbours=False),
                                            self._content, self._id_mask, statistics=statistics)
                statistics["gate"] = gate[:, 1]
                shared = {name: statistics.pop(name) for name in ("mean_popularity", "spread_popularity")}
                parts.append(statistics)
            cache = {name: torch.cat([part[name] for part in parts]) for name in parts[0]}
            self._new_item_cache = {**cache, **shared}
        return self._new_item_cache

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        net = self._require_network()
        arrays = {f"net.{name}": tensor.detach().cpu().numpy().copy() for name, tensor in net.state_dict().items()}
        arrays["item_id_mask"] = self._id_mask.detach().cpu().numpy().copy()
        if self._pool is not None:
            arrays.update(self._pool.state())
        return dict(self._config), arrays

    def _set_state(self, config: dict, arrays: Mapping[str, np.ndarray]) -> None:
        dataset = self._require_fitted()
        expected = {"n_items": dataset.n_items, "n_static": dataset.user_features.shape[1],
                    "n_behaviour": dataset.behaviour_features.shape[1], "n_content": dataset.item_features.shape[1]}
        for key, value in expected.items():
            if int(config.get(key, -1)) != value:
                raise ValueError(f"the model was trained with {key}={config.get(key)}, but the data has {value}")
        try:
            device = resolve_device(self.device)
        except ValueError as error:
            logger.warning("fused: %s; loading on the CPU instead.", error)
            device = torch.device("cpu")
        net = _FusedNetwork(n_items=expected["n_items"], n_static=expected["n_static"],
                            n_behaviour=expected["n_behaviour"], n_content=expected["n_content"],
                            dim=int(config["dim"]), hidden=int(config["hidden"]),
                            gate_hidden=int(config["gate_hidden"]), n_item_item=int(config["n_item_item"]),
                            n_content_neighbours=int(config.get("n_content_neighbours", 0)),
                            similar_people=int(config.get("similar_people", 0)) > 0,
                            generator=torch.Generator().manual_seed(0))
        state = net.state_dict()
        # Bundles saved before these existed: no shift; short histories had the long ones' offsets.
        arrays = {"net.new_item_shift": np.zeros(1, dtype=np.float32), **arrays}
        if "net.history_gate_offset" in arrays:
            arrays = {"net.short_history_gate_offset": arrays["net.history_gate_offset"], **arrays}
        missing = sorted(set(state) - {k[4:] for k in arrays if k.startswith("net.")})
        if missing:
            raise ValueError(f"the bundle lacks the weights {', '.join(missing[:5])}")
        loaded = {}
        for name, tensor in state.items():
            array = np.asarray(arrays[f"net.{name}"])
            if tuple(array.shape) != tuple(tensor.shape):
                raise ValueError(f"weights {name} have shape {tuple(array.shape)}, expected {tuple(tensor.shape)}")
            loaded[name] = torch.from_numpy(array.astype(tensor.numpy().dtype, copy=True))
        net.load_state_dict(loaded)
        id_mask = np.asarray(arrays.get("item_id_mask", np.ones(expected["n_items"], dtype=np.float32)))
        if id_mask.shape != (expected["n_items"],):
            raise ValueError(f"item_id_mask has shape {id_mask.shape}, expected ({expected['n_items']},)")
        pool = None
        if int(config.get("similar_people", 0)) > 0:
            if "pool_columns" not in arrays:
                raise ValueError("the bundle lacks the neighbour pool of the similar_people source")
            pool = _NeighbourPool.from_state(arrays, expected["n_items"], expected["n_static"],
                                             expected["n_behaviour"], int(config["similar_people"]))
        self._pool = pool
        self._device = device
        self._net = net.to(device).eval()
        self._id_mask = torch.from_numpy(id_mask.astype(np.float32)).to(device)
        self._content = (torch.from_numpy(dataset.item_features).to(device)
                         if dataset.item_features.shape[1] else None)
        self._net.use_sparse_content(self._content)
        self._config = dict(config)
        self._history = []
        self._new_item_cache = None
