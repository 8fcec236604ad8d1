"""Two browser sessions side by side never see each other's data or models (RELIABILITY.md case 15).

Each ``AppTest`` is its own Streamlit session with its own ``st.session_state``; the app's
process-wide caches (``st.cache_data`` / ``st.cache_resource``) are shared by every session, so
a static check makes sure no cache can hold what a person loaded or trained, and that every
cache is bounded (``max_entries`` or ``ttl``).
"""
from __future__ import annotations

import ast
from tests.app.conftest import ROOT
from ui import loading, state

TRAIN_PAGE = "pages/2_Train.py"
DATA_PAGE = "pages/1_Data.py"
PATIENCE = 120
APP_FILES = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").glob("*.py"))]
CACHES = {"cache_data", "cache_resource", "cache", "experimental_memo", "experimental_singleton"}
#: Parameter types a shared cache may be keyed on: a file name or a setting, never a person's data.
PLAIN_TYPES = {"str", "int", "float", "bool", "Path"}


def texts(node, *kinds: str) -> str:
    return "\n".join(element.value for kind in kinds for element in getattr(node, kind))


def models_of(at) -> dict:
    return dict(at.session_state[state.MODELS_KEY]) if state.MODELS_KEY in at.session_state else {}


def test_what_one_session_loads_and_trains_stays_in_that_session(open_page, small_dataset):
    # Session A uploads its own file...
    a = open_page(DATA_PAGE, dataset=small_dataset)
    a.radio(key="data_source").set_value("Your own files").run()
    events = "user_id,item_id\n" + "".join(f"A{i % 15},P{i % 7}\n" for i in range(60))
    a.file_uploader(key="upload_interactions").set_value(("private_a.csv", events.encode(), "text/csv")).run()
    a.button(key="load_upload").click().run()
    assert not a.exception
    data_a = a.session_state[state.DATASET_KEY]
    assert data_a.name == "private_a.csv"
    # ...and trains a model on it, in the background.
    a.switch_page(TRAIN_PAGE).run()
    a.checkbox(key="train_fused").uncheck()
    a.checkbox(key="train_popularity").check()
    a.button(key="start_training").click().run()
    job_a = a.session_state[state.JOB_KEY]
    assert job_a.wait(PATIENCE)
    a.run()
    assert set(models_of(a)) == {"popularity"}

    # Session B, opened meanwhile, gets the bundled sample and nothing of A's.
    b = open_page(TRAIN_PAGE)
    assert not b.exception
    data_b = b.session_state[state.DATASET_KEY]
    assert data_b is not data_a and data_b.name == loading.SAMPLE_NAME
    assert models_of(b) == {}
    assert state.JOB_KEY not in b.session_state
    shown_b = texts(b.sidebar, "markdown", "caption") + texts(b, "markdown", "caption")
    assert "private_a" not in shown_b and "Popularity" not in texts(b.sidebar, "markdown")
    assert not [button for button in b.get("download_button")]     # no bundle of A's model to download

    # B trains its own model; A still has exactly its own data and model.
    b.checkbox(key="train_fused").uncheck()
    b.checkbox(key="train_popularity").check()
    b.button(key="start_training").click().run()
    assert b.session_state[state.JOB_KEY].wait(PATIENCE)
    b.run()
    a.run()
    assert a.session_state[state.DATASET_KEY] is data_a
    assert models_of(a)["popularity"].dataset is data_a
    assert models_of(b)["popularity"].dataset is data_b
    assert models_of(a)["popularity"] is not models_of(b)["popularity"]


def test_two_sessions_loading_the_sample_get_separate_objects(open_page):
    """The sample's parsed tables are shared (cache_data hands out copies); each session builds its own Dataset."""
    a, b = open_page(), open_page()
    data_a, data_b = a.session_state[state.DATASET_KEY], b.session_state[state.DATASET_KEY]
    assert data_a is not data_b and data_a.fingerprint == data_b.fingerprint
    frames = loading._sample_frames(str(loading.SAMPLE_FOLDER))
    frames[0].iloc[0, 0] = "changed by one session"
    assert loading._sample_frames(str(loading.SAMPLE_FOLDER))[0].iloc[0, 0] != "changed by one session"


# ---------------------------------------------------------------------- the caches, statically
def _cached_functions(files=APP_FILES):
    """(file, function, decorator call or name) for every Streamlit-cached function of the app."""
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Attribute) and target.attr in CACHES:
                    yield path, node, decorator


def _uses_of_caches():
    """Every ``st.cache_*`` mention (a decorator, or ``st.cache_data(func)`` used as a call)."""
    for path in APP_FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in CACHES:
                yield path, node


def test_every_cache_is_bounded_and_keyed_on_plain_values_only():
    cached = list(_cached_functions())
    assert len(cached) == len(list(_uses_of_caches())), "a cache is used other than as a decorator"
    for path, function, decorator in cached:
        where = f"{path.relative_to(ROOT)}:{function.lineno} {function.name}"
        assert decorator.func.attr != "cache_resource", \
            f"{where}: cache_resource shares one object between all sessions; keep it in session_state"
        assert isinstance(decorator, ast.Call), f"{where}: give the cache max_entries and ttl"
        options = {keyword.arg for keyword in decorator.keywords}
        assert options & {"max_entries", "ttl"}, f"{where}: the cache needs max_entries or ttl"
        arguments = [*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs]
        for argument in arguments:
            annotation = ast.unparse(argument.annotation) if argument.annotation is not None else None
            assert annotation in PLAIN_TYPES, (
                f"{where}: argument {argument.arg} ({annotation}) could carry a person's data into a cache "
                "shared by every session")


def test_the_cache_check_finds_a_shared_cache_in_any_form(tmp_path):
    """The static check above sees a bare decorator as well as a called one."""
    bad = tmp_path / "bad_page.py"
    bad.write_text("import streamlit as st\n\n@st.cache_resource\ndef model(dataset):\n    return dataset\n\n"
                   "@st.cache_data(ttl=60)\ndef frame(upload: bytes):\n    return upload\n")
    found = {function.name: decorator for _, function, decorator in _cached_functions([bad])}
    assert set(found) == {"model", "frame"}
    assert found["model"].attr == "cache_resource" and found["frame"].func.attr == "cache_data"


def test_the_sample_cache_is_the_only_shared_cache():
    names = {f"{path.relative_to(ROOT)}::{function.name}" for path, function, _ in _cached_functions()}
    assert names == {"ui/loading.py::_sample_frames"}
