"""Train page: choose models, train them in the background, watch the curves, save or restore bundles.

Thin on purpose: training runs in :class:`recommender.training.TrainingJob` (a background
thread; this page only starts it, reads snapshots and collects the fitted models), bundles
are :mod:`recommender.models.bundle`. The job lives in this session's ``st.session_state``,
so another browser session never sees it.
"""
from __future__ import annotations

import logging

import plotly.graph_objects as go
import streamlit as st

from recommender.errors import BundleError
from recommender.models import FusedRecommender, Recommender
from recommender.models.bundle import bundle_bytes, check_compatible
from recommender.models.device import available_devices
from recommender.training import (TrainingJob, describe_device, describe_model, expected_epochs, make_model,
                                  model_label, model_names)
from ui import charts, state
from ui.common import download_name, escape_markdown, link_to_page, next_page_after, page_setup

#: An unfitted fused model with its defaults: the page uses its early-stopping settings unless early stopping is off.
FUSED_DEFAULTS = FusedRecommender()

logger = logging.getLogger(__name__)

THIS_PAGE = "pages/2_Train.py"
#: Session keys of this page (per session: never shared between browser sessions).
JOB_KEY = state.JOB_KEY
BUNDLE_SEEN_KEY = "recolens_bundle_seen"
BUNDLE_ERROR_KEY = "recolens_bundle_error"
PENDING_BUNDLE_KEY = "recolens_pending_bundle"
#: Seconds between two looks at a running job.
POLL_SECONDS = 1.0
DEFAULT_MODELS = ("fused", "popularity")
EMBEDDING_SIZES = (16, 32, 64, 128, 256)
#: How a model's status reads in the progress table.
STATUS_WORDS = {"queued": "waiting", "running": "training", "done": "done", "cancelled": "stopped (kept)",
                "failed": "failed", "skipped": "not trained"}

# This page draws the training progress itself (not in the sidebar).
dataset = page_setup("Train", icon=":material/model_training:", watch_training=False)


# ---------------------------------------------------------------------- helpers
def current_job() -> TrainingJob | None:
    return state.get_training_job()


def collect(job: TrainingJob) -> None:
    """Put the job's fitted models into the session as they finish; say how it ended, once.

    The work is :func:`ui.state.harvest_training` (which every page runs in ``page_setup``);
    here the whole page is rerun when something arrived, so the sidebar lists the model and
    the polling fragment stops once the job has ended.
    """
    if state.harvest_training():
        st.rerun()


# ---------------------------------------------------------------------- charts
def curve_figure(snap, kind: str) -> go.Figure | None:
    """Training loss (``kind="loss"``) or validation NDCG (``"ndcg"``) per epoch, one line per series."""
    figure = go.Figure()
    colour = 0
    for model in snap.models:
        records = model.history
        if kind == "loss":
            keys = sorted({key for record in records for key in record.losses})
            series = {key: [record.losses.get(key) for record in records] for key in keys}
        else:
            keys = sorted({key for record in records for key in record.metrics if key.startswith("val_ndcg")})
            series = {key: [record.metrics.get(key) for record in records] for key in keys}
        for key, values in series.items():
            short = model_label(model.name).split(" (")[0]   # "Fused", not the registry name "fused"
            label = model_label(model.name) if key in ("train", "loss", "val_ndcg@10") else f"{short}: {key}"
            label = label.replace("val_ndcg@10_", "").replace("cold_user", "new users (profile only)") \
                .replace("few_shot", "new users (3 items)").replace("warm", "known users")
            figure.add_trace(go.Scatter(
                x=[record.epoch for record in records], y=values, mode="lines+markers",
                name=charts.plot_text(label), line=dict(color=charts.COLOURS[colour % len(charts.COLOURS)],
                                                        width=2.5 if key in ("train", "val_ndcg@10") else 1.5,
                                                        dash=None if key in ("train", "loss", "val_ndcg@10")
                                                        else "dot"),
                hovertemplate="epoch %{x}: %{y:.4f}<extra></extra>"))
            colour += 1
    if not figure.data or max(len(trace.x) for trace in figure.data) < 1:
        return None
    last_epoch = max((max(trace.x) for trace in figure.data if len(trace.x)), default=0)
    figure.update_xaxes(title="epoch", rangemode="tozero", dtick=1 if last_epoch <= 12 else None)
    if kind == "loss":
        figure.update_yaxes(title="training loss (lower is better)")
        title = "Training loss"
    else:
        figure.update_yaxes(title="NDCG@10 on held-back users", rangemode="tozero")
        title = "Validation NDCG@10 (higher is better)"
    figure = charts.style(figure, title=title, height=340)
    # Under the plot: several series would cover the title.
    figure.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0))
    return figure


