"""The Data page: summary of the loaded data, uploads, the validation report, safe display.

``AppTest`` in Streamlit 1.67 can upload files (``file_uploader(...).set_value((name, bytes,
mime))``), so uploads are tested through the page itself.
"""
from __future__ import annotations

import json
import re

import pytest

from ui import state

DATA_PAGE = "pages/1_Data.py"


def upload_page(open_page, dataset, **kwargs):
    at = open_page(DATA_PAGE, dataset=dataset, **kwargs)
    at.radio(key="data_source").set_value("Your own files").run()
    return at


def all_text(at) -> str:
    elements = [*at.markdown, *at.caption, *at.error, *at.warning, *at.info, *at.success,
                *at.sidebar.markdown, *at.sidebar.caption]
    return "\n".join(element.value for element in elements)


TABS = ["Activity", "Ratings & time", "Profiles", "Item features", "Column roles"]


def open_tab(at, label: str):
    """Switch the (lazy) summary tabs; only the open tab's content is drawn."""
    at.session_state["data_tab"] = label
    return at.run()


def test_data_page_summarises_the_sample(open_page):
    at = open_page(DATA_PAGE)
    assert not at.exception
    metrics = {metric.label: metric.value for metric in at.metric}
    dataset = at.session_state[state.DATASET_KEY]
    assert metrics["Users"] == f"{dataset.n_users:,}"
    assert metrics["Cold users"] == f"{(dataset.matrix.getnnz(axis=1) == 0).sum():,}"
    assert [tab.label for tab in at.tabs] == TABS
    assert len(at.get("plotly_chart")) == 3          # long tail and the two activity histograms
    assert "of all interactions" in all_text(at)
    # Short metric values (a full date is cut off in a six-column row at 1,400 px): the dates are in a caption.
    assert metrics["Period"] == "12 months" and "From" not in metrics and "To" not in metrics
    assert all(len(value) <= 10 for value in metrics.values()), metrics
    assert "Interactions from 2024-01-01 to 2024-12-" in all_text(at)
    long_tail = json.loads(next(c for c in at.get("plotly_chart") if c.key == "chart_long_tail").proto.spec)
    for axis in ("xaxis", "yaxis"):     # one readable label per power of ten, not "5, 2, 100, 5, 2"
        assert long_tail["layout"][axis]["type"] == "log" and long_tail["layout"][axis]["dtick"] == 1
    assert len(open_tab(at, "Ratings & time").get("plotly_chart")) == 2
    assert len(open_tab(at, "Profiles").get("plotly_chart")) == len(dataset.profile_columns)
    assert len(open_tab(at, "Item features").get("plotly_chart")) == 2   # coverage and categories
    roles = open_tab(at, "Column roles").dataframe[0].value
    assert set(roles["column"]) == set(dataset.user_roles) | set(dataset.item_roles)
    assert not at.exception


def test_charts_are_aggregated_not_one_point_per_interaction(open_page):
    at = open_page(DATA_PAGE)
    dataset = at.session_state[state.DATASET_KEY]
    n_traces = 0
    for label in TABS:
        for chart in open_tab(at, label).get("plotly_chart"):
            for trace in json.loads(chart.proto.spec)["data"]:
                points = trace.get("x") or trace.get("y") or []
                if isinstance(points, dict):  # plotly's binary encoding of numeric arrays
                    points = range(int(str(points.get("shape", "0")).split(",")[0] or 0))
                assert len(points) <= 400 < dataset.n_interactions
                n_traces += 1
    assert n_traces >= 12


def test_a_broken_upload_shows_the_problem_and_keeps_the_old_dataset(open_page, small_dataset):
    at = upload_page(open_page, small_dataset, models={"Popularity": "fitted"})
    at.file_uploader(key="upload_interactions").set_value(("events.csv", b"", "text/csv")).run()
    assert not at.exception
    assert any("no data rows" in error.value for error in at.error)
    assert any("Nothing was changed" in error.value for error in at.error)
    assert at.session_state[state.DATASET_KEY] is small_dataset
    assert "Popularity" in at.session_state[state.MODELS_KEY]


