"""The one reader of users' CSV files (manifest, truth, decisions): what it takes from a
spreadsheet, and each way it refuses a file, on real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from noisyclean.csvread import read_user_csv
from noisyclean.errors import NoisyCleanError


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    return path


def test_a_spreadsheet_csv_is_read_as_text(tmp_path: Path) -> None:
    """BOM, CRLF, spaces around column names, extra columns, a short row, number-like
    cells kept as written."""
    path = _file(tmp_path, "\ufeff path , label ,note\r\na.png,007\r\nb.png,1.0,x\r\nc.png\r\n"
                 .encode())
    frame = read_user_csv(path, "truth file", ("path", "label"))
    assert list(frame.columns) == ["path", "label", "note"]
    assert frame.to_dict("list") == {"path": ["a.png", "b.png", "c.png"],
                                     "label": ["007", "1.0", ""], "note": ["", "x", ""]}


@pytest.mark.parametrize("data,needles", [
    (b"", ["truth file", "is empty", "'path', 'label'"]),
    (b"path,label\na.png,b,c\n", ["not a readable CSV file", "Expected 2 fields"]),
    ("path,label\na.png,caf\u00e9\n".encode("latin-1"), ["not UTF-8"]),
    (b"path,klass\na.png,b\n", ["lacks column(s) 'label'", "columns found: 'path', 'klass'"]),
    (b"Path,Label\na.png,b\n", ["lacks column(s) 'path', 'label'",
                                "rename 'Path', 'Label' to 'path', 'label'"]),
    (b"path,label,label\na.png,b,c\n", ["more than one column 'label'"]),
    # a spreadsheet saved with the separator of a locale that writes decimal commas
    (b"path;label\na.png;b\n", ["columns found: 'path;label'", "separated by ';': save it "
                                "with commas"]),
    (b"Path;Label;note\na.png;b;c\n", ["separated by ';'"]),
    (b"path\tlabel\na.png\tb\n", ["separated by a tab"]),
    # ... with decimal commas too: one column in the header, several in a row
    (b"path;label;clean_prob\na.png;b;0,95\nc.png;d;0,5\n",
     ["not a readable CSV file", "Expected 1 fields in line 2, saw 2",
      "separated by ';': save it with commas"]),
])
def test_each_way_a_file_is_refused(tmp_path: Path, data: bytes, needles: list[str]) -> None:
    with pytest.raises(NoisyCleanError) as info:
        read_user_csv(_file(tmp_path, data), "truth file", ("path", "label"))
    for needle in needles:
        assert needle in str(info.value)
    assert "C error" not in str(info.value)


def test_a_missing_file_or_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoisyCleanError, match="cannot read labels CSV .*: it does not exist"):
        read_user_csv(tmp_path / "absent.csv", "labels CSV", ("path", "label"))
    with pytest.raises(NoisyCleanError, match="it is a folder, not a CSV file"):
        read_user_csv(tmp_path, "labels CSV", ("path", "label"))
