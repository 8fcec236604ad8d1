"""Data page: load a dataset, check what was read, explore it.

Thin on purpose: reading and validating is :mod:`recommender` (through :mod:`ui.loading`),
every number and table shown is computed by :mod:`recommender.summary`, and the figures
come from :mod:`ui.charts`.
"""
from __future__ import annotations

import streamlit as st

from recommender.dataset import Dataset
from recommender.errors import DataError
from recommender.schema import ROLES, guess_id_column, guess_interaction_columns, infer_column_roles
from recommender import summary
from ui import charts, state
from ui.common import (escape_label, escape_markdown, format_count, format_period, link_to_page, next_page_after,
                       page_setup, show_problems)
from ui.loading import (MOVIELENS_TYPES, SAMPLE_DESCRIPTION, TABLE_TYPES, build_from_tables, build_movielens,
                        forget_uploads, load_dataset, load_sample, read_upload, upload_limit_mb)

THIS_PAGE = "pages/1_Data.py"
SOURCES = ("Bundled sample", "Your own files", "MovieLens files")
NONE = "(none)"
DELIMITERS = {"Detect automatically": None, "Comma ,": ",", "Tab": "\t", "Semicolon ;": ";", "Pipe |": "|"}
ENCODINGS = {"UTF-8": None, "Latin-1 / Windows-1252": "latin-1"}
ROLE_HELP = ("categorical: a few distinct values · multilabel: several values separated by | · numeric · age · "
             "text: free text · label: a display name (titles) · pii: a personal identifier, never used · "
             "ignore: not used")
EXAMPLE = "user_id,item_id,rating,timestamp\nU001,P042,5,2024-03-05 14:02\nU001,P007,3,2024-03-06 09:15"


def loaded_and_rerun(message: str) -> None:
    """After a successful load: forget the uploads, say so after the rerun, redraw (sidebar included)."""
    forget_uploads()
    state.flash(message)
    st.rerun()


# ---------------------------------------------------------------------- choosing the data
def sample_section() -> None:
    st.markdown("A synthetic online shop: 3,000 customers with a profile (age, gender, region, occupation, "
                "income, sign-up channel), 1,000 products (category, brand, price, tags) and about 60,000 "
                "ratings over a year. Customers belong to hidden segments linked to their profile, so "
                "profile-aware models have something to find.")
    current = state.get_dataset()
    if current is not None and state.get_description() == SAMPLE_DESCRIPTION:
        st.caption("The bundled sample is loaded.")
        label = "Reload the bundled sample"
    else:
        label = "Load the bundled sample"
    if st.button(label, key="load_sample", icon=":material/refresh:"):
        if load_sample() is not None:
            loaded_and_rerun("Loaded the bundled sample.")


def read_uploaded_tables(files: dict, sep: str | None, encoding: str | None) -> dict | None:
    """Read the uploaded files; on problems show them (old dataset untouched) and return None."""
    frames, problems = {}, []
    for slot, file in files.items():
        if file is None:
            frames[slot] = None
            continue
        try:
            frames[slot] = read_upload(file, slot, sep=sep if slot == "interactions" else None, encoding=encoding)
        except DataError as error:
            problems.extend(error.problems)
    if problems:
        st.error("These files could not be read. Nothing was changed: the dataset loaded before stays in use.")
        show_problems(problems, key="read_problems")
        return None
    return frames


def mapping_widgets(frame, key: str) -> dict:
    """Selectboxes for the user, item, rating and timestamp columns, starting from the guess."""
    columns = [str(c) for c in frame.columns]
    guess = guess_interaction_columns(columns).to_dict()
    chosen = {}
    cells = st.columns(4)
    for cell, role, required, help_text in (
            (cells[0], "user", True, "The column holding the user (customer) id."),
            (cells[1], "item", True, "The column holding the item (product) id."),
            (cells[2], "rating", False, "A rating or weight per event; leave empty for clicks/purchases."),
            (cells[3], "timestamp", False, "When it happened: ISO dates or Unix seconds.")):
        options = columns if required else [NONE] + columns
        default = guess[role]
        if default is None and required:  # no name matched: the first column no other role claimed
            default = next((c for c in columns if c not in guess.values()), None)
        index = options.index(default) if default in options else 0
        with cell:
            value = st.selectbox(f"{role.capitalize()} column", options, index=index, key=f"map_{role}_{key}",
                                 help=help_text)  # options are plain text: no escaping
        chosen[role] = None if value == NONE else value
    return chosen


