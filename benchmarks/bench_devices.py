"""The fused model on each device present, side by side in one run: fit and epoch times, memory, quality.

Run: ``python benchmarks/bench_devices.py [--devices cpu,cuda] [--sizes 100000,1000000] [--quality]``

For each size, the same generated data as ``bench_models.py --speed`` (``recommender.synthetic``,
seed 3) is fitted with the fused model's defaults and ``seed=0`` on each device in turn. The table
gives the whole fit, the number of epochs, the median epoch (one pass over the training users plus
the validation, from ``training_history``), the process's peak RSS so far and, on CUDA, the peak
GPU memory PyTorch allocated. ``--quality`` also fits the fused model on the sample data on each
device and evaluates it on three protocols (split seed 0), so a device that trains differently
shows up as a different NDCG@10, not only as a different time.

Devices missing on this machine are skipped with a note. This is the script that measured the
GPU figures in ``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.bench_models import build  # noqa: E402
from benchmarks.common import SPEED_SIZES, machine, new_profile_latency_ms, speed_dataset  # noqa: E402
from recommender import Dataset, FusedRecommender  # noqa: E402
from recommender.models.device import available_devices  # noqa: E402

QUALITY_PROTOCOLS = ("warm", "cold_user", "few_shot")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def fit_row(dataset: Dataset, device: str) -> str:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    synchronise(device)
    started = time.perf_counter()
    model = FusedRecommender(device=device, seed=0).fit(dataset)
    synchronise(device)
    fit_s = time.perf_counter() - started
    history = model.training_history
    epochs = [row["seconds"] for row in history]
    best = max((row.get("val_ndcg@10", np.nan) for row in history), default=np.nan)
    latency = new_profile_latency_ms(model, dataset)
    gpu = (f"{torch.cuda.max_memory_allocated() / 1024**3:.2f}" if device.startswith("cuda") else "-")
    return (f"| {dataset.n_interactions:,} | {device} | {fit_s:.1f} | {len(epochs)} | {np.median(epochs):.2f} | "
            f"{best:.4f} | {latency:.1f} | {peak_rss_gb():.2f} | {gpu} |")


def speed(devices, sizes) -> None:
    print("\n### Fused fit (defaults, seed 0) on each device\n")
    print("| interactions | device | fit (s) | epochs | median epoch (s) | best val NDCG@10 | new profile (ms) "
          "| peak RSS so far (GB) | peak GPU memory (GB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        dataset = speed_dataset(size)
        for device in devices:
            try:
                print(fit_row(dataset, device), flush=True)
            except Exception:                     # one device failing must not hide the others' numbers
                print(f"| {size:,} | {device} | failed | | | | | | |", flush=True)
                traceback.print_exc()


def quality(devices) -> None:
    from recommender.evaluation import compare_models

    dataset = build("sample")
    print("\n### NDCG@10 of the fused model trained on each device (sample data, split seed 0)\n")
    print("| protocol | " + " | ".join(devices) + " |")
    print("|---|" + "---|" * len(devices))
    for protocol in QUALITY_PROTOCOLS:
        factories = {device: (lambda device=device: FusedRecommender(device=device, seed=0)) for device in devices}
        result = compare_models(dataset, factories, protocol=protocol, k=10, seed=0)
        for name, error in result.errors.items():
            print(f"error: {name} on {protocol}: {error}", file=sys.stderr)
        cells = [f"{result.table.loc[d, 'ndcg@10']:.4f}" if d in result.table.index else "failed" for d in devices]
        print(f"| {protocol} | " + " | ".join(cells) + " |", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated; missing ones are skipped")
    parser.add_argument("--sizes", default="100000,1000000", help=f"interactions, among {sorted(SPEED_SIZES)}")
    parser.add_argument("--quality", action="store_true", help="also NDCG@10 on the sample data per device")
    args = parser.parse_args(argv)
    present = set(available_devices())
    devices = [d for d in args.devices.split(",") if d in present]
    for missing in sorted(set(args.devices.split(",")) - present):
        print(f"note: no {missing} device here, skipped", file=sys.stderr)
    print(f"Machine: {machine()}")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}")
    print(f"Command: python benchmarks/bench_devices.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    sizes = [int(s) for s in args.sizes.split(",")]
    unknown = [s for s in sizes if s not in SPEED_SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose among {sorted(SPEED_SIZES)}")
    if args.quality:
        quality(devices)
    speed(devices, sizes)


if __name__ == "__main__":
    main()
