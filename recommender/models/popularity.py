"""Most-popular items: the baseline every model must beat, and a hard one for new users."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import scipy.sparse as sp

from ..dataset import Dataset
from .base import Callback, Recommender, register


@register
class PopularityRecommender(Recommender):
    """Scores every item by how many users interacted with it (the same list for everyone)."""

    name = "popularity"

    def __init__(self) -> None:
        self._scores: np.ndarray | None = None

    def _fit(self, dataset: Dataset, callback: Callback | None) -> None:
        counts = np.bincount(dataset.item_index, minlength=dataset.n_items).astype(np.float32)
        self._scores = counts / max(counts.max(), 1.0)

    def score_users(self, user_index: np.ndarray) -> np.ndarray:
        return np.tile(self._scores, (len(user_index), 1))

    def score_new_users(self, static: np.ndarray, behaviour: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return np.tile(self._scores, (history.shape[0], 1))

    def item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        raise NotImplementedError("popularity has no notion of item similarity")

    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {}, {"scores": self._scores}

    def _set_state(self, config: dict, arrays: Mapping[str, np.ndarray]) -> None:
        scores = arrays["scores"]
        if scores.shape != (self.dataset.n_items,):
            raise ValueError(f"scores have shape {scores.shape}, expected ({self.dataset.n_items},)")
        self._scores = scores.astype(np.float32)
