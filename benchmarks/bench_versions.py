"""Fit time of the fused model: this checkout against an earlier commit, side by side.

This machine's speed drifts by a third over minutes, so a fit time measured today is not comparable
with one from yesterday. This script puts the earlier commit in a temporary ``git worktree`` and fits
the same generated data with both versions, alternating (each version first in every other round:
a round's second fit tends to run slower), each fit in a fresh interpreter (so each pays PyTorch's
first-optimizer import, as a user's first fit does), and prints every fit and the median ratio. Use
an even number of rounds. Both versions run with this checkout's virtual environment.

    python benchmarks/bench_versions.py --ref 7ca19a8                  # 100k interactions, 4 rounds
    python benchmarks/bench_versions.py --ref HEAD~3 --rounds 6 --n-interactions 1000000 \\
        --n-users 100000 --n-items 20000
    python benchmarks/bench_versions.py --ref e6acc8c --per-step   # milliseconds per training step

``--per-step`` times three epochs of training steps instead of whole fits, with every step's
inputs prepared before the epochs start (the batch thread replaced by a list), so the numbers are
the network's forward pass, backward pass and optimizer step alone; ``backward`` is the time
inside ``loss.backward()``. Needs a version with ``_Prefetch`` and ``_train_epoch`` (from e122f81).
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

STEP = """
import sys
sys.path.insert(0, {tree!r})
import itertools, time
import torch
from recommender.models.fused import FusedRecommender
fused = sys.modules[FusedRecommender.__module__]   # the training module: fused.py, or fused/model.py after the split
from recommender import Dataset
from recommender.synthetic import generate
data = generate(n_users={n_users}, n_items={n_items}, n_interactions={n_interactions}, seed={seed})
dataset = Dataset.from_frames(data.interactions, data.users, data.items, name="versions")
EPOCHS, timer = 3, {{"backward": 0.0, "steps": 0.0, "n": 0}}

class Prepared:   # every step's inputs made up front: no batch thread beside the network
    def __init__(self, source, depth=2):
        self.entries = iter(list(itertools.islice(source, EPOCHS * 100 + 5)))
    def __iter__(self):
        return self
    def __next__(self):
        return next(self.entries)
    def close(self):
        pass

fused._Prefetch = Prepared
backward = torch.Tensor.backward
def timed_backward(self, *args, **kwargs):
    started = time.perf_counter()
    backward(self, *args, **kwargs)
    timer["backward"] += time.perf_counter() - started
    timer["n"] += 1
torch.Tensor.backward = timed_backward
train_epoch = fused.FusedRecommender._train_epoch
def timed_epoch(self, *args):
    started = time.perf_counter()
    loss = train_epoch(self, *args)
    timer["steps"] += time.perf_counter() - started
    return loss
fused.FusedRecommender._train_epoch = timed_epoch
fused.FusedRecommender(max_epochs=EPOCHS, warmup_epochs=0, patience=99).fit(dataset)
result = {{"step_ms": timer["steps"] / timer["n"] * 1000, "backward_ms": timer["backward"] / timer["n"] * 1000}}
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="the earlier commit (anything `git worktree add` accepts)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n-users", type=int, default=10_000)
    parser.add_argument("--n-items", type=int, default=2_000)
    parser.add_argument("--n-interactions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=3, help="seed of the generated data")
    parser.add_argument("--per-step", action="store_true",
                        help="milliseconds per training step (inputs prepared beforehand) instead of whole fits")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", args.ref], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    print(f"Machine: {machine()}")
    print(f"Command: python benchmarks/bench_versions.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"Data: {args.n_interactions:,} interactions, {args.n_users:,} users, {args.n_items:,} items "
          f"(generator seed {args.seed}); FusedRecommender() with defaults\n")
    if args.per_step:
        print("Three epochs of training steps per run, inputs prepared beforehand\n")
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder) / "earlier"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), commit], cwd=ROOT, check=True)
        try:
            versions = {f"{commit} (earlier)": str(tree), f"{head} (this checkout)": str(ROOT)}
            times: dict[str, list[float]] = {name: [] for name in versions}
            epoch_times: dict[str, list[float]] = {name: [] for name in versions}
            if args.per_step:
                print("| round | version | ms per step | of which backward |")
                print("|---:|---|---:|---:|")
            else:
                print("| round | version | fit (s) | epochs (best) | s per epoch |")
                print("|---:|---|---:|---|---:|")
            for round_ in range(1, args.rounds + 1):
                # The second fit of a round ran about 5 % slower here whatever the code (see
                # RESULTS.md, eighth stop), so odd rounds fit the earlier version first, even ones last.
                order = list(versions.items())
                for name, path in (order if round_ % 2 else order[::-1]):
                    code = (STEP if args.per_step else FIT).format(
                        tree=path, n_users=args.n_users, n_items=args.n_items,
                        n_interactions=args.n_interactions, seed=args.seed)
                    result = run_child(code)
                    if args.per_step:
                        times[name].append(result["step_ms"])
                        print(f"| {round_} | {name} | {result['step_ms']:.1f} | {result['backward_ms']:.1f} |",
                              flush=True)
                        continue
                    times[name].append(result["fit_s"])
                    epoch_times[name].append(result["epoch_s"])
                    print(f"| {round_} | {name} | {result['fit_s']:.1f} | {result['epochs']} "
                          f"({result['best_epoch']}) | {result['epoch_s']:.2f} |", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    earlier, now = (float(np.median(values)) for values in times.values())
    if args.per_step:
        print(f"\nMedian step: {earlier:.1f} ms earlier, {now:.1f} ms now: {now / earlier:.2f}x")
        return
    print(f"\nMedian fit: {earlier:.1f} s earlier, {now:.1f} s now: {now / earlier:.2f}x "
          f"({json.dumps({name: [round(t, 1) for t in values] for name, values in times.items()})})")
    earlier, now = (float(np.median(values)) for values in epoch_times.values())
    print(f"Median epoch (training steps and validation): {earlier:.2f} s earlier, {now:.2f} s now: "
          f"{now / earlier:.2f}x (the number of epochs depends on early stopping)")


if __name__ == "__main__":
    main()
