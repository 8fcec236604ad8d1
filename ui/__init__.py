"""Streamlit helpers shared by the pages of the RecoLens dashboard.

* :mod:`ui.state`: the per-session state (loaded dataset, trained models, evaluation).
* :mod:`ui.common`: ``page_setup`` (every page calls it first), the sidebar, safe text helpers.
* :mod:`ui.loading`: loading the bundled sample and uploaded files into the session.
* :mod:`ui.charts`: Plotly figures with the house look, with data values shown as plain text.

Only the dashboard imports this package; the library (``recommender``) never does.
"""
