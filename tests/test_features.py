"""Encoders: new profiles encode like training rows, unseen values go to "unknown", JSON round trip."""
import json

import numpy as np
import pandas as pd
import scipy.sparse as sp

import warnings

import pytest

from recommender.features import (AgeEncoder, BehaviourEncoder, CategoricalEncoder, MultiLabelEncoder, NumericEncoder,
                                  TableEncoder, age_band, category_matrix)


def test_categorical_unknown_other_and_zip_prefix():
    values = pd.Series(["a"] * 10 + ["b"] * 10 + ["rare"])
    encoder = CategoricalEncoder("c", min_count=5).fit(values)
    assert encoder.categories == ["a", "b"]
    out = encoder.transform(pd.Series(["a", "rare", "never", None, ""]))
    assert out.argmax(axis=1).tolist() == [0, 2, 3, 3, 3]  # rare -> other; unseen/missing -> unknown
    zips = pd.Series([f"{n:05d}" for n in range(10000, 10000 + 300 * 37, 37)])
    zip_encoder = CategoricalEncoder("zip_code").fit(zips)
    assert zip_encoder.prefix == 2 and len(zip_encoder.categories) <= 50


def test_multilabel_multi_hot():
    encoder = MultiLabelEncoder("genres").fit(pd.Series(["Action|Comedy", "Drama", "Comedy"]))
    out = encoder.transform(pd.Series(["Comedy|Action", "Western", None]))
    assert encoder.names == ["genres:Action", "genres:Comedy", "genres:Drama", "genres:(unknown)"]
    assert out.tolist() == [[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]


@pytest.mark.parametrize("encoder", [lambda: NumericEncoder("income"), lambda: AgeEncoder("age", bucket=False)])
def test_numbers_near_the_float_limit_keep_their_order(encoder):
    # The squares of 1e300 overflow: the spread became infinite and every value scaled to 0.
    values = pd.Series([1e300, -1e300, 5e307, None])
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # no overflow warning either
        out = encoder().fit(values).transform(values)
    assert np.isfinite(out).all()
    assert out[1, 0] < out[0, 0] < out[2, 0] and out[3, 1] == 1.0
    plain = pd.Series([1.0, 2.0, 4.0])
    np.testing.assert_allclose(encoder().fit(plain).transform(plain)[:, 0],
                               (plain - plain.mean()) / plain.std(ddof=0), rtol=1e-6)


def test_age_bands():
    assert age_band(pd.Series([17, 18, 34, 35, 70, None])).tolist()[:5] == ["under 18", "18-24", "25-34",
                                                                           "35-44", "65+"]


def test_table_encoder_round_trips_through_json():
    frame = pd.DataFrame({"age": ["20", "35", "61", None], "gender": ["F", "M", "F", "M"],
                          "tags": ["a|b", "b", "", "c"], "price": ["1", "10", "100", "1000"]})
    roles = {"age": "age", "gender": "categorical", "tags": "multilabel", "price": "numeric"}
    encoder = TableEncoder(roles, min_count=1).fit(frame)
    restored = TableEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    np.testing.assert_array_equal(encoder.transform(frame), restored.transform(frame))
    assert encoder.feature_names == restored.feature_names
    slices = encoder.column_slices()
    assert slices["gender"].stop - slices["gender"].start == 4  # F, M, other, unknown


def test_behaviour_features():
    items = pd.DataFrame({"category": ["x", "x", "y", "z"]})
    categories, names = category_matrix(items, "category", "categorical")
    matrix = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 1], [0, 0, 0, 0]], dtype=np.float32))
    encoder = BehaviourEncoder().fit(matrix, None, names)
    out = encoder.transform(matrix, None, categories)
    shares = out[:, 2:]
    assert names == ["x", "y", "z"]
    np.testing.assert_allclose(shares[0], [1, 0, 0])
    np.testing.assert_allclose(shares[1], [1 / 3, 1 / 3, 1 / 3], rtol=1e-6)
    assert out[0, 1] == 0 and np.isclose(out[1, 1], 1.0)  # diversity: one category vs all three
    assert out[2, 0] < out[0, 0] < out[1, 0]  # activity order
