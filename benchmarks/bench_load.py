"""Loading and validating a generated 1,000,000-interaction CSV with profiles and item features.

Run: ``.venv/bin/python benchmarks/bench_load.py [--interactions 1000000]``

Each measurement runs in a fresh interpreter so peak memory (max RSS) is its own. Side by side:
RecoLens' ``Dataset.from_files`` (read + validate + index + encode features) against a plain
``pandas.read_csv`` of the same three files, and the import baseline of each process.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DATA, machine, run_child  # noqa: E402


def ensure_files(n_interactions: int) -> Path:
    folder = DATA / f"load_{n_interactions}"
    if not (folder / "interactions.csv").exists():
        from recommender.synthetic import write_sample

        n_users = max(1000, n_interactions // 10)
        write_sample(folder, n_users=n_users, n_items=max(500, n_interactions // 50),
                     n_interactions=n_interactions, seed=1)
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    folder = ensure_files(args.interactions)
    files = [str(folder / f"{name}.csv") for name in ("interactions", "users", "items")]
    size_mb = sum(Path(f).stat().st_size for f in files) / 1024**2

    imports = run_child("import recommender.dataset, pandas\nresult = {}")
    recolens = run_child(
        "from recommender import Dataset\n"
        "started = time.perf_counter()\n"
        f"ds = Dataset.from_files(*{files!r})\n"
        "_ = ds.matrix, ds.user_features, ds.item_features, ds.behaviour_features\n"
        "result = {'seconds': time.perf_counter() - started, 'repr': repr(ds),\n"
        "          'warnings': len(ds.report.warnings)}")
    pandas = run_child(
        "import pandas as pd\n"
        "started = time.perf_counter()\n"
        f"frames = [pd.read_csv(f) for f in {files!r}]\n"
        "result = {'seconds': time.perf_counter() - started, 'rows': [len(f) for f in frames]}")

    print(f"Machine: {machine()}")
    print(f"Command: .venv/bin/python benchmarks/bench_load.py --interactions {args.interactions}")
    print(f"Files: {size_mb:.1f} MB ({args.interactions:,} interactions, {pandas['rows'][1]:,} users, "
          f"{pandas['rows'][2]:,} items)\n")
    print("| step | wall time (s) | peak RSS (MB) | RSS above imports (MB) |")
    print("|---|---|---|---|")
    print(f"| imports only | - | {imports['peak_rss_mb']:.0f} | 0 |")
    for name, result in (("RecoLens Dataset.from_files (read, validate, index, encode)", recolens),
                         ("pandas.read_csv of the same files (no validation)", pandas)):
        print(f"| {name} | {result['seconds']:.2f} | {result['peak_rss_mb']:.0f} | "
              f"{result['peak_rss_mb'] - imports['peak_rss_mb']:.0f} |")
    print(f"\nRatio RecoLens / pandas.read_csv: {recolens['seconds'] / pandas['seconds']:.2f}x time, "
          f"{recolens['peak_rss_mb'] / pandas['peak_rss_mb']:.2f}x peak memory")
    print(f"\n{recolens['repr']}")


if __name__ == "__main__":
    main()
