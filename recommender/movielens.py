"""Importing the MovieLens data sets in the formats they are distributed in.

MovieLens may not be redistributed, so RecoLens ships none of it: point it at a folder you
downloaded (or upload the files in the app) and it reads

* **ML-100K**: ``u.data`` (tab-separated ``user item rating timestamp``), ``u.user``
  (``user|age|gender|occupation|zip``) and ``u.item`` (``item|title|release date|video
  release date|IMDb URL|`` + 19 genre flags), pipe-separated and Latin-1 encoded;
* **ML-1M**: ``ratings.dat``, ``users.dat`` and ``movies.dat``, ``::``-separated, Latin-1,
  with age and occupation stored as codes (decoded here to readable labels);
* **ML-latest(-small)** / ML-20M/25M: ``ratings.csv`` and ``movies.csv`` with headers.

Each becomes an interactions, a users and an items frame ready for
:meth:`recommender.Dataset.from_frames`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Mapping, Union

import numpy as np
import pandas as pd

from .errors import DataError, Problem
from .io import read_table

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
                 "Thriller", "War", "Western"]
ML1M_AGES = {"1": "under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55",
             "56": "56+"}
ML1M_OCCUPATIONS = ["other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
                    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer"]
ITEM_ROLES = {"title": "label", "year": "numeric", "genres": "multilabel"}

FileLike = Union[bytes, BinaryIO, str, os.PathLike]


@dataclass
class MovieLensFrames:
    """The three tables of a MovieLens release, plus its name and the item column roles."""

    name: str
    interactions: pd.DataFrame
    users: pd.DataFrame | None
    items: pd.DataFrame | None
    item_roles: dict = field(default_factory=lambda: dict(ITEM_ROLES))


def _bytes(source: FileLike) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, (str, os.PathLike)):
        return Path(source).read_bytes()
    source.seek(0)
    return source.read()


def _year(text: pd.Series) -> pd.Series:
    return text.astype("string").str.extract(r"(\d{4})\s*\)?\s*$", expand=False)


def _read_ml100k(files: Mapping[str, FileLike]) -> MovieLensFrames:
    interactions = read_table(_bytes(files["u.data"]), name="u.data", sep="\t", quoting=False,
                              header=["user_id", "item_id", "rating", "timestamp"])
    interactions.attrs["source"] = "u.data"
    users = items = None
    if "u.user" in files:
        users = read_table(_bytes(files["u.user"]), name="u.user", sep="|", quoting=False,
                           header=["user_id", "age", "gender", "occupation", "zip_code"])
    if "u.item" in files:
        header = ["item_id", "title", "release_date", "video_release_date", "imdb_url"] + ML100K_GENRES
        raw = read_table(_bytes(files["u.item"]), name="u.item", sep="|", quoting=False, header=header,
                         encoding="latin-1")
        flags = raw[ML100K_GENRES].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
        names = np.asarray(ML100K_GENRES, dtype=object)
        genres = ["|".join(names[row]) for row in flags]  # one row per movie: ~1,700, not per interaction
        items = pd.DataFrame({"item_id": raw["item_id"].to_numpy(), "title": raw["title"].to_numpy(),
                              "year": _year(raw["release_date"]).to_numpy(), "genres": genres},
                             index=raw.index)
        items.attrs.update(raw.attrs)
    return MovieLensFrames("MovieLens 100K", interactions, users, items)


def _read_dat(data: bytes, name: str, header: list[str]) -> pd.DataFrame:
    # "::" is a two-character delimiter; turn it into one the CSV reader accepts.
    text = data.decode("latin-1").replace("::", "\x1f").encode("utf-8")
    return read_table(text, name=name, sep="\x1f", quoting=False, header=header)


def _read_ml1m(files: Mapping[str, FileLike]) -> MovieLensFrames:
    interactions = _read_dat(_bytes(files["ratings.dat"]), "ratings.dat",
                             ["user_id", "item_id", "rating", "timestamp"])
    users = items = None
    if "users.dat" in files:
        users = _read_dat(_bytes(files["users.dat"]), "users.dat",
                          ["user_id", "gender", "age_group", "occupation", "zip_code"])
        users["age_group"] = users["age_group"].map(lambda v: ML1M_AGES.get(v, v))
        codes = pd.to_numeric(users["occupation"], errors="coerce")
        users["occupation"] = [ML1M_OCCUPATIONS[int(c)] if c == c and 0 <= c < len(ML1M_OCCUPATIONS) else None
                               for c in codes]
    if "movies.dat" in files:
        raw = _read_dat(_bytes(files["movies.dat"]), "movies.dat", ["item_id", "title", "genres"])
        items = raw.assign(year=_year(raw["title"]))[["item_id", "title", "year", "genres"]]
        items.attrs.update(raw.attrs)
    return MovieLensFrames("MovieLens 1M", interactions, users, items)


def _read_latest(files: Mapping[str, FileLike]) -> MovieLensFrames:
    interactions = read_table(_bytes(files["ratings.csv"]), name="ratings.csv")
    items = None
    if "movies.csv" in files:
        raw = read_table(_bytes(files["movies.csv"]), name="movies.csv")
        items = raw.assign(year=_year(raw["title"]))
        items["genres"] = items["genres"].replace("(no genres listed)", "")
        items.attrs.update(raw.attrs)
    return MovieLensFrames("MovieLens (latest)", interactions, None, items)


def read_movielens_files(files: Mapping[str, FileLike]) -> MovieLensFrames:
    """Read MovieLens files given as a mapping of file name -> bytes, file object or path.

    The release is recognised by its file names (``u.data``, ``ratings.dat`` or ``ratings.csv``).
    """
    files = {Path(str(name)).name: source for name, source in files.items()}
    if "u.data" in files:
        return _read_ml100k(files)
    if "ratings.dat" in files:
        return _read_ml1m(files)
    if "ratings.csv" in files:
        return _read_latest(files)
    found = ", ".join(sorted(files)) or "no files"
    raise DataError(Problem(
        f"no MovieLens ratings file found (got {found}).",
        fix="Upload u.data (+ u.user, u.item) for ML-100K, or ratings.dat (+ users.dat, movies.dat) for ML-1M."))


def read_movielens(folder: str | os.PathLike) -> MovieLensFrames:
    """Read a MovieLens folder as downloaded (``ml-100k/``, ``ml-1m/`` or ``ml-latest-small/``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(Problem(f"folder not found: {folder}", fix="Give the folder that holds u.data or ratings.dat."))
    wanted = {"u.data", "u.user", "u.item", "ratings.dat", "users.dat", "movies.dat", "ratings.csv", "movies.csv"}
    return read_movielens_files({p.name: p for p in folder.iterdir() if p.name in wanted})
