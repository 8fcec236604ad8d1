"""Cold-start page: what a brand-new person would be shown, and who a brand-new item would reach.

Thin on purpose: the form fields, the lists, the explanation, the segment and the audience come
from :mod:`recommender.analysis.coldstart` (``profile_form_schema``, ``simulate``,
``change_one_thing``, ``item_form_schema``, ``new_item_audience``); this page draws the form and
the answers.

The fused model explains its own scores (profile, liked items, item-to-item similarity, similar
content, similar people, popularity: whichever sources it uses; or collaborative / content /
popularity), places the new person in a segment by its own vector for them, and scores a new
item from its attributes (``score_new_items``); without a fused model the new-item audience
falls back to content similarity and says so. Popularity and segment popularity are
shown beside it: the trained ones when the session has them, otherwise fitted here on the fly
(they take well under a second). Segments are the latest ones of the Segments page when there
are any, otherwise found once per model here.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from recommender.analysis.coldstart import (SimulationResult, change_one_thing, item_form_schema,
                                            new_item_audience, profile_form_schema, simulate)
from recommender.analysis.privacy import K_MIN_DEFAULT, K_MIN_FLOOR, safe_csv
from recommender.analysis.segments import SegmentResult, segment_users
from recommender.analysis.segments import groupable_columns as analysis_groupable_columns
from recommender.errors import DataError
from recommender.features import UNKNOWN
from recommender.models import REGISTRY
from recommender.models.fused import FusedRecommender
from recommender.training import model_label
from ui import analysis_charts, charts, state
from ui.common import PAGES, download_name, escape_label, escape_markdown, link_to_page, page_setup, show_problems

logger = logging.getLogger(__name__)

THIS_PAGE = "pages/6_Cold_start.py"
TRAIN_PAGE = next(page for page in PAGES if page.path == "pages/2_Train.py")
MODES = ("A new person", "A new item")
BASELINES = ("popularity", "segment_popularity")
#: A popularity gate weight from which the fused model is, in effect, popularity alone for a person.
POPULARITY_ALONE = 0.99
K_CHOICES = (5, 10, 20)
#: Column widths (px) of the compact recommendation lists.
LIST_RANK_WIDTH = 40
LIST_TITLE_WIDTH = 230
LIST_CATEGORY_WIDTH = 110
#: The "already liked" picker offers at most this many items (the most popular first).
MAX_LIKED_OPTIONS = 2000
MAX_LIKED = 20
#: Session keys of this page: the submitted person / item (per session, with the dataset version).
PERSON_KEY = "recolens_coldstart_person"
ITEM_KEY = "recolens_coldstart_item"
BY_SEGMENT = "__segments__"
NOT_GIVEN = "not given"
#: Colours of the explanation parts (by plain name; others cycle through the palette).
PART_COLOURS = {"profile": charts.COLOURS[0], "liked items": charts.COLOURS[1],
                "liked items (item-to-item)": charts.COLOURS[5], "popularity": charts.COLOURS[2],
                "similar content": charts.COLOURS[3], "similar people": "#EC4899",
                "content": charts.COLOURS[3], "collaborative": charts.COLOURS[0]}
GATE_WORDS = {"profile": "the profile", "history": "the liked items",
              "item_item": "item-to-item similarity to the liked items",
              "content_similarity": "items with content like the liked items",
              "similar_people": "what people with a similar profile picked", "popularity": "popularity"}
#: How the person was placed in a segment (``SimulationResult.segment_basis``), in words.
PLACED_BY = {"model scores": "the model's own scores for this person",
             "model vector": "the model's own vector for this person", "liked items": "the liked items",
             "profile": "the segment members' average profile nearest to theirs"}

dataset = page_setup("Cold start", icon=":material/person_add:")
version = state.dataset_version()


# ---------------------------------------------------------------------- models and segments
def usable(model: Any) -> bool:
    """Whether ``model`` was fitted on the loaded data (models of other data cannot score it)."""
    return getattr(model, "dataset", None) is dataset


def fused_models() -> dict[str, FusedRecommender]:
    return {name: model for name, model in state.get_models().items()
            if isinstance(model, FusedRecommender) and usable(model)}


def baseline_models() -> dict[str, Any]:
    """Popularity and segment popularity: the trained ones, or fitted once per session (cheap)."""
    trained = state.get_models()
    out = {}
    for name in BASELINES:
        model = trained.get(name)
        if model is None or not usable(model):
            model = state.memo(f"coldstart_baseline_{name}", lambda name=name: fit_quickly(name))
        out[name] = model
    return out


def fit_quickly(name: str):
    with st.spinner(f"Fitting {model_label(name).lower()} (once)..."):
        return REGISTRY[name]().fit(dataset)


def current_segments(model_name: str | None, model: Any) -> tuple[SegmentResult | None, str]:
    """The Segments page's latest segmentation, else segments of ``model`` found once; and where they came from."""
    latest = analysis_charts.latest_segments()
    result = latest.get("result")
    if isinstance(result, SegmentResult) and result.dataset is dataset:
        return result, f"from the Segments page: {latest.get('label', 'latest run')}"

    def compute():
        try:
            with st.spinner("Finding segments (once per model)..."):
                return segment_users(model, dataset, seed=0)
        except (DataError, ValueError) as error:
            logger.info("cold start: no segments (%s)", error)
            return None

    segments = analysis_charts.remembered("coldstart_segments", (model_name, id(model)), compute, keep=2)
    source = (f"found from what the {model_label(model_name)} model would recommend to each person" if model_name
              else "found from what people interacted with")
    return segments, source