def side_table_widgets(frame, kind: str, key: str, interaction_column: str | None) -> tuple[str | None, dict]:
    """The id column and the role of every other column of a profile or item table."""
    columns = [str(c) for c in frame.columns]
    guess = guess_id_column(columns, kind)
    if guess is None and interaction_column in columns:
        guess = interaction_column
    id_column = st.selectbox(f"{'User' if kind == 'user' else 'Item'} id column", columns,
                             index=columns.index(guess) if guess in columns else 0, key=f"id_{kind}_{key}")
    inferred = infer_column_roles(frame, id_column, kind)
    roles = {}
    if not inferred:
        st.caption("No other columns.")
        return id_column, roles
    cells = st.columns(3)
    for position, (column, role) in enumerate(inferred.items()):
        with cells[position % 3]:
            roles[column] = st.selectbox(escape_label(column), ROLES, index=ROLES.index(role),
                                         key=f"role_{kind}_{key}_{column}", help=ROLE_HELP)
    return id_column, roles


def upload_section() -> None:
    limit = upload_limit_mb()
    st.markdown(f"CSV, TSV or Parquet files, up to {limit} MB each. Only the interactions file is required.")
    cells = st.columns(3)
    files = {
        "interactions": cells[0].file_uploader(
            "Interactions (required)", type=TABLE_TYPES, key="upload_interactions",
            help="One row per event: user id, item id, and optionally a rating and a timestamp."),
        "users": cells[1].file_uploader(
            "User profiles (optional)", type=TABLE_TYPES, key="upload_users",
            help="One row per user: the user id and attributes such as age, gender, region."),
        "items": cells[2].file_uploader(
            "Items (optional)", type=TABLE_TYPES, key="upload_items",
            help="One row per item: the item id and attributes such as title, category, price, tags (a|b)."),
    }
    with st.expander("Reading options (delimiter, encoding)"):
        option_cells = st.columns(2)
        sep = DELIMITERS[option_cells[0].selectbox("Delimiter of the interactions file", list(DELIMITERS),
                                                   key="upload_sep")]
        encoding = ENCODINGS[option_cells[1].selectbox("Text encoding", list(ENCODINGS), key="upload_encoding")]
    if files["interactions"] is None:
        st.info("Upload an interactions file to start. For example:")
        st.code(EXAMPLE, language="text")
        return
    frames = read_uploaded_tables(files, sep, encoding)
    if frames is None:
        return
    key = "_".join(str(getattr(f, "file_id", "none")) for f in files.values() if f is not None)

    interactions = frames["interactions"]
    st.markdown(f"**Interactions: {escape_markdown(files['interactions'].name)}** "
                f"({len(interactions):,} rows). Check which column is which:")
    mapping = mapping_widgets(interactions, key)
    with st.expander("First rows of the interactions file"):
        st.dataframe(interactions.head(10), width="stretch")
    roles = {"user": (None, None), "item": (None, None)}
    for kind, slot in (("user", "users"), ("item", "items")):
        if frames[slot] is not None:
            st.markdown(f"**{'User profiles' if kind == 'user' else 'Items'}: "
                        f"{escape_markdown(files[slot].name)}** ({len(frames[slot]):,} rows). "
                        "Id column and the role of each column (guessed; change any that are wrong):")
            roles[kind] = side_table_widgets(frames[slot], kind, key, mapping[kind])
    chosen = [column for column in mapping.values() if column is not None]
    clash = len(set(chosen)) < len(chosen)
    if clash:
        st.warning("The same column is chosen for two roles. Give each role its own column (or none).")
    if st.button("Load dataset", type="primary", key="load_upload", icon=":material/upload:", disabled=clash):
        names = ", ".join(f.name for f in files.values() if f is not None)

        def build() -> Dataset:
            return build_from_tables(
                interactions, frames["users"], frames["items"], columns=mapping,
                user_id_column=roles["user"][0], item_id_column=roles["item"][0],
                user_roles=roles["user"][1], item_roles=roles["item"][1], name=files["interactions"].name)

        if load_dataset(build, f"Uploaded files: {names}") is not None:
            loaded_and_rerun(f"Loaded {names}.")


def movielens_section() -> None:
    st.markdown("Upload the files of a MovieLens release as you downloaded them (RecoLens does not ship "
                "MovieLens): **ML-100K** `u.data`, `u.user`, `u.item`, or **ML-1M** `ratings.dat`, "
                "`users.dat`, `movies.dat`. Only the ratings file is required.")
    files = st.file_uploader("MovieLens files", type=MOVIELENS_TYPES, accept_multiple_files=True,
                             key="upload_movielens")
    if not files:
        return
    names = ", ".join(f.name for f in files)
    st.caption(f"Selected: {escape_markdown(names)}")
    if st.button("Load MovieLens", type="primary", key="load_movielens", icon=":material/upload:"):
        with st.spinner("Reading MovieLens..."):
            loaded = load_dataset(lambda: build_movielens(files), f"MovieLens upload: {names}")
        if loaded is not None:
            loaded_and_rerun(f"Loaded {loaded.name}.")


