"""RecoLens: profile-aware recommendation analysis (the library behind the dashboard).

>>> from recommender import Dataset
>>> ds = Dataset.from_files("sample_data/interactions.csv", "sample_data/users.csv", "sample_data/items.csv")
"""
from .dataset import Dataset
from .errors import BundleError, DataError, ModelFitError, Problem, Report
from .schema import ColumnMapping

__all__ = ["Dataset", "DataError", "ModelFitError", "BundleError", "Problem", "Report", "ColumnMapping"]
