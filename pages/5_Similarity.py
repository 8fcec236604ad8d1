"""Similarity page: heatmaps of similar items, similar people, and which groups lean to which categories.

Thin on purpose: the matrices (capped, sampled or aggregated, clustered, privacy-checked) are
:mod:`recommender.analysis.similarity`; the figures come from :mod:`ui.analysis_charts`.
Plotly heatmaps send no selection events to Streamlit, so the item heatmap carries an
invisible marker per cell: clicking a cell fills the two "pair" selectboxes, which are also
usable on their own.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from recommender.analysis import (K_MIN_DEFAULT, K_MIN_FLOOR, affinity_matrix, explain_pair, item_similarity_matrix,
                                  profile_groups, segment_users, user_similarity_matrix)
from recommender.analysis.segments import groupable_columns as analysis_groupable_columns
from recommender.analysis.similarity import MAX_ITEMS
from recommender.errors import DataError
from recommender.models.base import Recommender
from recommender.training import model_label
from ui import analysis_charts, charts, state
from ui.common import PAGES, escape_markdown, link_to_page, next_page_after, page_setup, show_problems

THIS_PAGE = "pages/5_Similarity.py"
TRAIN_PAGE, SEGMENTS_PAGE = PAGES[1], PAGES[3]
KINDS = {"items": "Items × items", "users": "People × people", "segments": "Segments × categories",
         "attribute": "Profile attribute × categories"}
SOURCES = {"model": "The model's item vectors", "cooccurrence": "Co-occurrence", "content": "Content features"}
SOURCE_HELP = {
    "model": "What a trained model learned: items are close when the model would recommend them to the same "
             "people (for the Fused model, a mix of who bought them and what they are).",
    "cooccurrence": "Straight from the data: items are close when the same people interacted with both, "
                    "relative to how many people each one has.",
    "content": "Only what the items are: category, brand, price, tags. Needs no interaction at all, so it also "
               "works for brand-new items, but knows nothing about taste.",
}
NO_MODEL = "__none__"
PAIR_A, PAIR_B = "sim_pair_a", "sim_pair_b"
HEATMAP_KEY = "sim_item_heatmap"
#: The item ids of the heatmap rows, for the click callback (per session).
ITEM_IDS_KEY = "recolens_similarity_item_ids"
SEED = 0

dataset = page_setup("Similarity", icon=":material/hub:")


# ---------------------------------------------------------------------- helpers
def overrides(model, method: str) -> bool:
    found = getattr(type(model), method, None)
    return isinstance(model, Recommender) and found is not None and found is not getattr(Recommender, method)


def show_notice(matrix) -> None:
    if matrix.notice:
        st.caption(":material/info: " + escape_markdown(matrix.notice[:1].upper() + matrix.notice[1:]))


def groupable_columns() -> list[str]:
    return state.memo("segments_groupable_columns", lambda: analysis_groupable_columns(dataset))


def compute_matrix(key: tuple, compute):
    """A matrix for the key (kept per session), or ``None`` after showing why it could not be made."""
    try:
        with st.spinner("Computing the heatmap..."):
            return analysis_charts.remembered("similarity", key, compute, keep=6)
    except DataError as error:
        show_problems(error.problems, key=f"problems_{key[0]}")
    except (ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        st.warning(escape_markdown(str(message)))
    return None


def draw(matrix, title: str, key: str, **options) -> None:
    if matrix.values.size == 0:
        st.info("Nothing to show: " + escape_markdown(matrix.notice or "no rows."))
        return
    st.plotly_chart(analysis_charts.heatmap_figure(matrix, title=title, **options), width="stretch",
                    config=charts.PLOTLY_CONFIG, key=key)
    show_notice(matrix)


def current_segments(k_min: int):
    """The segmentation of the Segments page (or one made here with default settings), or ``None``."""
    latest = analysis_charts.latest_segments()
    if latest.get("result") is not None:
        return latest["result"], latest.get("label", "")
    st.info("No segments yet. Find them on the Segments page (with all the options), or here with the default "
            "settings.", icon=":material/groups:")
    link_to_page(SEGMENTS_PAGE, label="Open the Segments page")
    if st.button("Find segments with the default settings", key="sim_make_segments", icon=":material/groups:"):
        candidates = {n: m for n, m in state.get_models().items() if overrides(m, "user_embeddings")}
        model = candidates.get("fused") or next(iter(candidates.values()), None)
        with st.spinner("Finding segments..."):
            result = segment_users(model, dataset, seed=SEED, k_min=k_min)
        label = (f"{model_label(model.name)} model" if model is not None
                 else "What people interacted with (no model)")
        latest.update(result=result, label=label)
        st.rerun()
    return None, ""


# ---------------------------------------------------------------------- items x items
def select_cell() -> None:
    """Click on the item heatmap: the clicked row and column become the pair to explain."""
    selection = st.session_state.get(HEATMAP_KEY)
    points = selection["selection"]["points"] if selection else []
    ids = st.session_state.get(ITEM_IDS_KEY) or []
    for point in points:
        # The cell markers sit at x = column position, y = row position.
        try:
            row, column = int(point["y"]), int(point["x"])
        except (KeyError, TypeError, ValueError):
            continue
        if 0 <= row < len(ids) and 0 <= column < len(ids):
            st.session_state[PAIR_A], st.session_state[PAIR_B] = ids[row], ids[column]
            return


def most_similar_pair(matrix) -> tuple[int, int]:
    values = np.where(np.isfinite(matrix.values), matrix.values, -np.inf)
    np.fill_diagonal(values, -np.inf)
    row, column = np.unravel_index(int(np.argmax(values)), values.shape)
    return int(row), int(column)


def explain(item_ids: list[str], model, k_min: int) -> None:
    st.subheader("Why are two items similar?", anchor=False)
    st.caption("Click a cell of the heatmap, or choose the two items here.")
    labels = dict(zip(item_ids, dataset.item_labels(dataset.item_indices(item_ids))))
    cells = st.columns(2)
    a = cells[0].selectbox("Item A", item_ids, key=PAIR_A, format_func=lambda i: str(labels[i]))
    b = cells[1].selectbox("Item B", item_ids, key=PAIR_B, format_func=lambda i: str(labels[i]))
    result = explain_pair(dataset, model, a, b, k_min=k_min)
    audience = result["audience"]

    def count(value) -> str:
        return "hidden" if value is None else f"{value:,}"

    metrics = st.columns(4)
    metrics[0].metric("People with A", count(audience["a"]))
    metrics[1].metric("People with B", count(audience["b"]))
    metrics[2].metric("People with both", count(audience["both"]))
    metrics[3].metric("Overlap (Jaccard)", "hidden" if audience["jaccard"] is None else f"{audience['jaccard']:.0%}",
                      help="People with both / people with either.")
    names = {"model": f"{model_label(model.name)} model" if model is not None else "model",
             "cooccurrence": "Co-occurrence", "content": "Content features"}
    similarity = {k: v for k, v in result["similarity"].items() if v is not None}
    cells = st.columns([3, 2])
    with cells[0]:
        st.dataframe(result["items"], hide_index=True, width="stretch", key="sim_pair_items")
        shared = result["shared_attributes"]
        st.markdown("**In common:** " + (", ".join(escape_markdown(s) for s in shared) if shared
                                         else "no category, brand or tag."))
    cells[1].plotly_chart(analysis_charts.signals_figure(similarity, names), width="stretch",
                          config=charts.PLOTLY_CONFIG, key="sim_pair_signals")
    reading = [f"{names[k]} {v:.2f}" for k, v in similarity.items()]
    st.caption("Similarity (cosine, 1 = identical): " + escape_markdown(" · ".join(reading)) + ". "
               + escape_markdown(result["notice"]))


def items_section(k_min: int) -> None:
    models = state.get_models()
    item_models = [name for name, m in models.items()
                   if overrides(m, "item_similarity") or overrides(m, "item_embeddings")]
    options = list(SOURCES)
    cells = st.columns([2, 2])
    with cells[0]:
        source = st.radio("Similarity from", options, index=0 if item_models else 1, key="sim_source",
                          format_func=SOURCES.get, captions=[SOURCE_HELP[s] for s in options])
    model = None
    with cells[1]:
        if source == "model":
            if not item_models:
                st.warning("No trained model has item vectors yet. Train one (the Fused model, ALS or EASE), or "
                           "choose co-occurrence or content features.")
                link_to_page(TRAIN_PAGE, label="Train a model")
                return
            name = st.selectbox("Model", item_models, key="sim_model", format_func=model_label,
                                index=item_models.index("fused") if "fused" in item_models else 0)
            model = models[name]
        categories = dataset.category_names
        modes = ["popular", "category"] if categories else ["popular"]
        mode = st.radio("Items", modes, horizontal=True, key="sim_item_mode",
                        format_func={"popular": "Most popular", "category": "One category"}.get)
        category, top_n = None, 30
        if mode == "category":
            category = st.selectbox("Category", categories, key="sim_category", format_func=str)
            top_n = MAX_ITEMS
        else:
            top_n = st.slider("How many", min_value=5, max_value=MAX_ITEMS, value=30, step=5, key="sim_top_n")
    matrix = compute_matrix(("items", source, id(model), category, top_n),
                            lambda: item_similarity_matrix(source, dataset, model, top_n=top_n, category=category))
    if matrix is None:
        return
    title = (f"Item similarity in {category}" if category
             else f"Item similarity: the {len(matrix.row_labels)} most popular items")
    item_ids = [str(i) for i in dataset.item_ids[matrix.row_index]]
    st.session_state[ITEM_IDS_KEY] = item_ids
    if len(item_ids) < 2:
        draw(matrix, title, HEATMAP_KEY)
        return
    # Start the pair on the most similar two items shown; keep the person's choice while it is on the map.
    if st.session_state.get(PAIR_A) not in item_ids or st.session_state.get(PAIR_B) not in item_ids:
        row, column = most_similar_pair(matrix)
        st.session_state[PAIR_A], st.session_state[PAIR_B] = item_ids[row], item_ids[column]
    highlight = (item_ids.index(st.session_state[PAIR_A]), item_ids.index(st.session_state[PAIR_B]))
    st.plotly_chart(analysis_charts.heatmap_figure(matrix, title=title, clickable=True, highlight=highlight),
                    width="stretch",
                    config=charts.PLOTLY_CONFIG, key=HEATMAP_KEY, on_select=select_cell, selection_mode="points")
    show_notice(matrix)
    fused = models.get("fused")
    explain(item_ids, model if source == "model" else fused if isinstance(fused, Recommender) else None, k_min)


# ---------------------------------------------------------------------- people
def users_section(k_min: int) -> None:
    models = state.get_models()
    user_models = [name for name, m in models.items() if overrides(m, "user_embeddings")]
    options = [*user_models, NO_MODEL]
    cells = st.columns(2)
    name = cells[0].selectbox(
        "Compare people by", options, key="sim_user_model",
        format_func=lambda n: "What they interacted with (no model)" if n == NO_MODEL else f"{model_label(n)} vectors",
        help="A model's user vectors (its idea of each person's taste) or the raw interactions (shared items).")
    model = models.get(name) if name != NO_MODEL else None
    segments, label = analysis_charts.latest_segments().get("result"), analysis_charts.latest_segments().get("label")
    modes = ["sample", "segments"] if segments is not None else ["sample"]
    mode = cells[1].radio("Show", modes, horizontal=True, key="sim_user_mode",
                          format_func={"sample": "A sample of people", "segments": "Segment averages"}.get)
    if segments is None:
        cells[1].caption("Segment averages need segments: find them on the Segments page.")
    if mode == "segments":
        matrix = compute_matrix(("users", "segments", id(model), id(segments), k_min),
                                lambda: user_similarity_matrix(dataset, model, by_segment=segments, k_min=k_min))
        title = f"How alike the segments are ({label})"
    else:
        sample = cells[1].slider("People in the sample", min_value=10, max_value=MAX_ITEMS, value=40, step=5,
                                 key="sim_user_sample")
        matrix = compute_matrix(("users", "sample", id(model), sample),
                                lambda: user_similarity_matrix(dataset, model, sample=sample, seed=SEED))
        title = "How alike a few people are"
    if matrix is not None:
        st.caption(escape_markdown(f"Compared by {matrix.source}."))
        draw(matrix, title, "sim_user_heatmap")


# ---------------------------------------------------------------------- groups x categories
def has_categories() -> bool:
    if dataset.category_names:
        return True
    st.info("These heatmaps compare groups of people on item categories, and the data has none (load an item "
            "table with a category column on the Data page).", icon=":material/category:")
    return False


def affinity_reading() -> None:
    st.caption("Red: the group puts more of its interactions into that category than people do on average "
               "(x2 = twice the usual share); blue: less. Empty cells describe too few people to show.")


def segments_section(k_min: int) -> None:
    if not has_categories():
        return
    segments, label = current_segments(k_min)
    if segments is None:
        return
    matrix = compute_matrix(("segments", id(segments), k_min), lambda: affinity_matrix(dataset, segments, k_min))
    if matrix is not None:
        draw(matrix, f"Segments × categories (segments from: {label})", "sim_segment_heatmap", value_name="lift", log_lift=True)
        affinity_reading()


def attribute_section(k_min: int) -> None:
    if not has_categories():
        return
    columns = groupable_columns()
    if not columns:
        st.info("The data has no profile attribute that splits people into groups (a categorical, age or "
                "numeric column of the user table).")
        return
    column = st.selectbox("Profile attribute", columns, key="sim_attribute", format_func=str)
    matrix = compute_matrix(("attribute", column, k_min),
                            lambda: affinity_matrix(dataset, profile_groups(dataset, column), k_min))
    if matrix is not None:
        draw(matrix, f"{column} × categories", "sim_attribute_heatmap", value_name="lift", log_lift=True)
        affinity_reading()


# ---------------------------------------------------------------------- the page
st.title("Similarity")
st.markdown("What does each model consider alike? Heatmaps of similar items, similar people, and which groups "
            "of people lean to which kinds of items. Rows and columns are ordered by hierarchical clustering, so "
            "blocks of alike rows sit together; hover a cell for the full names.")

cells = st.columns([3, 1])
kind = cells[0].radio("Heatmap", list(KINDS), horizontal=True, key="sim_kind", format_func=KINDS.get)
k_min = int(cells[1].number_input(
    "Privacy threshold k_min", min_value=K_MIN_FLOOR, max_value=max(K_MIN_DEFAULT, dataset.n_users),
    value=K_MIN_DEFAULT, step=1, key="sim_k_min",
    help=f"Cells, segments and audiences describing fewer than k_min people are hidden. At least {K_MIN_FLOOR}."))

if kind == "items":
    items_section(k_min)
elif kind == "users":
    users_section(k_min)
elif kind == "segments":
    segments_section(k_min)
else:
    attribute_section(k_min)

following = next_page_after(THIS_PAGE)
if following is not None:
    st.divider()
    link_to_page(following, label=f"Next: {following.label} — {following.purpose}")
