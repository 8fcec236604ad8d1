"""RecoLens: profile-aware recommendation analysis (the library behind the dashboard).

>>> from recommender import Dataset, FusedRecommender
>>> ds = Dataset.from_files("sample_data/interactions.csv", "sample_data/users.csv", "sample_data/items.csv")
>>> model = FusedRecommender().fit(ds)
"""
from .dataset import Dataset
from .errors import BundleError, DataError, ModelFitError, Problem, Report
from .schema import ColumnMapping

__all__ = ["Dataset", "FusedRecommender", "DataError", "ModelFitError", "BundleError", "Problem", "Report",
           "ColumnMapping"]


def __getattr__(name: str):
    # Imported lazily: the fused model needs torch, which the data layer and the CLI's help do not.
    if name == "FusedRecommender":
        from .models.fused import FusedRecommender

        return FusedRecommender
    raise AttributeError(f"module 'recommender' has no attribute {name!r}")