# ---------------------------------------------------------------------- the summary
def show_counts(dataset: Dataset, counts: summary.DatasetCounts) -> None:
    cells = st.columns(6)
    cells[0].metric("Users", format_count(counts.n_users), help="Distinct users (with a profile or interactions).")
    cells[1].metric("Items", format_count(counts.n_items), help="Distinct items (in the item table or interactions).")
    cells[2].metric("Interactions", format_count(counts.n_interactions), help="One per (user, item) pair.")
    cells[3].metric("Density", f"{counts.density:.2%}",
                    help=f"Share of all user × item pairs with an interaction (sparsity {counts.sparsity:.2%}).")
    cells[4].metric("Cold users", format_count(counts.n_cold_users), help="Users without any interaction.")
    cells[5].metric("Cold items", format_count(counts.n_cold_items), help="Items nobody interacted with.")
    # Short values only (six metrics share 1,400 px); the period gets two columns' width.
    cells = st.columns([1, 1, 1, 1, 2])
    cells[0].metric("Median per user", f"{counts.median_per_user:g}", help="Interactions of a typical active user.")
    cells[1].metric("Median per item", f"{counts.median_per_item:g}", help="Interactions of a typical item.")
    if counts.has_ratings:
        cells[2].metric("Ratings", f"{counts.rating_min:g} – {counts.rating_max:g}",
                        help=f"Mean rating {counts.rating_mean:.2f}.")
    else:
        cells[2].metric("Feedback", "implicit", help="No rating column: every interaction counts as a positive.")
    cells[3].metric("Features", f"{counts.n_profile_features} / {counts.n_item_features}",
                    help="Profile columns / item columns used as model features.")
    if counts.first_time is not None:
        first, last = counts.first_time.strftime("%Y-%m-%d"), counts.last_time.strftime("%Y-%m-%d")
        cells[4].metric("Period", format_period(counts.first_time, counts.last_time),
                        help=f"From {first} to {last}.")
        st.caption(f"Interactions from {first} to {last}.")


def activity_tab(dataset: Dataset) -> None:
    per_user = state.memo("per_user", lambda: summary.interactions_per_user(dataset))
    per_item = state.memo("per_item", lambda: summary.interactions_per_item(dataset))
    tails = state.memo("tails", lambda: (summary.long_tail(per_user), summary.long_tail(per_item)))
    item_share = summary.concentration(per_item)
    user_share = summary.concentration(per_user)
    top10_items = item_share.loc[item_share["top_share"] == 0.1, "interaction_share"].iloc[0]
    top10_users = user_share.loc[user_share["top_share"] == 0.1, "interaction_share"].iloc[0]
    st.markdown(f"The most popular 10 % of items receive **{top10_items:.0%}** of all interactions, and the most "
                f"active 10 % of users make **{top10_users:.0%}** of them (Gini: items "
                f"{summary.gini(per_item):.2f}, users {summary.gini(per_user):.2f}). Popularity alone is "
                "therefore a strong baseline, and rarely seen items are hard to recommend.")
    st.plotly_chart(charts.long_tail_figure(*tails), width="stretch", config=charts.PLOTLY_CONFIG,
                    key="chart_long_tail")
    left, right = st.columns(2)
    left.plotly_chart(charts.count_histogram_figure(summary.count_histogram(per_user), "users"), width="stretch",
                      config=charts.PLOTLY_CONFIG, key="chart_user_hist")
    right.plotly_chart(charts.count_histogram_figure(summary.count_histogram(per_item), "items", charts.COLOURS[2]),
                       width="stretch", config=charts.PLOTLY_CONFIG, key="chart_item_hist")


def ratings_and_time_tab(dataset: Dataset) -> None:
    ratings = state.memo("ratings", lambda: summary.rating_distribution(dataset))
    series = state.memo("time", lambda: summary.activity_over_time(dataset))
    left, right = st.columns(2)
    with left:
        if ratings is None:
            st.info("No ratings: this is implicit feedback (every interaction counts as a positive).")
        else:
            st.plotly_chart(charts.rating_figure(ratings), width="stretch", config=charts.PLOTLY_CONFIG,
                            key="chart_ratings")
    with right:
        if series is None:
            st.info("No timestamps: time-based splits and recency features are not available.")
        else:
            st.plotly_chart(charts.time_figure(series), width="stretch", config=charts.PLOTLY_CONFIG,
                            key="chart_time")