# ---------------------------------------------------------------------- the running job
def show_job(job: TrainingJob) -> None:
    """Progress, curves and Cancel; while the job runs this part redraws itself every second."""
    polling = job.running

    @st.fragment(run_every=POLL_SECONDS if polling else None)
    def panel() -> None:
        if polling:
            collect(job)  # reruns the whole page when a model finished (sidebar) or the job ended (stop polling)
        snap = job.snapshot()
        if polling and snap.finished:
            st.rerun()
        if snap.status == "running":
            if snap.current is not None:
                focus = next(m for m in snap.models if m.name == snap.current)
                steps = (f"{focus.epoch} of at most {focus.n_epochs} epochs done" if focus.n_epochs
                         else "one step")
                text = f"Training {model_label(focus.name)}: {steps} · {snap.elapsed:.0f} s"
            else:
                text = f"Starting · {snap.elapsed:.0f} s"
            st.progress(snap.progress, text=escape_markdown(text))
            cells = st.columns([1, 3])
            if job.cancel_requested:
                cells[1].info("Cancelling: training stops at the end of the current epoch and keeps the best "
                              "model so far.")
            elif cells[0].button("Cancel", key="cancel_training", icon=":material/stop_circle:"):
                job.cancel()
                cells[1].info("Cancelling: training stops at the end of the current epoch and keeps the best "
                              "model so far.")
        else:
            box = {"done": st.success, "cancelled": st.info, "failed": st.error}.get(snap.status, st.info)
            box(escape_markdown(snap.message))
        st.dataframe(
            [{"model": model_label(m.name), "status": STATUS_WORDS.get(m.status, m.status),
              "epochs": m.epoch, "seconds": round(m.seconds, 1), "note": m.message} for m in snap.models],
            hide_index=True, width="stretch", key="training_status")
        left, right = st.columns(2)
        for column, kind in ((left, "loss"), (right, "ndcg")):
            figure = curve_figure(snap, kind)
            if figure is not None:
                column.plotly_chart(figure, width="stretch", config=charts.PLOTLY_CONFIG, key=f"curve_{kind}")
            elif kind == "ndcg" and any(m.name == "fused" and m.epoch for m in snap.models):
                column.caption("No validation curve: the data is too small to hold users back for checking, so "
                               "the fused model trains for all its epochs.")
        if snap.status == "running" and any(m.name == "fused" for m in snap.models):
            st.caption("The fused model checks itself after every epoch on users it does not train on (their "
                       "NDCG@10: how high the items they really chose rank) and stops when that stops improving; "
                       "the best epoch is kept.")

    panel()


# ---------------------------------------------------------------------- choosing and starting
def model_checkboxes() -> list[str]:
    st.markdown("**Which models?** Each one learns from the loaded interactions; the baselines are there "
                "to show what the fused model adds.")
    chosen = []
    columns = st.columns(2)
    for position, name in enumerate(model_names()):
        with columns[position % 2]:
            if st.checkbox(model_label(name), value=name in DEFAULT_MODELS, key=f"train_{name}"):
                chosen.append(name)
            st.caption(describe_model(name))
    return chosen


