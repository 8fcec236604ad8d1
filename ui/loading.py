"""Loading data into the session: the bundled sample, uploaded tables, uploaded MovieLens files.

The rule every loader follows: build the new :class:`~recommender.dataset.Dataset`
completely first, and only then replace the session's dataset. A load that fails leaves the
previous dataset (and its trained models) in place and records the problems with
:func:`ui.state.set_load_problems`, which the Data page shows as a list. Nothing here lets an
exception reach the page.

Only the *bundled sample's* parsed frames are cached across sessions (``st.cache_data``
returns a fresh copy to every caller, with ``max_entries`` and ``ttl``); uploads are kept
per session in ``st.session_state``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import streamlit as st

from recommender.dataset import Dataset
from recommender.errors import DataError, Problem
from recommender.io import read_table
from ui import state

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_FOLDER = ROOT / "sample_data"
SAMPLE_FILES = ("interactions.csv", "users.csv", "items.csv")
SAMPLE_NAME = "RecoLens sample shop (synthetic)"
SAMPLE_DESCRIPTION = "Bundled synthetic sample (sample_data/): an online shop with planted customer segments"
#: Upload kinds accepted for tables.
TABLE_TYPES = ["csv", "tsv", "txt", "parquet", "pq"]
#: File types of MovieLens releases (u.data, u.user, u.item, *.dat, *.csv).
MOVIELENS_TYPES = ["data", "user", "item", "dat", "csv"]
_UPLOAD_CACHE_KEY = "recolens_upload_tables"


# ---------------------------------------------------------------------- the bundled sample
@st.cache_data(max_entries=1, ttl=6 * 3600, show_spinner=False)
def _sample_frames(folder: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The sample's three tables (shared read-only across sessions: cache_data hands out copies).

    Generated on the fly with the same defaults when the CSV files are missing.
    """
    paths = [Path(folder) / name for name in SAMPLE_FILES]
    if all(path.is_file() for path in paths):
        interactions, users, items = (read_table(path) for path in paths)
        return interactions, users, items
    from recommender.synthetic import generate

    logger.warning("sample_data/ is incomplete; generating the sample instead")
    data = generate()
    frames = []
    for name, frame in zip(SAMPLE_FILES, (data.interactions, data.users, data.items)):
        frame = frame.astype("string")
        frame.attrs["source"] = name
        frames.append(frame)
    return tuple(frames)


def build_sample() -> Dataset:
    """The bundled sample as a new :class:`Dataset` (a fresh object for every session)."""
    interactions, users, items = _sample_frames(str(SAMPLE_FOLDER))
    return Dataset.from_frames(interactions, users, items, name=SAMPLE_NAME)


def load_sample() -> Dataset | None:
    """Load the bundled sample into the session (see :func:`load_dataset`)."""
    return load_dataset(build_sample, SAMPLE_DESCRIPTION)


def ensure_dataset() -> Dataset | None:
    """The session's dataset, loading the bundled sample on a session's first visit.

    If the sample cannot be loaded, the problems are recorded (the Data page shows them)
    and ``None`` is returned; the sample is not retried on every rerun.
    """
    dataset = state.get_dataset()
    if dataset is None and not st.session_state.get(state.SAMPLE_FAILED_KEY):
        with st.spinner("Loading the bundled sample..."):
            dataset = load_sample()
        if dataset is None:
            st.session_state[state.SAMPLE_FAILED_KEY] = True
    return dataset


