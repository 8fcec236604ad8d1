"""How good is the fused model's EASE penalty rule (8x the mean interactions per item)?

For generated data (the benchmark's three settings) and three warm splits each, prints the
NDCG@10 of the EASE baseline at several penalties next to the penalty the fused model's rule
gives for the same training data. About 2 minutes on a 2-core machine.

    python benchmarks/bench_ease_penalty.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import synthetic_dataset  # noqa: E402
from recommender.evaluation.compare import evaluate_model  # noqa: E402
from recommender.evaluation.protocols import make_split  # noqa: E402
from recommender.models import EASERecommender  # noqa: E402
from recommender.models.fused import FusedRecommender  # noqa: E402

PENALTIES = (100, 250, 500, 1000, 2000)
SETTINGS = ((0.1, 11), (0.6, 0), (0.9, 11))   # (profile strength, data seed), as in tune_fused.py's table


def main() -> None:
    print("| profile strength | split | " + " | ".join(f"EASE l2={p}" for p in PENALTIES) + " | fused rule's l2 |")
    print("|---|---|" + "---:|" * (len(PENALTIES) + 1))
    for strength, seed in SETTINGS:
        dataset = synthetic_dataset(strength, 3000, 1000, 60000, seed)
        for split_seed in (0, 1, 2):
            split = make_split(dataset, "warm", seed=split_seed)
            values = [evaluate_model(EASERecommender(l2=p).fit(split.train), split, k=10).aggregate["ndcg@10"]
                      for p in PENALTIES]
            counts = np.bincount(split.train.item_index, minlength=dataset.n_items)
            rule = FusedRecommender()._item_item_penalty(counts[counts > 0])
            best = int(np.argmax(values))
            cells = [f"**{v:.4f}**" if i == best else f"{v:.4f}" for i, v in enumerate(values)]
            print(f"| {strength} | {split_seed} | " + " | ".join(cells) + f" | {rule:.0f} |", flush=True)


if __name__ == "__main__":
    main()
