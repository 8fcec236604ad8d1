"""Recommenders sharing one contract (:class:`~recommender.models.base.Recommender`)."""
from .base import REGISTRY, Recommender, register
from .popularity import PopularityRecommender
from .segment_popularity import SegmentPopularityRecommender
from .profile_knn import ProfileKNNRecommender
from .ease import EASERecommender
from .als import ALSRecommender
from .content_knn import ContentKNNRecommender
from .fused import FusedRecommender

__all__ = ["REGISTRY", "Recommender", "register", "PopularityRecommender", "SegmentPopularityRecommender",
           "ProfileKNNRecommender", "EASERecommender", "ALSRecommender", "ContentKNNRecommender", "FusedRecommender"]
