"""The main path a person takes, in a real browser, as one ordered journey in one session.

Home (the bundled sample is loaded) -> Data (summary) -> Train (the fused model, small settings)
-> Evaluate (popularity vs fused) -> Segments -> Similarity -> Cold start (a new profile gets
recommendations) -> back on Data, broken uploads (an empty CSV, a PNG renamed .csv) show a
readable error and leave the sample and the trained model in place.

Every step navigates by clicking the sidebar links (opening a URL would start a new Streamlit
session and lose the trained model), asserts on what is visible, checks that no Streamlit
exception box is shown, and saves a screenshot under ``test-artifacts/screenshots/``.
The steps run in file order and share one page (the ``journey`` fixture); after a failure the
later steps are skipped. A page that does not exist yet is skipped with its file name.
"""
from __future__ import annotations

import re

import pandas as pd
import pytest

from tests.e2e.conftest import ROOT, screenshot, view_screenshot, wait_idle

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

pytestmark = pytest.mark.browser

#: The bundled sample's counts, as the pages format them.
SAMPLE_COUNTS = {"Users": "3,000", "Items": "1,000", "Interactions": "60,000"}
SAMPLE_SIDEBAR = "3,000 users · 1,000 items · 60,000 interactions"
FUSED = "Fused (profile + history + content)"
#: Training kept small: the whole browser suite must stay well under 5 minutes on 2 cores.
TRAIN_EPOCHS = 2
TRAIN_TIMEOUT_MS = 240_000
#: The new person of the cold-start step (an item they already liked: :func:`most_popular_title`).
PROFILE = {"gender": "M", "region": "North", "occupation": "Engineer", "income_band": "high",
           "signup_channel": "web"}
#: A PNG header and some binary bytes: what a picture renamed to .csv looks like.
FAKE_PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"
            + bytes(range(256)) * 4)


# ---------------------------------------------------------------------- helpers
def require_page(path: str) -> None:
    """Skip the step while its page file does not exist yet (pages are being written)."""
    if not (ROOT / path).is_file():
        pytest.skip(f"{path} does not exist yet")


def main(page):
    return page.locator("[data-testid='stMain']")


def sidebar(page):
    return page.locator("[data-testid='stSidebar']")


def go_to(page, label: str, title: str | None = None) -> None:
    """Open a page by clicking its sidebar link (keeps the session) and wait until it is drawn."""
    # The accessible name leaves out the Material icon's ligature text ("database").
    link = sidebar(page).get_by_role("link", name=label, exact=True)
    expect(link).to_have_count(1)
    link.click()
    expect(main(page).locator("h1").filter(has_text=title or label).first).to_be_visible()
    wait_idle(page)


