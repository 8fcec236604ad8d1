"""The command line, end to end on files written to a temporary folder."""
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recommender.cli import format_table, main

from tests.evaluation import make_frames

ROOT = Path(__file__).resolve().parents[1]


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    interactions, users, items = make_frames(n_users=90, n_items=50, seed=1)
    paths = {"interactions": folder / "interactions.csv", "users": folder / "users.csv",
             "items": folder / "items.csv"}
    interactions.to_csv(paths["interactions"], index=False)
    users.to_csv(paths["users"], index=False)
    items.to_csv(paths["items"], index=False)
    return paths


def data_args(files):
    return ["--interactions", files["interactions"], "--users", files["users"], "--items", files["items"]]


def test_evaluate_prints_an_aligned_table_and_a_summary(files):
    code, out, err = run("evaluate", *data_args(files), "--protocol", "warm", "--k", "5",
                         "--models", "popularity", "--breakdown", "activity,gender")
    assert code == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("model"))
    row = next(line for line in lines if line.startswith("popularity"))
    assert "NDCG@5" in header and "Recall@5" in header and "fit s" in header
    assert len(row) == len(header)  # right-aligned under their headers
    assert "NDCG@5 by gender" in out and "n_users" in out
    assert "popularity reaches NDCG@5" in out
    assert "[3/3] done" in err  # progress on stderr, not stdout
    assert "[3/3]" not in out


def test_evaluate_json_has_the_table_for_each_model(files):
    code, out, _ = run("evaluate", *data_args(files), "--protocol", "cold_user", "--user-fraction", "0.3",
                       "--models", "popularity", "--json", "--quiet", "--seed", "3", "--breakdown", "gender")
    assert code == 0
    data = json.loads(out)
    assert data["protocol"] == "cold_user" and data["seed"] == 3 and data["k"] == 10
    assert 0 <= data["table"]["popularity"]["ndcg@10"] <= 1
    assert {row["gender"] for row in data["breakdowns"]["gender"]} <= {"F", "M"}
    assert "popularity" in data["summary"]


def test_evaluate_compares_several_registered_models(files):
    from recommender.models import REGISTRY

    names = [n for n in ("popularity", "segment_popularity", "ease") if n in REGISTRY]
    code, out, err = run("evaluate", *data_args(files), "--models", ",".join(names), "--json", "--quiet")
    assert code == 0, err
    assert set(json.loads(out)["table"]) == set(names)


def test_train_then_recommend_for_known_users_and_a_new_profile(files, tmp_path):
    bundle = tmp_path / "model.recolens"
    code, out, err = run("train", *data_args(files), "--model", "popularity", "--out", bundle, "--quiet")
    assert code == 0, err
    assert bundle.exists() and "saved popularity" in out

    code, out, err = run("recommend", "--bundle", bundle, "--users", "U001,U002", "--k", "3")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()[2:]]
    assert [r[0] for r in rows] == ["U001"] * 3 + ["U002"] * 3
    assert "Item number" in out  # titles shown

    code, out, err = run("recommend", "--bundle", bundle, "--profile", "age=30", "gender=F",
                         "--liked", "I000,I001", "--k", "4", "--json")
    assert code == 0, err
    records = json.loads(out)
    assert [r["rank"] for r in records] == [1, 2, 3, 4]
    assert not {"I000", "I001"} & {r["item_id"] for r in records}  # liked items are not recommended again


def test_recommend_errors_exit_2_with_a_message(files, tmp_path):
    bundle = tmp_path / "model.recolens"
    assert run("train", *data_args(files), "--model", "popularity", "--out", bundle, "--quiet")[0] == 0
    code, _, err = run("recommend", "--bundle", bundle, "--users", "nobody")
    assert code == 2 and "'nobody'" in err
    code, _, err = run("recommend", "--bundle", bundle, "--profile", "agee=30")
    assert code == 2 and "unknown profile column(s) agee" in err and "gender" in err
    code, _, err = run("recommend", "--bundle", bundle, "--profile", "age")
    assert code == 2 and "COLUMN=VALUE" in err
    code, _, err = run("recommend", "--bundle", bundle, "--profile", "age=30", "--liked", "I999")
    assert code == 2 and "I999" in err
    broken = tmp_path / "broken.recolens"
    broken.write_bytes(b"not a zip at all")
    code, _, err = run("recommend", "--bundle", broken, "--users", "U001")
    assert code == 2 and "bundle" in err and "Traceback" not in err