def test_a_binary_file_renamed_to_csv_is_refused(open_page, small_dataset):
    at = upload_page(open_page, small_dataset)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    at.file_uploader(key="upload_interactions").set_value(("photo.csv", png, "text/csv")).run()
    assert not at.exception
    assert any("PNG image" in error.value for error in at.error)
    assert at.session_state[state.DATASET_KEY] is small_dataset


EVENTS = ("sku,cust,stars,when\n"
          "P1,C1,5,2024-01-01\nP2,C1,3,2024-01-02\nP1,C2,4,2024-01-03\nP3,C3,1,2024-01-04\n"
          "P2,C3,2,2024-01-05\nP3,C2,5,2024-01-06\n").encode()


def test_an_upload_with_guessed_and_overridden_columns_replaces_the_dataset(open_page, small_dataset):
    at = upload_page(open_page, small_dataset, models={"Popularity": "fitted"})
    at.file_uploader(key="upload_interactions").set_value(("events.csv", EVENTS, "text/csv")).run()
    assert not at.exception
    mapping = {box.label: box for box in at.selectbox if box.label.endswith("column")}
    assert mapping["Item column"].value == "sku"      # guessed from the name
    assert mapping["User column"].value == "cust"     # the first column no other role claimed
    assert mapping["Rating column"].value == "stars"
    assert mapping["Timestamp column"].value == "when"
    mapping["Timestamp column"].set_value("(none)").run()   # the person overrides a guess
    at.button(key="load_upload").click().run()
    assert not at.exception
    dataset = at.session_state[state.DATASET_KEY]
    assert (dataset.n_users, dataset.n_items, dataset.n_interactions) == (3, 3, 6)
    assert dataset.timestamps is None and dataset.has_ratings
    assert at.session_state[state.MODELS_KEY] == {}            # models of the old data are gone
    assert any("Loaded events.csv" in success.value for success in at.success)
    assert {metric.label: metric.value for metric in at.metric}["Users"] == "3"


def test_an_upload_that_fails_validation_keeps_the_old_dataset_and_lists_the_problems(open_page, small_dataset):
    at = upload_page(open_page, small_dataset, models={"Popularity": "fitted"})
    events = b"user_id,item_id,rating\nU1,P1,five\nU2,P1,n/a\nU2,P2,\n"
    at.file_uploader(key="upload_interactions").set_value(("events.csv", events, "text/csv")).run()
    at.button(key="load_upload").click().run()
    assert not at.exception
    errors = "\n".join(error.value for error in at.error)
    assert "The last load failed" in errors
    assert "no usable interaction rows" in errors
    assert "Small test shop" in errors                  # says which dataset stays in use
    assert "Fix" in errors                               # each problem says what to do
    assert at.session_state[state.DATASET_KEY] is small_dataset
    assert at.session_state[state.MODELS_KEY] == {"Popularity": "fitted"}


def test_problems_put_in_the_session_are_shown(open_page, small_dataset):
    from recommender.errors import Problem

    problem = Problem("the user column 'who' is not in the file.", file="x.csv", fix="Pick one of the columns.")
    at = open_page(DATA_PAGE, dataset=small_dataset, session={state.LOAD_PROBLEMS_KEY: [problem]})
    errors = "\n".join(error.value for error in at.error)
    assert "who" in errors and "Pick one of the columns" in errors


def test_file_content_is_shown_as_text_never_as_html(open_page, small_dataset):
    at = upload_page(open_page, small_dataset)
    users = "user_id,<script>alert(1)</script>\n" + "".join(
        f"C{i},<img src=x onerror=alert(1)>\n" for i in range(1, 13))
    events = "user_id,item_id\n" + "".join(f"C{i},P{i % 3}\n" for i in range(1, 13))
    at.file_uploader(key="upload_interactions").set_value(("events.csv", events.encode(), "text/csv"))
    at.file_uploader(key="upload_users").set_value(("[x](javascript:alert(1)).csv", users.encode(), "text/csv"))
    at.run()
    assert not at.exception
    role_box = next(box for box in at.selectbox if "script" in box.label)
    assert role_box.label == r"\<script\>alert(1)\</script\>"    # a label is Markdown: escaped
    # Options are plain text (never Markdown): shown exactly as in the file, without escaping backslashes.
    id_box = next(box for box in at.selectbox if box.label == "User id column")
    assert id_box.options[0] == "user_id"
    role_box.set_value("categorical").run()
    at.session_state["data_tab"] = "Profiles"
    at.button(key="load_upload").click().run()
    assert not at.exception
    assert at.session_state[state.DATASET_KEY].n_users == 12
    markdown = [*at.markdown, *at.caption, *at.error, *at.warning, *at.success, *at.info]
    assert all(not getattr(element.proto, "allow_html", False) for element in at.markdown)
    text = "\n".join(element.value for element in markdown)
    # Escaped for Markdown (a backslash before each special character): shown literally.
    assert r"\[x\](javascript\:alert(1)).csv" in text
    for unescaped in (r"(?<!\\)<script", r"(?<!\\)<img", r"(?<!\\)\]\(javascript"):
        assert not re.search(unescaped, text), unescaped
    # Plotly's JSON escapes "<" as \\u003c: compare the decoded figures.
    specs = "\n".join(json.dumps(json.loads(chart.proto.spec)) for chart in at.get("plotly_chart"))
    assert "<img" not in specs and "<script>" not in specs
    assert "&lt;img src=x onerror=alert(1)&gt;" in specs        # drawn, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in specs      # the column name in the chart title


