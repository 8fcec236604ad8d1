"""RELIABILITY.md cases checked across the whole app, where the per-module tests look at one place only.

* 13: every CSV download of the app goes through ``safe_csv``; segment and recommendation exports
  of a file full of formula-like ids and values hold no cell that a spreadsheet would run.
* 14: a dataset whose name, ids, titles, categories and profile values are HTML, links and
  Streamlit directives is opened on every page: nothing is interpreted, nothing crashes.
* 10: a bundle saved from a GPU (its settings name ``cuda``) loads on a machine without one.
* 15 (static part): no ``unsafe_allow_html`` anywhere in the app's code.

See docs/RELIABILITY_TESTS.md for the table of every case and its tests.
"""
from __future__ import annotations

import ast
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recommender import Dataset
from recommender.analysis.privacy import FORMULA_TRIGGERS, safe_csv
from recommender.analysis.segments import segment_assignments, segment_users
from recommender.models import REGISTRY, Recommender
from recommender.models.bundle import bundle_bytes
from recommender.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
APP_FILES = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").glob("*.py"))]

#: Values a hostile or careless file may hold, and how each would misbehave if interpreted.
SCRIPT = "<script>alert(1)</script>"
IMAGE = "<img src=x onerror=alert(1)>"
LINK = "[click](javascript:alert(1))"
DIRECTIVE = ":red[red] **bold**"
#: Patterns that must never appear unescaped in Markdown or a label (a backslash before them is fine).
UNESCAPED = [r"(?<!\\)<script", r"(?<!\\)<img", r"(?<!\\)\]\(javascript", r"(?<!\\):red\[", r"(?<!\\)\*\*bold"]


def hostile_dataset() -> Dataset:
    """A small shop whose text fields are markup, links, directives and spreadsheet formulas."""
    data = generate(n_users=200, n_items=80, n_interactions=2000, seed=11)
    formula_ids = {user: f"=HYPERLINK(\"http://x\";\"{user}\")" for user in data.users["user_id"].iloc[:40]}
    interactions = data.interactions.copy()
    interactions["user_id"] = interactions["user_id"].replace(formula_ids)
    users = data.users.copy()
    users["user_id"] = users["user_id"].replace(formula_ids)
    first_region = sorted(users["region"].unique())[0]
    users["region"] = users["region"].replace({first_region: "@" + DIRECTIVE})
    users["occupation"] = users["occupation"].astype(str).str.replace(r"^(.)", LINK + r" \1", n=1, regex=True)
    items = data.items.copy()
    items["title"] = [f"{(SCRIPT, IMAGE, LINK, '=1+2 ' + DIRECTIVE)[i % 4]} {title}"
                      for i, title in enumerate(items["title"])]
    first_category = sorted(items["category"].unique())[0]
    items["category"] = items["category"].replace({first_category: "+" + IMAGE})
    return Dataset.from_frames(interactions, users, items, name=f"{SCRIPT} {LINK} shop")


@pytest.fixture(scope="module")
def hostile() -> Dataset:
    return hostile_dataset()


def read_csv_cells(payload: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(payload), dtype=str, keep_default_na=False)


def runnable_cells(frame: pd.DataFrame) -> list[str]:
    """Cells a spreadsheet would evaluate: text starting with a formula trigger that is not a plain number."""
    cells = frame.to_numpy().ravel().tolist() + list(frame.columns)
    return [cell for cell in cells
            if cell.startswith(FORMULA_TRIGGERS) and not re.fullmatch(r"[-+]?\d+(\.\d+)?([eE][-+]?\d+)?", cell)]


# ---------------------------------------------------------------------- 13: exports
def _download_calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "download_button":
            yield node


def _keyword(call: ast.Call, name: str):
    return next((keyword.value for keyword in call.keywords if keyword.arg == name), None)


def test_every_csv_download_of_the_app_goes_through_safe_csv():
    """A page that offers a CSV must build it with ``safe_csv`` (OWASP CSV injection), with a readable name."""
    found = 0
    for path in APP_FILES:
        for call in _download_calls(path):
            mime, data, file_name = _keyword(call, "mime"), _keyword(call, "data"), _keyword(call, "file_name")
            is_csv = (isinstance(mime, ast.Constant) and mime.value == "text/csv") or (
                file_name is not None and ".csv" in ast.unparse(file_name))
            if not is_csv:
                continue
            found += 1
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            assert isinstance(data, ast.Call) and ast.unparse(data.func).endswith("safe_csv"), \
                f"{where}: CSV data must be safe_csv(frame), got {ast.unparse(data) if data else None}"
            named = file_name is not None and ("recolens_" in ast.unparse(file_name)
                                               or ast.unparse(file_name).startswith("download_name("))
            assert named, \
                f"{where}: give the download a sensible file name (recolens_<what>_<dataset>_<date>.csv)"
    assert found >= 2   # the evaluation table and the segment exports at least


