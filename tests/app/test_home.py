"""The home page (app.py) and the shared page plumbing (sidebar, session state)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import ROOT, TIMEOUT
from ui import state
from ui.common import escape_label, format_period


def sample_counts() -> tuple[int, int, int]:
    """Users, items and interactions of the bundled sample, counted straight from the CSV files."""
    folder = ROOT / "sample_data"
    interactions = pd.read_csv(folder / "interactions.csv", dtype=str, keep_default_na=False)
    users = pd.read_csv(folder / "users.csv", dtype=str, keep_default_na=False)
    items = pd.read_csv(folder / "items.csv", dtype=str, keep_default_na=False)
    n_users = len(set(users["user_id"]) | set(interactions["user_id"]))
    n_items = len(set(items["item_id"]) | set(interactions["item_id"]))
    n_pairs = len(interactions.drop_duplicates(["user_id", "item_id"]))
    return n_users, n_items, n_pairs


def test_home_loads_the_sample_on_a_first_visit(open_page):
    at = open_page()
    assert not at.exception
    n_users, n_items, n_interactions = sample_counts()
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Users"] == f"{n_users:,}"
    assert metrics["Items"] == f"{n_items:,}"
    assert metrics["Interactions"] == f"{n_interactions:,}"
    dataset = at.session_state[state.DATASET_KEY]
    assert dataset.n_interactions == n_interactions
    assert "sample" in at.session_state[state.DESCRIPTION_KEY].lower()
    assert "RecoLens" in at.title[0].value


def test_home_links_the_pages_in_order(open_page, small_dataset):
    at = open_page(dataset=small_dataset)
    labels = [link.value for link in at.main.page_link]
    assert labels and labels[0] == "1. Data"
    assert labels == sorted(labels, key=lambda label: int(label.split(".")[0]))


def test_sidebar_shows_the_dataset_and_the_trained_models(open_page, small_dataset):
    at = open_page(dataset=small_dataset, description="uploaded: shop.csv", models={"Popularity": object()})
    assert not at.exception
    sidebar = " ".join(element.value for element in [*at.sidebar.markdown, *at.sidebar.caption])
    assert "Small test shop" in sidebar
    assert "200 users" in sidebar and "80 items" in sidebar
    assert "Popularity" in sidebar
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Users"] == "200"  # the session's dataset, not the sample


def test_home_without_a_dataset_points_to_the_data_page(open_page):
    at = open_page(session={state.SAMPLE_FAILED_KEY: True})
    assert not at.exception
    assert any("No dataset is loaded" in warning.value for warning in at.warning)
    assert [link.value for link in at.main.page_link][0] == "Go to the Data page"


def test_a_page_run_on_its_own_also_loads_the_sample():
    """Each page calls page_setup, so it works as the first (or only) script that runs."""
    at = AppTest.from_file(ROOT / "pages" / "1_Data.py", default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.session_state[state.DATASET_KEY].n_users == sample_counts()[0]
    assert "RecoLens" in " ".join(element.value for element in at.sidebar.markdown)


def test_sidebar_navigation_names_every_page(open_page, small_dataset):
    at = open_page(dataset=small_dataset)
    labels = [link.value for link in at.sidebar.page_link]
    assert labels[:2] == ["Home", "Data"]
    assert len(labels) == 1 + len(list((ROOT / "pages").glob("*.py")))


# ---------------------------------------------------------------------- the memo of slow results
@pytest.fixture
def session(monkeypatch) -> dict:
    """A plain dict standing in for ``st.session_state`` (the accessors only need a mapping)."""
    store: dict = {}
    monkeypatch.setattr(state, "_state", lambda: store)
    return store


def test_memo_computes_once_per_name_and_dataset(session, small_dataset):
    state.set_dataset(small_dataset, "test")
    calls = []
    assert state.memo("a", lambda: calls.append("a") or 1) == 1
    assert state.memo("a", lambda: calls.append("a again") or 2) == 1
    assert calls == ["a"]
    state.set_dataset(small_dataset, "the same data loaded again")   # a new load forgets everything
    assert state.memo("a", lambda: calls.append("after reload") or 3) == 3
    assert len(session[state.MEMO_KEY]) == 1


def test_memo_is_bounded_and_drops_the_least_recently_used(session, small_dataset):
    state.set_dataset(small_dataset, "test")
    limit = state.MEMO_MAX_ENTRIES
    for position in range(limit):
        state.memo(f"r{position}", lambda position=position: position)
    state.memo("r0", lambda: pytest.fail("r0 is still stored"))      # used again: now the most recent
    state.memo("one more", lambda: "new")
    assert len(session[state.MEMO_KEY]) == limit
    assert "r0" in session[state.MEMO_KEY] and "r1" not in session[state.MEMO_KEY]
    for position in range(limit + 10):
        state.memo(f"s{position}", lambda: 0)
    assert len(session[state.MEMO_KEY]) == limit


def test_memo_is_dropped_when_the_dataset_changes_without_set_dataset(session, small_dataset):
    """Even a dataset put straight into the state (as tests and restores do) starts a fresh memo."""
    session[state.DATASET_KEY] = small_dataset
    assert state.memo("counts", lambda: "old") == "old"
    session[state.DATASET_KEY] = small_dataset.with_interactions(np.arange(10))
    assert state.memo("counts", lambda: "new") == "new"
    assert list(session[state.MEMO_KEY]) == ["counts"]


# ---------------------------------------------------------------------- labels and short values
@pytest.mark.parametrize("text, expected", [
    ("income_band", "income_band"),                      # plain names keep their accessible name
    ("Time: 10 (s)", "Time: 10 (s)"),
    ("_x_", r"\_x\_"),
    ("**bold**", r"\*\*bold\*\*"),
    ("<script>x</script>", r"\<script\>x\</script\>"),
    (":red[x]", r"\:red\[x\]"),
    ("[a](javascript:x)", r"\[a\](javascript\:x)"),
    ("$x$ ~y~ `z`", r"\$x\$ \~y\~ \`z\`"),
    ("# Heading", r"\# Heading"),
    ("12. x", r"12\. x"),
    ("a\\*b", "a\\\\\\*b"),
    ("A &lt; B", r"A \&lt; B"),
    ("two\nlines", "two lines"),
])
def test_escape_label_escapes_only_what_labels_interpret(text, expected):
    assert escape_label(text) == expected


@pytest.mark.parametrize("days, expected", [(0.01, "under 2 hours"), (0.5, "12 hours"), (1, "1 day"),
                                            (45, "45 days"), (365, "12 months"), (1200, "3.3 years")])
def test_format_period_is_short(days, expected):
    first = pd.Timestamp("2024-01-01", tz="UTC")
    assert format_period(first, first + pd.Timedelta(days=days)) == expected