# ---------------------------------------------------------------------- helpers
def item_choices() -> tuple[list[str], dict[str, str]]:
    """Item ids offered in the "already liked" picker (most popular first) and their display labels."""
    def compute():
        counts = np.bincount(dataset.item_index, minlength=dataset.n_items)
        order = np.argsort(-counts, kind="stable")[:MAX_LIKED_OPTIONS]
        ids = [str(i) for i in dataset.item_ids[order]]
        titles = [str(t) for t in dataset.item_labels(order)]
        return ids, {i: (t if t == i else f"{t} ({i})") for i, t in zip(ids, titles)}

    return state.memo("coldstart_item_choices", compute)


def group_columns() -> list[str]:
    """Profile columns that split people into groups (not multi-label or free text)."""
    return state.memo("coldstart_group_columns", lambda: analysis_groupable_columns(dataset))


def freeze(value: Any) -> Any:
    """A hashable copy of a form answer (for remembering results)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set)):
        return tuple(freeze(v) for v in value)
    return value


def shown_value(value: Any) -> str:
    """A form answer in words ("(unknown)" when not given)."""
    if value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value):
        return UNKNOWN
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def other_number(spec, value: float | None) -> float:
    """A clearly different value for a number field: halfway from ``value`` to the far end of its range."""
    middle = float(spec.median if spec.median is not None else (spec.min_value + spec.max_value) / 2)
    current = middle if value is None else float(value)
    far = float(spec.max_value) if current <= middle else float(spec.min_value)
    other = (current + far) / 2
    return float(round(other)) if spec.step == 1.0 else other


def plain(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy without ``attrs`` (notes and settings for the page, not for display)."""
    frame = frame.copy()
    frame.attrs = {}
    return frame


def show_table(frame, key: str, place=st, **kwargs) -> None:
    """``st.dataframe`` in a container keyed ``key`` (read-only tables carry no key of their own)."""
    with place.container(key=key):
        st.dataframe(frame, hide_index=True, width="stretch", **kwargs)


def percent(value: float) -> str:
    return f"{100 * value:.0f} %"