def fused_settings() -> dict:
    with st.expander("Advanced settings of the fused model"):
        cells = st.columns(3)
        epochs = cells[0].number_input("Epochs (at most)", min_value=1, max_value=1000, value=80, step=1,
                                       key="fused_epochs", help="An epoch is a pass over the users, but at least "
                                       f"{FUSED_DEFAULTS.min_epoch_steps} and at most {FUSED_DEFAULTS.epoch_steps} "
                                       f"training steps of {FUSED_DEFAULTS.batch_size} people (so on small data "
                                       "there is enough training between checks, and on large data validation, "
                                       "progress and Cancel come often). With early stopping, training usually "
                                       "ends well before this.")
        dim = cells[1].selectbox("Embedding size", EMBEDDING_SIZES, index=EMBEDDING_SIZES.index(64),
                                 key="fused_dim", help="Length of the learned user and item vectors. Larger "
                                 "can capture more, but trains slower and needs more data.")
        learning_rate = cells[2].number_input("Learning rate", min_value=1e-5, max_value=10.0, value=3e-3,
                                              step=1e-3, format="%.4f", key="fused_lr",
                                              help="Step size of the optimiser. Too high and training diverges "
                                              "(RecoLens stops it and says so).")
        cells = st.columns(3)
        seed = cells[0].number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="fused_seed",
                                     help="The same seed gives the same model on the processor.")
        devices = ["auto", *available_devices()]
        device = cells[1].selectbox("Device", devices, key="fused_device",
                                    help="auto: the GPU if there is one, else the processor.")
        early = cells[2].checkbox("Stop early", value=True, key="fused_early_stop",
                                  help=f"Stop when validation NDCG has not improved for {FUSED_DEFAULTS.patience} "
                                  f"epochs (watched from epoch {FUSED_DEFAULTS.warmup_epochs + 1}); the best "
                                  "epoch's model (its weights averaged over that epoch's steps) is kept.")
    settings = {"max_epochs": int(epochs), "dim": int(dim), "learning_rate": float(learning_rate), "seed": int(seed),
                "device": device}
    if not early:
        settings["patience"] = int(epochs)
    return settings


def start_training(names: list[str], settings: dict) -> None:
    job = current_job()
    if job is not None and job.running:
        st.warning("Training is already running. Wait for it to finish, or cancel it, before starting again.")
        return
    if not names:
        st.warning("Choose at least one model to train.")
        return
    models = [(name, make_model(name, **(settings if name == "fused" else {}))) for name in names]
    # Quick one-step baselines first, so their results are there while the slower models train.
    models.sort(key=lambda pair: expected_epochs(pair[1]) is not None)
    state.set_training_job(TrainingJob(dataset, models).start())
    logger.info("started training %s", ", ".join(names))
    st.rerun()


# ---------------------------------------------------------------------- bundles
def download_section() -> None:
    models = state.get_models()
    if not models:
        return
    st.subheader("Save trained models", anchor=False)
    st.markdown("A bundle (`.recolens`) holds the model and a copy of the data it learned from. It contains "
                "data only, never code, so it is safe to share and to load again.")
    columns = st.columns(min(len(models), 4))
    for position, (name, model) in enumerate(models.items()):
        if not isinstance(model, Recommender):
            continue
        columns[position % len(columns)].download_button(
            f"Download {model_label(name)}", data=lambda model=model: bundle_bytes(model),
            file_name=download_name(name, dataset.name, "recolens"),
            mime="application/zip", key=f"download_{name}", icon=":material/download:", on_click="ignore")


