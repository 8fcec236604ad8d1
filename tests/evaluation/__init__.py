"""Tests of :mod:`recommender.evaluation`, with the small data set they share (:func:`make_frames`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORIES = ["books", "games", "music", "sports"]


def make_frames(n_users: int = 120, n_items: int = 80, seed: int = 0, ratings: bool = True,
                timestamps: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Interactions, users and items with a planted pattern.

    Women prefer books and games, men music and sports (90% of their picks); within a
    category lower item numbers are more popular. Activity ranges from 1 to 30
    interactions so every activity band is populated. Ratings are 1-5 (5 and 4 for
    preferred categories, mostly), timestamps unique integers.
    """
    rng = np.random.default_rng(seed)
    users = pd.DataFrame({
        "user_id": [f"U{u:03d}" for u in range(n_users)],
        "age": rng.integers(18, 75, n_users),
        "gender": np.where(np.arange(n_users) % 2 == 0, "F", "M"),
        "region": rng.choice(["North", "South", "East"], n_users),
    })
    category = np.arange(n_items) % len(CATEGORIES)
    items = pd.DataFrame({
        "item_id": [f"I{i:03d}" for i in range(n_items)],
        "title": [f"Item number {i}" for i in range(n_items)],
        "category": np.asarray(CATEGORIES, dtype=object)[category],
    })
    popularity = 1.0 / (1.0 + np.arange(n_items)) ** 0.7
    activity = np.concatenate([rng.integers(1, 5, n_users // 3), rng.integers(5, 20, n_users // 3),
                               rng.integers(20, 31, n_users - 2 * (n_users // 3))])
    rng.shuffle(activity)
    rows = []
    for user in range(n_users):  # a test fixture: clarity over speed
        liked = np.isin(category, [0, 1] if user % 2 == 0 else [2, 3])
        weight = popularity * np.where(liked, 9.0, 1.0)
        chosen = rng.choice(n_items, size=min(int(activity[user]), n_items), replace=False, p=weight / weight.sum())
        stars = np.where(liked[chosen], rng.choice([4, 5], len(chosen)), rng.choice([1, 2, 3], len(chosen)))
        rows.append(pd.DataFrame({"user_id": f"U{user:03d}", "item_id": items["item_id"].to_numpy()[chosen],
                                  "rating": stars.astype(float)}))
    interactions = pd.concat(rows, ignore_index=True)
    interactions["timestamp"] = 1_700_000_000 + rng.permutation(len(interactions)) * 3600
    if not ratings:
        interactions = interactions.drop(columns=["rating"])
    if not timestamps:
        interactions = interactions.drop(columns=["timestamp"])
    return interactions, users, items


def make_dataset(**kwargs):
    from recommender import Dataset

    interactions, users, items = make_frames(**kwargs)
    return Dataset.from_frames(interactions, users, items)