def profiles_tab(dataset: Dataset) -> None:
    distributions = state.memo("profiles", lambda: summary.profile_distributions(dataset))
    pii = [c for c, r in dataset.user_roles.items() if r == "pii"]
    if not dataset.user_roles:
        st.info("No user profile table was loaded. Upload one on this page to use profile-aware models, "
                "segments and cold start.")
        return
    st.caption(f"One chart per profile attribute. Groups of fewer than {summary.K_MIN} people are not shown "
               "(they are pooled into '(other)' or left out), so no chart describes a handful of individuals.")
    if pii:
        st.warning("Not shown and not used for modelling (they look like personal identifiers): "
                   + ", ".join(escape_markdown(c) for c in pii))
    cells = st.columns(2)
    for position, distribution in enumerate(distributions):
        with cells[position % 2]:
            st.plotly_chart(charts.distribution_figure(distribution, charts.COLOURS[position % len(charts.COLOURS)]),
                            width="stretch", config=charts.PLOTLY_CONFIG, key=f"chart_profile_{position}")
            notes = []
            if distribution.n_missing:
                notes.append(f"{distribution.n_missing:,} without a value")
            if distribution.n_suppressed:
                notes.append(f"{distribution.n_suppressed:,} in groups under {summary.K_MIN} people hidden")
            if notes:
                st.caption("; ".join(notes) + ".")


def items_tab(dataset: Dataset) -> None:
    coverage = state.memo("coverage", lambda: summary.item_feature_coverage(dataset))
    if coverage.empty:
        st.info("No item table was loaded: models can only use the interactions. Upload one (titles, "
                "categories, prices, tags) for content features and readable names.")
        return
    st.plotly_chart(charts.coverage_figure(coverage), width="stretch", config=charts.PLOTLY_CONFIG,
                    key="chart_coverage")
    if dataset.category_column:
        category = next((d for d in summary.item_distributions(dataset) if d.column == dataset.category_column), None)
        if category is not None:
            st.plotly_chart(charts.distribution_figure(category, charts.COLOURS[1]), width="stretch",
                            config=charts.PLOTLY_CONFIG, key="chart_category")


def roles_tab(dataset: Dataset) -> None:
    table = state.memo("roles", lambda: summary.column_roles_table(dataset))
    if table.empty:
        st.info("No profile or item columns.")
        return
    st.caption("How each column was understood. To change a role, upload the files again and pick it "
               "in the column choices above.")
    st.dataframe(table, hide_index=True, width="stretch", key="roles_table", column_config={
        "table": "Table", "column": "Column", "role": "Role", "meaning": "Meaning",
        "used_as_feature": st.column_config.CheckboxColumn("Used as feature"),
        "distinct_values": st.column_config.NumberColumn("Distinct values", format="%d"),
        "missing_share": st.column_config.ProgressColumn("Missing", format="percent", min_value=0, max_value=1),
        "examples": "Examples"})


# ---------------------------------------------------------------------- the page
dataset = page_setup("Data", icon=":material/database:", require_dataset=False)
st.title("Data")
st.caption("Load a dataset, check what was read, and explore it before training.")

with st.container(border=True):
    st.subheader("Choose the data", anchor=False)
    source = st.radio("Source", SOURCES, horizontal=True, key="data_source", label_visibility="collapsed")
    if source == SOURCES[0]:
        sample_section()
    elif source == SOURCES[1]:
        upload_section()
    else:
        movielens_section()

load_problems = state.get_load_problems()
if load_problems:
    kept = (f"The dataset loaded before ({escape_markdown(dataset.name)}) is still in use."
            if dataset is not None else "No dataset is loaded.")
    st.error(f"**The last load failed.** {kept} Fix the problems below and load again.")
    show_problems(load_problems, key="load_problems")

if dataset is None:
    st.stop()

st.header(escape_markdown(dataset.name), anchor=False)
st.caption(escape_markdown(state.get_description()))
counts = state.memo("counts", lambda: summary.dataset_counts(dataset))
show_counts(dataset, counts)

warnings = dataset.report.warnings
with st.expander(f"Validation report: {len(warnings)} note(s)" if warnings else "Validation report: no problems",
                 expanded=bool(warnings) and len(warnings) <= 4):
    if warnings:
        st.caption("What was dropped, missing or excluded while reading (the data is loaded).")
        show_problems(warnings, key="report")
    else:
        st.success("Every row was used; no missing profiles, no excluded columns.")

# Lazy tabs: only the open tab's charts are computed and sent (keeps reruns fast on big data).
TABS = {"Activity": activity_tab, "Ratings & time": ratings_and_time_tab, "Profiles": profiles_tab,
        "Item features": items_tab, "Column roles": roles_tab}
for tab, draw in zip(st.tabs(list(TABS), key="data_tab", on_change="rerun"), TABS.values()):
    if tab.open:
        with tab:
            draw(dataset)

following = next_page_after(THIS_PAGE)
if following is not None:
    st.divider()
    link_to_page(following, label=f"Next: {following.label} — {following.purpose}")
