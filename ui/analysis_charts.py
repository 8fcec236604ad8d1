"""Figures and small display helpers of the Segments and Similarity pages.

The numbers come from :mod:`recommender.analysis`; this module only draws them. Every text that
came from a file (titles, ids, attribute values, segment names built from them) goes through
:func:`ui.charts.plot_text` before it reaches Plotly. Long labels are shortened on the axes and
shown in full on hover; heatmap axes are numeric positions with tick labels, so two titles that
shorten to the same text never merge into one row.
"""
from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from recommender.analysis.similarity import SimilarityMatrix
from recommender.dataset import Dataset
from recommender.evaluation import metric_label
from recommender.training import model_label
from ui import state
from ui.charts import COLOURS, plot_text, plot_texts, style

#: Colours of segments / groups on the map (enough distinct ones for k <= 24).
GROUP_COLOURS = [*COLOURS, "#EC4899", "#14B8A6", "#F97316", "#84CC16", "#6366F1", "#A855F7", "#06B6D4",
                 "#EAB308", "#22C55E", "#F43F5E", "#64748B", "#0F766E", "#B45309", "#7C3AED", "#BE123C",
                 "#15803D", "#1D4ED8", "#A16207"]
#: Characters of an axis label before it is shortened.
LABEL_WIDTH = 28
#: Slot in the per-session memo holding the latest segmentation (shared by both pages).
LATEST_SEGMENTS = "analysis_latest_segments"


# ---------------------------------------------------------------------- per-session results
def remembered(slot: str, key: Hashable, compute: Callable[[], Any], keep: int = 4) -> Any:
    """``compute()`` once per session, dataset and ``key``; only the ``keep`` latest results are kept.

    Built on :func:`ui.state.memo` (per session, forgotten when new data is loaded), but
    bounded: moving a slider through ten values keeps four segmentations, not ten.
    """
    store: dict = state.memo(slot, dict)
    if key in store:
        store[key] = store.pop(key)          # most recently used last
        return store[key]
    value = compute()
    store[key] = value
    while len(store) > keep:
        store.pop(next(iter(store)))
    return value


def latest_segments() -> dict:
    """The session's latest segmentation: ``{"result": SegmentResult, "label": str}`` or ``{}``."""
    return state.memo(LATEST_SEGMENTS, dict)