def test_broken_interactions_file_exits_2_listing_the_problems(tmp_path):
    no_items = tmp_path / "ratings.csv"
    no_items.write_text("customer,stars\nU1,5\nU2,4\n")
    code, out, err = run("evaluate", "--interactions", no_items, "--quiet")
    assert code == 2 and out == ""
    assert "ratings.csv" in err and "no item id column" in err and "Traceback" not in err
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("user_id,item_id\nU1,I1\nU2,I2\n")
    code, _, err = run("evaluate", "--interactions", tiny, "--quiet")
    assert code == 2 and "no user has the 3 interactions needed" in err
    code, _, err = run("evaluate", "--interactions", tmp_path / "missing.csv")
    assert code == 2 and "file not found" in err


def test_argument_mistakes_exit_2(files):
    code, _, err = run("evaluate", *data_args(files), "--models", "popularity,nonsense")
    assert code == 2 and "unknown model(s) nonsense" in err
    code, _, err = run("evaluate", *data_args(files), "--protocol", "warm", "--n-revealed", "2", "--quiet")
    assert code == 2 and "--n-revealed applies to the few_shot" in err
    code, _, err = run("evaluate", "--quiet")
    assert code == 2 and "--interactions FILE or --movielens DIR" in err
    code, _, err = run("evaluate", *data_args(files), "--models", "popularity", "--breakdown", "shoe_size",
                       "--quiet")
    assert code == 2 and "cannot break down by shoe_size" in err


def test_temporal_protocol_without_timestamps_exits_2(tmp_path):
    interactions, _, _ = make_frames(n_users=40, seed=2, timestamps=False)
    path = tmp_path / "events.csv"
    interactions.to_csv(path, index=False)
    code, _, err = run("evaluate", "--interactions", path, "--protocol", "temporal", "--models", "popularity")
    assert code == 2 and "timestamp" in err


def test_movielens_folder(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    interactions, users, _ = make_frames(n_users=60, n_items=30, seed=3)
    user_number = {u: i + 1 for i, u in enumerate(users["user_id"])}
    item_number = {f"I{i:03d}": i + 1 for i in range(30)}
    data = pd.DataFrame({"u": interactions["user_id"].map(user_number), "i": interactions["item_id"].map(item_number),
                         "r": interactions["rating"].astype(int), "t": interactions["timestamp"]})
    data.to_csv(folder / "u.data", sep="\t", header=False, index=False)
    (folder / "u.user").write_text("".join(f"{n}|{a}|{g}|student|12345\n" for n, a, g in
                                           zip(range(1, 61), users["age"], users["gender"])))
    genres = "|".join(["0"] * 19)
    (folder / "u.item").write_bytes("".join(f"{i}|Caf\u00e9 film {i} (1995)|01-Jan-1995||http://x|{genres}\n"
                                            for i in range(1, 31)).encode("latin-1"))
    code, out, err = run("evaluate", "--movielens", folder, "--protocol", "temporal", "--models", "popularity",
                         "--json", "--quiet")
    assert code == 0, err
    assert json.loads(out)["n_test_users"] > 0
    code, _, err = run("evaluate", "--movielens", folder, "--users", folder / "u.user")
    assert code == 2 and "cannot be combined" in err


def test_models_lists_the_registry():
    from recommender.models import REGISTRY

    code, out, _ = run("models")
    assert code == 0 and {line.split()[0] for line in out.splitlines()} == set(REGISTRY)


def test_format_table_aligns_numbers_and_shows_missing_as_dash():
    table = pd.DataFrame({"score": [0.5, np.nan], "n": [3, 12]}, index=pd.Index(["a", "bb"], name="model"))
    lines = format_table(table).splitlines()
    assert lines[0] == "model   score   n"
    assert lines[2] == "a      0.5000   3"
    assert lines[3] == "bb          -  12"


def test_python_dash_m_entry_point(files, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "recommender", "evaluate", *map(str, data_args(files)),
                         "--models", "popularity", "--quiet"], cwd=ROOT, capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "popularity" in ok.stdout
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    failed = subprocess.run([sys.executable, "-m", "recommender", "evaluate", "--interactions", str(bad)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2
    assert "bad.csv" in failed.stderr and "Traceback" not in failed.stderr


@pytest.mark.parametrize("command", [[], ["evaluate"], ["train"], ["recommend"], ["models"]])
def test_every_command_prints_its_help(command):
    # argparse formats help texts with %, so a help that says "20%" crashed `evaluate --help`.
    code, out, _ = run(*command, "--help")
    assert code == 0
    assert out.startswith("usage:")
    if command == ["evaluate"]:
        assert "a random 20% of their interactions" in " ".join(out.split())