def test_movielens_100k_upload(open_page, small_dataset):
    at = open_page(DATA_PAGE, dataset=small_dataset)
    at.radio(key="data_source").set_value("MovieLens files").run()
    ratings = "".join(f"{u}\t{i}\t{(u + i) % 5 + 1}\t88125{u}{i}\n" for u in range(1, 6) for i in range(1, 4))
    users = "".join(f"{u}|{20 + u}|{'MF'[u % 2]}|student|0214{u}\n" for u in range(1, 6))
    flags = "|".join(["0"] * 18)
    items = "".join(f"{i}|Caf\xe9 {i} (1995)|01-Jan-1995||http://x|1|{flags}\n" for i in range(1, 4))
    at.file_uploader(key="upload_movielens").set_value([
        ("u.data", ratings.encode(), "application/octet-stream"),
        ("u.user", users.encode(), "application/octet-stream"),
        ("u.item", items.encode("latin-1"), "application/octet-stream")]).run()
    at.button(key="load_movielens").click().run()
    assert not at.exception, at.exception
    dataset = at.session_state[state.DATASET_KEY]
    assert dataset.name == "MovieLens 100K"
    assert (dataset.n_users, dataset.n_items, dataset.n_interactions) == (5, 3, 15)
    assert dataset.item_labels(dataset.item_indices(["1"]))[0] == "Café 1 (1995)"


def test_movielens_without_a_ratings_file_is_refused(open_page, small_dataset):
    at = open_page(DATA_PAGE, dataset=small_dataset)
    at.radio(key="data_source").set_value("MovieLens files").run()
    at.file_uploader(key="upload_movielens").set_value(("u.user", b"1|24|M|x|1\n", "text/plain")).run()
    at.button(key="load_movielens").click().run()
    assert not at.exception
    assert any("no MovieLens ratings file" in error.value for error in at.error)
    assert at.session_state[state.DATASET_KEY] is small_dataset


@pytest.mark.parametrize("source", ["Bundled sample"])
def test_reloading_the_sample_replaces_an_uploaded_dataset(open_page, small_dataset, source):
    at = open_page(DATA_PAGE, dataset=small_dataset, description="uploaded: shop.csv")
    at.radio(key="data_source").set_value(source).run()
    at.button(key="load_sample").click().run()
    assert not at.exception
    dataset = at.session_state[state.DATASET_KEY]
    assert dataset is not small_dataset and "sample" in dataset.name.lower()
    assert any("bundled sample" in success.value for success in at.success)


def test_escape_markdown_and_plot_text_neutralise_markup():
    from ui.charts import plot_text
    from ui.common import escape_markdown

    assert escape_markdown("<script>x</script>") == r"\<script\>x\</script\>"
    assert escape_markdown("[a](javascript:x)") == r"\[a\](javascript\:x)"
    assert escape_markdown(":red[x] $y$ *z*") == r"\:red\[x\] \$y\$ \*z\*"
    assert escape_markdown("- item\nnext") == r"\- item next"
    assert escape_markdown("12. x") == r"12\. x"
    assert plot_text("<b>A & B</b>") == "&lt;b&gt;A &amp; B&lt;/b&gt;"


