"""Implicit-feedback matrix factorisation by alternating least squares (Hu, Koren & Volinsky 2008).

Training runs through the ``implicit`` package's CPU solver (conjugate gradient, native
threads). Each observed (user, item) pair has confidence ``alpha * weight`` (event counts for
implicit data; every rating counts as one event for rating data, since a low rating is still
an interaction), unobserved pairs have confidence 1 and preference 0.

A new person with a history gets a user vector by the same least-squares step as in training
(``x_u = (Y^T C_u Y + reg I)^-1 Y^T C_u p_u``, implicit's ``recalculate_user``); without a
history, or a known user without interactions, gets the most popular items.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Iterator, Mapping

import numpy as np
import scipy.sparse as sp

from ..dataset import Dataset
from ..errors import ModelFitError
from .base import Callback, Recommender, register

logger = logging.getLogger(__name__)


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """implicit runs its own threads; a multi-threaded BLAS underneath slows it down badly."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*threadpool.*", category=RuntimeWarning)
        yield


@register
class ALSRecommender(Recommender):
    """Matrix factorisation for implicit feedback (weighted ALS).

    Parameters
    ----------
    factors : int, default 64
        Length of the user and item vectors.
    regularization : float, default 30.0
        L2 penalty on the vectors. Small data sets need a large penalty with 64 factors; the
        defaults (with ``alpha=2``) ranked best among a grid on synthetic data of 3,000-20,000
        users, where small penalties (implicit's 0.01) overfit badly.
    alpha : float, default 2.0
        Confidence of an observed interaction per unit of weight.
    iterations : int, default 15
        Alternating sweeps (users, then items).
    seed : int, default 0
        Seed of the random initial vectors (results are reproducible for a given seed).
    num_threads : int, default 0
        Threads of the solver; 0 uses every core.
    """

    name = "als"

    def __init__(self, factors: int = 64, regularization: float = 30.0, alpha: float = 2.0,
                 iterations: int = 15, seed: int = 0, num_threads: int = 0) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads

    def _solver(self, item_factors: np.ndarray | None = None, user_factors: np.ndarray | None = None):
        from implicit.cpu.als import AlternatingLeastSquares

        with _single_threaded_blas():
            solver = AlternatingLeastSquares(
                factors=int(self.factors), regularization=float(self.regularization), alpha=float(self.alpha),
                iterations=1, num_threads=int(self.num_threads), random_state=int(self.seed),
                calculate_training_loss=False)
        solver.item_factors = item_factors
        solver.user_factors = user_factors
        return solver

    def _confidence(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """Weights handed to implicit (which multiplies them by ``alpha``): counts, or 1 per rating."""
        matrix = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
        if self.dataset is not None and self.dataset.has_ratings:
            matrix.data = np.ones_like(matrix.data)
        return matrix

    def _fit(self, dataset: Dataset, callback: Callback | None) -> None:
        from implicit.recommender_base import ModelFitError as ImplicitFitError

        if int(self.factors) < 1 or int(self.iterations) < 1:
            raise ValueError("factors and iterations must be at least 1")
        if not self.regularization >= 0 or not self.alpha > 0:
            raise ValueError("regularization must be >= 0 and alpha > 0")
        counts = np.bincount(dataset.item_index, minlength=dataset.n_items).astype(np.float32)
        self._popularity = counts / max(float(counts.max(initial=0.0)), 1.0)
        confidence = self._confidence(dataset.matrix)
        solver = self._solver()
        solver.calculate_training_loss = callback is not None
        losses: dict[str, float] = {}

        def record(iteration, elapsed, loss):
            if loss is not None:
                losses["loss"] = float(loss)

        for epoch in range(int(self.iterations)):
            # One sweep per call: the factors carry over, and the callback can stop training.
            with _single_threaded_blas():
                try:
                    solver.fit(confidence, show_progress=False, callback=record)
                except ImplicitFitError as error:
                    raise ModelFitError(
                        f"ALS produced NaN factors in sweep {epoch + 1} ({error}). Try a larger "
                        "regularization or a smaller alpha.") from None
            if "loss" in losses and not np.isfinite(losses["loss"]):
                raise ModelFitError(f"ALS loss became {losses['loss']} in sweep {epoch + 1}; try a larger "
                                    "regularization or a smaller alpha.")
            if callback is not None and callback(epoch, dict(losses), {}) is False:
                logger.info("ALS stopped by the callback after %d sweep(s)", epoch + 1)
                break
        self._user_factors = np.ascontiguousarray(solver.user_factors, dtype=np.float32)
        self._item_factors = np.ascontiguousarray(solver.item_factors, dtype=np.float32)
        self._solver_cache = solver

    # ------------------------------------------------------------------ scoring
    def _scores(self, user_factors: np.ndarray, empty: np.ndarray) -> np.ndarray:
        scores = user_factors @ self._item_factors.T
        scores[empty] = self._popularity
        return scores.astype(np.float32, copy=False)

    def score_users(self, user_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index)
        empty = np.diff(self.dataset.matrix.indptr)[user_index] == 0
        return self._scores(self._user_factors[user_index], empty)

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        """User vectors for new people from their histories, as in a training sweep.

        Parameters
        ----------
        history : scipy.sparse.csr_matrix, shape (n, n_items)
            Interactions of the new people (weights as in training: counts, or 1 per item).

        Returns
        -------
        ndarray of float32, shape (n, factors)
        """
        if history.shape[0] == 0:
            return np.zeros((0, self._item_factors.shape[1]), dtype=np.float32)
        solver = getattr(self, "_solver_cache", None)
        if solver is None:
            solver = self._solver(self._item_factors, self._user_factors)
            self._solver_cache = solver
        with _single_threaded_blas():
            factors = solver.recalculate_user(np.arange(history.shape[0]), self._confidence(history))
        return np.asarray(factors, dtype=np.float32)

    def score_new_users(self, static: np.ndarray, behaviour: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        empty = np.diff(history.indptr) == 0
        return self._scores(self.fold_in(history), empty)

    def user_embeddings(self) -> np.ndarray:
        return self._user_factors

    def item_embeddings(self) -> np.ndarray:
        return self._item_factors

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {}, {"user_factors": self._user_factors, "item_factors": self._item_factors,
                    "popularity": self._popularity}

    def _set_state(self, config: dict, arrays: Mapping[str, np.ndarray]) -> None:
        dataset = self.dataset
        users = np.asarray(arrays["user_factors"], dtype=np.float32)
        items = np.asarray(arrays["item_factors"], dtype=np.float32)
        popularity = np.asarray(arrays["popularity"], dtype=np.float32)
        factors = int(self.factors)
        if users.shape != (dataset.n_users, factors):
            raise ValueError(f"user factors have shape {users.shape}, expected ({dataset.n_users}, {factors})")
        if items.shape != (dataset.n_items, factors):
            raise ValueError(f"item factors have shape {items.shape}, expected ({dataset.n_items}, {factors})")
        if popularity.shape != (dataset.n_items,):
            raise ValueError(f"popularity has shape {popularity.shape}, expected ({dataset.n_items},)")
        self._user_factors = np.ascontiguousarray(users)
        self._item_factors = np.ascontiguousarray(items)
        self._popularity = popularity
        self._solver_cache = None