def test_segment_exports_of_formula_ids_and_values_cannot_run(hostile):
    result = segment_users(None, hostile, k=3, seed=0)
    assignments = read_csv_cells(safe_csv(segment_assignments(result, hostile)))
    assert assignments["user_id"].str.startswith("'=HYPERLINK").any()       # neutralised, not dropped
    assert runnable_cells(assignments) == []
    summary = result.profiles()
    summary = read_csv_cells(safe_csv(summary[summary["privacy"] == ""].drop(columns=["privacy"])))
    assert runnable_cells(summary) == []


def test_recommendation_and_metric_tables_of_formula_titles_cannot_run(hostile):
    model = REGISTRY["popularity"]().fit(hostile)
    users = [user for user in hostile.user_ids if user.startswith("=")][:5]
    recommendations = model.recommend(users, k=10)
    recommendations["title"] = hostile.item_labels(hostile.item_indices(recommendations["item_id"]))
    table = read_csv_cells(safe_csv(recommendations))
    assert table["title"].str.startswith("'=1+2").any() and table["user_id"].str.startswith("'=").all()
    assert runnable_cells(table) == []
    # What the Cold start page's download holds: every list, with the profile it was made for.
    from recommender.analysis.coldstart import profile_form_schema, simulate
    profile = {spec.name: spec.default for spec in profile_form_schema(hostile)}
    export = simulate(model, hostile, profile, k=10).to_frame("=HYPERLINK(\"http://x\")")
    assert runnable_cells(read_csv_cells(safe_csv(export))) == []
    metrics = pd.DataFrame({"model": ["=cmd|' /C calc'!A0", "popularity"], "ndcg@10": [-0.0, 0.25]})
    assert read_csv_cells(safe_csv(metrics))["ndcg@10"].tolist() == ["-0.0", "0.25"]   # numbers untouched
    assert runnable_cells(read_csv_cells(safe_csv(metrics))) == []


# ---------------------------------------------------------------------- 14: displayed strings, every page
def _elements(node):
    children = getattr(node, "children", None)
    if isinstance(children, dict):
        for child in children.values():
            yield from _elements(child)
    else:
        yield node


def _shown_markdown(at) -> list[tuple[str, str]]:
    """(element type, text) of everything Streamlit renders as Markdown: bodies, labels, help texts."""
    shown = []
    for element in (element for root in (at.main, at.sidebar) for element in _elements(root)):
        kind = getattr(element, "type", "")
        if kind in ("text", "code", "arrow_data_frame", "dataframe", "plotly_chart", "exception"):
            continue   # drawn literally, or checked separately
        for attribute in ("value", "label", "help", "body"):
            try:
                text = getattr(element, attribute, None)
            except Exception:  # noqa: BLE001 - some element types compute values they do not have
                continue
            if isinstance(text, str) and text:
                if attribute == "value" and kind not in ("markdown", "caption", "title", "header", "subheader",
                                                         "alert", "success", "info", "warning", "error", "metric"):
                    continue   # widget values (options, numbers) are plain text
                shown.append((f"{kind}.{attribute}", text))
    return shown


PAGES = ["app.py", "pages/1_Data.py", "pages/2_Train.py", "pages/3_Evaluate.py", "pages/4_Segments.py",
         "pages/5_Similarity.py", "pages/6_Cold_start.py"]


def test_markup_from_files_is_shown_as_text_on_every_page(hostile):
    from tests.app.conftest import make_app

    popularity = REGISTRY["popularity"]().fit(hostile)
    at = make_app(dataset=hostile, description=f"uploaded: {LINK}.csv", models={"popularity": popularity})
    seen = set()
    for page in PAGES:
        if page != "app.py":
            if not (ROOT / page).is_file():
                continue
            at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert all(not element.proto.allow_html for element in at.markdown), page
        shown = _shown_markdown(at)
        for where, text in shown:
            for pattern in UNESCAPED:
                assert not re.search(pattern, text), f"{page}: {where} shows {text!r} unescaped"
        seen.update(text for _, text in shown)
        specs = "\n".join(json.dumps(json.loads(chart.proto.spec)) for chart in at.get("plotly_chart"))
        assert "<script" not in specs and "<img" not in specs and "javascript:" not in specs.replace(
            "](javascript:", ""), page
    everything = "\n".join(seen)
    # The hostile text was really shown somewhere (the test would pass vacuously otherwise).
    assert r"\<script\>alert(1)\</script\>" in everything      # the dataset name
    assert r"\[click\](javascript\:alert(1))" in everything


