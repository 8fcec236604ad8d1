"""MovieLens formats, written by the tests themselves (the data may not be redistributed)."""
import numpy as np
import pytest

from recommender import DataError, Dataset
from recommender.movielens import ML100K_GENRES, read_movielens, read_movielens_files


def write_ml100k(folder, n_users=30, n_items=20, seed=0):
    rng = np.random.default_rng(seed)
    rows = {(int(u), int(i)) for u, i in zip(rng.integers(1, n_users + 1, 300), rng.integers(1, n_items + 1, 300))}
    ratings = [(u, i, int(rng.integers(1, 6)), 874965758 + k) for k, (u, i) in enumerate(sorted(rows))]
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings))
    occupations = ["technician", "other", "writer", "educator"]
    (folder / "u.user").write_text("".join(
        f"{u}|{18 + u % 40}|{'MF'[u % 2]}|{occupations[u % 4]}|{10000 + 37 * u:05d}\n"
        for u in range(1, n_users + 1)))
    lines = []
    for i in range(1, n_items + 2):  # one more item than ever rated: a cold item
        flags = ["0"] * 19
        flags[1 + i % 18] = "1"
        flags[5] = "1" if i % 3 == 0 else flags[5]
        title = "Les Misérables (1995)" if i == 1 else f'Movie "{i}" ({1990 + i % 9})'
        lines.append(f"{i}|{title}|01-Jan-{1990 + i % 9}||http://us.imdb.com/M/title-exact?{i}|{'|'.join(flags)}\n")
    (folder / "u.item").write_bytes("".join(lines).encode("latin-1"))
    return ratings


def write_ml1m(folder):
    (folder / "ratings.dat").write_text("1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n"
                                        "3::30::2::978300275\n")
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n")
    (folder / "movies.dat").write_bytes("10::Café Society (1995)::Comedy|Drama\n20::Jumanji (1995)::Adventure|"
                                        "Children's|Fantasy\n30::Heat (1995)::Action|Crime|Thriller\n"
                                        "40::Never Rated (2000)::Drama\n".encode("latin-1"))


def test_ml100k_round_trip(tmp_path):
    ratings = write_ml100k(tmp_path)
    dataset = Dataset.from_movielens(tmp_path)
    assert dataset.n_interactions == len(ratings)
    assert dataset.has_ratings and dataset.timestamps is not None
    # every rating survives with its value
    index = {(u, i): r for u, i, r, _ in ratings}
    for user, item, weight in zip(dataset.user_ids[dataset.user_index], dataset.item_ids[dataset.item_index],
                                  dataset.weights):
        assert index[(int(user), int(item))] == weight
    # Latin-1 title decoded correctly, bare quotes kept
    titles = dict(zip(dataset.item_ids, dataset.item_labels()))
    assert titles["1"] == "Les Misérables (1995)"
    assert titles["2"] == 'Movie "2" (1992)'
    # 19 genre flags became a multi-label column
    assert dataset.item_roles["genres"] == "multilabel"
    item3 = dataset.items.iloc[dataset.item_indices(["3"])[0]]
    assert item3["genres"] == "Comedy|Crime" or set(item3["genres"].split("|")) <= set(ML100K_GENRES)
    assert dataset.user_roles["age"] == "age" and dataset.user_roles["occupation"] == "categorical"
    assert str(dataset.n_items) and "21" in dataset.item_ids  # the never-rated movie is a cold item


def test_ml1m_decodes_codes_and_double_colon(tmp_path):
    write_ml1m(tmp_path)
    dataset = Dataset.from_movielens(tmp_path)
    assert dataset.n_interactions == 4 and dataset.n_items == 4
    users = dataset.users.assign(user_id=dataset.user_ids).set_index("user_id")
    assert users.loc["1", "age_group"] == "under 18" and users.loc["2", "age_group"] == "56+"
    assert users.loc["1", "occupation"] == "K-12 student"
    titles = dict(zip(dataset.item_ids, dataset.item_labels()))
    assert titles["10"] == "Café Society (1995)"
    assert dataset.items.loc[dataset.item_indices(["20"])[0], "year"] == "1995"


def test_files_mapping_matches_folder(tmp_path):
    write_ml1m(tmp_path)
    from_folder = read_movielens(tmp_path)
    from_files = read_movielens_files({p.name: p.read_bytes() for p in tmp_path.iterdir()})
    assert from_folder.interactions.equals(from_files.interactions)


def test_ml_latest_csv(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n")
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
                                         '3,"Grumpier Old Men, The (1995)",Comedy|Romance\n')
    dataset = Dataset.from_movielens(tmp_path)
    assert dataset.n_interactions == 2
    assert "Grumpier Old Men, The (1995)" in list(dataset.item_labels())


def test_folder_without_ratings_is_a_clear_error(tmp_path):
    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n")
    with pytest.raises(DataError, match=r"no MovieLens ratings file found \(got u.user\)"):
        Dataset.from_movielens(tmp_path)


def test_ragged_u_data_names_the_line(tmp_path):
    write_ml100k(tmp_path)
    with open(tmp_path / "u.data", "a") as file:
        file.write("7\t8\t9\n")
    with pytest.raises(DataError, match=r"u.data.*has 3 fields"):
        Dataset.from_movielens(tmp_path)
