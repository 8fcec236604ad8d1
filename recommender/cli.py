"""Command line: evaluate models, train and save one, or ask a saved one for recommendations.

Examples
--------
::

    python -m recommender evaluate --interactions ratings.csv --users users.csv --items items.csv \\
        --protocol cold_user --k 10 --models popularity,fused
    python -m recommender evaluate --movielens ml-100k --protocol warm --json
    python -m recommender train --interactions ratings.csv --users users.csv --model fused --out shop.recolens
    python -m recommender recommend --bundle shop.recolens --users U00001,U00002 --k 5
    python -m recommender recommend --bundle shop.recolens --profile age=30 gender=F region=North \\
        --liked P0001,P0002

Bad input prints the problems found (file, column, lines, what to do) to stderr and exits
with status 2, without a traceback; a model whose training fails exits with status 1.
Progress goes to stderr, results to stdout.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import math
import sys
import textwrap
from typing import Sequence, TextIO

import numpy as np
import pandas as pd

from .dataset import Dataset
from .errors import BundleError, DataError, ModelFitError
from .evaluation.compare import ComparisonResult, compare_models, metric_label
from .evaluation.protocols import PROTOCOLS, PROTOCOL_DESCRIPTIONS
from .models import REGISTRY, Recommender

logger = logging.getLogger(__name__)

#: Exit status for bad input (data, bundle, ids, arguments), as argparse uses.
EXIT_INPUT = 2
#: Exit status when a model fails to train.
EXIT_FIT = 1

#: Protocol options the CLI exposes, and the protocols each applies to.
_PROTOCOL_OPTIONS = {
    "test_fraction": ("warm", "temporal"),
    "min_interactions": ("warm", "temporal"),
    "user_fraction": ("cold_user", "few_shot"),
    "n_revealed": ("few_shot",),
    "item_fraction": ("cold_item",),
}


class InputError(Exception):
    """A problem with what the user typed (reported like a data error, exit status 2)."""


# ---------------------------------------------------------------------- output helpers
class Progress:
    """A one-line progress display on stderr, fed by :func:`compare_models`'s callback."""

    def __init__(self, stream: TextIO, enabled: bool = True):
        self.stream = stream
        self.enabled = enabled
        self.interactive = enabled and hasattr(stream, "isatty") and stream.isatty()
        self._width = 0

    def __call__(self, message: str, step: int, n_steps: int) -> None:
        if not self.enabled:
            return
        line = f"[{step}/{n_steps}] {message}"
        if self.interactive:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
            if step >= n_steps:
                self.stream.write("\n")
        elif ": epoch" not in message:  # a log file gets stages, not every epoch
            self.stream.write(line + "\n")
        self.stream.flush()