def test_data_page_without_any_dataset_offers_the_loaders(open_page):
    from recommender.errors import Problem

    problem = Problem("no data rows in the file.", file="interactions.csv")
    at = open_page(DATA_PAGE, session={state.SAMPLE_FAILED_KEY: True, state.LOAD_PROBLEMS_KEY: [problem]})
    assert not at.exception
    assert state.DATASET_KEY not in at.session_state or at.session_state[state.DATASET_KEY] is None
    errors = "\n".join(error.value for error in at.error)
    assert "No dataset is loaded" in errors and "no data rows" in errors
    assert at.button(key="load_sample").label == "Load the bundled sample"
    assert not at.metric  # no summary without data


def test_dropped_rows_are_counted_on_the_page(open_page, small_dataset):
    """RELIABILITY 7: bad ratings and timestamps are dropped only with a count the person sees."""
    at = upload_page(open_page, small_dataset)
    events = ("user_id,item_id,rating,timestamp\n"
              + "".join(f"U{i % 4},P{i % 5},{i % 5 + 1},2024-01-{i % 28 + 1:02d}\n" for i in range(20))
              + "U1,P9,abc,2024-02-01\nU2,P9,inf,2024-02-01\nU3,P8,4,not a date\n").encode()
    at.file_uploader(key="upload_interactions").set_value(("events.csv", events, "text/csv")).run()
    at.button(key="load_upload").click().run()
    assert not at.exception
    assert at.session_state[state.DATASET_KEY].name == "events.csv"
    report = "\n".join(element.value for element in [*at.warning, *at.error])
    # Each problem: the file, the column, the file's line numbers, how many rows were dropped, the fix.
    assert "events.csv · column 'rating' · lines 22 and 23**: 2 rating(s) are not a finite number; those rows " \
           "were dropped" in report
    assert "column 'timestamp' · line 24**: 1 timestamp(s) could not be read; those rows were dropped" in report
    assert report.count("*Fix:*") >= 2
    assert at.session_state[state.DATASET_KEY].n_interactions == len({(i % 4, i % 5) for i in range(20)})


def test_an_upload_over_the_limit_is_refused_before_reading(open_page, small_dataset, monkeypatch):
    """RELIABILITY 8: the size is checked before the file is read; the loaded data stays."""
    import ui.loading

    monkeypatch.setattr(ui.loading, "upload_limit_mb", lambda: 0)
    at = upload_page(open_page, small_dataset)
    at.file_uploader(key="upload_interactions").set_value(("big.csv", EVENTS, "text/csv")).run()
    assert not at.exception
    errors = "\n".join(error.value for error in at.error)
    assert "big.csv" in errors and "limit" in errors.lower()
    assert at.session_state[state.DATASET_KEY] is small_dataset


def test_personal_identifier_columns_are_flagged_and_not_used(open_page, small_dataset):
    """RELIABILITY 17: e-mails, names and phone numbers are excluded from modelling and flagged on the page."""
    at = upload_page(open_page, small_dataset)
    users = "user_id,email,full_name,phone,region\n" + "".join(
        f"C{i},person{i}@example.com,Person Number{i},+44 20 7946 {1000 + i},{'NS'[i % 2]}\n" for i in range(1, 25))
    events = "user_id,item_id\n" + "".join(f"C{i % 24 + 1},P{i % 6}\n" for i in range(80))
    at.file_uploader(key="upload_interactions").set_value(("events.csv", events.encode(), "text/csv"))
    at.file_uploader(key="upload_users").set_value(("people.csv", users.encode(), "text/csv")).run()
    roles = {box.label: box.value for box in at.selectbox if box.label in ("email", "full_name", "phone", "region")}
    assert roles == {"email": "pii", "full_name": "pii", "phone": "pii", "region": "categorical"}
    at.button(key="load_upload").click().run()
    assert not at.exception
    dataset = at.session_state[state.DATASET_KEY]
    assert not any(name.startswith(("email", "full_name", "phone")) for name in dataset.profile_encoder.feature_names)
    at = open_tab(at, "Profiles")
    flagged = "\n".join(warning.value for warning in at.warning)
    assert "personal identifiers" in flagged and all(column in flagged for column in ("email", "full", "phone"))
    assert "example.com" not in "\n".join(element.value for element in [*at.markdown, *at.caption, *at.warning])