# ---------------------------------------------------------------------- form fields
def field_widget(spec, key: str, current: Any = None, use_default: bool = True) -> Any:
    """One form field for ``spec`` (a :class:`FieldSpec`); returns the answer (None: not given)."""
    label = escape_label(spec.name)
    help_text = escape_markdown(spec.help) if spec.help else None
    value = spec.default if use_default else current
    if spec.kind == "select":
        options = [UNKNOWN, *spec.options]
        typed = st.session_state.get(key)         # a value typed earlier stays in the list
        for extra in (value, typed):
            if extra is not None and str(extra) not in options:
                options.append(str(extra))
        index = options.index(str(value)) if value is not None else 0
        answer = st.selectbox(label, options, index=index, key=key, accept_new_options=True,
                              help=(help_text or "") + " Type a value that is not in the list to see how the "
                                                       "model treats a value it never saw.")
        return None if answer in (None, UNKNOWN) else answer
    if spec.kind == "number":
        low, high = float(spec.min_value), float(spec.max_value)
        whole = spec.step == 1.0
        start = float(spec.median if value is None else value)
        start = min(max(start, low), high)
        if high > low:
            if whole:
                number = st.slider(label, int(np.floor(low)), int(np.ceil(high)), int(round(start)), step=1,
                                   key=key, help=help_text)
            else:
                number = st.slider(label, low, high, start, key=key, help=help_text)
        else:
            number = st.number_input(label, value=start, key=key, help=help_text)
        not_given = st.checkbox(f"{label}: {NOT_GIVEN}", value=not use_default and current is None,
                                key=f"{key}_unknown", help="Leave this value out: the model treats it as unknown.")
        return None if not_given else number
    if spec.kind == "multiselect":
        default = [v for v in (value or []) if v in spec.options]
        return st.multiselect(label, spec.options, default=default, key=key, help=help_text)
    return st.text_input(label, value=value or "", key=key, help=help_text) or None


def form_fields(fields, prefix: str, per_row: int = 3) -> dict[str, Any]:
    answers = {}
    columns = st.columns(per_row)
    for position, spec in enumerate(fields):
        with columns[position % per_row]:
            answers[spec.name] = field_widget(spec, key=f"{prefix}_{version}_{position}")
    return answers


# ---------------------------------------------------------------------- tables and charts
def list_table(frame: pd.DataFrame, compact: bool) -> pd.DataFrame:
    """A recommendation list for display: rank, title (and the category or every attribute)."""
    shown = plain(frame)
    if compact:
        keep = ["rank", "title"] + ([dataset.category_column] if dataset.category_column in frame.columns else [])
        shown = shown[keep]
    return shown.rename(columns={"rank": "#", "title": "Item", "item_id": "Item id", "score": "Score"})


def list_columns() -> dict:
    """Column widths of a compact list: a narrow rank, the title, the category (readable side by side)."""
    config = {"#": st.column_config.NumberColumn(width=LIST_RANK_WIDTH),
              "Item": st.column_config.TextColumn(width=LIST_TITLE_WIDTH)}
    if dataset.category_column:
        config[dataset.category_column] = st.column_config.TextColumn(width=LIST_CATEGORY_WIDTH)
    return config


def overlap_caption(main_name: str, main: pd.DataFrame, others: Mapping[str, pd.DataFrame]) -> str:
    """How many of the main list's items each comparison list shares ("4 of 10 also in Popularity")."""
    ids = set(main["item_id"])
    parts = [f"{len(ids & set(frame['item_id']))} of {len(ids)} also in {escape_markdown(name)}"
             for name, frame in others.items()]
    return f"{escape_markdown(main_name)}: " + "; ".join(parts) + "." if parts and ids else ""


