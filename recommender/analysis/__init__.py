"""Analysis behind the Segments, Similarity and Cold-start pages (no Streamlit here).

* :mod:`.segments`: k-means segments of users, named and profiled in plain language;
* :mod:`.similarity`: item x item, user x user and group x category heatmaps;
* :mod:`.coldstart`: what a model shows a new person described by a form, and who a new item
  would reach;
* :mod:`.privacy`: small-group suppression (``k_min``) and CSV-injection-safe export.

>>> from recommender.analysis import segment_users, simulate
>>> segments = segment_users(model, dataset)
>>> segments.profiles()
"""
from .coldstart import (FieldSpec, SimulationResult, baseline_models, change_one_thing, item_form_schema,
                        new_item_audience, profile_form_schema, simulate)
from .privacy import K_MIN_DEFAULT, K_MIN_FLOOR, safe_csv, suppress_matrix, suppress_small
from .segments import (SegmentResult, compare_segments, profile_groups, projection_2d, segment_assignments,
                       segment_users)
from .similarity import (SimilarityMatrix, affinity_matrix, explain_pair, item_similarity_matrix,
                         user_similarity_matrix)

__all__ = [
    "segment_users", "SegmentResult", "projection_2d", "compare_segments", "segment_assignments", "profile_groups",
    "item_similarity_matrix", "user_similarity_matrix", "affinity_matrix", "explain_pair", "SimilarityMatrix",
    "profile_form_schema", "item_form_schema", "FieldSpec", "simulate", "SimulationResult", "change_one_thing", "new_item_audience",
    "baseline_models", "K_MIN_DEFAULT", "K_MIN_FLOOR", "suppress_small", "suppress_matrix", "safe_csv",
]
