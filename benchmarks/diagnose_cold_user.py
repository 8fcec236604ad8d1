"""Why can the fused model fall below popularity for new people? Validation vs test, per gate offset.

Fits the fused model on one cold-user split of generated data and prints, for every popularity offset
of the gate calibration's grid (30 = popularity alone), the NDCG@10 the calibration saw on the fit's
validation people (with the standard error of its difference to popularity alone) and the NDCG@10 on
the split's test people, plus how many items without training interactions reach the top 10.

    python benchmarks/diagnose_cold_user.py                       # weak profile, data seed 0, split 1
    python benchmarks/diagnose_cold_user.py --strength 0.6 --split-seed 0
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import synthetic_dataset  # noqa: E402
from recommender.evaluation.compare import evaluate_model  # noqa: E402
from recommender.evaluation.protocols import make_split  # noqa: E402
from recommender.models import PopularityRecommender  # noqa: E402
from recommender.models.fused import NEW_PERSON_POPULARITY_GRID as GRID  # noqa: E402
from recommender.models.fused import SOURCES, FusedRecommender  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strength", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument("--split-seed", type=int, default=1)
    args = parser.parse_args()
    dataset = synthetic_dataset(args.strength, 3000, 1000, 60000, args.seed)
    split = make_split(dataset, "cold_user", seed=args.split_seed)

    seen: list[np.ndarray] = []          # the calibration's per-person NDCG@10 of people without history
    original = FusedRecommender._candidate_ndcg

    def recording(self, candidates):
        values = original(self, candidates)
        if candidates["entry"].history.nnz == 0:
            seen.append(values)
        return values

    FusedRecommender._candidate_ndcg = recording
    try:
        model = FusedRecommender().fit(split.train)
    finally:
        FusedRecommender._candidate_ndcg = original
    # The new-item shift's grid (when some items lack interactions) scores them first, then the cold-user grid.
    validation = np.array(seen[-len(GRID):])
    popularity = PopularityRecommender().fit(split.train)
    print(f"popularity baseline: test NDCG@10 {evaluate_model(popularity, split, k=10).aggregate['ndcg@10']:.4f}; "
          f"offset chosen {model._config['new_person_popularity_offset']}; "
          f"{validation.shape[1]} validation people")
    net, position = model._net, SOURCES.index("popularity")
    chosen = float(net.new_person_gate_offset[position])
    counts = np.bincount(split.train.item_index, minlength=dataset.n_items)
    print("| offset | validation NDCG@10 | vs popularity alone (SE) | test NDCG@10 "
          "| items without interactions in top 10 |")
    print("|---:|---:|---:|---:|---:|")
    for row, offset in enumerate(GRID):
        net.new_person_gate_offset[position] = offset
        test = evaluate_model(model, split, k=10).aggregate["ndcg@10"]
        scores = model.score_new_users(*split.new_user_inputs())
        top = np.argsort(-scores, axis=1)[:, :10]
        difference = validation[row] - validation[-1]
        error = difference.std(ddof=1) / np.sqrt(len(difference))
        print(f"| {offset:g} | {validation[row].mean():.4f} | {difference.mean():+.4f} ({error:.4f}) | {test:.4f} | "
              f"{(counts[top] == 0).sum(axis=1).mean():.2f} |")
    net.new_person_gate_offset[position] = chosen


if __name__ == "__main__":
    main()