def lists_section(lists: Mapping[str, pd.DataFrame]) -> None:
    """The main list on the left, the comparison lists beside it (one tab each when there are several).

    Three lists side by side leave about 300 px each at a 1,400 px window: too narrow for a
    title and its category. Two columns keep both readable.
    """
    (main_name, main), *others = lists.items()
    left, right = st.columns(2)
    left.markdown(f"**{escape_markdown(main_name)}**")
    show_table(list_table(main, compact=True), "cs_list_0", left, column_config=list_columns())
    if not others:
        return
    with right:
        places = [right] if len(others) == 1 else st.tabs([escape_markdown(name) for name, _ in others])
        for position, (place, (name, frame)) in enumerate(zip(places, others), start=1):
            if len(others) == 1:          # tabs carry the name themselves
                place.markdown(f"**{escape_markdown(name)}**")
            show_table(list_table(frame, compact=True), f"cs_list_{position}", place, column_config=list_columns())
        caption = overlap_caption(main_name, main, dict(others))
        if caption:
            st.caption(caption)


def explanation_figure(explanation: pd.DataFrame, columns: list[str]) -> go.Figure:
    """One horizontal stacked bar per recommended item: the parts of its score, and the score itself."""
    labels = [f"{rank}. {charts.plot_text(analysis_charts.short(title))}"
              for rank, title in zip(explanation["rank"], explanation["title"])]
    full = charts.plot_texts(explanation["title"])
    figure = go.Figure()
    for position, column in enumerate(columns):
        figure.add_trace(go.Bar(
            y=labels, x=explanation[column], orientation="h", name=charts.plot_text(column),
            marker_color=PART_COLOURS.get(column, charts.COLOURS[position % len(charts.COLOURS)]),
            customdata=full,
            hovertemplate=f"%{{customdata}}<br>{charts.plot_text(column)}: %{{x:+.3f}}<extra></extra>"))
    figure.add_trace(go.Scatter(
        y=labels, x=explanation["score"], mode="markers", name="score (sum)",
        marker=dict(symbol="diamond", size=10, color="#111827"), customdata=full,
        hovertemplate="%{customdata}<br>score: %{x:.3f}<extra></extra>"))
    figure.update_layout(barmode="relative")
    figure.update_yaxes(autorange="reversed", type="category", automargin=True)
    figure.update_xaxes(title="contribution to the score", zeroline=True, zerolinecolor="#9CA3AF")
    figure = charts.style(figure, title="Why these items: where each score comes from",
                          height=max(280, 150 + 30 * len(explanation)))
    # Up to seven parts: a legend above the plot would wrap into the title, so it goes below.
    figure.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.12 - 1.5 / max(len(explanation), 4),
                                     xanchor="left", x=0), margin=dict(b=40))
    return figure


def audience_figure(audience: pd.DataFrame, grouped_by: str) -> go.Figure:
    shown = audience[audience["privacy"] == ""] if "privacy" in audience.columns else audience
    labels = charts.plot_texts(analysis_charts.short(g) for g in shown["group"])
    colours = [charts.COLOURS[3] if v >= 0 else charts.COLOURS[4] for v in shown["vs_average"]]
    figure = go.Figure(go.Bar(
        x=shown["vs_average"], y=labels, orientation="h", marker_color=colours,
        customdata=np.stack([charts.plot_texts(shown["group"]), shown["n_users"].astype(float),
                             shown["top_decile_lift"].astype(float)], axis=1),
        hovertemplate=("%{customdata[0]} (n=%{customdata[1]:,.0f})<br>%{x:+.2f} standard deviations vs "
                       "everyone<br>top-10 % lift: %{customdata[2]:.2f}<extra></extra>")))
    figure.update_yaxes(autorange="reversed", type="category", automargin=True)
    figure.update_xaxes(title="affinity vs the average person (standard deviations)", zeroline=True,
                        zerolinecolor="#9CA3AF")
    what = "segment" if grouped_by == "segment" else grouped_by
    return charts.style(figure, title=f"Who would engage with this item, by {what}",
                        height=max(240, 90 + 30 * len(shown)))


