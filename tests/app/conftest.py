"""Shared fixtures for the Streamlit page tests (``streamlit.testing.v1.AppTest``).

Page authors: use the ``open_page`` fixture::

    def test_train_page(open_page, small_dataset):
        at = open_page("pages/2_Train.py", dataset=small_dataset)
        assert not at.exception

``open_page(page)`` starts the app from ``app.py`` (so page links resolve), runs it, then
switches to ``page`` and runs that. With ``dataset=...`` the dataset is put into the session
before the first run (no sample loading, fast); without it the session loads the bundled
sample like a first visit in the browser. ``models={"name": model}`` pre-trains the session.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import pytest
from streamlit.testing.v1 import AppTest

from recommender import Dataset
from recommender.synthetic import generate
from ui import state

ROOT = Path(__file__).resolve().parents[2]
#: Seconds one script run may take (the first run imports the libraries and loads the sample).
TIMEOUT = 60


def make_app(page: str | None = None, *, dataset: Dataset | None = None, description: str = "test dataset",
             models: Mapping[str, Any] | None = None, session: Mapping[str, Any] | None = None) -> AppTest:
    """An ``AppTest`` of ``app.py``, run once, then switched to ``page`` (relative to the root) and run."""
    at = AppTest.from_file(ROOT / "app.py", default_timeout=TIMEOUT)
    if dataset is not None:
        at.session_state[state.DATASET_KEY] = dataset
        at.session_state[state.DESCRIPTION_KEY] = description
        at.session_state[state.VERSION_KEY] = 1
    if models:
        at.session_state[state.MODELS_KEY] = dict(models)
    for key, value in (session or {}).items():
        at.session_state[key] = value
    at.run()
    if page is not None:
        at.switch_page(page).run()
    return at


@pytest.fixture
def open_page() -> Callable[..., AppTest]:
    """``open_page(page=None, dataset=None, description=..., models=None, session=None) -> AppTest``."""
    return make_app


@pytest.fixture(scope="session")
def small_dataset() -> Dataset:
    """A small synthetic shop (200 users, 80 items, ~2,000 ratings) with profiles and item features."""
    data = generate(n_users=200, n_items=80, n_interactions=2000, seed=7)
    return Dataset.from_frames(data.interactions, data.users, data.items, name="Small test shop")
