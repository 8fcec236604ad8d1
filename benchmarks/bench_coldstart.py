"""How quickly the Cold-start page answers: time per profile of the cold-start analysis functions.

Run: ``.venv/bin/python benchmarks/bench_coldstart.py [--profiles 50] [--max-epochs N] [--device cpu]``

The fused model is trained with its DEFAULTS on the committed sample (``sample_data/``: 3,000
users, 1,000 items, 60,000 ratings); segments come from ``segment_users(model, dataset)`` with
its defaults, the comparison models from ``baseline_models``. Then, for ``--profiles`` random
profiles (seeded: random values seen in training, about one field in ten left unknown or given
a value never seen, half of the people with 1-5 liked items), each call the page makes is timed
separately after a few warm-up calls:

* ``simulate`` of the fused model alone (top-10, explanation, gate weights);
* ``simulate`` as the page calls it (with popularity and segment popularity side by side and
  the segment the person lands in);
* ``change_one_thing`` (two top-10 lists, one attribute changed);
* ``new_item_audience`` by segment and by a profile attribute (a random new item).

The table reports the median and the 90th percentile in milliseconds (target: under 100 ms
per profile). ``--max-epochs`` shortens training for a quick check (the latency does not depend
on how long the model trained; its size does).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import machine  # noqa: E402
from recommender import Dataset  # noqa: E402
from recommender.analysis.coldstart import (baseline_models, change_one_thing, item_form_schema,  # noqa: E402
                                            new_item_audience, profile_form_schema, simulate)
from recommender.analysis.segments import segment_users  # noqa: E402
from recommender.models.device import resolve_device  # noqa: E402
from recommender.models.fused import FusedRecommender  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 100.0
WARM_UP = 3


def random_answers(fields, rng: np.random.Generator, unseen_rate: float = 0.1) -> dict:
    """One filled-in form: random seen values, some left unknown or given a never-seen value."""
    answers = {}
    for spec in fields:
        odd = rng.random() < unseen_rate
        if spec.kind == "select":
            answers[spec.name] = (rng.choice([None, "never seen before"]) if odd or not spec.options
                                  else str(rng.choice(spec.options)))
        elif spec.kind == "number":
            value = rng.uniform(spec.min_value, spec.max_value)
            answers[spec.name] = None if odd else (round(value) if spec.step == 1.0 else float(value))
        elif spec.kind == "multiselect":
            size = int(rng.integers(0, min(3, len(spec.options)) + 1))
            answers[spec.name] = [str(v) for v in rng.choice(spec.options, size=size, replace=False)]
        else:
            answers[spec.name] = ""
    return answers


def timed(function, *args, **kwargs) -> float:
    started = time.perf_counter()
    function(*args, **kwargs)
    return (time.perf_counter() - started) * 1000


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=50, help="random profiles timed (default 50)")
    parser.add_argument("--max-epochs", type=int, default=None, help="cap training epochs (default: the model's)")
    parser.add_argument("--device", default="auto", help="fused model device (default auto)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    folder = ROOT / "sample_data"
    dataset = Dataset.from_files(folder / "interactions.csv", folder / "users.csv", folder / "items.csv",
                                 name="sample")
    settings = {"device": args.device}
    if args.max_epochs is not None:
        settings["max_epochs"] = args.max_epochs
    started = time.perf_counter()
    model = FusedRecommender(**settings).fit(dataset)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    segments = segment_users(model, dataset)
    segment_seconds = time.perf_counter() - started
    baselines = baseline_models(dataset)

    rng = np.random.default_rng(args.seed)
    profile_fields = profile_form_schema(dataset)
    item_fields = item_form_schema(dataset)
    group_columns = [spec.name for spec in profile_fields if spec.kind in ("select", "number")]
    people = []
    for _ in range(WARM_UP + args.profiles):
        answers = random_answers(profile_fields, rng)
        n_liked = int(rng.integers(1, 6)) if rng.random() < 0.5 else 0
        liked = [str(i) for i in rng.choice(dataset.item_ids, size=n_liked, replace=False)]
        changed = profile_fields[int(rng.integers(len(profile_fields)))]
        new_value = random_answers([changed], rng, unseen_rate=0.0)[changed.name]
        item = random_answers(item_fields, rng, unseen_rate=0.0)
        people.append((answers, liked, changed.name, new_value, item, str(rng.choice(group_columns))))

    calls = {
        "simulate (fused alone: top-10, explanation, gate)":
            lambda p: simulate(model, dataset, p[0], liked=p[1], k=10),
        "simulate as the page calls it (+ popularity, segment popularity, segment)":
            lambda p: simulate(model, dataset, p[0], liked=p[1], k=10, compare_models=baselines, segments=segments),
        "change_one_thing (fused, top-10)":
            lambda p: change_one_thing(model, dataset, p[0], p[2], p[3], liked=p[1], k=10),
        "new_item_audience by segment":
            lambda p: new_item_audience(model, dataset, p[4], segments=segments),
        "new_item_audience by a profile attribute":
            lambda p: new_item_audience(model, dataset, p[4], by_attribute=p[5]),
    }
    load_before = os.getloadavg()[0]
    rows = []
    for label, call in calls.items():
        for person in people[:WARM_UP]:
            call(person)
        times = np.array([timed(call, person) for person in people[WARM_UP:]])
        rows.append((label, float(np.median(times)), float(np.percentile(times, 90)), float(times.max())))

    command = " ".join(shlex.quote(part) for part in [".venv/bin/python", "benchmarks/bench_coldstart.py",
                                                       *(argv if argv is not None else sys.argv[1:])])
    print(f"\n### Cold-start page latency (`{command}`)\n")
    print(f"Machine: {machine()}; load average {load_before:.1f} before timing (shared machines inflate times)\n")
    capped = f" except max_epochs={args.max_epochs}" if args.max_epochs is not None else ""
    print(f"Data: sample ({dataset.n_users:,} users, {dataset.n_items:,} items, {dataset.n_interactions:,} "
          f"interactions). Fused model with defaults{capped} on {resolve_device(args.device)}: trained in "
          f"{fit_seconds:.0f} s ({len(model.training_history)} epochs); "
          f"segments ({segments.k}) in {segment_seconds:.1f} s. {args.profiles} random profiles, "
          f"{WARM_UP} warm-up calls each.\n")
    print(f"| call | median ms | p90 ms | max ms | under {TARGET_MS:.0f} ms (median) |")
    print("|---|---:|---:|---:|:---:|")
    for label, median, p90, worst in rows:
        print(f"| {label} | {median:.1f} | {p90:.1f} | {worst:.1f} | {'yes' if median < TARGET_MS else 'no'} |")


if __name__ == "__main__":
    main()