# ---------------------------------------------------------------------- a new person
def person_form(schema) -> None:
    st.subheader("Describe the new person", anchor=False)
    if not schema:
        st.info("The loaded data has no profile columns the models use; you can still say which items the "
                "person already liked.")
    ids, item_label = item_choices()
    with st.form(f"cs_person_form_{version}"):
        answers = form_fields(schema, "cs_field")
        liked = st.multiselect(
            "Already liked (optional, a few items)", ids, format_func=item_label.get, key=f"cs_liked_{version}",
            max_selections=MAX_LIKED,
            help="Items the person interacted with so far (few-shot). They are used as a signal and never "
                 f"recommended again. The {len(ids):,} most popular items are offered.")
        k = st.select_slider("Recommendations per list", K_CHOICES, value=10, key=f"cs_k_{version}")
        if st.form_submit_button("Recommend", key="cs_submit", type="primary", icon=":material/play_arrow:"):
            st.session_state[PERSON_KEY] = {"version": version, "profile": answers, "liked": list(liked),
                                            "k": int(k)}


def run_simulation(main_name: str, main, compare: dict, segments, profile, liked, k) -> SimulationResult:
    key = (main_name, id(main), tuple(id(m) for m in compare.values()), id(segments), freeze(profile),
           tuple(liked), k)
    return analysis_charts.remembered(
        "coldstart_simulations", key,
        lambda: simulate(main, dataset, profile, liked=liked, k=k, compare_models=compare, segments=segments),
        keep=4)


def segment_and_gate_sentence(result: SimulationResult, segments: SegmentResult | None, source: str,
                              liked: list[str]) -> str:
    parts = []
    if result.segment is not None:
        # Numbered as on the Segments page (0 = the largest segment).
        parts.append(f"This person lands in segment {result.segment}: **{escape_markdown(result.segment_name)}** "
                     f"(one of {segments.k} segments {escape_markdown(source)}; placed by "
                     f"{PLACED_BY.get(result.segment_basis, 'their profile')}).")
    elif segments is not None:
        parts.append("The person could not be placed in a segment.")
    if result.gate:
        trust = sorted(((name, weight) for name, weight in result.gate.items() if weight >= 0.005),
                       key=lambda item: -item[1])
        words = [f"{GATE_WORDS.get(name, escape_markdown(name))} {percent(weight)}" for name, weight in trust]
        if words:
            sentence = ("For this person the model trusts " + ", ".join(words[:-1])
                        + (" and " if len(words) > 1 else "") + words[-1] + ".")
            if not liked and result.gate.get("popularity", 0.0) >= POPULARITY_ALONE:
                sentence += (" With no liked items, it recommends what is popular: on this data it found that a "
                             "profile alone tells too little about a new person to beat popularity. Add a liked "
                             "item to see it personalise.")
            elif not liked:
                sentence += " With no liked items, it goes by who the person is and by what is popular."
            parts.append(sentence)
    return " ".join(parts)


def explanation_section(result: SimulationResult) -> None:
    if result.explanation is None or not len(result.explanation):
        return
    st.subheader("Why the fused model chose these items", anchor=False)
    views = {"By signal": (result.explanation, result.explanation_columns)}
    if result.explanation_by_part is not None:
        part_columns = [c for c in result.explanation_by_part.columns if c not in ("rank", "item_id", "title", "total")]
        by_part = result.explanation_by_part.assign(score=result.explanation["score"].to_numpy())
        views["By item part (collaborative / content / popularity)"] = (by_part, part_columns)
    view = st.radio("Split each score", list(views), horizontal=True, key="cs_explain_view",
                    label_visibility="collapsed") if len(views) > 1 else next(iter(views))
    frame, columns = views[view]
    st.plotly_chart(explanation_figure(frame, columns), key="cs_explanation_chart", config=charts.PLOTLY_CONFIG)
    if result.explanation_exact:
        st.caption("Each bar's coloured parts add up exactly to the model's score for that item (◆). A part is "
                   "how far that signal ranks the item above (+) or below (−) its average item, weighted by how "
                   "much the model trusts the signal for this person, so a negative part pulls the item down.")
    else:
        st.caption("The parts are an approximation: they do not add up exactly to the model's score (◆). "
                   + escape_markdown(result.notice))
    with st.expander("The numbers"):
        table = plain(frame).drop(columns=[c for c in ("item_id",) if c in frame.columns])
        show_table(table.rename(columns={"rank": "#", "title": "Item", "total": "Sum", "score": "Score"}),
                   "cs_explanation_table")


