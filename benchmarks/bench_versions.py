"""Fit time of the fused model: this checkout against an earlier commit, side by side.

This machine's speed drifts by a third over minutes, so a fit time measured today is not comparable
with one from yesterday. This script puts the earlier commit in a temporary ``git worktree`` and fits
the same generated data with both versions, alternating, each fit in a fresh interpreter (so each
pays PyTorch's first-optimizer import, as a user's first fit does), and prints every fit and the
median ratio. Both versions run with this checkout's virtual environment.

    python benchmarks/bench_versions.py --ref 7ca19a8                  # 100k interactions, 3 rounds
    python benchmarks/bench_versions.py --ref HEAD~3 --rounds 5 --n-interactions 1000000 \\
        --n-users 100000 --n-items 20000
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine, run_child  # noqa: E402

FIT = """
import sys
sys.path.insert(0, {tree!r})
import time
from recommender import Dataset
from recommender.models.fused import FusedRecommender
from recommender.synthetic import generate
data = generate(n_users={n_users}, n_items={n_items}, n_interactions={n_interactions}, seed={seed})
dataset = Dataset.from_frames(data.interactions, data.users, data.items, name="versions")
started = time.perf_counter()
model = FusedRecommender().fit(dataset)
result = {{"fit_s": time.perf_counter() - started, "epochs": len(model.training_history),
           "best_epoch": model._config.get("best_epoch"),
           "epoch_s": sum(h["seconds"] for h in model.training_history) / max(len(model.training_history), 1)}}
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="the earlier commit (anything `git worktree add` accepts)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n-users", type=int, default=10_000)
    parser.add_argument("--n-items", type=int, default=2_000)
    parser.add_argument("--n-interactions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=3, help="seed of the generated data")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", args.ref], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    print(f"Machine: {machine()}")
    print(f"Command: python benchmarks/bench_versions.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"Data: {args.n_interactions:,} interactions, {args.n_users:,} users, {args.n_items:,} items "
          f"(generator seed {args.seed}); FusedRecommender() with defaults\n")
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder) / "earlier"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), commit], cwd=ROOT, check=True)
        try:
            versions = {f"{commit} (earlier)": str(tree), f"{head} (this checkout)": str(ROOT)}
            times: dict[str, list[float]] = {name: [] for name in versions}
            epoch_times: dict[str, list[float]] = {name: [] for name in versions}
            print("| round | version | fit (s) | epochs (best) | s per epoch |")
            print("|---:|---|---:|---|---:|")
            for round_ in range(1, args.rounds + 1):
                for name, path in versions.items():
                    code = FIT.format(tree=path, n_users=args.n_users, n_items=args.n_items,
                                      n_interactions=args.n_interactions, seed=args.seed)
                    result = run_child(code)
                    times[name].append(result["fit_s"])
                    epoch_times[name].append(result["epoch_s"])
                    print(f"| {round_} | {name} | {result['fit_s']:.1f} | {result['epochs']} "
                          f"({result['best_epoch']}) | {result['epoch_s']:.2f} |", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    earlier, now = (float(np.median(values)) for values in times.values())
    print(f"\nMedian fit: {earlier:.1f} s earlier, {now:.1f} s now: {now / earlier:.2f}x "
          f"({json.dumps({name: [round(t, 1) for t in values] for name, values in times.items()})})")
    earlier, now = (float(np.median(values)) for values in epoch_times.values())
    print(f"Median epoch (training steps and validation): {earlier:.2f} s earlier, {now:.2f} s now: "
          f"{now / earlier:.2f}x (the number of epochs depends on early stopping)")


if __name__ == "__main__":
    main()
