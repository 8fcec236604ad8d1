"""Tests of :mod:`recommender.analysis`, with the small data sets they share."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from recommender import Dataset
from recommender.models import Recommender
from recommender.synthetic import generate


class FixedEmbeddings(Recommender):
    """A stand-in model with given user/item vectors (scores = dot products)."""

    name = "fixed"

    def __init__(self, users: np.ndarray | None = None, items: np.ndarray | None = None) -> None:
        self.users = users
        self.items = items

    def _fit(self, dataset, callback):
        pass

    def score_users(self, user_index):
        return (self.users[user_index] @ self.items.T).astype(np.float32)

    def score_new_users(self, static, behaviour, history):
        return np.zeros((history.shape[0], self.dataset.n_items), dtype=np.float32)

    def user_embeddings(self):
        return self.users

    def item_embeddings(self):
        return self.items


def grouped_frames(sizes=(30, 27, 3), items_per_group: int = 6, seed: int = 0):
    """Users in groups (region North/South/East...); group g interacts only with category g's items.

    Item ids are interleaved across groups (``I000`` is group 0, ``I001`` group 1, ...) so that an
    ordering by id or popularity mixes the groups.
    """
    rng = np.random.default_rng(seed)
    regions = ["North", "South", "East", "West"]
    categories = ["Books", "Garden", "Music", "Toys"]
    n_groups = len(sizes)
    n_items = items_per_group * n_groups
    item_group = np.arange(n_items) % n_groups
    users, rows = [], []
    user = 0
    for group, size in enumerate(sizes):
        own = np.flatnonzero(item_group == group)
        for _ in range(size):
            uid = f"U{user:03d}"
            users.append({"user_id": uid, "region": regions[group], "age": int(rng.integers(20, 30)) + 20 * (group % 2),
                          "interests": "cats|dogs" if group == 0 else "dogs"})
            chosen = rng.choice(own, size=int(rng.integers(3, len(own) + 1)), replace=False)
            rows.extend({"user_id": uid, "item_id": f"I{i:03d}"} for i in chosen)
            user += 1
    items = pd.DataFrame({"item_id": [f"I{i:03d}" for i in range(n_items)],
                          "title": [f"Title {i}" for i in range(n_items)],
                          "category": np.asarray(categories, dtype=object)[item_group]})
    return pd.DataFrame(rows), pd.DataFrame(users), items, item_group


@lru_cache(maxsize=None)
def grouped_dataset(sizes=(30, 27, 3)) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """The :func:`grouped_frames` data as a Dataset, its users' group and its items' group (by index)."""
    interactions, users, items, _ = grouped_frames(sizes)
    dataset = Dataset.from_frames(interactions, users, items, user_roles={"interests": "multilabel"})
    user_group = users.set_index("user_id").loc[dataset.user_ids, "region"].map(
        {"North": 0, "South": 1, "East": 2, "West": 3}).to_numpy()
    item_group = np.asarray([int(i[1:]) % len(sizes) for i in dataset.item_ids])
    return dataset, user_group, item_group


def blob_embeddings(groups: np.ndarray, dim: int = 8, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """One well-separated direction per group, plus a little noise."""
    rng = np.random.default_rng(seed)
    centers = np.eye(dim)[: groups.max() + 1] * 3.0
    return centers[groups] + rng.normal(0, noise, size=(len(groups), dim))


@lru_cache(maxsize=None)
def synthetic_dataset():
    """Generated data with profile-determined planted segments (600 users, 200 items)."""
    data = generate(n_users=600, n_items=200, n_interactions=9000, profile_strength=1.0, seed=3)
    dataset = Dataset.from_frames(data.interactions, data.users, data.items, name="planted")
    return data, dataset