def change_section(main_name: str, main, schema, profile: dict, liked: list[str], k: int) -> None:
    st.subheader("Change one thing", anchor=False)
    if not schema:
        st.caption("There is no profile attribute to change.")
        return
    st.caption(f"Pick one attribute and a new value to see how the {model_label(main_name)} list reacts.")
    cells = st.columns([1, 1, 2])
    names = [spec.name for spec in schema]
    position = cells[0].selectbox("Attribute", range(len(names)), format_func=lambda p: names[p],
                                  key=f"cs_change_attribute_{version}")
    spec = schema[position]
    before = profile.get(spec.name)
    alternatives = [v for v in spec.options if v != before] if spec.kind == "select" else []
    with cells[1]:
        if spec.kind == "select":
            new_value = field_widget(spec, f"cs_change_value_{version}_{position}",
                                     current=alternatives[0] if alternatives else None, use_default=False)
        elif spec.kind == "number":
            new_value = field_widget(spec, f"cs_change_value_{version}_{position}",
                                     current=other_number(spec, before), use_default=False)
        else:
            new_value = field_widget(spec, f"cs_change_value_{version}_{position}", current=before,
                                     use_default=False)
    try:
        comparison = change_one_thing(main, dataset, profile, spec.name, new_value, liked=liked, k=k)
    except (KeyError, DataError, ValueError) as error:
        st.warning(escape_markdown(f"This change cannot be simulated: {error}"))
        return
    entered = int((comparison["after_change"] == "entered").sum())
    moved = int(comparison["after_change"].fillna("").str.match(r"^(up|down) ").sum())
    with cells[2]:
        st.markdown(f"**{escape_markdown(spec.name)}**: {escape_markdown(shown_value(before))} → "
                    f"{escape_markdown(shown_value(new_value))}")
        if entered == 0 and moved == 0:
            st.caption("The list stays the same.")
        else:
            st.caption(f"{entered} item(s) entered the top {k} and as many left; {moved} moved up or down.")

    def highlight(value):
        text = str(value or "")
        if text in ("entered",) or text.startswith("up"):
            return "color: #047857; font-weight: 600"
        if text == "left" or text.startswith("down"):
            return "color: #B91C1C; font-weight: 600"
        return "color: #6B7280" if text == "same" else ""

    left, right = st.columns(2)
    for cell, side, title in ((left, "before", f"Before ({shown_value(before)})"),
                              (right, "after", f"After ({shown_value(new_value)})")):
        table = plain(comparison)[["rank", side, f"{side}_change"]].rename(
            columns={"rank": "#", side: "Item", f"{side}_change": "Change"})
        cell.markdown(f"**{escape_markdown(title)}**")
        show_table(table.style.map(highlight, subset=["Change"]), f"cs_change_{side}", cell)