# ---------------------------------------------------------------------- the safe load step
def load_dataset(build: Callable[[], Dataset], description: str) -> Dataset | None:
    """Build a dataset and, only if that succeeds, make it the session's dataset.

    Parameters
    ----------
    build : callable
        Returns a :class:`Dataset`; may raise :class:`DataError` (or anything else).
    description : str
        Where the data came from, shown in the sidebar and on the home page.

    Returns
    -------
    Dataset or None
        The new dataset, or ``None`` when it failed: the old dataset and models stay and
        :func:`ui.state.get_load_problems` lists what went wrong.
    """
    try:
        dataset = build()
    except DataError as error:
        state.set_load_problems(error.problems)
        return None
    except MemoryError:
        state.set_load_problems([Problem(
            "the data is too large to load in the memory of this server.",
            fix="Upload a sample of the data, or use the Python library on a larger machine.")])
        return None
    except Exception as error:  # noqa: BLE001 - the page must never show a traceback
        logger.exception("Unexpected error while loading %s", description)
        state.set_load_problems([Problem(
            f"unexpected error while loading the data ({type(error).__name__}: {error}).",
            fix="Check the files and the column choices. If it keeps happening, report it with the file.")])
        return None
    state.set_dataset(dataset, description)
    return dataset


# ---------------------------------------------------------------------- uploaded tables
def upload_limit_mb() -> int:
    """The upload limit in MB (``server.maxUploadSize`` in ``.streamlit/config.toml``)."""
    return int(st.get_option("server.maxUploadSize"))


def read_upload(file: Any, slot: str, *, sep: str | None = None, encoding: str | None = None) -> pd.DataFrame:
    """Read one uploaded table (CSV, TSV or Parquet); raises :class:`DataError`.

    Kept per session: the same file with the same options is read only once, not on every
    rerun (the latest read of each upload ``slot``, e.g. ``"interactions"``, is kept).
    """
    name = getattr(file, "name", None) or "the uploaded file"
    key = (getattr(file, "file_id", None) or id(file), name, getattr(file, "size", None), sep, encoding)
    cache = st.session_state.setdefault(_UPLOAD_CACHE_KEY, {})
    cached = cache.get(slot)
    if cached is not None and cached[0] == key:
        outcome = cached[1]
    else:
        try:
            outcome = read_table(file, name=name, sep=sep, encoding=encoding,
                                 max_bytes=upload_limit_mb() * 1024**2)
        except DataError as error:
            outcome = error
        cache[slot] = (key, outcome)
    if isinstance(outcome, DataError):
        raise DataError(outcome.problems)
    return outcome


def forget_uploads() -> None:
    """Drop the per-session copies of uploaded tables (after a successful load)."""
    st.session_state.pop(_UPLOAD_CACHE_KEY, None)


def build_from_tables(interactions: pd.DataFrame, users: pd.DataFrame | None, items: pd.DataFrame | None, *,
                      columns: Mapping[str, str | None], user_id_column: str | None = None,
                      item_id_column: str | None = None, user_roles: Mapping[str, str] | None = None,
                      item_roles: Mapping[str, str] | None = None, name: str = "uploaded data") -> Dataset:
    """Validate uploaded tables with the mapping and roles the person chose."""
    return Dataset.from_frames(interactions, users, items, columns=dict(columns), user_id_column=user_id_column,
                               item_id_column=item_id_column, user_roles=user_roles, item_roles=item_roles,
                               name=name)


def build_movielens(files: Sequence[Any]) -> Dataset:
    """A dataset from uploaded MovieLens files (ML-100K ``u.*`` or ML-1M ``*.dat``).

    Raises
    ------
    DataError
        No ratings file among the uploads, or a file that cannot be read.
    """
    try:
        from recommender.movielens import read_movielens_files
    except ImportError:
        raise DataError(Problem("MovieLens import is not available in this version of RecoLens.",
                                fix="Upload the files as your own tables instead.")) from None
    limit = upload_limit_mb() * 1024**2
    too_big = [f for f in files if (getattr(f, "size", 0) or 0) > limit]
    if too_big:
        raise DataError([Problem(f"the file is larger than the upload limit of {upload_limit_mb()} MB.",
                                 file=getattr(f, "name", None)) for f in too_big])
    frames = read_movielens_files({getattr(f, "name", "file"): f for f in files})
    return Dataset.from_frames(frames.interactions, frames.users, frames.items, item_roles=frames.item_roles,
                               name=frames.name)