def _format_value(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "-" if not math.isfinite(value) else f"{value:.4f}"
    return str(value)


def format_table(frame: pd.DataFrame, index_label: str | None = None) -> str:
    """A plain-text table with aligned columns (numbers right-aligned, 4 decimals)."""
    label = index_label or frame.index.name or ""
    header = [label] + [str(c) for c in frame.columns]
    body = [[str(index)] + [_format_value(v) for v in row] for index, row in zip(frame.index, frame.itertuples(
        index=False))]
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    lines = []
    for row in [header] + body:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _print_problems(error: Exception, stream: TextIO) -> None:
    problems = getattr(error, "problems", None)
    if problems:
        stream.write(f"error: {len(problems)} problem(s) with the input:\n")
        for problem in problems:
            stream.write(f"  - {problem}\n")
    else:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        stream.write(f"error: {message}\n")


def _to_json(data) -> str:
    def default(value):
        if isinstance(value, (np.integer,)):
            return int(value)
        if isinstance(value, (np.floating,)):
            return None if not math.isfinite(value) else float(value)
        if isinstance(value, np.ndarray):
            return value.tolist()
        return str(value)

    return json.dumps(data, indent=2, default=default, allow_nan=False)


# ---------------------------------------------------------------------- arguments
def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data (either --interactions or --movielens)")
    group.add_argument("--interactions", metavar="FILE", help="CSV/TSV/Parquet of user, item[, rating, timestamp]")
    group.add_argument("--users", metavar="FILE", help="profile table: user id + attribute columns")
    group.add_argument("--items", metavar="FILE", help="item table: item id + content columns")
    group.add_argument("--movielens", metavar="DIR", help="a MovieLens folder (ml-100k, ml-1m, ml-latest-small)")
    group.add_argument("--sep", help="delimiter of the interactions file (guessed by default)")
    group.add_argument("--encoding", help="text encoding of the files (UTF-8 by default)")


def _model_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in REGISTRY]
    if not names:
        raise argparse.ArgumentTypeError("give at least one model name")
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model(s) {', '.join(unknown)}; available: "
                                         f"{', '.join(sorted(REGISTRY))}")
    return list(dict.fromkeys(names))


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1 (exclusive)")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def _relevance(text: str):
    if text in ("auto", "all"):
        return "auto" if text == "auto" else None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use a rating such as 4, 'auto' or 'all'") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recommender",
                                     description="RecoLens: profile-aware recommendation analysis.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    evaluate = commands.add_parser("evaluate", help="compare models on a train/test protocol",
                                   description="Fit models on one split and print a comparison table.")
    _add_data_arguments(evaluate)
    protocols = "; ".join(f"{name}: {text}" for name, text in PROTOCOL_DESCRIPTIONS.items())
    # argparse formats help texts with %: the descriptions' "20%" must reach it as "20%%".
    evaluate.add_argument("--protocol", choices=PROTOCOLS, default="warm", help=protocols.replace("%", "%%"))
    evaluate.add_argument("--k", type=_positive_int, default=10, help="list length (default 10)")
    evaluate.add_argument("--models", type=_model_names, default=None,
                          help=f"comma-separated, from: {', '.join(sorted(REGISTRY))} (default: all)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the split and the models (default 0)")
    evaluate.add_argument("--test-fraction", type=_fraction, help="warm/temporal: share of each user's "
                          "interactions held out (default 0.2)")
    evaluate.add_argument("--min-interactions", type=_positive_int, help="warm/temporal: users with fewer "
                          "interactions are not tested (default 3)")
    evaluate.add_argument("--user-fraction", type=_fraction, help="cold_user/few_shot: share of users held out "
                          "(default 0.1)")
    evaluate.add_argument("--n-revealed", type=_non_negative_int,
                          help="few_shot: interactions revealed per new user (default 3)")
    evaluate.add_argument("--item-fraction", type=_fraction, help="cold_item: share of items held out "
                          "(default 0.1)")
    evaluate.add_argument("--relevance", type=_relevance, default="auto",
                          help="rating from which a held-out item counts as relevant: a number, 'auto' "
                          "(0.7 x max rating for explicit ratings) or 'all'")
    evaluate.add_argument("--breakdown", metavar="ATTRS", default="",
                          help="comma-separated attributes to break NDCG down by (e.g. activity,gender)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.add_argument("--quiet", action="store_true", help="no progress on stderr")

    train = commands.add_parser("train", help="train one model on all the data and save a bundle")
    _add_data_arguments(train)
    train.add_argument("--model", required=True, choices=sorted(REGISTRY), help="model name")
    train.add_argument("--out", required=True, metavar="BUNDLE", help="where to save (a .recolens file)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--quiet", action="store_true", help="no progress on stderr")

    recommend = commands.add_parser("recommend", help="recommendations from a saved bundle")
    recommend.add_argument("--bundle", required=True, metavar="BUNDLE")
    who = recommend.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", metavar="IDS", help="comma-separated user ids from the training data")
    who.add_argument("--profile", nargs="+", metavar="COLUMN=VALUE",
                     help="a new person's profile, e.g. age=30 gender=F region=North")
    recommend.add_argument("--liked", metavar="ITEM_IDS", help="with --profile: items the person already liked")
    recommend.add_argument("--k", type=_positive_int, default=10)
    recommend.add_argument("--json", action="store_true", help="print JSON instead of a table")

    commands.add_parser("models", help="list the available models")
    return parser


# ---------------------------------------------------------------------- commands
def _load_dataset(args) -> Dataset:
    if bool(args.interactions) == bool(args.movielens):
        raise InputError("give either --interactions FILE or --movielens DIR (one of them).")
    if args.movielens:
        if args.users or args.items:
            raise InputError("--users/--items cannot be combined with --movielens (the folder has them).")
        return Dataset.from_movielens(args.movielens)
    return Dataset.from_files(args.interactions, args.users, args.items, encoding=args.encoding, sep=args.sep)


def _report_warnings(dataset: Dataset, stream: TextIO) -> None:
    for problem in dataset.report.warnings:
        stream.write(f"warning: {problem}\n")


def _factory(name: str, seed: int):
    cls = REGISTRY[name]
    parameters = inspect.signature(cls).parameters
    for key in ("seed", "random_state"):
        if key in parameters:
            return lambda: cls(**{key: seed})
    return cls


def _protocol_options(args) -> dict:
    options = {"relevance": args.relevance}
    for option, protocols in _PROTOCOL_OPTIONS.items():
        value = getattr(args, option)
        if value is None:
            continue
        if args.protocol not in protocols:
            flag = "--" + option.replace("_", "-")
            raise InputError(f"{flag} applies to the {' and '.join(protocols)} protocol(s), not {args.protocol}.")
        options[option] = value
    return options


def _evaluate(args, out: TextIO, err: TextIO) -> int:
    options = _protocol_options(args)
    dataset = _load_dataset(args)
    _report_warnings(dataset, err)
    names = args.models or sorted(REGISTRY)
    factories = {name: _factory(name, args.seed) for name in names}
    progress = Progress(err, enabled=not args.quiet)
    result = compare_models(dataset, factories, protocol=args.protocol, k=args.k, seed=args.seed,
                            callback=progress, **options)
    breakdowns = [a.strip() for a in args.breakdown.split(",") if a.strip()]
    unknown = [a for a in breakdowns if a not in result.attributes]
    if unknown:
        raise InputError(f"cannot break down by {', '.join(unknown)}; choose from {', '.join(result.attributes)}.")
    if args.json:
        data = result.to_dict()
        data["breakdowns"] = {a: _breakdown_records(result, a) for a in breakdowns}
        out.write(_to_json(data) + "\n")
        return 0
    out.write(_result_text(result, breakdowns) + "\n")
    return 0


def _breakdown_records(result: ComparisonResult, attribute: str) -> list[dict]:
    table = result.breakdown(attribute)
    return [{attribute: str(value), **{c: row[c] for c in table.columns}} for value, row in table.iterrows()]


def _result_text(result: ComparisonResult, breakdowns: Sequence[str]) -> str:
    split = result.split
    table = result.table.copy()
    table.columns = [metric_label(c) for c in table.columns]
    table["fit s"] = [result.fit_seconds.get(name, float("nan")) for name in table.index]
    parts = [f"Protocol {split.kind}: {split.description}. {split.n_test_users:,} test users, "
             f"{split.train.n_interactions:,} training interactions, top {result.k}"
             + (f", relevant = rating >= {split.relevance_threshold:g}" if split.relevance_threshold else "") + ".",
             "", format_table(table, "model")]
    for attribute in breakdowns:
        breakdown = result.breakdown(attribute)
        title = f"{metric_label(result.primary_metric)} by {attribute}"
        if breakdown.attrs.get("suppressed_groups"):
            title += (f" ({breakdown.attrs['suppressed_groups']} group(s) under {result.min_group_size} "
                      "users not shown)")
        parts += ["", title, format_table(breakdown, attribute)]
    for name, message in result.errors.items():
        parts += ["", f"{name} could not be trained: {message}"]
    parts += ["", textwrap.fill(result.summary(), width=100)]
    return "\n".join(parts)


def _train(args, out: TextIO, err: TextIO) -> int:
    dataset = _load_dataset(args)
    _report_warnings(dataset, err)
    model = _factory(args.model, args.seed)()
    progress = Progress(err, enabled=not args.quiet)

    def on_epoch(epoch, losses=None, metrics=None):
        loss = ", ".join(f"{k} {v:.4g}" for k, v in (losses or {}).items())
        progress(f"training {args.model}: epoch {epoch}" + (f" ({loss})" if loss else ""), 0, 1)
        return None

    progress(f"training {args.model} on {dataset.n_interactions:,} interactions", 0, 1)
    model.fit(dataset, callback=on_epoch)
    path = model.save(args.out)
    progress("done", 1, 1)
    out.write(f"saved {args.model} ({dataset.n_users:,} users, {dataset.n_items:,} items) to {path}\n")
    return 0


def _recommend(args, out: TextIO, err: TextIO) -> int:
    model = Recommender.load(args.bundle)
    dataset = model.dataset
    if args.users:
        if args.liked:
            raise InputError("--liked goes with --profile (known users' histories are in the bundle).")
        ids = [u.strip() for u in args.users.split(",") if u.strip()]
        frame = model.recommend(ids, k=args.k)
    else:
        profile = {}
        for token in args.profile:
            column, sep, value = token.partition("=")
            if not sep or not column.strip():
                raise InputError(f"--profile expects COLUMN=VALUE, got {token!r}.")
            profile[column.strip()] = value.strip()
        known = list(dataset.profile_columns)
        unknown = [c for c in profile if c not in known]
        if unknown:
            raise InputError(f"unknown profile column(s) {', '.join(unknown)}; this model knows "
                             f"{', '.join(known) or 'no profile columns'}.")
        people = pd.DataFrame([{"user_id": "profile", **profile}])
        histories = None
        if args.liked:
            histories = {"profile": [i.strip() for i in args.liked.split(",") if i.strip()]}
        frame = model.recommend_new_users(people, k=args.k, histories=histories)
    if len(frame):
        frame.insert(3, "title", dataset.item_labels(dataset.item_indices(frame["item_id"].tolist())))
    if args.json:
        out.write(_to_json(frame.to_dict(orient="records")) + "\n")
    else:
        out.write(format_table(frame.set_index("user_id"), "user_id") + "\n")
    return 0


def _models(args, out: TextIO, err: TextIO) -> int:
    for name in sorted(REGISTRY):
        cls = REGISTRY[name]
        doc = (inspect.getdoc(cls) or "").splitlines()
        out.write(f"{name:<14} {doc[0] if doc else ''}\n")
    return 0


_COMMANDS = {"evaluate": _evaluate, "train": _train, "recommend": _recommend, "models": _models}


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 training failed, 2 bad input)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse printed the help or the usage message
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=err,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return _COMMANDS[args.command](args, out, err)
    except (DataError, BundleError, InputError, KeyError) as error:
        _print_problems(error, err)
        return EXIT_INPUT
    except ModelFitError as error:
        err.write(f"error: training failed: {error}\n")
        return EXIT_FIT
