"""Reading files: RELIABILITY.md cases 1-5 and 8 at the file level."""
import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recommender.errors import DataError
from recommender.io import read_table


def read(data: bytes, name: str = "interactions.csv", **kwargs) -> pd.DataFrame:
    return read_table(io.BytesIO(data), name=name, **kwargs)


# 1. Empty file or header only
@pytest.mark.parametrize("data", [b"", b"   \n\n", b"user_id,item_id\n", b"user_id,item_id\r\n\r\n"])
def test_empty_or_header_only_file_says_no_data_rows(data):
    with pytest.raises(DataError, match=r"interactions.csv: no data rows"):
        read(data)


# 2. Encodings and binary content
def test_utf8_bom_loads_and_header_is_clean():
    frame = read("\ufeffuser_id,item_id\nü1,i1\n".encode("utf-8"))
    assert list(frame.columns) == ["user_id", "item_id"]
    assert frame.iloc[0, 0] == "ü1"


def test_latin1_gets_an_encoding_message_with_the_line():
    with pytest.raises(DataError, match=r"line 3.*not valid UTF-8.*Latin-1") as error:
        read("user_id,item_id\nu1,i1\nu2,caf\xe9\n".encode("latin-1"))
    assert "latin-1" in error.value.problems[0].fix


def test_latin1_loads_when_the_encoding_is_given():
    frame = read("user_id,title\nu1,Les Mis\xe9rables\n".encode("latin-1"), encoding="latin-1")
    assert frame.loc[2, "title"] == "Les Misérables"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_gets_an_encoding_message(encoding):
    with pytest.raises(DataError, match=r"UTF-16"):
        read("user_id,item_id\nu1,i1\n".encode(encoding))


@pytest.mark.parametrize("data,what", [
    (b"MZ\x90\x00\x03\x00\x00\x00" + bytes(200), "Windows program"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "PNG image"),
    (b"\xff\xd8\xff\xe0" + bytes(100), "JPEG image"),
    (b"PK\x03\x04" + bytes(100), "Excel"),
    (b"abc\x00\x01\x02\x03" * 20, "binary"),
])
def test_binary_content_gets_a_format_message(data, what):
    with pytest.raises(DataError, match=what):
        read(data)


# 3. Ragged rows
def test_ragged_rows_name_lines_and_field_counts_and_are_not_padded():
    data = b"user_id,item_id,rating\nu1,i1,5\nu2,i2\n\nu3,i3,4,extra\nu4,i4,3\n"
    with pytest.raises(DataError) as error:
        read(data)
    message = str(error.value)
    assert "line 3 has 2 fields" in message
    assert "line 5 has 4 fields" in message  # the blank line 4 is counted
    assert "header has 3" in message


def test_blank_lines_are_skipped_and_line_numbers_stay_true():
    frame = read(b"user_id,item_id\nu1,i1\n\nu2,i2\n")
    assert list(frame.index) == [2, 4]
    assert frame.attrs["row_label"] == "line"


# 4. Duplicate column names
def test_duplicate_csv_columns_are_listed():
    with pytest.raises(DataError, match=r"duplicate column names: 'item_id' \(2 times\)"):
        read(b"user_id,item_id,item_id\nu1,i1,i2\n")


def test_duplicate_parquet_columns_are_listed(tmp_path):
    table = pa.table([pa.array(["u1"]), pa.array(["i1"]), pa.array(["i2"])], names=["user_id", "item_id", "item_id"])
    path = tmp_path / "dup.parquet"
    pq.write_table(table, path)
    with pytest.raises(DataError, match=r"duplicate column names: 'item_id'"):
        read_table(path)


# 5. Delimiters
@pytest.mark.parametrize("sep", [",", "\t", ";", "|"])
def test_delimiter_is_sniffed(sep):
    frame = read(f"user_id{sep}item_id\nu1{sep}i1\n".encode())
    assert list(frame.columns) == ["user_id", "item_id"]


def test_tsv_extension_means_tab():
    frame = read(b"user_id\titem_id\nu,1\ti\n", name="x.tsv")
    assert frame.iloc[0, 0] == "u,1"


# 6. Ids stay text
def test_ids_are_text_exactly_as_spelled():
    frame = read(b"user_id,item_id\n00123,NA\n123,null\n")
    assert frame["user_id"].tolist() == ["00123", "123"]
    assert frame["item_id"].tolist() == ["NA", "null"]


# 8. Size limits from metadata
def test_oversized_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(b"user_id,item_id\n" + b"u,i\n" * 1000)
    with pytest.raises(DataError, match=r"more than the limit"):
        read_table(path, max_bytes=100)


def test_upload_object_with_size_attribute_is_refused_without_reading():
    class Upload(io.BytesIO):
        name = "huge.csv"
        size = 10 * 1024**3

        def read(self, *args):  # pragma: no cover - must not be called
            raise AssertionError("the file was read")

    with pytest.raises(DataError, match=r"huge.csv: the file is 10,240 MB"):
        read_table(Upload(b"user_id,item_id\n"), max_bytes=1024**2)


def test_parquet_claiming_too_many_rows_is_refused_from_metadata(tmp_path):
    path = tmp_path / "many.parquet"
    pq.write_table(pa.table({"user_id": ["u"] * 50, "item_id": ["i"] * 50}), path)
    with pytest.raises(DataError, match=r"says it holds 50 rows, more than the limit of 10"):
        read_table(path, max_rows=10)


def test_parquet_round_trip_keeps_types_and_row_numbers(tmp_path):
    path = tmp_path / "ok.parquet"
    pd.DataFrame({"user_id": ["00123", "NA"], "item_id": [1, 2], "rating": [4.5, 3.0]}).to_parquet(path)
    frame = read_table(path)
    assert frame["user_id"].tolist() == ["00123", "NA"]
    assert list(frame.index) == [1, 2] and frame.attrs["row_label"] == "row"


def test_truncated_parquet_gets_a_clear_message(tmp_path):
    path = tmp_path / "cut.parquet"
    pd.DataFrame({"user_id": ["u"] * 100, "item_id": ["i"] * 100}).to_parquet(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=r"cut.parquet: .*(Parquet|could not be read)"):
        read_table(path)


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_table(tmp_path / "nope.csv")


def test_large_file_is_read_vectorised_with_true_line_numbers():
    rows = np.arange(50_000)
    data = "user_id,item_id\n" + "".join(f"u{r},i{r % 97}\n" for r in rows)
    frame = read(data.encode())
    assert len(frame) == 50_000 and frame.index[-1] == 50_001
