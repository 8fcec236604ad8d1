"""Offline evaluation: splitting protocols, metrics and model comparison with breakdowns by profile.

>>> from recommender.evaluation import compare_models
>>> result = compare_models(dataset, {"popularity": "popularity", "fused": "fused"}, protocol="cold_user")
>>> print(result.table); print(result.summary())
"""
from . import metrics
from .compare import (ComparisonResult, ModelEvaluation, activity_band, compare_models, evaluate_model,
                      metric_label, metric_names, user_attributes)
from .protocols import (PROTOCOLS, Split, cold_item_split, cold_user_split, few_shot_split, make_split,
                        relevance_threshold, temporal_split, warm_split)

__all__ = [
    "metrics", "PROTOCOLS", "Split", "make_split", "warm_split", "temporal_split", "cold_user_split",
    "few_shot_split", "cold_item_split", "relevance_threshold", "evaluate_model", "compare_models",
    "ComparisonResult", "ModelEvaluation", "metric_names", "metric_label", "activity_band", "user_attributes",
]
