"""Evaluate page: compare models on held-out interactions, by protocol and by who the users are.

Thin on purpose: the splits, metrics, breakdowns and the plain-language reading are
:mod:`recommender.evaluation`; the run happens in :class:`recommender.training.EvaluationJob`
(a background thread, so the page stays responsive and the run can be cancelled). The latest
result goes into the session with :func:`ui.state.set_evaluation` (a
:class:`~recommender.evaluation.ComparisonResult`) for the other pages.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from recommender.analysis.privacy import safe_csv
from recommender.evaluation import ComparisonResult, metric_label
from recommender.models import REGISTRY
from recommender.training import (LOWER_IS_BETTER, EvaluationJob, available_protocols, best_cells,
                                  evaluation_factories, model_label, model_names, protocol_description,
                                  protocol_label, protocol_table)
from ui import charts, state
from ui.common import download_name, escape_markdown, link_to_page, next_page_after, page_setup

logger = logging.getLogger(__name__)

THIS_PAGE = "pages/3_Evaluate.py"
#: Session keys of this page (per session).
JOB_KEY = "recolens_evaluation_job"
COLLECTED_KEY = "recolens_evaluation_collected"
RESULTS_KEY = "recolens_evaluation_results"
POLL_SECONDS = 1.0
DEFAULT_MODELS = ("popularity", "segment_popularity", "ease", "fused")
K_CHOICES = (5, 10, 20, 50)
#: Metrics drawn as bar charts (``{k}`` is the list length).
CHART_METRICS = ("ndcg@{k}", "recall@{k}", "hit_rate@{k}", "coverage", "novelty", "avg_popularity")
METRIC_HELP = {
    "ndcg": "how high the hidden items rank in the list (1 = all at the top)",
    "recall": "share of a person's hidden items found in the list",
    "hit_rate": "share of people with at least one hidden item in the list",
    "precision": "share of the list that are hidden items",
    "map": "mean average precision",
    "mrr": "1 / position of the first hit",
    "coverage": "share of the catalogue recommended to someone",
    "novelty": "how unusual the recommended items are (higher: less mainstream)",
    "diversity": "how different the items of one list are from each other",
    "avg_popularity": "popularity bias: how popular the recommended items are on average (lower: less biased)",
    "gini": "how concentrated recommendations are on a few items (lower: spread more evenly)",
}
HIGHLIGHT = "font-weight: 600; background-color: #E0E7FF"

dataset = page_setup("Evaluate", icon=":material/leaderboard:")


# ---------------------------------------------------------------------- state
def current_job() -> EvaluationJob | None:
    return st.session_state.get(JOB_KEY)


def current_results() -> dict[str, ComparisonResult]:
    """The results of the last run on the loaded data (empty after the data changed)."""
    stored = st.session_state.get(RESULTS_KEY)
    if not stored or stored[0] != state.dataset_version() or state.get_evaluation() is None:
        return {}
    return stored[1]


def collect(job: EvaluationJob) -> None:
    """Store a finished run's results once, and say what happened after a rerun."""
    if job.dataset is not state.get_dataset():
        job.cancel()  # results on other data would not match what is loaded now
    if st.session_state.get(COLLECTED_KEY) is job or not job.snapshot().finished:
        return
    st.session_state[COLLECTED_KEY] = job
    snap = job.snapshot()
    if job.dataset is not state.get_dataset():
        st.session_state.pop(JOB_KEY, None)
        state.flash("The data changed while the evaluation ran, so its results were discarded.", "warning")
        st.rerun()
    if snap.results:
        st.session_state[RESULTS_KEY] = (state.dataset_version(), dict(snap.results))
        state.set_evaluation(next(iter(snap.results.values())))
    problems = " ".join(f"{protocol_label(p)}: {message}" for p, message in snap.errors.items())
    if snap.status == "done":
        state.flash("Evaluation finished." + (f" Not evaluated: {problems}" if problems else ""),
                    "warning" if problems else "success")
    elif snap.status == "cancelled":
        state.flash(snap.message, "info")
    else:
        state.flash(f"The evaluation could not run. {problems or snap.message}", "error")
    st.rerun()


# ---------------------------------------------------------------------- tables and charts
def display_table(table: pd.DataFrame, group: str | None = None):
    """A results table with readable headers and the best value of each metric highlighted."""
    mask = best_cells(table, group=group)
    shown = table.copy()
    if "model" in shown:
        shown["model"] = shown["model"].map(model_label)
    if "protocol" in shown:
        shown["protocol"] = shown["protocol"].map(protocol_label)
    renames = {c: metric_label(c) for c in shown.columns if c not in ("protocol", "model", "test_users",
                                                                      "fit_seconds")}
    renames.update({"protocol": "Protocol", "model": "Model", "test_users": "Test users",
                    "fit_seconds": "Training s"})
    shown = shown.rename(columns=renames)
    mask.columns = shown.columns
    numeric = [c for c in shown.columns if c not in ("Protocol", "Model", "Test users")]
    return (shown.style.apply(lambda _: mask.replace({True: HIGHLIGHT, False: ""}), axis=None)
            .format({c: "{:.1f}" if c == "Training s" else "{:.3f}" for c in numeric}, na_rep="–"))


