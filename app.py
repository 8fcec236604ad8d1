"""RecoLens home page: what the dashboard does, what is loaded, where to go next.

Run with ``streamlit run app.py``. The other pages live in ``pages/`` (Streamlit's classic
multipage layout); each calls :func:`ui.common.page_setup` so it also works when opened first.
"""
from __future__ import annotations

import streamlit as st

from recommender import summary
from recommender.training import model_label
from ui import state
from ui.common import PAGES, escape_markdown, format_count, link_to_page, page_cards, page_setup

dataset = page_setup("Home", icon=":material/insights:", require_dataset=False)

st.title("RecoLens")
st.markdown(
    "**Profile-aware recommendation analysis.** RecoLens trains recommenders on interaction data "
    "*and* on what you know about your users (age, region, occupation...) and your items (category, "
    "price, tags), then shows what each model gets right, for whom, and why: which segments are "
    "served well or badly, which items look alike, and what a brand-new user with only a profile "
    "would be shown. It is built for product managers weighing a recommender, for demos and for teaching.")

st.subheader("Loaded dataset", anchor=False)
if dataset is None:
    st.warning("No dataset is loaded yet. Start on the Data page: load the bundled sample or your own files.")
    link_to_page(PAGES[0], label="Go to the Data page")
else:
    counts = state.memo("counts", lambda: summary.dataset_counts(dataset))
    with st.container(border=True):
        st.markdown(f"**{escape_markdown(dataset.name)}**")
        description = state.get_description()
        if description:
            st.caption(escape_markdown(description))
        cells = st.columns(5)
        cells[0].metric("Users", format_count(counts.n_users))
        cells[1].metric("Items", format_count(counts.n_items))
        cells[2].metric("Interactions", format_count(counts.n_interactions))
        cells[3].metric("Density", f"{counts.density:.2%}",
                        help="Share of all user × item pairs with an interaction.")
        cells[4].metric("Profile attributes", f"{counts.n_profile_features}",
                        help="Profile columns used as model features.")
        models = state.get_models()
        if models:
            st.caption("Trained models: " + ", ".join(escape_markdown(model_label(name)) for name in models))
        else:
            st.caption("No model trained yet.")

st.subheader("Where to go next", anchor=False)
st.markdown("Work through the pages in order: check the **Data**, **Train** a few models, **Evaluate** them, "
            "then look at **Segments**, item **Similarity** and **Cold start**.")
page_cards()