def person_results(main_name: str | None, schema) -> None:
    submitted = st.session_state.get(PERSON_KEY)
    if not submitted or submitted.get("version") != version:
        st.caption("Fill in the form and press **Recommend**.")
        return
    profile, liked, k = submitted["profile"], submitted["liked"], submitted["k"]
    baselines = baseline_models()
    if main_name is not None:
        main = fused_models()[main_name]
        compare = {model_label(name): model for name, model in baselines.items()}
    else:
        main_name, main = "segment_popularity", baselines["segment_popularity"]
        compare = {model_label("popularity"): baselines["popularity"]}
    segments, source = current_segments(main_name if isinstance(main, FusedRecommender) else None,
                                        main if isinstance(main, FusedRecommender) else None)
    try:
        try:
            result = run_simulation(main_name, main, compare, segments, profile, liked, k)
        except ValueError as error:          # placing the person in these segments failed: go on without
            logger.warning("cold start: segment assignment failed (%s)", error)
            segments = None
            result = run_simulation(main_name, main, compare, segments, profile, liked, k)
    except KeyError as error:
        st.warning(escape_markdown(f"Some liked items are not in the loaded data ({error}); pick them again."))
        return
    except DataError as error:
        show_problems(error.problems, key="cs_problems")
        return

    st.subheader("What the new person would be shown", anchor=False)
    seen = " · ".join(f"{escape_markdown(column)}: {escape_markdown(value)}"
                      for column, value in result.interpreted.items())
    if seen:
        st.caption(f"What the models see of this profile: {seen}")
    if result.notice:
        st.info(escape_markdown(result.notice[:1].upper() + result.notice[1:]), icon=":material/info:")
    sentence = segment_and_gate_sentence(result, segments, source, liked)
    if sentence:
        st.markdown(sentence)

    lists = {model_label(main_name): result.recommendations, **result.comparisons}
    lists_section(lists)
    with st.expander("Every item's attributes and scores"):
        tabs = st.tabs([escape_markdown(name) for name in lists])
        for position, (tab, frame) in enumerate(zip(tabs, lists.values())):
            show_table(list_table(frame, compact=False), f"cs_details_{position}", tab)

    st.download_button(
        "Download these recommendations (CSV)", data=safe_csv(result.to_frame(model_label(main_name))),
        mime="text/csv", file_name=download_name("cold_start_recommendations", dataset.name),
        key="cs_download", icon=":material/download:", on_click="ignore",
        help="Every list above, one row per recommended item, with the profile it was made for.")
    explanation_section(result)
    change_section(main_name, main, schema, profile, liked, k)


