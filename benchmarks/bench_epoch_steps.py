"""Does validating every ``epoch_steps`` steps (instead of after whole passes) cost quality at 1M?

Fits the fused model with ``epoch_steps=None`` (every epoch a full pass over the training users,
the behaviour before this setting existed) and with the default (100 steps) on the same splits of
generated data, and prints fit time, epochs and NDCG@10 / recall@10 on the held-out part, side by
side. Takes about 30 minutes at the default size on a 2-core machine.

    python benchmarks/bench_epoch_steps.py                       # 1M interactions, warm and cold_user
    python benchmarks/bench_epoch_steps.py --protocols warm --n-interactions 300000
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import synthetic_dataset  # noqa: E402
from recommender.evaluation.compare import evaluate_model  # noqa: E402
from recommender.evaluation.protocols import make_split  # noqa: E402
from recommender.models.fused import FusedRecommender  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocols", nargs="+", default=["warm", "cold_user"])
    parser.add_argument("--n-users", type=int, default=100_000)
    parser.add_argument("--n-items", type=int, default=20_000)
    parser.add_argument("--n-interactions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data and of the splits")
    args = parser.parse_args()
    dataset = synthetic_dataset(0.6, args.n_users, args.n_items, args.n_interactions, args.seed)
    print("| protocol | epoch_steps | fit (s) | epochs (best) | NDCG@10 | recall@10 |")
    print("|---|---|---:|---|---:|---:|")
    for protocol in args.protocols:
        split = make_split(dataset, protocol, seed=args.seed)
        for steps in (None, 100):
            started = time.perf_counter()
            model = FusedRecommender(epoch_steps=steps).fit(split.train)
            seconds = time.perf_counter() - started
            result = evaluate_model(model, split, k=10).aggregate
            print(f"| {protocol} | {steps} | {seconds:.0f} | {len(model.training_history)} "
                  f"({model._config['best_epoch']}) | {result['ndcg@10']:.4f} | {result['recall@10']:.4f} |",
                  flush=True)


if __name__ == "__main__":
    main()
