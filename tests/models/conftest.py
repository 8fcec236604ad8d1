"""Small synthetic data shared by the model tests (built once per session, in well under a second)."""
import pandas as pd
import pytest

from recommender import Dataset
from recommender.synthetic import generate


@pytest.fixture(scope="session")
def synthetic():
    """300 users, 100 items, about 3,000 interactions, with profiles and item features."""
    return generate(n_users=300, n_items=100, n_interactions=3000, seed=7)


@pytest.fixture(scope="session")
def dataset(synthetic):
    return Dataset.from_frames(synthetic.interactions, synthetic.users, synthetic.items, name="small synthetic")


@pytest.fixture(scope="session")
def other_dataset():
    """Different users and a different catalogue size (for bundles of another dataset)."""
    data = generate(n_users=120, n_items=60, n_interactions=900, seed=11)
    return Dataset.from_frames(data.interactions, data.users, data.items, name="other synthetic")


@pytest.fixture()
def new_profiles():
    """New people: one ordinary, one with values never seen in training, one with a column missing."""
    return pd.DataFrame({
        "user_id": ["ordinary", "unseen", "partial"],
        "age": [34, 130, None],
        "gender": ["F", "nonbinary-unlisted", "M"],
        "region": ["North", "Atlantis", "South"],
        "occupation": ["Teacher", "Astronaut", "Sales"],
        "income_band": ["mid", "galactic", "low"],
    })  # no signup_channel column at all