def read_uploaded_bundle(file) -> None:
    """Load an uploaded bundle once per file; a model of this data goes straight into the session."""
    if st.session_state.get(BUNDLE_SEEN_KEY) == file.file_id:
        return
    st.session_state[BUNDLE_SEEN_KEY] = file.file_id
    st.session_state.pop(BUNDLE_ERROR_KEY, None)
    st.session_state.pop(PENDING_BUNDLE_KEY, None)
    try:
        model = Recommender.load(file.getvalue())
    except BundleError as error:
        st.session_state[BUNDLE_ERROR_KEY] = f"{file.name} was not loaded: {error}"
        return
    except Exception:  # noqa: BLE001 - a damaged upload must never break the page
        logger.exception("reading bundle %s failed", file.name)
        st.session_state[BUNDLE_ERROR_KEY] = (f"{file.name} could not be read as a RecoLens bundle. Save the "
                                              "model again from RecoLens.")
        return
    problem = check_compatible(model, dataset)
    if problem is None:
        state.set_model(model.name, model)
        state.flash(f"Loaded {model_label(model.name)} from {file.name}.", "success")
        st.rerun()
    st.session_state[PENDING_BUNDLE_KEY] = (model, file.name, problem)


def upload_section() -> None:
    st.subheader("Restore a saved model", anchor=False)
    file = st.file_uploader("Model bundle (.recolens)", key="upload_bundle",
                            help="A .recolens file saved by RecoLens. Pickles and PyTorch checkpoints are refused "
                                 "because opening them can run code.")
    if file is None:
        st.session_state.pop(BUNDLE_SEEN_KEY, None)
        st.session_state.pop(BUNDLE_ERROR_KEY, None)
        st.session_state.pop(PENDING_BUNDLE_KEY, None)
        return
    read_uploaded_bundle(file)
    error = st.session_state.get(BUNDLE_ERROR_KEY)
    if error:
        st.error(escape_markdown(error) + "  \nNothing was changed: the data and models loaded before stay in use.",
                 icon=":material/error:")
    pending = st.session_state.get(PENDING_BUNDLE_KEY)
    if pending is None:
        return
    model, file_name, problem = pending
    st.warning(escape_markdown(f"{file_name}: {problem[0].upper()}{problem[1:]}"), icon=":material/warning:")
    cells = st.columns(2)
    if cells[0].button("Switch to the bundle's data", key="bundle_switch", icon=":material/swap_horiz:",
                       help="Replaces the loaded data by the copy inside the bundle; models trained on the "
                            "current data are forgotten."):
        job = current_job()
        if job is not None and job.running:
            job.cancel()
        state.set_dataset(model.dataset, f"From the model bundle {file_name}")
        state.set_model(model.name, model)
        st.session_state.pop(PENDING_BUNDLE_KEY, None)
        state.flash(f"Switched to the data of {file_name} and loaded its {model_label(model.name)} model.")
        st.rerun()
    if cells[1].button("Keep the current data", key="bundle_keep", icon=":material/block:",
                       help="The bundle is not loaded; nothing changes."):
        st.session_state.pop(PENDING_BUNDLE_KEY, None)
        state.flash(f"Kept the current data; {file_name} was not loaded.", "info")
        st.rerun()


# ---------------------------------------------------------------------- the page
st.title("Train")
st.markdown("Train recommenders on the loaded data. Training runs in the background: this page shows its "
            "progress and you can cancel it at any time (the best model so far is kept). Trained models are "
            "then available on every page: **Evaluate** compares them, **Segments** shows for whom they work.")

chosen = model_checkboxes()
settings = fused_settings() if "fused" in chosen else {}
kind, sentence = describe_device(settings.get("device", "auto"))
icon = {"cuda": ":material/memory:", "mps": ":material/memory:", "cpu": ":material/computer:"}.get(
    kind, ":material/warning:")
st.caption(f"{icon} {escape_markdown(sentence)}")
if st.button("Train", type="primary", key="start_training", icon=":material/play_arrow:"):
    start_training(chosen, settings)

job = current_job()
if job is not None:
    show_job(job)

download_section()
upload_section()

following = next_page_after(THIS_PAGE)
if following is not None:
    st.divider()
    link_to_page(following, label=f"Next: {following.label}")