def metric_bar(table: pd.DataFrame, metric: str) -> go.Figure:
    """One metric across models, each in its own colour; the best bar labelled "best" and outlined."""
    values = table[metric].astype(float)
    lower = metric.split("@")[0] in LOWER_IS_BETTER
    best = values.min() if lower else values.max()
    is_best = (values == best).to_numpy()
    colours = charts.colour_map(table.index)
    figure = go.Figure(go.Bar(x=charts.plot_texts(model_label(name) for name in table.index), y=values,
                              marker=dict(color=[colours[name] for name in table.index],
                                          line=dict(color="#111827", width=[2 if b else 0 for b in is_best])),
                              text=["best" if b else "" for b in is_best], textposition="outside",
                              cliponaxis=False, hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    figure.update_xaxes(type="category")
    top = float(np.nanmax(values)) if values.notna().any() else 0.0
    if np.isfinite(top) and top > 0:
        figure.update_yaxes(range=[0, top * 1.18])    # room for the "best" label
    direction = "lower is better" if lower else "higher is better"
    return charts.style(figure, title=f"{metric_label(metric)} ({direction})", height=260)


def attribute_label(attribute: str) -> str:
    return "activity level (interactions the model saw)" if attribute == "activity" else attribute


def breakdown_figure(frame: pd.DataFrame, metric: str, attribute: str, models) -> go.Figure:
    """Grouped bars: one group per attribute value (with its size), one bar per model (``models``: their order)."""
    labels = [f"{charts.plot_text(value)} (n={int(n):,})" for value, n in zip(frame.index, frame["n_users"])]
    figure = go.Figure()
    colours = charts.colour_map(models)
    for model in (c for c in frame.columns if c != "n_users"):
        figure.add_trace(go.Bar(x=labels, y=frame[model], name=charts.plot_text(model_label(model)),
                                marker_color=colours.get(model, charts.COLOURS[-1]),
                                hovertemplate="%{x}: %{y:.3f}<extra>" + charts.plot_text(model_label(model))
                                + "</extra>"))
    figure.update_layout(barmode="group")
    figure.update_xaxes(type="category", title=charts.plot_text(attribute_label(attribute)))
    figure.update_yaxes(title=metric_label(metric))
    return charts.style(figure, title=f"{metric_label(metric)} by {attribute_label(attribute)}", height=360)


# ---------------------------------------------------------------------- the running job
def show_job(job: EvaluationJob) -> None:
    polling = job.running

    @st.fragment(run_every=POLL_SECONDS if polling else None)
    def panel() -> None:
        snap = job.snapshot()
        if polling and snap.finished:
            st.rerun()
        if snap.status != "running":
            return
        st.progress(snap.progress, text=escape_markdown(f"{snap.step_message} · {snap.elapsed:.0f} s"))
        if job.cancel_requested:
            st.info("Cancelling: the evaluation stops at the end of the current step.")
        elif st.button("Cancel", key="cancel_evaluation", icon=":material/stop_circle:"):
            job.cancel()
            st.info("Cancelling: the evaluation stops at the end of the current step.")

    panel()


# ---------------------------------------------------------------------- the form
def session_params(names: list[str]) -> dict[str, dict]:
    """Hyperparameters of the session's trained models of the chosen kinds (reused, never the fits)."""
    params = {}
    for name, model in state.get_models().items():
        if name in names and name in REGISTRY and isinstance(model, REGISTRY[name]) and model.get_params():
            params[name] = model.get_params()
    return params


def start(protocols: list[str], names: list[str], k: int, seed: int) -> None:
    job = current_job()
    if job is not None and job.running:
        st.warning("An evaluation is already running. Wait for it to finish, or cancel it, before starting another.")
        return
    if not names:
        st.warning("Choose at least one model to evaluate.")
        return
    factories = evaluation_factories(names, session_params(names))
    st.session_state[JOB_KEY] = EvaluationJob(dataset, factories, protocols, k=k, seed=seed).start()
    logger.info("started evaluation of %s on %s", ", ".join(names), ", ".join(protocols))
    st.rerun()


# ---------------------------------------------------------------------- results
def show_result(result: ComparisonResult, key: str) -> None:
    table = result.table
    st.info(escape_markdown(result.summary(model_label)), icon=":material/lightbulb:")
    for name, message in result.errors.items():
        st.error(escape_markdown(f"{model_label(name)} could not be trained: {message}"))
    if table.empty:
        return
    st.dataframe(display_table(table.reset_index()), hide_index=True, width="stretch", key=f"table_{key}")
    st.caption("Highlighted: the best value of each column. In the charts each model keeps its colour and the best "
               "bar is marked *best*. "
               + " · ".join(f"**{metric_label(m)}**: {METRIC_HELP[m]}" for m in ("ndcg", "recall", "coverage",
                                                                                 "avg_popularity")))
    metrics = [m.format(k=result.k) for m in CHART_METRICS if m.format(k=result.k) in table.columns]
    for start_at in range(0, len(metrics), 3):
        columns = st.columns(3)
        for column, metric in zip(columns, metrics[start_at:start_at + 3]):
            column.plotly_chart(metric_bar(table, metric), width="stretch", config=charts.PLOTLY_CONFIG,
                                key=f"bar_{key}_{metric}")

    st.subheader("For whom does each model work?", anchor=False)
    cells = st.columns(2)
    attribute = cells[0].selectbox("Break down by", result.attributes, format_func=attribute_label,
                                   key=f"breakdown_attribute_{key}",
                                   help="Activity level: how many interactions of the person the model saw. "
                                        "Other choices are profile columns.")
    per_user_metrics = [m for m in table.columns if m not in ("coverage", "gini")]
    metric = cells[1].selectbox("Metric", per_user_metrics, index=per_user_metrics.index(result.primary_metric),
                                format_func=metric_label, key=f"breakdown_metric_{key}")
    frame = result.breakdown(attribute, metric)
    suppressed = int(frame.attrs.get("suppressed_groups", 0))
    if frame.empty:
        st.info("No group has enough test users to show (at least "
                f"{result.min_group_size} are needed, to protect privacy and avoid noise).")
    else:
        st.plotly_chart(breakdown_figure(frame, metric, attribute, table.index), width="stretch",
                        config=charts.PLOTLY_CONFIG, key=f"breakdown_chart_{key}")
    if suppressed:
        st.caption(f"{suppressed} group(s) with fewer than {result.min_group_size} test users are not shown.")


def show_results(results: dict[str, ComparisonResult]) -> None:
    st.header("Results", anchor=False)
    combined = protocol_table(results)
    if len(results) > 1:
        st.markdown("**All protocols side by side.** Known users (warm) is the easiest question; new users and new "
                    "items show whether a model can do without a history. The best value per protocol is "
                    "highlighted.")
        st.dataframe(display_table(combined, group="protocol"), hide_index=True, width="stretch",
                     key="table_all_protocols")
        protocol = st.selectbox("Details for", list(results), format_func=protocol_label, key="detail_protocol")
    else:
        protocol = next(iter(results))
    result = results[protocol]
    st.caption(escape_markdown(f"{protocol_label(protocol)}: {result.split.description}; "
                               f"{result.split.n_test_users:,} test users; top {result.k}."))
    show_result(result, protocol)
    st.download_button("Download the table (CSV)", data=safe_csv(combined), mime="text/csv",
                       file_name=download_name("evaluation", dataset.name),
                       key="download_evaluation", icon=":material/download:", on_click="ignore")


# ---------------------------------------------------------------------- the page
job = current_job()
if job is not None:
    collect(job)

st.title("Evaluate")
st.markdown("How good is each model? RecoLens hides part of the data, trains every model again on the rest and "
            "checks whether each one recommends what was hidden. The models trained on the Train page are not "
            "reused, because they have already seen the hidden interactions; only their settings are.")

protocols = available_protocols(dataset)
cells = st.columns([2, 1])
protocol = cells[0].selectbox("Question (protocol)", protocols, format_func=protocol_label, key="eval_protocol")
cells[0].caption(escape_markdown(protocol_description(protocol).capitalize() + "."))
k = cells[1].select_slider("List length K", K_CHOICES, value=10, key="eval_k",
                           help="Metrics look at the top K recommendations of each person.")
if dataset.timestamps is None:
    st.caption("The temporal protocol needs timestamps, which this data does not have.")
names = model_names()
chosen = st.multiselect("Models", names, default=[n for n in DEFAULT_MODELS if n in names], format_func=model_label,
                        key="eval_models")
reused = session_params(chosen)
if reused:
    st.caption("Same settings as the trained model(s): " + ", ".join(model_label(n) for n in reused)
               + ". Each protocol trains every model again, so the neural model can take a minute or more per "
               "protocol on the processor.")
with st.expander("More options"):
    seed = st.number_input("Seed of the split", min_value=0, max_value=2**31 - 1, value=0, step=1, key="eval_seed",
                           help="Which interactions are hidden; the same seed gives the same split.")
cells = st.columns([1, 1, 3])
if cells[0].button("Run evaluation", type="primary", key="run_evaluation", icon=":material/play_arrow:"):
    start([protocol], chosen, int(k), int(seed))
if cells[1].button("Run all protocols", key="run_all_protocols", icon=":material/table_view:",
                   help="Every protocol the data supports, one after the other, in one table."):
    start(protocols, chosen, int(k), int(seed))

job = current_job()
if job is not None:
    show_job(job)

results = current_results()
if results:
    show_results(results)
elif job is None or not job.running:
    st.info("Choose a protocol and models, then run the evaluation.")

following = next_page_after(THIS_PAGE)
if following is not None:
    st.divider()
    link_to_page(following, label=f"Next: {following.label}")
