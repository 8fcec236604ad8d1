"""FusedRecommender: training and early stopping, scoring, explanations and persistence."""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from ...dataset import Dataset, new_user_labels
from ...errors import ModelFitError
from ..base import SCORE_BATCH, Callback, Recommender, register
from ..device import resolve_device
from ..optimizer import FusedAdamW, adamw
from ..profile_knn import _share_columns
from .calibration import _GateCalibration
from .data import (VALIDATION_K, _binary, _content_neighbours, _ease, _ndcg, _NeighbourPool, _popularity_from_content,
                   _Prepared, _StepInput, positive_threshold)
from .layers import _TargetLogLikelihood
from .network import SOURCES, _FusedNetwork

logger = logging.getLogger(__name__)

#: Most floats that keeping the validation people's fixed-source scores between epochs may take.
VALIDATION_CACHE_FLOATS = 16_000_000

#: Most scores (people x items) in one chunk of people scored against the whole catalogue
#: (``FusedRecommender._score_arrays`` when no source scores are kept between calls, and the
#: per-user statistics for new items). A chunk computes every source for all its people at once (six
#: people x items tensors and their temporaries): at 100,000 items a chunk of SCORE_BATCH (1,024)
#: people took gigabytes, and the validation's chunks made the memory peaks of a fit (1,000,000
#: interactions: 1.05 GB between validations, 1.6 GB during them). Catalogues below 31,250 items
#: keep chunks of SCORE_BATCH people.
SCORE_CHUNK_FLOATS = 32_000_000

#: At most this many CPU threads train a sampled-softmax catalogue by default (one fewer than
#: torch's own count, so the batch thread keeps a core). Measured only on 2 and 16 cores: on 2
#: cores one thread beat two by 1.3x an epoch at 1,000,000 interactions (side by side; a whole fit
#: 127.5 against 162.7 s), and torch's 16 threads on a 16-core machine were barely faster than this
#: 2-core one (13.8 against 18.4 s an epoch). The cap of 4 is a judgement between those, not a
#: measurement: small operations gain little from more threads.
SAMPLED_SOFTMAX_THREADS = 4


@contextmanager
def _torch_threads(threads: int):
    """Run the block on ``threads`` torch threads, torch's previous count restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
class FusedRecommender(_GateCalibration, Recommender):
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
        Target weight of an explicit rating below the relevance threshold (see the package docstring,
        :mod:`recommender.models.fused`).
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
        :data:`~.data.MIN_NEW_VALIDATION_PEOPLE` where the data allows, see there); 0 trains
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
            # NDCG chunk by chunk: the whole (people, catalogue) score matrix is never held at once.
            ndcg = np.concatenate([
                _ndcg(scores, validation.history[start:stop], validation.relevant[start:stop])
                for start, stop, scores in self._score_chunks(prepared.static[validation.users],
                                                              validation.behaviour, validation.history, fixed)])
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
        filled when empty, used when full. Without it, chunks hold at most ``SCORE_CHUNK_FLOATS``
        scores.
        """
        out = np.empty((history.shape[0], self._net.n_items), dtype=np.float32)
        for start, stop, scores in self._score_chunks(static, behaviour, history, fixed):
            out[start:stop] = scores
        return out

    @torch.no_grad()
    def _score_chunks(self, static: np.ndarray, behaviour: np.ndarray, history: sp.spmatrix,
                      fixed: list[dict[str, torch.Tensor]] | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(start, stop, scores)`` for consecutive chunks of people: :meth:`_score_arrays` one chunk at a time."""
        net = self._net
        net.eval()
        rows = SCORE_BATCH if fixed is not None else self._catalogue_rows()
        for chunk, start in enumerate(range(0, history.shape[0], rows)):
            stop = min(start + rows, history.shape[0])
            kept = fixed is not None and chunk < len(fixed)
            inputs = self._inputs(static[start:stop], behaviour[start:stop], history[start:stop],
                                  neighbours=not kept)
            if fixed is not None and not kept:
                _, items, _, n_history, neighbour_scores = inputs
                fixed.append(net.fixed_scores(items, n_history, neighbour_scores, self._content, self._id_mask))
            scores = net.logits(*inputs, self._content, self._id_mask, fixed=None if fixed is None else fixed[chunk])
            yield start, stop, scores.float().cpu().numpy()

    def _catalogue_rows(self, per_item: int = 1) -> int:
        """People scored against the whole catalogue at once: SCORE_BATCH, fewer above SCORE_CHUNK_FLOATS scores.

        ``per_item``: values kept per person and item (the gate calibration stacks all its sources).
        """
        return min(SCORE_BATCH, max(1, SCORE_CHUNK_FLOATS // max(self._net.n_items * per_item, 1)))

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
            rows = self._catalogue_rows()
            for start in range(0, dataset.n_users, rows):
                index = np.arange(start, min(start + rows, dataset.n_users))
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
