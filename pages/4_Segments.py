"""Segments page: groups of similar users, who they are, what they like, how well each model serves them.

Thin on purpose: clustering, naming, profiles, comparisons, privacy and exports are
:mod:`recommender.analysis` (``segment_users``, ``projection_2d``, ``compare_segments``,
``segment_assignments``, ``safe_csv``); the figures come from :mod:`ui.analysis_charts`.
Results are kept per session (:func:`ui.analysis_charts.remembered`), keyed by the model and
the settings, so reruns stay fast.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from recommender.analysis import (K_MIN_DEFAULT, K_MIN_FLOOR, compare_segments, profile_groups, projection_2d,
                                  safe_csv, segment_assignments, segment_users)
from recommender.analysis.segments import DEFAULT_K_RANGE
from recommender.analysis.segments import groupable_columns as analysis_groupable_columns
from recommender.errors import DataError
from recommender.evaluation import metric_label
from recommender.models.base import Recommender
from recommender.training import model_label
from ui import analysis_charts, charts, state
from ui.common import PAGES, download_name, escape_markdown, link_to_page, next_page_after, page_setup, show_problems

THIS_PAGE = "pages/4_Segments.py"
TRAIN_PAGE, EVALUATE_PAGE = PAGES[1], PAGES[2]
#: Representations that need no trained model.
PROFILE_ONLY = "__profile__"
INTERACTIONS_ONLY = "__interactions__"
K_RANGE = DEFAULT_K_RANGE
#: Points drawn on the map (a seeded sample above this).
MAP_POINTS = 3000
#: Hover lines show at most this many profile columns.
HOVER_COLUMNS = 4
SEED = 0
CARDS_PER_ROW = 3
COLOUR_BY_SEGMENT = "__segment__"
#: How a model describes a person (``segment_users(representation=...)``).
REPRESENTATION_LABELS = {"scores": "scores (what it recommends)", "embeddings": "user vectors"}

dataset = page_setup("Segments", icon=":material/groups:")


# ---------------------------------------------------------------------- helpers
def has_user_embeddings(model) -> bool:
    """Whether the model learns one vector per user (checked without computing them)."""
    method = getattr(type(model), "user_embeddings", None)
    return isinstance(model, Recommender) and method is not None and method is not Recommender.user_embeddings


def source_label(source: str) -> str:
    if source == PROFILE_ONLY:
        return "Profile attributes only (no model)"
    if source == INTERACTIONS_ONLY:
        return "What people interacted with (no model)"
    return f"{model_label(source)} model"


def groupable_columns() -> list[str]:
    """Profile columns that split people into groups (not multi-label or free text)."""
    return state.memo("segments_groupable_columns", lambda: analysis_groupable_columns(dataset))


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def evaluation_frame() -> tuple[pd.DataFrame | None, list[str]]:
    """Per-user quality of the latest evaluation, reduced to the columns segments are scored on."""
    evaluation = state.get_evaluation()
    per_user = getattr(evaluation, "per_user", None)
    k = getattr(evaluation, "k", None)
    if not isinstance(per_user, pd.DataFrame) or per_user.empty or k is None:
        return None, []
    metrics = [m for m in (f"ndcg@{k}", f"recall@{k}", f"hit_rate@{k}") if m in per_user.columns]
    keep = [c for c in ("model", "user_index") if c in per_user.columns]
    if "user_index" not in keep or not metrics:
        return None, []
    return per_user[keep + metrics], metrics


def run_segmentation(source: str, include_profile: bool, k: int | None, k_min: int, representation: str):
    """Segments for the chosen representation and settings (computed once per session and key)."""
    models = state.get_models()
    model = models.get(source)
    key = (source, id(model), include_profile, k, k_min, representation)

    def compute():
        if source == PROFILE_ONLY:
            # The standardised profile itself is the representation; everyone has one.
            return segment_users(dataset.user_features, dataset, k=k, k_range=K_RANGE, seed=SEED,
                                 cold_users="embedding", k_min=k_min)
        return segment_users(None if source == INTERACTIONS_ONLY else model, dataset, k=k, k_range=K_RANGE,
                             include_profile=include_profile, seed=SEED, k_min=k_min, representation=representation)

    with st.spinner("Finding segments..."):
        return analysis_charts.remembered("segments", key, compute)


def segments_or_stop(source: str, include_profile: bool, k: int | None, k_min: int, representation: str):
    """:func:`run_segmentation`, or the reason it failed and the end of the page."""
    try:
        return run_segmentation(source, include_profile, k, k_min, representation)
    except DataError as error:
        st.error("Segments could not be computed.")
        show_problems(error.problems, key="segment_problems")
    except ValueError as error:
        st.error(escape_markdown(f"Segments could not be computed: {error}"))
    st.stop()


# ---------------------------------------------------------------------- sections
def controls(sources: list[str], default: str) -> tuple[str, bool, int, str]:
    cells = st.columns([2, 1, 1])
    source = cells[0].selectbox(
        "Represent each person by", sources, index=sources.index(default), format_func=source_label,
        key="seg_source", help="A model describes taste as it learned it; the options without a model cluster "
                               "the raw profile or the raw interactions.")
    representation = "auto"
    if source not in (PROFILE_ONLY, INTERACTIONS_ONLY):
        representation = cells[0].radio(
            "Describe each person by the model's", list(REPRESENTATION_LABELS), horizontal=True,
            format_func=REPRESENTATION_LABELS.get, key="seg_representation",
            help="Its scores: what it would recommend to the person, shaped by every signal it uses (the "
                 "default; it matched the planted segments of generated data best). Its user vectors: the "
                 "fused model's profile + history vector, which leaves out the item-to-item, similar-content "
                 "and similar-people signals.")
    has_profile = dataset.user_features.shape[1] > 0
    include_profile = cells[1].toggle(
        "Include profile features", value=False, key="seg_profile", disabled=source == PROFILE_ONLY or not has_profile,
        help="Add the profile attributes (age, region, ...) to what is clustered, with half the weight of the "
             "taste vector: segments then differ in who people are as well as in what they like.")
    k_min = int(cells[2].number_input(
        "Privacy threshold k_min", min_value=K_MIN_FLOOR, max_value=max(K_MIN_DEFAULT, dataset.n_users),
        value=K_MIN_DEFAULT, step=1, key="seg_k_min",
        help=f"Segments of fewer than k_min people are hidden in charts, cards and exports, because a small "
             f"group's description can identify the people in it. At least {K_MIN_FLOOR}."))
    return source, include_profile and source != PROFILE_ONLY, k_min, representation


def choose_k(auto) -> int | None:
    """The automatic k and its silhouette curve; a slider to override it. Returns the fixed k or None."""
    cells = st.columns([1, 2])
    with cells[0]:
        if len(auto.silhouette) > 1:
            st.markdown(f"**{auto.k} segments** give the clearest split (highest silhouette: how much closer "
                        "people are to their own segment than to the next one).")
        else:
            st.markdown(f"**{plural(auto.k, 'segment')}** could be formed.")
        override = st.toggle("Choose k myself", value=False, key="seg_override_k")
        chosen = None
        if override:
            high = max(K_RANGE[1], auto.k)
            chosen = int(st.slider("Number of segments k", min_value=2, max_value=max(3, high), value=auto.k,
                                   key="seg_k"))
    if len(auto.silhouette) > 1:
        cells[1].plotly_chart(analysis_charts.silhouette_figure(auto.silhouette, auto.k, chosen), width="stretch",
                              config=charts.PLOTLY_CONFIG, key="seg_silhouette")
    else:
        cells[1].caption("Too few distinct people to compare several numbers of segments.")
    return chosen


def segment_map(result) -> None:
    st.subheader("Map of the users", anchor=False)
    visible = ~result.suppressed
    columns = groupable_columns()
    cells = st.columns([1, 1, 2])
    method = cells[0].radio("Layout", ["pca", "tsne"], horizontal=True, key="seg_projection",
                            format_func=lambda m: {"pca": "PCA (fast)", "tsne": "t-SNE (local groups)"}[m],
                            help="PCA keeps the broad directions of the data; t-SNE keeps neighbours together "
                                 "and shows groups more clearly, but distances between groups mean little.")
    colour_by = cells[1].selectbox("Colour by", [COLOUR_BY_SEGMENT, *columns], key="seg_colour",
                                   format_func=lambda c: "Segment" if c == COLOUR_BY_SEGMENT else str(c))
    with st.spinner("Drawing the map..." if method == "pca" else "Computing t-SNE (10-20 s for a few thousand "
                                                                 "people)..."):
        coords, index, notice = analysis_charts.remembered(
            "segments_map", (id(result), method),
            lambda: projection_2d(result.representation, method=method, max_points=MAP_POINTS, seed=SEED), keep=2)
    labels = result.labels[index]
    shown = (labels >= 0) & visible[np.maximum(labels, 0)]
    coords, index, labels = coords[shown], index[shown], labels[shown]
    names = np.asarray(result.names, dtype=object)
    hover_columns = columns[:HOVER_COLUMNS]
    profiles = analysis_charts.profile_text(dataset, index, hover_columns)
    items = analysis_charts.top_items_text(dataset, index)
    ids = charts.plot_texts(dataset.user_ids[index])
    segment_text = charts.plot_texts(analysis_charts.short(n, 40) for n in names[labels])
    hover = [f"<b>{i}</b> · {s}<br>{p}<br>likes: {t}" for i, s, p, t in zip(ids, segment_text, profiles, items)]
    if colour_by == COLOUR_BY_SEGMENT:
        groups = [f"{s}: {n}" for s, n in zip(labels, names[labels])]
        order = [f"{s}: {names[s]}" for s in range(result.k) if visible[s]]
        title = "Users coloured by segment"
    else:
        values = profile_groups(dataset, colour_by)[index]
        groups, order = [str(v) for v in values], None
        title = f"Users coloured by {colour_by}"
    if len(coords) == 0:
        st.info("No segment is large enough to show on the map.")
        return
    st.plotly_chart(analysis_charts.segment_map_figure(coords, groups, hover, title, order=order), width="stretch",
                    config=charts.PLOTLY_CONFIG, key="seg_map")
    notes = [n for n in (notice, "people in segments below k_min are not drawn." if not visible.all() else "") if n]
    if notes:
        st.caption(escape_markdown(" ".join(notes).capitalize()))


def bullet_lines(text, limit: int = 3) -> str:
    parts = [p for p in str(text or "").split("; ") if p][:limit]
    return "\n".join(f"- {escape_markdown(p)}" for p in parts) if parts else "_none stands out_"


def segment_cards(result, profiles: pd.DataFrame, metrics: list[str], overall: dict[str, float]) -> None:
    st.subheader("The segments", anchor=False)
    rows = profiles[profiles["privacy"] == ""]
    overall_median = float(np.median(np.diff(dataset.matrix.indptr)))
    evaluated = bool(metrics)
    for start in range(0, len(rows), CARDS_PER_ROW):
        cells = st.columns(CARDS_PER_ROW)
        for cell, (_, row) in zip(cells, rows.iloc[start:start + CARDS_PER_ROW].iterrows()):
            with cell.container(border=True):
                st.markdown(f"**{int(row['segment'])}. {escape_markdown(row['name'])}**")
                st.metric("People", f"{int(row['size']):,}", help="Share of all people placed in a segment.",
                          delta=f"{row['share']:.0%} of users", delta_color="off", delta_arrow="off")
                st.markdown("**Who they are** (share vs overall, lift)\n" + bullet_lines(row["top_attributes"]))
                if dataset.category_names:
                    st.markdown("**Favourite categories**\n" + bullet_lines(row["top_categories"]))
                st.markdown("**Most popular items**\n" + bullet_lines(row["top_items"]))
                activity = float(row["median_interactions"])
                level = ("very active" if activity >= 2 * overall_median
                         else "light" if activity <= 0.5 * overall_median else "typical")
                st.caption(f"Activity: {level} — median {activity:g} interactions (everyone: {overall_median:g}).")
                if evaluated:
                    lines = []
                    for column in [c for c in profiles.columns if ": " in c]:
                        model, metric = column.split(": ", 1)
                        if metric != metrics[0]:
                            continue
                        value = row[column]
                        reference = overall.get(model)
                        text = "too few evaluated people" if pd.isna(value) else f"{value:.3f}"
                        if not pd.isna(value) and reference:
                            text += f" ({value / reference - 1:+.0%} vs all users)"
                        lines.append(f"- {escape_markdown(model_label(model))}: {text}")
                    st.markdown(f"**Model quality ({metric_label(metrics[0])})**\n" + "\n".join(lines))
                else:
                    st.caption("Model quality: run an evaluation on the Evaluate page to see how well each model "
                               "serves this segment.")
    n_hidden = int(result.suppressed.sum())
    if n_hidden:
        st.info(f"{n_hidden} segment(s) with fewer than {result.k_min} people are hidden to protect privacy "
                "(in the map, these cards, the comparison and the exports).", icon=":material/visibility_off:")
    if not evaluated:
        link_to_page(EVALUATE_PAGE, label="Evaluate the models")


def quality_chart(profiles: pd.DataFrame, metrics: list[str]) -> None:
    """Segments x models for the primary metric (visible segments only)."""
    columns = [c for c in profiles.columns if c.endswith(f": {metrics[0]}")]
    rows = profiles[profiles["privacy"] == ""]
    if not columns or rows.empty:
        return
    table = rows.set_index("name")[columns]
    table.columns = [c.split(": ", 1)[0] for c in columns]
    if table.notna().any().any():
        st.plotly_chart(analysis_charts.quality_figure(table, metrics[0]), width="stretch",
                        config=charts.PLOTLY_CONFIG, key="seg_quality")


def comparison(result) -> None:
    st.subheader("Compare two segments", anchor=False)
    visible = [s for s in range(result.k) if not result.suppressed[s]]
    if len(visible) < 2:
        st.caption("At least two segments above the privacy threshold are needed for a comparison.")
        return

    def label(segment: int) -> str:
        return f"{segment}. {escape_markdown(result.names[segment])}"

    cells = st.columns(2)
    a = cells[0].selectbox("Segment A", visible, index=0, format_func=label, key="seg_compare_a")
    b = cells[1].selectbox("Segment B", visible, index=1, format_func=label, key="seg_compare_b")
    if a == b:
        st.caption("Choose two different segments.")
        return
    frame = compare_segments(result, a, b)
    if frame.attrs.get("notice"):
        st.caption(escape_markdown(frame.attrs["notice"]))
    st.plotly_chart(analysis_charts.compare_figure(frame, result.names[a], result.names[b]), width="stretch",
                    config=charts.PLOTLY_CONFIG, key="seg_compare_chart")
    shown = frame.head(20).rename(columns={
        "kind": "Kind", "attribute": "Attribute", "value": "Value", "overall": "Everyone", "share_a": "Share in A",
        "share_b": "Share in B", "lift_a": "Lift A", "lift_b": "Lift B", "difference": "A − B"})
    st.dataframe(shown.style.format({c: "{:.0%}" for c in ("Everyone", "Share in A", "Share in B", "A − B")}
                                    | {"Lift A": "x{:.2f}", "Lift B": "x{:.2f}"}, na_rep="–"),
                 hide_index=True, width="stretch", key="seg_compare_table")


def exports(result, profiles: pd.DataFrame) -> None:
    st.subheader("Export", anchor=False)
    assignments = segment_assignments(result, dataset, k_min=result.k_min)
    summary = profiles[profiles["privacy"] == ""].drop(columns=["privacy"])
    cells = st.columns(2)
    cells[0].download_button(
        "Segment of each user (CSV)", data=safe_csv(assignments), mime="text/csv", icon=":material/download:",
        file_name=download_name("segments", dataset.name), key="seg_download_assignments", on_click="ignore")
    cells[1].download_button(
        "Segment summaries (CSV)", data=safe_csv(summary), mime="text/csv", icon=":material/download:",
        file_name=download_name("segment_summary", dataset.name), key="seg_download_summary", on_click="ignore")
    notice = assignments.attrs.get("notice")
    st.caption("Segments below the privacy threshold are left out of both files. " + escape_markdown(notice or ""))


# ---------------------------------------------------------------------- the page
st.title("Segments")
st.markdown("Which kinds of users are there, and for which of them does each model work well or badly? RecoLens "
            "groups people whose vectors are close (k-means), names each group by what sets it apart from "
            "everyone else, and shows what they like and how well the models serve them.")

models = state.get_models()
embedding_models = [name for name, model in models.items() if has_user_embeddings(model)]
sources = [*embedding_models]
if dataset.user_features.shape[1]:
    sources.append(PROFILE_ONLY)
sources.append(INTERACTIONS_ONLY)
default = "fused" if "fused" in embedding_models else sources[0]
if not embedding_models:
    st.info("No trained model learns a vector per person yet (the Fused model and ALS do), so the segments below "
            f"start from {source_label(default).split(' (')[0].lower()}; train a model on the Train page to "
            "segment people by the taste it learned.", icon=":material/info:")
    link_to_page(TRAIN_PAGE, label="Train a model")

# When a model arrives (or goes), a choice made without it gives way to the new default: people
# who trained a model come here to see its segments, not the profile-only ones from before.
available = tuple(embedding_models)
if st.session_state.get("seg_source_models") != available:
    st.session_state["seg_source_models"] = available
    if st.session_state.get("seg_source") not in embedding_models:
        st.session_state.pop("seg_source", None)
source, include_profile, k_min, representation = controls(sources, default)
auto = segments_or_stop(source, include_profile, None, k_min, representation)
fixed_k = choose_k(auto)
result = auto if fixed_k is None or fixed_k == auto.k else segments_or_stop(source, include_profile, fixed_k, k_min,
                                                                            representation)
analysis_charts.latest_segments().update(result=result, label=source_label(source))
origin = "the profile attributes alone" if source == PROFILE_ONLY else result.source
st.caption(escape_markdown(f"{plural(result.k, 'segment')} from {origin}"
                           + (" plus the profile attributes" if result.include_profile else "") + ". "
                           + (result.notice[:1].upper() + result.notice[1:] if result.notice else "")))

evaluation, metrics = evaluation_frame()
profiles = analysis_charts.remembered(
    "segments_profiles", (id(result), id(state.get_evaluation())),
    lambda: result.profiles(evaluation=evaluation, k_min=k_min), keep=2)
overall = ({model: float(group[metrics[0]].mean()) for model, group in evaluation.groupby("model")}
           if evaluation is not None and "model" in evaluation.columns else {})

segment_map(result)
segment_cards(result, profiles, metrics, overall)
if metrics:
    quality_chart(profiles, metrics)
comparison(result)
exports(result, profiles)

following = next_page_after(THIS_PAGE)
if following is not None:
    st.divider()
    link_to_page(following, label=f"Next: {following.label} — {following.purpose}")