def choose(page, label: str, option: str, attempts: int = 3) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` (a combobox: open it, click the option).

    A rerun that starts just after the click (the previous widget's change reaches the server a moment
    later, see :func:`wait_idle`) redraws the selectbox and closes its list: open it again then.
    """
    box = main(page).locator("[data-testid='stSelectbox']").filter(
        has=page.locator("[data-testid='stWidgetLabel']", has_text=label))
    combobox = box.first.get_by_role("combobox")
    wanted = page.get_by_role("option", name=option, exact=True)
    for _ in range(attempts - 1):
        combobox.click()
        try:
            wanted.wait_for(state="visible", timeout=10_000)
            break
        except playwright.TimeoutError:
            page.keyboard.press("Escape")
            wait_idle(page)
    else:
        combobox.click()
    wanted.click()
    expect(combobox).to_have_value(option)
    wait_idle(page)


def chart(page, title: str):
    """The Plotly chart whose text (title, axes, legend) contains ``title``."""
    return main(page).locator("[data-testid='stPlotlyChart']").filter(has_text=title).first


def grid_rows(frame) -> list[dict[str, str]]:
    """The rows of an ``st.dataframe`` as {header: text}.

    The grid is drawn on a canvas; Streamlit keeps an accessible (visually hidden) copy of the
    cells in a ``<table role="grid">``, read here through ``textContent``.
    """
    headers = frame.locator("th[role='columnheader']").all_text_contents()
    rows = []
    for row in frame.locator("tbody tr[role='row']").all():
        cells = row.locator("td[role='gridcell']").all_text_contents()
        rows.append(dict(zip(headers, cells)))
    return rows


def grid_column(frame, header: str) -> list[str]:
    return [row[header] for row in grid_rows(frame)]


def sample_titles() -> set[str]:
    """Every item title of the bundled sample."""
    return set(pd.read_csv(ROOT / "sample_data" / "items.csv", dtype=str, keep_default_na=False)["title"])


def most_popular_title() -> str:
    """The title of the sample's most interacted-with item, read from sample_data/.

    The cold-start step says the person already liked it: a popular item is one the models would
    otherwise recommend, so "never recommended again" is a real check.
    """
    folder = ROOT / "sample_data"
    interactions = pd.read_csv(folder / "interactions.csv", dtype=str, keep_default_na=False)
    items = pd.read_csv(folder / "items.csv", dtype=str, keep_default_na=False).set_index("item_id")
    counts = interactions.drop_duplicates(["user_id", "item_id"])["item_id"].value_counts()
    top = counts[counts == counts.max()].index.min()      # ties: the smallest id, so the choice is stable
    return items.loc[top, "title"]


def metric(page, label: str):
    """The value element of the metric called ``label`` in the main area."""
    box = main(page).locator("[data-testid='stMetric']").filter(
        has=page.locator("[data-testid='stMetricLabel']", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")))
    return box.first.locator("[data-testid='stMetricValue']")


def cut_off_metrics(page) -> list[str]:
    """Metrics whose label or value does not fit its column (shown with an ellipsis "…")."""
    overflowing = "e => [e, ...e.querySelectorAll('*')].some(x => x.scrollWidth > x.clientWidth + 1)"
    return [box.inner_text().replace("\n", " ") for box in main(page).locator("[data-testid='stMetric']").all()
            if box.evaluate(overflowing)]


def check_page_is_healthy(page) -> None:
    """No Streamlit exception box, no uncaught JavaScript error, still the same session."""
    expect(page.locator("[data-testid='stException']")).to_have_count(0)
    assert page.js_errors == [], f"JavaScript errors in the page: {page.js_errors}"
    expect(sidebar(page)).to_contain_text(SAMPLE_SIDEBAR)


def expect_sample_counts(page) -> None:
    for label, value in SAMPLE_COUNTS.items():
        expect(metric(page, label)).to_have_text(value)


def expect_charts(page, at_least: int) -> None:
    """At least ``at_least`` Plotly charts drawn (a chart's SVG inside its container)."""
    charts = main(page).locator("[data-testid='stPlotlyChart']")
    expect(charts.nth(at_least - 1)).to_be_visible()
    expect(charts.nth(at_least - 1).locator(".main-svg").first).to_be_attached()


# ---------------------------------------------------------------------- the journey
def test_01_home_shows_the_bundled_sample(journey):
    page = journey
    expect(main(page).locator("h1")).to_contain_text("RecoLens")
    expect_sample_counts(page)
    expect(main(page)).to_contain_text("RecoLens sample shop (synthetic)")
    expect(main(page)).to_contain_text("No model trained yet.")
    assert cut_off_metrics(page) == []
    # The page cards link every existing page in order.
    expect(main(page).locator("[data-testid='stPageLink-NavLink']").first).to_contain_text("1. Data")
    check_page_is_healthy(page)
    screenshot(page, "01_home")


def test_02_data_page_summarises_the_sample(journey):
    page = journey
    go_to(page, "Data")
    expect(main(page)).to_contain_text("The bundled sample is loaded.")
    expect_sample_counts(page)
    expect(metric(page, "Ratings")).to_have_text("1 – 5")
    expect(metric(page, "Period")).to_have_text("12 months")
    assert cut_off_metrics(page) == []                       # every number readable at 1,400 px
    expect(main(page)).to_contain_text("of all interactions")   # the concentration sentence
    expect_charts(page, 3)                                        # long tail + two histograms
    for tab in ("Activity", "Ratings & time", "Profiles", "Item features", "Column roles"):
        expect(main(page).get_by_role("tab", name=tab)).to_be_visible()
    check_page_is_healthy(page)
    screenshot(page, "02_data")

    main(page).get_by_role("tab", name="Profiles").click()
    expect(main(page)).to_contain_text("One chart per profile attribute")
    wait_idle(page)
    expect_charts(page, 6)       # age, gender, region, occupation, income band, sign-up channel
    check_page_is_healthy(page)
    screenshot(page, "02b_data_profiles")


def test_03_train_the_fused_model(journey):
    require_page("pages/2_Train.py")
    page = journey
    go_to(page, "Train")
    expect(sidebar(page)).to_contain_text("None yet — see the Train page.")
    # The fused model and the popularity baseline are ticked by default; keep exactly those two.
    for label in (FUSED, "Popularity"):
        expect(main(page).get_by_role("checkbox", name=label, exact=True)).to_be_checked()
    for label in ("Profile kNN", "EASE", "ALS"):
        box = main(page).get_by_role("checkbox", name=label, exact=True)
        if box.count():
            expect(box).not_to_be_checked()

    # Small settings: a few epochs of a small embedding, so the journey stays short.
    main(page).locator("[data-testid='stExpander'] summary").filter(has_text="Advanced settings").click()
    epochs = main(page).get_by_role("spinbutton", name="Epochs (at most)", exact=True)
    epochs.fill(str(TRAIN_EPOCHS))
    epochs.press("Enter")
    wait_idle(page)
    choose(page, "Embedding size", "16")
    expect(epochs).to_have_value(str(TRAIN_EPOCHS))
    check_page_is_healthy(page)

    main(page).get_by_role("button", name="Train", exact=True).click()
    # While it runs the page redraws itself every second; then it says what was trained.
    trained = re.compile(rf"Trained {re.escape(FUSED)}, Popularity in \d")   # display names, pages' order
    expect(main(page).get_by_text(trained)).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
    wait_idle(page)
    expect(sidebar(page)).to_contain_text(FUSED)              # the sidebar uses the pages' model names
    expect(sidebar(page)).to_contain_text("Popularity")
    expect(main(page).get_by_role("heading", name="Save trained models").first).to_be_visible()
    expect(main(page).get_by_role("button", name=f"Download {FUSED}")).to_be_visible()
    expect_charts(page, 2)             # training loss and validation NDCG per epoch
    check_page_is_healthy(page)
    screenshot(page, "03_train")


def test_04_evaluate_popularity_against_fused(journey):
    require_page("pages/3_Evaluate.py")
    page = journey
    go_to(page, "Evaluate")
    expect(main(page).get_by_text("Choose a protocol and models, then run the evaluation.")).to_be_visible()
    # The quickest question (known users) with only the baseline and the fused model.
    protocol = main(page).locator("[data-testid='stSelectbox']").filter(has_text="Question (protocol)")
    expect(protocol.get_by_role("combobox")).to_have_value("Known users (warm)")
    models = main(page).locator("[data-testid='stMultiSelect']").filter(has_text="Models")
    for label in ("Segment popularity", "EASE"):
        models.get_by_role("button", name=f"Remove {label}", exact=True).click()
        wait_idle(page)
    selected = models.get_by_role("group", name="Selected values")
    expect(selected).to_have_text(re.compile(rf"^\s*Popularity\s*{re.escape(FUSED)}\s*$"))
    # The fused model is evaluated with the small settings it was trained with.
    expect(main(page)).to_contain_text(re.compile(r"Same settings as the trained model\(s\): .*Fused"))

    main(page).get_by_role("button", name="Run evaluation", exact=True).click()
    expect(main(page).get_by_role("heading", name="Results").first).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
    wait_idle(page)
    expect(main(page)).to_contain_text(re.compile(r"Known users \(warm\): .*test users; top 10"))
    # The results table: one row per model, a numeric NDCG@10 for each (Streamlit draws the grid on a
    # canvas; its accessible copy holds the same cells).
    table = main(page).locator("[data-testid='stDataFrame']").first
    expect(table).to_be_visible()
    rows = grid_rows(table)
    assert sorted(row["Model"] for row in rows) == sorted([FUSED, "Popularity"]), rows
    for row in rows:
        assert 0.0 <= float(row["NDCG@10"]) <= 1.0, row
    expect(chart(page, "NDCG@10 (higher is better)")).to_contain_text("Popularity")
    expect(chart(page, "NDCG@10 by activity level")).to_be_visible()
    expect_charts(page, 7)           # six metric bars and the breakdown by activity level
    expect(main(page).get_by_role("button", name="Download the table (CSV)")).to_be_visible()
    expect(sidebar(page)).to_contain_text("Evaluation: results available")
    check_page_is_healthy(page)
    screenshot(page, "04_evaluate")
    view_screenshot(page, "readme_evaluate", main(page).get_by_role("heading", name="Results").first)


def test_05_segments(journey):
    require_page("pages/4_Segments.py")
    page = journey
    go_to(page, "Segments")
    expect(main(page).get_by_role("heading", name="The segments").first).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
    wait_idle(page)
    # Segments of the fused model's user vectors (the trained model carried over).
    source = main(page).locator("[data-testid='stSelectbox']").filter(has_text="Represent each person by")
    expect(source.get_by_role("combobox")).to_have_value(f"{FUSED} model")
    expect(main(page)).to_contain_text(re.compile(r"\d+ segments give the clearest split"))
    # Of the fused model: its user vectors or its scores, whichever the page uses by default.
    expect(main(page)).to_contain_text(re.compile(r"\d+ segments from fused model (user embeddings|scores)"))
    expect(chart(page, "How clearly the users split")).to_be_visible()
    # The map is WebGL (thousands of points): a canvas, and one legend entry per segment shown.
    segment_map = chart(page, "Users coloured by segment")
    expect(segment_map.locator("canvas").first).to_be_attached()
    expect(segment_map.locator("g.legend g.traces").nth(1)).to_be_attached()
    # One card per segment: its size, who they are, what they like, and (after Evaluate) the model quality.
    n_cards = main(page).get_by_text("Who they are").count()
    assert n_cards >= 2, f"expected at least two segment cards, found {n_cards}"
    expect(main(page).get_by_text("Most popular items")).to_have_count(n_cards)
    people = main(page).locator("[data-testid='stMetric']").filter(has_text="People")
    expect(people).to_have_count(n_cards)
    sizes = [int(text.replace(",", "")) for text in people.locator("[data-testid='stMetricValue']").all_inner_texts()]
    assert sum(sizes) <= 3000 and min(sizes) >= 10, sizes
    expect(main(page).get_by_text("Model quality (NDCG@10)").first).to_be_visible()
    expect(chart(page, "NDCG@10 by segment")).to_be_visible()
    expect(chart(page, "Where the two segments differ most")).to_be_visible()
    expect(main(page).get_by_role("button", name="Segment of each user (CSV)")).to_be_visible()
    check_page_is_healthy(page)
    screenshot(page, "05_segments")
    view_screenshot(page, "readme_segment_map", main(page).get_by_role("heading", name="Map of the users").first)


def test_06_similarity(journey):
    require_page("pages/5_Similarity.py")
    page = journey
    go_to(page, "Similarity")
    expect(main(page).get_by_role("heading", name="Why are two items similar?").first).to_be_visible(
        timeout=TRAIN_TIMEOUT_MS)
    wait_idle(page)
    model = main(page).locator("[data-testid='stSelectbox']").filter(has_text="Model")
    expect(model.first.get_by_role("combobox")).to_have_value(FUSED)
    heatmap = chart(page, "Item similarity: the 30 most popular items")
    expect(heatmap.locator("g.heatmaplayer").first).to_be_attached()
    expect(heatmap).to_contain_text(re.compile(r"\w+ \w+"))          # item titles on the axes
    for label in ("People with A", "People with B", "People with both"):
        expect(metric(page, label)).to_have_text(re.compile(r"^(\d[\d,]*|hidden)$"))
    expect(main(page)).to_contain_text("In common:")
    check_page_is_healthy(page)
    screenshot(page, "06_similarity_items")

    # The segments found on the Segments page carry over to the segments x categories heatmap.
    main(page).locator("[data-testid='stRadio'] label").filter(has_text="Segments × categories").click()
    heatmap = chart(page, "Segments × categories")
    expect(heatmap.locator("g.heatmaplayer").first).to_be_attached()
    expect(heatmap).to_contain_text(FUSED)          # the title names where the segments came from
    expect(main(page)).to_contain_text("Red: the group puts more of its interactions")
    wait_idle(page)
    check_page_is_healthy(page)
    screenshot(page, "06b_similarity_segments")


def test_07_cold_start(journey):
    require_page("pages/6_Cold_start.py")
    page = journey
    go_to(page, "Cold start")
    expect(main(page).get_by_role("heading", name="Describe the new person").first).to_be_visible()
    expect(main(page)).to_contain_text("Fill in the form and press Recommend.")
    form = main(page).locator("[data-testid='stForm']")
    # A profile: age 45 (keyboard on the slider), then one value per attribute.
    age = form.get_by_role("slider", name=re.compile(r"^age"))
    start = int(age.get_attribute("aria-valuetext") or age.get_attribute("aria-valuenow"))
    age.focus()
    for _ in range(abs(45 - start)):
        age.press("ArrowRight" if start < 45 else "ArrowLeft")
    expect(age).to_have_attribute("aria-valuetext", "45")
    for label, option in PROFILE.items():
        choose(page, label, option)
    # One item the person already liked (typed, then picked from the matches).
    liked_title = most_popular_title()
    liked_box = form.locator("[data-testid='stMultiSelect']").get_by_role("combobox")
    liked_box.click()
    liked_box.fill(liked_title)
    page.get_by_role("option", name=re.compile(rf"^{re.escape(liked_title)} \(")).first.click()
    page.keyboard.press("Escape")
    expect(form.get_by_role("group", name="Selected values")).to_contain_text(liked_title)
    check_page_is_healthy(page)

    form.get_by_role("button", name="Recommend", exact=True).click()
    expect(main(page).get_by_role("heading", name="What the new person would be shown").first).to_be_visible(
        timeout=TRAIN_TIMEOUT_MS)
    wait_idle(page)
    seen = "What the models see of this profile: age: 45"
    expect(main(page)).to_contain_text(seen)
    for label, option in PROFILE.items():
        expect(main(page)).to_contain_text(f"{label}: {option}")
    expect(main(page)).to_contain_text(re.compile(r"This person lands in segment \d+"))
    expect(main(page)).to_contain_text("For this person the model trusts")
    # Three lists (the fused model's, and the baselines' side by side or in tabs); each shows 10 real item
    # titles, and the liked item is not recommended again.
    titles = sample_titles()
    for position, name in enumerate((FUSED, "Popularity", "Segment popularity")):
        tab = main(page).get_by_role("tab", name=name, exact=True)
        if tab.count():
            tab.click()
        expect(main(page).get_by_text(name, exact=True).first).to_be_visible()
        table = main(page).locator(f".st-key-cs_list_{position}")
        expect(table.locator("tbody tr[role='row']").nth(9)).to_be_attached()
        recommended = grid_column(table, "Item")
        assert len(recommended) == 10, recommended
        assert set(recommended) <= titles, set(recommended) - titles
        if position == 0:
            fused_list = recommended
    assert liked_title not in fused_list            # what the person already liked is not shown again
    # The explanation chart labels its bars with the (shortened) titles, best first.
    expect(chart(page, "Why these items: where each score comes from")).to_contain_text(
        f"1. {fused_list[0][:15]}")
    expect(main(page).get_by_role("heading", name="Change one thing").first).to_be_visible()
    check_page_is_healthy(page)
    screenshot(page, "07_cold_start")
    view_screenshot(page, "readme_cold_start",
                    main(page).get_by_role("heading", name="What the new person would be shown").first)


def test_08_broken_uploads_keep_the_loaded_data(journey, tmp_path):
    page = journey
    go_to(page, "Data")
    models_before = sidebar(page).inner_text().split("Trained models", 1)[1]
    main(page).locator("[data-testid='stRadio'] label").filter(has_text="Your own files").click()
    expect(main(page)).to_contain_text("Upload an interactions file to start")
    uploader = main(page).locator("[data-testid='stFileUploader']").filter(has_text="Interactions (required)")
    dropzone = uploader.locator("[data-testid='stFileUploaderDropzoneInput']")

    empty = tmp_path / "events.csv"
    empty.write_bytes(b"")
    dropzone.set_input_files(str(empty))
    expect(main(page)).to_contain_text("These files could not be read. Nothing was changed")
    expect(main(page)).to_contain_text("no data rows in the file")
    expect(main(page).locator("[data-testid='stAlertContentError']").first).to_be_visible()
    wait_idle(page)
    expect_sample_counts(page)               # the sample's summary is still shown below
    check_page_is_healthy(page)
    screenshot(page, "08_broken_upload_empty_csv")

    picture = tmp_path / "photo.csv"
    picture.write_bytes(FAKE_PNG)
    dropzone.set_input_files(str(picture))
    expect(main(page)).to_contain_text("this is a PNG image, not a table")
    expect(main(page)).not_to_contain_text("no data rows in the file")
    expect(main(page)).to_contain_text("photo.csv")
    wait_idle(page)
    expect_sample_counts(page)
    check_page_is_healthy(page)
    # Nothing trained before the broken uploads was lost.
    assert sidebar(page).inner_text().split("Trained models", 1)[1] == models_before
    screenshot(page, "09_broken_upload_png")

    go_to(page, "Home", title="RecoLens")
    expect_sample_counts(page)
    expect(main(page)).to_contain_text("RecoLens sample shop (synthetic)")
    if (ROOT / "pages" / "2_Train.py").is_file():
        expect(main(page)).to_contain_text(re.compile(rf"Trained models: .*{re.escape(FUSED)}"))
    check_page_is_healthy(page)
    screenshot(page, "10_home_after")
    view_screenshot(page, "readme_home")
