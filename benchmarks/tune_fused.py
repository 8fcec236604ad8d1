"""Scratch script: quick NDCG@10 checks of FusedRecommender against the baselines.

Generates synthetic data (``recommender.synthetic.generate``), makes the evaluation splits
(``recommender.evaluation``) and prints one NDCG@10 table per setting. Baseline results are
cached in ``benchmarks/_data/tune_fused_cache.json`` (keyed by data settings, protocol and model)
so iterating on the fused model only refits the fused model.

Examples
--------
    python benchmarks/tune_fused.py                                  # default data, fused vs baselines
    python benchmarks/tune_fused.py --strength 0.1 0.6 0.9           # three settings
    python benchmarks/tune_fused.py --params '{"dim": 128}' --tag d128
    python benchmarks/tune_fused.py --protocols warm --models fused ease
    python benchmarks/tune_fused.py --threads 1 --split-seeds 0 1 2 --strength 0.1 0.6 0.9  # the results table
    python benchmarks/tune_fused.py --speed --n-users 5000 --n-items 2000 --n-interactions 100000
    python benchmarks/tune_fused.py --speed --n-users 100000 --n-items 20000 --n-interactions 1000000
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import synthetic_dataset as make_dataset  # noqa: E402
from recommender.evaluation.compare import evaluate_model  # noqa: E402
from recommender.evaluation.protocols import make_split  # noqa: E402
from recommender.models import REGISTRY  # noqa: E402
from recommender.models.fused import FusedRecommender  # noqa: E402

CACHE = ROOT / "benchmarks" / "_data" / "tune_fused_cache.json"
BASELINES = ("popularity", "segment_popularity", "profile_knn", "ease", "als", "content_knn")


def load_cache() -> dict:
    try:
        return json.loads(CACHE.read_text())
    except (OSError, ValueError):
        return {}


def save_cache(cache: dict) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps(cache, indent=1, sort_keys=True))


def evaluate(name: str, params: dict, split) -> dict:
    """Fit one model on the split's training data; NDCG@10, fit seconds (and, for fused, training facts)."""
    is_fused = name == "fused"
    model = FusedRecommender(**params) if is_fused else REGISTRY[name]()
    started = time.perf_counter()
    model.fit(split.train)
    entry = {"ndcg": evaluate_model(model, split, k=10).aggregate["ndcg@10"], "fit_s": time.perf_counter() - started}
    if is_fused:
        entry["epochs"] = len(model.training_history)
        entry["best_epoch"] = model._config.get("best_epoch")
        gate = (model.gate_weights(*split.new_user_inputs(slice(0, 200))) if split.new_users
                else model.gate_weights(user_index=split.test_users[:200]))
        entry["gate"] = {k: round(float(v), 2) for k, v in gate.iloc[:, 2:].mean().items()}
    return entry


def run(args: argparse.Namespace) -> None:
    cache = load_cache()
    params = json.loads(args.params)
    fused_name = f"fused{'-' + args.tag if args.tag else ''}"
    for strength in args.strength:
        started = time.perf_counter()
        dataset = make_dataset(strength, args.n_users, args.n_items, args.n_interactions, args.seed)
        print(f"\n== profile_strength={strength}: {dataset.n_users} users, {dataset.n_items} items, "
              f"{dataset.n_interactions} interactions (built in {time.perf_counter() - started:.1f}s)")
        table = {}
        for protocol in args.protocols:
            row = {}
            for split_seed in args.split_seeds:
                split = make_split(dataset, protocol, seed=split_seed)
                for name in args.models:
                    key = (f"{strength}|{args.n_users}|{args.n_items}|{args.n_interactions}|{args.seed}|{protocol}|"
                           f"{name}" + (f"|split{split_seed}" if split_seed != args.seed else ""))
                    is_fused = name == "fused"
                    if not is_fused and key in cache and not args.refresh:
                        entry = cache[key]
                    else:
                        entry = evaluate(name, params, split)
                        if not is_fused:
                            cache[key] = entry
                            save_cache(cache)
                    row.setdefault(fused_name if is_fused else name, []).append(entry)
            row = {name: {"ndcg": float(np.mean([e["ndcg"] for e in entries])),
                          "fit_s": float(np.mean([e["fit_s"] for e in entries])),
                          **{k: v for k, v in entries[0].items() if k not in ("ndcg", "fit_s")}}
                   for name, entries in row.items()}
            table[protocol] = row
        names = [n for n in BASELINES if n in args.models] + ([fused_name] if "fused" in args.models else [])
        print(f"{'protocol':<10}" + "".join(f"{n[:18]:>19}" for n in names))
        for protocol, row in table.items():
            print(f"{protocol:<10}" + "".join(f"{row[n]['ndcg']:>12.4f} ({row[n]['fit_s']:4.1f}s)" if n in row
                                               else f"{'-':>19}" for n in names))
            best = max((row[n]["ndcg"] for n in names if n in row and not n.startswith("fused")), default=np.nan)
            if fused_name in row:
                info = row[fused_name]
                print(f"{'':<10} fused vs best baseline: {info['ndcg'] - best:+.4f}; epochs {info['epochs']} "
                      f"(best {info['best_epoch']}); gate {info['gate']}")


def speed(args: argparse.Namespace) -> None:
    params = json.loads(args.params)
    dataset = make_dataset(0.6, args.n_users, args.n_items, args.n_interactions, args.seed)
    print(dataset)
    model = FusedRecommender(**params)
    started = time.perf_counter()
    model.fit(dataset)
    print(f"fit {time.perf_counter() - started:.1f}s, {len(model.training_history)} epochs, best "
          f"{model._config['best_epoch']}; epoch seconds "
          f"{np.mean([h['seconds'] for h in model.training_history]):.2f}")
    profile = dataset.users.iloc[:1].copy()
    profile.insert(0, "user_id", ["someone"])
    model.recommend_new_users(profile, k=10)
    started = time.perf_counter()
    for _ in range(20):
        model.recommend_new_users(profile, k=10)
    print(f"recommend_new_users (one profile): {(time.perf_counter() - started) / 20 * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strength", type=float, nargs="+", default=[0.6])
    parser.add_argument("--protocols", nargs="+", default=["warm", "cold_user", "few_shot"])
    parser.add_argument("--models", nargs="+", default=list(BASELINES) + ["fused"])
    parser.add_argument("--params", default="{}", help="FusedRecommender keyword arguments as JSON")
    parser.add_argument("--tag", default="")
    parser.add_argument("--n-users", type=int, default=3000)
    parser.add_argument("--n-items", type=int, default=1000)
    parser.add_argument("--n-interactions", type=int, default=60000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument("--split-seeds", type=int, nargs="+", default=[0],
                        help="average over splits made with these seeds (less noise)")
    parser.add_argument("--refresh", action="store_true", help="refit cached baselines")
    parser.add_argument("--speed", action="store_true", help="time one fit and one new-profile recommendation")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for this script (0: torch's default)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # a script may; the library never changes global state
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    speed(args) if args.speed else run(args)


if __name__ == "__main__":
    main()
