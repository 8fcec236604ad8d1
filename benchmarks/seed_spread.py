"""How much one fused fit depends on its training seed: NDCG@10 of seeds 0-4 on fixed splits.

Each cell is a generated data setting, a protocol and split seed 0 (as in ``bench_models.py``);
the fused model is fitted once per training seed with otherwise default settings and scored on the
split's test people. The split and the baselines do not change between seeds, so the spread is
the model's own.

    python benchmarks/seed_spread.py                                     # the five cells of RESULTS.md
    python benchmarks/seed_spread.py --cells 0.1/11/temporal --params '{"weight_average": false, "patience": 3}'
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine, synthetic_dataset  # noqa: E402
from recommender.evaluation.compare import evaluate_model  # noqa: E402
from recommender.evaluation.protocols import make_split  # noqa: E402
from recommender.models.fused import FusedRecommender  # noqa: E402

CELLS = "0.1/11/temporal,0.6/0/warm,0.6/0/temporal,0.6/0/cold_user,0.1/11/few_shot"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default=CELLS,
                        help="comma-separated strength/data seed/protocol (3,000 users, 1,000 items, 60,000 interactions)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--params", default="{}", help="FusedRecommender keyword arguments as JSON")
    args = parser.parse_args(argv)
    params = json.loads(args.params)
    print(f"Machine: {machine()}")
    print(f"Command: python benchmarks/seed_spread.py {' '.join(argv if argv is not None else sys.argv[1:])}\n")
    print("| cell | NDCG@10 per seed | mean | epochs (best) |")
    print("|---|---|---|---|")
    for cell in args.cells.split(","):
        strength, data_seed, protocol = cell.split("/")
        split = make_split(synthetic_dataset(float(strength), 3000, 1000, 60000, int(data_seed)), protocol, seed=0)
        values, epochs = [], []
        for seed in args.seeds:
            model = FusedRecommender(**{**params, "seed": seed}).fit(split.train)
            values.append(evaluate_model(model, split, k=10).aggregate["ndcg@10"])
            epochs.append(f"{len(model.training_history)} ({model._config['best_epoch']})")
        print(f"| {cell} | {' '.join(f'{v:.4f}' for v in values)} | {np.mean(values):.4f} | {', '.join(epochs)} |",
              flush=True)


if __name__ == "__main__":
    main()