def short(text: object, width: int = LABEL_WIDTH) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (not escaped)."""
    text = str(text)
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


# ---------------------------------------------------------------------- segments
def silhouette_figure(silhouette: dict[int, float], chosen: int, override: int | None = None) -> go.Figure:
    """Silhouette score by number of segments, the automatic choice (and an override) marked."""
    ks = sorted(silhouette)
    scores = [silhouette[k] for k in ks]
    figure = go.Figure(go.Scatter(x=ks, y=scores, mode="lines+markers", name="silhouette",
                                  line=dict(color=COLOURS[0], width=2.5),
                                  hovertemplate="k = %{x}: silhouette %{y:.3f}<extra></extra>"))
    if chosen in silhouette:
        figure.add_trace(go.Scatter(x=[chosen], y=[silhouette[chosen]], mode="markers", name=f"best k = {chosen}",
                                    marker=dict(color=COLOURS[3], size=14, symbol="star"),
                                    hovertemplate="best: k = %{x} (silhouette %{y:.3f})<extra></extra>"))
    if override is not None and override != chosen:
        figure.add_vline(x=override, line=dict(color=COLOURS[2], dash="dash"),
                         annotation_text=f"your k = {override}", annotation_position="top")
    figure.update_xaxes(title="number of segments k", dtick=1)
    figure.update_yaxes(title="silhouette (higher: clearer groups)")
    return style(figure, title="How clearly the users split into k groups", height=300)


def profile_text(dataset: Dataset, user_index: np.ndarray, columns: Sequence[str], width: int = 18) -> list[str]:
    """One short, escaped line per user: ``"age 34 · region North · ..."``."""
    if not columns:
        return [""] * len(user_index)
    rows = dataset.users.iloc[np.asarray(user_index)][list(columns)].reset_index(drop=True)
    parts = [(plot_text(short(column, 14)) + " "
              + rows[column].astype(object).where(rows[column].notna(), "?").map(
                  lambda v: plot_text(short(v, width))).astype(str)) for column in columns]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + " · " + part
    return joined.tolist()


def top_items_text(dataset: Dataset, user_index: np.ndarray, n_top: int = 2, width: int = 26) -> list[str]:
    """The ``n_top`` items each user weighted most (ties: lowest item index), escaped and shortened."""
    index = np.asarray(user_index, dtype=np.int64)
    sub = dataset.matrix[index].tocsr()
    counts = np.diff(sub.indptr)
    rows = np.repeat(np.arange(len(index)), counts)
    order = np.lexsort((-sub.data, rows))                  # by user, heaviest first
    rank = np.arange(len(order)) - sub.indptr[rows[order]]
    chosen = order[rank < n_top]
    labels = dataset.item_labels(sub.indices[chosen])
    texts = [[] for _ in range(len(index))]
    for row, label in zip(rows[chosen], labels):
        texts[row].append(plot_text(short(label, width)))
    more = np.maximum(counts - n_top, 0)
    return ["; ".join(t) + (f" (+{m} more)" if m else "") if t else "no interactions" for t, m in zip(texts, more)]


def segment_map_figure(coords: np.ndarray, groups: Sequence[str], hover: Sequence[str], title: str,
                       order: Sequence[str] | None = None) -> go.Figure:
    """A 2-D map of people, one coloured trace per group (``groups`` already escaped or plain)."""
    frame = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "group": list(groups), "hover": list(hover)})
    names = list(order) if order is not None else sorted(frame["group"].unique(), key=str)
    figure = go.Figure()
    for position, name in enumerate(names):
        part = frame[frame["group"] == name]
        if part.empty:
            continue
        figure.add_trace(go.Scattergl(
            x=part["x"], y=part["y"], mode="markers", name=plot_text(short(name, 40)),
            marker=dict(size=6, opacity=0.75, color=GROUP_COLOURS[position % len(GROUP_COLOURS)]),
            text=part["hover"], hovertemplate="%{text}<extra></extra>"))
    figure.update_xaxes(showticklabels=False, title=None, zeroline=False)
    figure.update_yaxes(showticklabels=False, title=None, zeroline=False)
    figure = style(figure, title=title, height=520)
    figure.update_layout(legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.01))
    return figure


def compare_figure(frame: pd.DataFrame, name_a: str, name_b: str, n_rows: int = 12) -> go.Figure:
    """Shares of the attribute values and categories that differ most between two segments."""
    top = frame.head(n_rows).iloc[::-1]
    labels = plot_texts(short(f"{a}: {v}", 36) for a, v in zip(top["attribute"], top["value"]))
    figure = go.Figure()
    for column, name, colour in (("share_a", name_a, COLOURS[0]), ("share_b", name_b, COLOURS[2])):
        figure.add_trace(go.Bar(y=labels, x=top[column], orientation="h", name=plot_text(short(name, 40)),
                                marker_color=colour, customdata=top["overall"],
                                hovertemplate="%{y}: %{x:.0%} (overall %{customdata:.0%})<extra></extra>"))
    figure.update_layout(barmode="group")
    figure.update_xaxes(tickformat=".0%", title="share of the segment")
    figure.update_yaxes(type="category", automargin=True)
    return style(figure, title="Where the two segments differ most", height=max(300, 60 + 34 * len(top)))


def quality_figure(table: pd.DataFrame, metric: str) -> go.Figure:
    """Grouped bars: one group per segment, one bar per model (``table``: segments x models)."""
    figure = go.Figure()
    labels = plot_texts(short(name, 30) for name in table.index)
    for position, model in enumerate(table.columns):
        figure.add_trace(go.Bar(x=labels, y=table[model], name=plot_text(model_label(model)),
                                marker_color=COLOURS[position % len(COLOURS)],
                                hovertemplate="%{x}: %{y:.3f}<extra>" + plot_text(model_label(model)) + "</extra>"))
    figure.update_layout(barmode="group")
    figure.update_xaxes(type="category", title=None)
    figure.update_yaxes(title=metric_label(metric))
    return style(figure, title=f"{metric_label(metric)} by segment (higher: the model serves them better)",
                 height=340)


# ---------------------------------------------------------------------- heatmaps
def heatmap_figure(matrix: SimilarityMatrix, *, title: str, value_name: str = "similarity",
                   log_lift: bool = False, clickable: bool = False,
                   highlight: tuple[int, int] | None = None) -> go.Figure:
    """A clustered heatmap of a :class:`SimilarityMatrix` with short axis labels and full hover text.

    Parameters
    ----------
    matrix : SimilarityMatrix
    title : str
    value_name : str
        What a cell holds, for the hover text ("similarity", "lift").
    log_lift : bool
        Colour by log2(lift) around 1 (affinity heatmaps); the hover still shows the lift.
    clickable : bool
        Put an invisible marker on every cell so that a click selects that cell (Plotly
        heatmaps themselves send no selection events to Streamlit). A marker sits at
        ``x`` = column position, ``y`` = row position.
    highlight : (int, int), optional
        Row and column position of a cell to outline (the pair being explained).
    """
    values = np.asarray(matrix.values, dtype=np.float64)
    n_rows, n_columns = values.shape
    rows_full, columns_full = plot_texts(matrix.row_labels), plot_texts(matrix.column_labels)
    hover_rows = np.repeat(np.asarray(rows_full, dtype=object)[:, None], n_columns, axis=1)
    hover_columns = np.repeat(np.asarray(columns_full, dtype=object)[None, :], n_rows, axis=0)
    extra = _cell_details(matrix)
    customdata = np.dstack([hover_rows, hover_columns, extra])
    if log_lift:
        colour = np.log2(np.where(np.isfinite(values) & (values > 0), values, np.nan))
        bound = float(np.nanmax(np.abs(colour))) if np.isfinite(colour).any() else 1.0
        bound = min(max(bound, 0.5), 3.0)
        ticks = [v for v in (-3, -2, -1, -0.5, 0, 0.5, 1, 2, 3) if abs(v) <= bound]
        colorbar = dict(title=value_name, tickvals=ticks, ticktext=[f"x{2 ** v:.2g}" for v in ticks])
        scale = dict(colorscale="RdBu_r", zmid=0.0, zmin=-bound, zmax=bound)
    else:
        colour = values
        finite = values[np.isfinite(values)]
        low = float(finite.min()) if finite.size else 0.0
        colorbar = dict(title=value_name)
        scale = (dict(colorscale="RdBu_r", zmid=0.0, zmin=-1.0, zmax=1.0) if low < 0
                 else dict(colorscale="Blues", zmin=0.0, zmax=max(float(finite.max()) if finite.size else 1.0, 1e-9)))
    template = ("<b>%{customdata[0]}</b><br>× <b>%{customdata[1]}</b><br>"
                + value_name + ": %{customdata[2]}<extra></extra>")
    x = np.arange(n_columns)
    y = np.arange(n_rows)
    figure = go.Figure(go.Heatmap(z=colour, x=x, y=y, customdata=customdata, colorbar=colorbar, xgap=1, ygap=1,
                                  hovertemplate=template, hoverinfo="skip" if clickable else None,
                                  hoverongaps=False, **scale))
    if clickable and n_rows and n_columns:
        grid_y, grid_x = np.meshgrid(y, x, indexing="ij")
        cell_text = np.stack([hover_rows.ravel(), hover_columns.ravel(), extra.ravel()], axis=1)
        figure.add_trace(go.Scatter(
            x=grid_x.ravel(), y=grid_y.ravel(), mode="markers", showlegend=False, name="cells",
            marker=dict(size=max(6, min(22, 600 // max(n_rows, 1))), symbol="square", opacity=0.0,
                        color="rgba(0,0,0,0)"),
            selected=dict(marker=dict(opacity=0.0)), unselected=dict(marker=dict(opacity=0.0)),
            text=[f"<b>{r}</b><br>× <b>{c}</b><br>{value_name}: {e}" for r, c, e in cell_text],
            hovertemplate="%{text}<extra></extra>"))
    if highlight is not None:
        row, column = highlight
        figure.add_shape(type="rect", x0=column - 0.5, x1=column + 0.5, y0=row - 0.5, y1=row + 0.5,
                         line=dict(color="#111827", width=2.5), fillcolor="rgba(0,0,0,0)")
    figure.update_xaxes(tickvals=x, ticktext=[short(label) for label in columns_full], tickangle=-45,
                        showgrid=False, zeroline=False, range=[-0.5, n_columns - 0.5])
    figure.update_yaxes(tickvals=y, ticktext=[short(label) for label in rows_full], autorange="reversed",
                        showgrid=False, zeroline=False)
    height = int(min(900, max(360, 140 + 18 * n_rows)))
    figure = style(figure, title=title, height=height)
    figure.update_layout(clickmode="event+select", dragmode=False)
    return figure


def _cell_details(matrix: SimilarityMatrix) -> np.ndarray:
    """Text per cell for the hover: the value, and for affinity cells the shares and people behind it."""
    values = np.asarray(matrix.values, dtype=np.float64)
    if matrix.kind == "affinity":
        share = np.asarray(matrix.extra.get("share", np.full(values.shape, np.nan)), dtype=np.float64)
        overall = np.asarray(matrix.extra.get("overall", np.full(values.shape[1], np.nan)), dtype=np.float64)
        counts = matrix.counts if matrix.counts is not None else np.full(values.shape, np.nan)
        out = np.empty(values.shape, dtype=object)
        for (row, column), value in np.ndenumerate(values):
            if not np.isfinite(value):
                out[row, column] = "hidden (too few people)"
            else:
                out[row, column] = (f"x{value:.2f} — {share[row, column]:.0%} of the group's interactions vs "
                                    f"{overall[column]:.0%} overall · {int(counts[row, column]):,} people")
        return out
    text = np.where(np.isfinite(values), np.char.mod("%.3f", np.nan_to_num(values)), "n/a")
    return text.astype(object)


def signals_figure(similarity: dict[str, float | None], labels: dict[str, str]) -> go.Figure:
    """How similar two items are under each signal (missing signals left out)."""
    shown = [(labels.get(name, name), value) for name, value in similarity.items() if value is not None]
    figure = go.Figure(go.Bar(x=[value for _, value in shown], y=[name for name, _ in shown], orientation="h",
                              marker_color=[COLOURS[i % len(COLOURS)] for i in range(len(shown))],
                              hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    figure.update_xaxes(range=[min(0.0, min((v for _, v in shown), default=0.0)), 1.0], title="cosine similarity")
    figure.update_yaxes(type="category", automargin=True)
    return style(figure, title="Similarity of the pair under each signal", height=220)
