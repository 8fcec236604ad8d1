"""Helpers shared by the benchmark scripts: machine description and child-process measurement."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "_data"


def synthetic_dataset(strength: float, n_users: int, n_items: int, n_interactions: int, seed: int):
    """A :class:`recommender.Dataset` of generated data (``recommender.synthetic.generate``)."""
    from recommender import Dataset
    from recommender.synthetic import generate

    data = generate(n_users=n_users, n_items=n_items, n_interactions=n_interactions, profile_strength=strength,
                    seed=seed)
    return Dataset.from_frames(data.interactions, data.users, data.items, name=f"synthetic s={strength}")


def machine() -> str:
    """One line naming the CPU, cores, memory and versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            cpu = next(line.split(":", 1)[1].strip() for line in file if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as file:
            kb = int(next(line.split()[1] for line in file if line.startswith("MemTotal")))
            memory = f", {kb / 1024**2:.0f} GiB RAM"
    except (OSError, StopIteration):
        pass
    import numpy, pandas, torch  # noqa: E401

    return (f"{cpu}, {os.cpu_count()} cores{memory}; Python {platform.python_version()}, numpy {numpy.__version__}, "
            f"pandas {pandas.__version__}, torch {torch.__version__}; {date.today().isoformat()}")


def run_child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it must print one JSON line. Adds ``peak_rss_mb``."""
    wrapper = (
        "import json, resource, sys, time\n"
        f"{code}\n"
        "result['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps(result))\n"
    )
    started = time.perf_counter()
    output = subprocess.run([sys.executable, "-c", wrapper], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    if output.returncode != 0:
        raise RuntimeError(output.stderr[-3000:])
    result = json.loads(output.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


#: The speed runs' generated data (``recommender.synthetic``, generator seed 3): interactions -> (users, items).
SPEED_SIZES = {100_000: (10_000, 2_000), 1_000_000: (100_000, 20_000)}


def speed_dataset(n_interactions: int):
    """The speed runs' data set of ``n_interactions`` (a key of :data:`SPEED_SIZES`; the generator's default
    profile strength, 0.6)."""
    n_users, n_items = SPEED_SIZES[n_interactions]
    return synthetic_dataset(0.6, n_users, n_items, n_interactions, seed=3)


def new_profile_latency_ms(model, dataset, repeats: int = 20) -> float:
    """Median milliseconds of ``recommend_new_users`` for one new profile with three liked items (after one warm-up)."""
    import numpy as np

    profile = dataset.users.iloc[[0]].assign(user_id="new person")
    model.recommend_new_users(profile, k=10)
    latencies = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.recommend_new_users(profile, k=10, histories={"new person": list(dataset.item_ids[:3])})
        latencies.append(time.perf_counter() - started)
    return float(np.median(latencies) * 1000)
