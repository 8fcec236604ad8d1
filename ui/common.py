"""What every page shares: ``page_setup``, the sidebar, page links and safe display helpers.

Every page starts with::

    from ui.common import page_setup
    dataset = page_setup("Train", icon=":material/model_training:")

which sets the page config, makes sure the session has a dataset (the bundled sample on a
first visit, so any page shows real content even when opened directly), draws the shared
sidebar and shows any pending flash message. With ``require_dataset=True`` (the default) a
page without a dataset stops with a pointer to the Data page, so the rest of the page can
assume ``dataset`` is a :class:`~recommender.dataset.Dataset`.

Text that comes from a file (ids, titles, column names, file names) must be shown with
:func:`escape_markdown` in Markdown (``st.markdown``, captions, alerts, tabs, expanders), with
:func:`escape_label` in widget and metric labels (which are Markdown too, but also the widget's
accessible name, so plain names must stay free of backslashes), as is in selectbox/radio options
(plain text: escaping would show the backslashes), in ``st.dataframe`` / ``st.text`` (never
interpreted), and in Plotly labels with :func:`ui.charts.plot_text`. No page uses
``unsafe_allow_html`` with data.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import streamlit as st
from streamlit.errors import StreamlitAPIException

from recommender.dataset import Dataset
from recommender.errors import Problem, format_rows
from recommender.summary import problems_table
from recommender.training import model_label
from ui import state
from ui.loading import ensure_dataset

ROOT = Path(__file__).resolve().parents[1]
APP_NAME = "RecoLens"


@dataclass(frozen=True)
class PageInfo:
    """A page of the dashboard: its file (relative to the app root), label, icon and purpose."""

    path: str
    label: str
    icon: str
    purpose: str

    @property
    def exists(self) -> bool:
        return (ROOT / self.path).is_file()


HOME = PageInfo("app.py", "Home", ":material/home:", "What RecoLens does and what is loaded.")
#: The pages in the order a person goes through them.
PAGES: tuple[PageInfo, ...] = (
    PageInfo("pages/1_Data.py", "Data", ":material/database:",
             "Load the sample or your own files, check what was read and explore it."),
    PageInfo("pages/2_Train.py", "Train", ":material/model_training:",
             "Train recommenders, with and without the user profiles."),
    PageInfo("pages/3_Evaluate.py", "Evaluate", ":material/leaderboard:",
             "Compare the models on held-out interactions."),
    PageInfo("pages/4_Segments.py", "Segments", ":material/groups:",
             "See for which kinds of users each model works well or badly."),
    PageInfo("pages/5_Similarity.py", "Similarity", ":material/hub:",
             "Explore similar items and what the models learned."),
    PageInfo("pages/6_Cold_start.py", "Cold start", ":material/person_add:",
             "Recommend for a new person from their profile alone."),
)


# ---------------------------------------------------------------------- page setup
def page_setup(title: str, icon: str | None = None, *, require_dataset: bool = True,
               layout: str = "wide", watch_training: bool = True) -> Dataset | None:
    """Set up a page: config, dataset, trained models, sidebar, flash message. Call it first on every page.

    Models that the session's background training job (started on the Train page) has
    finished are moved into the session here, so every page sees them at once.

    Parameters
    ----------
    title : str
        The page's name ("Train"); the browser tab reads "Train · RecoLens".
    icon : str, optional
        Page icon (an emoji or ``":material/name:"``).
    require_dataset : bool
        Stop the page with a pointer to the Data page when no dataset could be loaded.
    layout : {"wide", "centered"}
    watch_training : bool
        While training runs, the sidebar shows its progress and reruns the page when a model
        is ready. The Train page, which draws its own progress, turns this off.

    Returns
    -------
    Dataset or None
        The session's dataset (``None`` only when ``require_dataset=False``).
    """
    st.set_page_config(page_title=f"{title} · {APP_NAME}", page_icon=icon or ":material/insights:",
                       layout=layout)
    dataset = ensure_dataset()
    state.harvest_training()
    draw_sidebar(watch_training=watch_training)
    show_flash()
    if dataset is None and require_dataset:
        st.title(title)
        st.warning("No dataset is loaded. Load the bundled sample or your own files on the Data page.")
        link_to_page(PAGES[0])
        st.stop()
    return dataset


def navigation_pages() -> list[PageInfo]:
    """Home, the pages of :data:`PAGES` that exist, then any other file in ``pages/``."""
    known = {page.path for page in PAGES}
    extra = [PageInfo(f"pages/{path.name}", _label_from_file(path.stem), ":material/article:", "")
             for path in sorted((ROOT / "pages").glob("*.py")) if f"pages/{path.name}" not in known]
    return [HOME, *[page for page in PAGES if page.exists], *extra]


def _label_from_file(stem: str) -> str:
    """``"7_Model_card"`` -> ``"Model card"`` (as Streamlit names classic pages)."""
    return re.sub(r"^\d+[_\s-]*", "", stem).replace("_", " ").strip() or stem


def draw_sidebar(*, watch_training: bool = True) -> None:
    """The shared sidebar: page links, which dataset is loaded and which models are trained.

    Streamlit's own page list is hidden (``client.showSidebarNavigation = false``) because it
    would call the home page "app"; this one uses readable names and the same icons as the
    home page. Models are listed by the same display names the pages use.
    """
    dataset = state.get_dataset()
    models = state.get_models()
    with st.sidebar:
        st.markdown(f"### :material/insights: {APP_NAME}")
        for page in navigation_pages():
            link_to_page(page, fallback=False)
        st.divider()
        st.caption("Loaded dataset")
        if dataset is None:
            st.markdown("_None yet_ — see the **Data** page.")
        else:
            st.markdown(f"**{escape_markdown(dataset.name)}**")
            st.caption(f"{dataset.n_users:,} users · {dataset.n_items:,} items · "
                       f"{dataset.n_interactions:,} interactions")
            description = state.get_description()
            if description:
                st.caption(escape_markdown(description))
        st.caption("Trained models")
        if models:
            st.markdown("\n".join(f"- {escape_markdown(model_label(name))}" for name in models))
        else:
            st.markdown("_None yet_ — see the **Train** page.")
        job = state.get_training_job()
        if watch_training and job is not None and job.running:
            training_status(job)
        if state.get_evaluation() is not None:
            st.caption("Evaluation: results available on the **Evaluate** page.")


#: Seconds between two looks at a training job from the sidebar of another page.
SIDEBAR_POLL_SECONDS = 2.0


def training_status(job) -> None:
    """A small progress line for a job running in the background; reruns the page when a model is ready."""

    @st.fragment(run_every=SIDEBAR_POLL_SECONDS)
    def status() -> None:
        if state.harvest_training() or not job.running:
            st.rerun()  # the whole page: the sidebar lists the new model, the page can use it
        snap = job.snapshot()
        st.progress(snap.progress, text=f"Training in the background · {snap.elapsed:.0f} s")

    status()


def show_flash() -> None:
    """Show (once) the message stored with :func:`ui.state.flash`."""
    pending = state.pop_flash()
    if pending is None:
        return
    kind, message = pending
    box = {"success": st.success, "info": st.info, "warning": st.warning, "error": st.error}.get(kind, st.info)
    box(escape_markdown(message))


# ---------------------------------------------------------------------- page links
def link_to_page(page: PageInfo, *, label: str | None = None, show_purpose: bool = False,
                 fallback: bool = True) -> None:
    """A link to another page; nothing if that page does not exist (yet).

    Links work in the running app (and in ``AppTest`` started from ``app.py``); when a page
    is run on its own as the main script, Streamlit cannot resolve other pages, and the page
    is named in a caption instead (``fallback=True``) or left out.
    """
    if not page.exists:
        return
    try:
        st.page_link(page.path, label=label or page.label, icon=page.icon)
    except StreamlitAPIException:
        if not fallback:
            return
        st.caption(f"See the {page.label} page.")
    if show_purpose:
        st.caption(page.purpose)


def page_cards(pages: Sequence[PageInfo] = PAGES, per_row: int = 3) -> None:
    """The pages that exist as a grid of links, each with one line about what it is for."""
    available = [page for page in pages if page.exists]
    for start in range(0, len(available), per_row):
        columns = st.columns(per_row)
        for column, page in zip(columns, available[start:start + per_row]):
            with column.container(border=True):
                link_to_page(page, label=f"{pages.index(page) + 1}. {page.label}", show_purpose=True)


def next_page_after(path: str) -> PageInfo | None:
    """The next existing page after ``path`` in :data:`PAGES` (for a "Next" link)."""
    paths = [page.path for page in PAGES]
    if path not in paths:
        return None
    for page in PAGES[paths.index(path) + 1:]:
        if page.exists:
            return page
    return None


# ---------------------------------------------------------------------- safe text
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~$:&])")
_LINE_START = re.compile(r"^(\s*)([-+=>]|\d+[.)])")


def escape_markdown(text: object) -> str:
    """``text`` with every Markdown, HTML and Streamlit directive character escaped.

    Use it for any value that came from a file before passing it to ``st.markdown``,
    ``st.caption``, ``st.info``/``st.error``..., tabs or expanders (for widget and metric
    labels use :func:`escape_label`; selectbox options are plain text): ``<script>``
    shows as text, ``[x](javascript:...)`` is not a link, ``:red[x]`` is not coloured and
    ``$x$`` is not maths. Line breaks become spaces (one value stays on one line).
    """
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\r", " ").replace("\n", " ")
    # A value starting like a list item or heading ("- x", "12. x") must not become one.
    return _LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], escaped)


# In a widget label only inline Markdown is drawn, and the raw label is also the field's accessible
# name (screen readers, browser tests), so escape only what would really change the text there.
_LABEL_SPECIAL = re.compile(
    r"[*`\[\]<>~$|]"                          # emphasis, code, links, HTML, strike, maths, tables
    r"|\\(?=[!-/:-@\[-`{-~])"                 # a backslash that would escape the next character
    r"|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])"     # _ that can open or close emphasis (not in user_id)
    r"|:(?=[A-Za-z])"                          # :red[...], :material/...:, :smile:
    r"|&(?=#?\w+;)")                           # HTML entities such as &lt;
_LABEL_LINE_START = re.compile(r"^(\s*)([-+=>#]|\d+[.)])")


def escape_label(text: object) -> str:
    """``text`` safe as a widget label (``st.selectbox(label)``, ``st.checkbox``, ``st.metric``...).

    Like :func:`escape_markdown`, but only the characters that labels would interpret are
    escaped, so ordinary names stay as they are in the accessible name of the widget:
    ``"income_band"`` stays ``"income_band"`` (escape_markdown gives ``"income\\_band"``),
    while ``"**x**"``, ``"<b>x</b>"``, ``":red[x]"`` and ``"[x](javascript:y)"`` show literally.
    Options of a selectbox or radio are plain text: they need no escaping at all (``str``).
    """
    escaped = _LABEL_SPECIAL.sub(lambda m: "\\" + m.group(0), str(text)).replace("\r", " ").replace("\n", " ")
    return _LABEL_LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], escaped)


def problem_markdown(problem: Problem) -> str:
    """One problem as escaped Markdown: where (bold), what, and the fix on its own line."""
    where = []
    if problem.file:
        where.append(escape_markdown(problem.file))
    if problem.column:
        where.append(f"column '{escape_markdown(problem.column)}'")
    if problem.rows:
        rows = format_rows(list(problem.rows), problem.row_label)
        total = problem.n_rows if problem.n_rows is not None else len(problem.rows)
        if total > len(problem.rows):
            rows += f" (of {total:,})"
        where.append(escape_markdown(rows))
    text = escape_markdown(problem.message)
    if where:
        text = f"**{' · '.join(where)}**: {text}"
    if problem.fix:
        text += f"  \n*Fix:* {escape_markdown(problem.fix)}"
    return text


def show_problems(problems: Iterable[Problem], *, max_shown: int = 8, key: str = "problems") -> None:
    """Errors (red) and warnings (amber) as a list; all of them as a table when there are many."""
    problems = list(problems)
    for problem in problems[:max_shown]:
        box = st.error if problem.severity == "error" else st.warning
        box(problem_markdown(problem), icon=":material/error:" if problem.severity == "error"
            else ":material/warning:")
    if len(problems) > max_shown:
        with st.expander(f"All {len(problems)} problems as a table"):
            st.dataframe(problems_table(problems), hide_index=True, width="stretch", key=f"{key}_table")


def format_count(value: float) -> str:
    """``1234567`` -> ``"1.2M"``, ``4321`` -> ``"4,321"`` (for metrics)."""
    value = float(value)
    if abs(value) >= 10_000_000:
        return f"{value / 1e6:,.0f}M"
    if abs(value) >= 1_000_000:
        return f"{value / 1e6:,.1f}M"
    return f"{value:,.0f}"


def format_period(first, last) -> str:
    """The span between two timestamps in a short unit: ``"45 days"``, ``"12 months"``, ``"3.5 years"``.

    Short enough for a metric in a six-column row (a full date range would be cut off).
    """
    days = max((last - first).total_seconds() / 86_400, 0.0)
    if days < 1:
        hours = days * 24
        return f"{hours:.0f} hours" if hours >= 2 else "under 2 hours"
    if days < 90:
        return "1 day" if round(days) == 1 else f"{days:.0f} days"
    if days < 3 * 365:
        return f"{days / 30.44:.0f} months"
    return f"{days / 365.25:.1f} years"


def file_slug(text: object) -> str:
    """A file-name-safe version of a name (``"My shop (2024)"`` -> ``"my_shop_2024"``)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", str(text)).strip("_").lower()[:40] or "data"


def download_name(kind: str, dataset_name: object, extension: str = "csv") -> str:
    """``recolens_<kind>_<dataset>_<date>.<extension>``: what every download of the app is called."""
    return f"recolens_{file_slug(kind)}_{file_slug(dataset_name)}_{dt.date.today().isoformat()}.{extension}"
