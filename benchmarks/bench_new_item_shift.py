"""Where should items without interactions go in a list? NDCG@10 of the fused model by new-item shift.

After training, the fused model adds a shift to the score of every item nobody interacted with in
training (``new_item_shift``, chosen on the fit's validation people from ``NEW_ITEM_SHIFT_GRID``).
This script fits the fused model once per (setting, protocol) on split seed 0 of the quality
benchmark's data, then scores the test people again with each shift of the grid (nothing else
changes: the shift only moves those items up or down the whole list) and prints one table:
the test NDCG@10 by shift, the shift the fit chose, and how many catalogue items had no
interactions. On the cold-item protocol new items are ranked among themselves, so the shift
cannot change it (a check that it does not).

    python benchmarks/bench_new_item_shift.py                       # sample, weak, strong; four protocols
    python benchmarks/bench_new_item_shift.py --settings weak --protocols warm
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.bench_models import SETTINGS, build  # noqa: E402
from benchmarks.common import machine  # noqa: E402
from recommender.evaluation.compare import evaluate_model  # noqa: E402
from recommender.evaluation.protocols import make_split  # noqa: E402
from recommender.models.fused import NEW_ITEM_SHIFT_GRID, FusedRecommender  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--protocols", default="warm,temporal,few_shot,cold_item")
    parser.add_argument("--split-seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"Machine: {machine()}")
    print(f"Command: python benchmarks/bench_new_item_shift.py {' '.join(argv or sys.argv[1:])}\n")
    shifts = list(NEW_ITEM_SHIFT_GRID)
    print("| setting | protocol | items without interactions | " + " | ".join(f"shift {s:g}" for s in shifts)
          + " | chosen |")
    print("|---|---|---:|" + "---:|" * len(shifts) + "---:|")
    for setting in args.settings.split(","):
        dataset = build(setting)
        for protocol in args.protocols.split(","):
            started = time.perf_counter()
            split = make_split(dataset, protocol, seed=args.split_seed)
            model = FusedRecommender().fit(split.train)
            net = model._net
            chosen = float(net.new_item_shift)
            values = []
            for shift in shifts:
                net.new_item_shift.fill_(shift)
                model._new_item_cache = None
                values.append(evaluate_model(model, split, k=10).aggregate["ndcg@10"])
            net.new_item_shift.fill_(chosen)
            best = max(values)
            cells = [f"**{v:.4f}**" if v == best else f"{v:.4f}" for v in values]
            print(f"| {setting} | {protocol} | {int((model._id_mask == 0).sum())} | " + " | ".join(cells)
                  + f" | {chosen:g} |", flush=True)
            print(f"  {setting}/{protocol}: {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