def test_the_app_never_allows_html():
    for path in APP_FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "unsafe_allow_html":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, \
                    f"{path.relative_to(ROOT)}:{node.value.lineno}: unsafe_allow_html"
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "html":
                pytest.fail(f"{path.relative_to(ROOT)}:{node.lineno}: st.html renders raw HTML")


# ---------------------------------------------------------------------- 10: a GPU bundle on a CPU
def test_a_bundle_saved_on_a_gpu_loads_on_a_machine_without_one(monkeypatch):
    """The weights are stored as CPU arrays; the saved ``device="cuda"`` setting falls back to the CPU."""
    import torch

    from recommender.models.fused import FusedRecommender

    data = generate(n_users=120, n_items=50, n_interactions=1200, seed=5)
    dataset = Dataset.from_frames(data.interactions, data.users, data.items, name="gpu shop")
    model = FusedRecommender(dim=8, max_epochs=1, seed=0, device="cpu").fit(dataset)
    source = zipfile.ZipFile(io.BytesIO(bundle_bytes(model)))
    meta = json.loads(source.read("recolens.json"))
    meta["params"]["device"] = "cuda:0"                     # what a model trained on a GPU saves
    copied = io.BytesIO()
    with zipfile.ZipFile(copied, "w") as target:
        for member in source.namelist():
            target.writestr(member, json.dumps(meta) if member == "recolens.json" else source.read(member))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)   # the same on a machine with a GPU
    loaded = Recommender.load(copied.getvalue())
    users = np.arange(10, dtype=np.int32)
    np.testing.assert_allclose(loaded.score_users(users), model.score_users(users), rtol=1e-5, atol=1e-6)
    assert loaded.recommend(list(dataset.user_ids[:3]), k=5)["item_id"].tolist() == \
        model.recommend(list(dataset.user_ids[:3]), k=5)["item_id"].tolist()


# ---------------------------------------------------------------------- 9: degenerate data, every page
def degenerate_datasets() -> dict[str, Dataset]:
    one = Dataset.from_frames(pd.DataFrame({"user_id": ["u1"], "item_id": ["i1"], "rating": ["4"]}),
                              name="one user, one item")
    interactions = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3"], "item_id": ["i1", "i2", "i1", "i1"]})
    users = pd.DataFrame({"user_id": ["u1", "u2", "u9"], "region": ["North", "South", "North"]})  # u3: no row;
    items = pd.DataFrame({"item_id": ["i1", "i2", "i3"], "title": ["One", "Two", "Never bought"],  # u9: no events
                          "category": ["a", "b", "b"]})
    gaps = Dataset.from_frames(interactions, users, items, name="profiles and items with gaps")
    return {"one": one, "gaps": gaps}


@pytest.mark.parametrize("name", ["one", "gaps"])
def test_every_page_copes_with_degenerate_data(name):
    """A message or a sensible result on every page, never a traceback (k larger than the catalogue included)."""
    from tests.app.conftest import make_app

    dataset = degenerate_datasets()[name]
    popularity = REGISTRY["popularity"]().fit(dataset)
    at = make_app(dataset=dataset, models={"popularity": popularity})
    for page in PAGES:
        if page != "app.py":
            if not (ROOT / page).is_file():
                continue
            at.switch_page(page).run()
        assert not at.exception, (name, page, [e.value for e in at.exception])
        assert at.title, (name, page)                      # the page was drawn, not stopped blank
        # Press the page's main button too: evaluation (every protocol) and a cold-start recommendation.
        for key in {"pages/3_Evaluate.py": ["run_all_protocols"], "pages/6_Cold_start.py": ["cs_submit"]}.get(page, []):
            if not [button for button in at.button if button.key == key]:
                continue
            if key == "run_all_protocols":   # the fast models (every model on every protocol: test_compare)
                at.multiselect(key="eval_models").set_value(["popularity", "segment_popularity", "ease"])
            at.button(key=key).click().run()
            job = at.session_state["recolens_evaluation_job"] if key == "run_all_protocols" else None
            if job is not None:
                assert job.wait(120)
                at.run()
            assert not at.exception, (name, page, key, [e.value for e in at.exception])
            shown = "\n".join(e.value for e in [*at.error, *at.warning, *at.info, *at.success, *at.markdown])
            assert shown, (name, page, key)
    assert len(popularity.recommend([dataset.user_ids[0]], k=50, exclude_seen=False)) == dataset.n_items


def test_download_names_say_what_which_data_and_when():
    from ui.common import download_name
    name = download_name("cold start recommendations", "My shop (2024) <script>")
    assert re.fullmatch(r"recolens_cold_start_recommendations_my_shop_2024_script_\d{4}-\d{2}-\d{2}\.csv", name)
    assert download_name("fused", "", "recolens").startswith("recolens_fused_data_")
