"""Plotly figures with the house look.

The figures take the small, aggregated tables of :mod:`recommender.summary` (never one point
per interaction). Any text that came from a file (category values, column names) goes through
:func:`plot_text`, because Plotly interprets a few HTML tags (``<b>``, ``<a href>``) in labels:
escaped, ``<script>`` or ``<a href="javascript:...">`` shows as plain text.
"""
from __future__ import annotations

import html
from typing import Iterable

import pandas as pd
import plotly.graph_objects as go

from recommender.summary import AttributeDistribution, TimeSeries

#: Colours in the order traces use them (the first is the theme's primary colour).
COLOURS = ["#4F46E5", "#0EA5E9", "#F59E0B", "#10B981", "#EF4444", "#8B5CF6"]
PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def colour_map(keys: Iterable[object]) -> dict:
    """One colour per key, in :data:`COLOURS`' order (cycling): the same key keeps its colour in every chart."""
    return {key: COLOURS[position % len(COLOURS)] for position, key in enumerate(keys)}


def plot_text(value: object) -> str:
    """``value`` as text Plotly shows literally (``<`` ``>`` ``&`` escaped as entities)."""
    return html.escape(str(value), quote=False)


def plot_texts(values: Iterable[object]) -> list[str]:
    return [plot_text(v) for v in values]


def style(figure: go.Figure, *, title: str | None = None, height: int = 320) -> go.Figure:
    """The shared look: white template, compact margins, readable fonts."""
    figure.update_layout(
        template="plotly_white", height=height, margin=dict(l=10, r=10, t=50 if title else 20, b=10),
        title=dict(text=plot_text(title), x=0, xanchor="left", font=dict(size=15)) if title else None,
        font=dict(size=12), legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1),
        hoverlabel=dict(namelength=-1), bargap=0.1)
    return figure


def long_tail_figure(user_tail: pd.DataFrame, item_tail: pd.DataFrame) -> go.Figure:
    """Interactions by rank for users and items on log-log axes (the long tail)."""
    figure = go.Figure()
    for name, tail, colour in (("Users", user_tail, COLOURS[0]), ("Items", item_tail, COLOURS[2])):
        figure.add_trace(go.Scatter(
            x=tail["rank"], y=tail["interactions"], mode="lines", name=name, line=dict(color=colour, width=2.5),
            customdata=tail["cumulative_share"],
            hovertemplate=(f"{name[:-1]} rank %{{x:,}}<br>%{{y:,}} interactions<br>"
                           "top ranks hold %{customdata:.0%} of all<extra></extra>")))
    # One labelled tick per power of ten ("1", "10", "100", "1,000"), light minor grid lines between:
    # Plotly's default labels 2 and 5 of every decade too, which reads as "5, 2, 100, 5, 2, 10".
    for update, title in ((figure.update_xaxes, "rank (1 = most active)"), (figure.update_yaxes, "interactions")):
        update(type="log", title=title, dtick=1, tickformat=",d",
               minor=dict(dtick="D1", showgrid=True, gridcolor="#F1F5F9", ticks=""))
    return style(figure, title="Long tail: interactions by rank", height=360)


def count_histogram_figure(table: pd.DataFrame, what: str, colour: str = COLOURS[0]) -> go.Figure:
    """How many users (or items) have 1, 2, 3-4, ... interactions."""
    figure = go.Figure(go.Bar(x=table["label"], y=table["count"], marker_color=colour,
                              hovertemplate=f"%{{x}} interactions: %{{y:,}} {what}<extra></extra>"))
    figure.update_xaxes(title="interactions", type="category")
    figure.update_yaxes(title=what)
    return style(figure, title=f"{what.capitalize()} by number of interactions")


def rating_figure(table: pd.DataFrame) -> go.Figure:
    figure = go.Figure(go.Bar(x=table["rating"], y=table["count"], marker_color=COLOURS[0],
                              hovertemplate="rating %{x:g}: %{y:,} interactions<extra></extra>"))
    figure.update_xaxes(title="rating", dtick=1 if len(table) <= 12 else None)
    figure.update_yaxes(title="interactions")
    return style(figure, title="Rating distribution")


def time_figure(series: TimeSeries) -> go.Figure:
    frame = series.frame
    per = series.period if series.period != "bin" else "period"
    figure = go.Figure()
    figure.add_trace(go.Bar(x=frame["period_start"], y=frame["interactions"], name="interactions",
                            marker_color=COLOURS[0],
                            hovertemplate=f"{per} of %{{x|%Y-%m-%d}}: %{{y:,}} interactions<extra></extra>"))
    figure.add_trace(go.Scatter(x=frame["period_start"], y=frame["active_users"], name="active users",
                                mode="lines", line=dict(color=COLOURS[2], width=2),
                                hovertemplate=f"{per} of %{{x|%Y-%m-%d}}: %{{y:,}} active users<extra></extra>"))
    figure.update_xaxes(title=None)
    figure.update_yaxes(title=f"per {per}")
    return style(figure, title=f"Activity per {per}", height=340)


def distribution_figure(distribution: AttributeDistribution, colour: str = COLOURS[0]) -> go.Figure:
    """A bar chart (categories) or histogram (numbers, ages) of one attribute column."""
    table = distribution.table
    title = plot_text(distribution.column)
    if distribution.kind == "bar":
        ordered = table.iloc[::-1]  # largest bar on top
        figure = go.Figure(go.Bar(
            x=ordered["count"], y=plot_texts(ordered["value"]), orientation="h", marker_color=colour,
            customdata=ordered["share"], hovertemplate="%{y}: %{x:,} (%{customdata:.1%})<extra></extra>"))
        figure.update_yaxes(type="category", automargin=True)
        figure.update_xaxes(title="count")
        height = max(220, 60 + 24 * len(table))
    else:
        figure = go.Figure(go.Bar(x=table["label"], y=table["count"], marker_color=colour,
                                  hovertemplate="%{x}: %{y:,}<extra></extra>"))
        figure.update_xaxes(type="category", title=title)
        figure.update_yaxes(title="count")
        height = 280
    figure = style(figure, title=f"{distribution.column} ({distribution.role})", height=height)
    return figure


def coverage_figure(coverage: pd.DataFrame) -> go.Figure:
    """Share of items with a value in each item column (horizontal bars, 0-100 %)."""
    ordered = coverage.iloc[::-1]
    figure = go.Figure(go.Bar(
        x=ordered["coverage"], y=plot_texts(ordered["column"]), orientation="h",
        marker_color=[COLOURS[0] if used else "#9CA3AF" for used in ordered["used_as_feature"]],
        customdata=ordered["items_with_value"],
        hovertemplate="%{y}: %{x:.1%} of items (%{customdata:,})<extra></extra>"))
    figure.update_xaxes(range=[0, 1], tickformat=".0%", title="items with a value")
    figure.update_yaxes(type="category", automargin=True)
    return style(figure, title="Item feature coverage (grey: not used as a feature)",
                 height=max(220, 70 + 28 * len(coverage)))