# ---------------------------------------------------------------------- a new item
def item_mode(main_name: str | None) -> None:
    st.subheader("Describe the new item", anchor=False)
    fields = state.memo("coldstart_item_schema", lambda: item_form_schema(dataset))
    if not fields:
        st.info("The loaded items have no attributes (category, tags, price...), so a new item cannot be "
                "described. Load an item table on the Data page.")
        link_to_page(PAGES[0])
        return
    main = fused_models().get(main_name) if main_name else None
    segments, source = current_segments(main_name if main is not None else None, main)
    groupings = ([BY_SEGMENT] if segments is not None else []) + group_columns()
    if not groupings:
        st.info("There are no segments or profile groups to break the audience down by.")
        return
    with st.form(f"cs_item_form_{version}"):
        answers = form_fields(fields, "cs_item_field")
        cells = st.columns([2, 1])
        grouping = cells[0].selectbox(
            "Break the audience down by", groupings, key=f"cs_item_grouping_{version}",
            format_func=lambda g: f"Segments ({source})" if g == BY_SEGMENT else f"Profile attribute: {g}")
        k_min = int(cells[1].number_input(
            "Privacy threshold k_min", min_value=K_MIN_FLOOR, value=K_MIN_DEFAULT, step=1,
            key=f"cs_item_k_min_{version}",
            help="Groups of fewer than k_min people are hidden: a small group's numbers can identify the "
                 f"people in it. At least {K_MIN_FLOOR}."))
        if st.form_submit_button("Who would engage?", key="cs_item_submit", type="primary",
                                 icon=":material/play_arrow:"):
            st.session_state[ITEM_KEY] = {"version": version, "item": answers, "grouping": grouping,
                                          "k_min": k_min}
    submitted = st.session_state.get(ITEM_KEY)
    if not submitted or submitted.get("version") != version:
        st.caption("Describe the item and press **Who would engage?**.")
        return
    grouping = submitted["grouping"]
    try:
        audience = analysis_charts.remembered(
            "coldstart_audiences",
            (id(main), id(segments), freeze(submitted["item"]), grouping, submitted["k_min"]),
            lambda: new_item_audience(main, dataset, submitted["item"],
                                      segments=segments if grouping == BY_SEGMENT else None,
                                      by_attribute=None if grouping == BY_SEGMENT else grouping,
                                      k_min=submitted["k_min"]), keep=4)
    except (KeyError, DataError, ValueError) as error:
        st.warning(escape_markdown(f"The audience cannot be computed: {error}"))
        return
    grouped_by = audience.attrs.get("grouped_by", "segment")
    method = audience.attrs.get("method", "")
    if method == "model":
        st.caption(f"Affinity: the {escape_markdown(model_label(main_name))} model's own score for the new item, "
                   "for every person in the data. The model scores it like a catalogue item nobody has "
                   "interacted with yet: from its attributes alone.")
    elif main is None:
        st.caption("Affinity here is content similarity, not a model score: train a fused model to have the "
                   "model itself score the new item.")
    notice = audience.attrs.get("notice", "")
    if notice:
        st.info(escape_markdown(notice[:1].upper() + notice[1:]), icon=":material/info:")
    visible = audience[audience["privacy"] == ""] if "privacy" in audience.columns else audience
    if len(visible):
        best = visible.iloc[0]
        st.markdown(f"Most drawn to this item: **{escape_markdown(best['group'])}** "
                    f"({best['vs_average']:+.2f} standard deviations compared with the average person; "
                    f"{int(best['n_users']):,} people).")
        st.plotly_chart(audience_figure(audience, grouped_by), key="cs_audience_chart",
                        config=charts.PLOTLY_CONFIG)
    else:
        st.warning("Every group is smaller than the privacy threshold, so nothing can be shown.")
    show_table(
        plain(audience).rename(columns={"group": "Group", "n_users": "People", "mean_affinity": "Mean affinity",
                                 "vs_average": "vs average (sd)", "top_decile_lift": "Top-10 % lift",
                                 "privacy": "Privacy"}),
        "cs_audience_table",
        column_config={"People": st.column_config.NumberColumn(format="%d"),
                       "Mean affinity": st.column_config.NumberColumn(format="%.3f"),
                       "vs average (sd)": st.column_config.NumberColumn(format="%+.2f"),
                       "Top-10 % lift": st.column_config.NumberColumn(
                           format="%.2f", help="The group's share of the 10 % of people most drawn to the item, "
                                               "divided by its share of everyone (1 = as expected).")})


# ---------------------------------------------------------------------- the page
st.title("Cold start")
st.markdown("What would a recommender show someone it has **never seen act**, knowing only their profile (and "
            "perhaps a few items they liked)? And who would a **brand-new item** reach? Answers come from the "
            "trained models, encoded exactly like the training data: a value never seen in training counts as "
            "unknown, as it would in production.")

fused = fused_models()
main_name: str | None = None
if fused:
    names = list(fused)
    main_name = names[0] if len(names) == 1 else st.selectbox(
        "Fused model", names, format_func=model_label, key="cs_model")
else:
    with st.container(border=True):
        st.info("No fused model is trained yet: it is the model that explains each recommendation from the "
                "profile, the liked items, content and popularity. Train it on the Train page; meanwhile you see "
                "popularity and segment popularity.", icon=":material/lightbulb:")
        link_to_page(TRAIN_PAGE, label="Train a fused model")

mode = st.radio("What is new?", MODES, horizontal=True, key="cs_mode")
if mode == MODES[0]:
    profile_schema = state.memo("coldstart_schema", lambda: profile_form_schema(dataset))
    person_form(profile_schema)
    person_results(main_name, profile_schema)
else:
    item_mode(main_name)
