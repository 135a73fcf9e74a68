"""Atomic writes: the old file or the whole new one, never half, with ordinary umask modes."""

import csv
import json
import os

import pytest

from slr_core.files import (
    atomic_path,
    replace_folder,
    staging_folder,
    write_csv,
    write_json,
    write_text_atomic,
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_writes_land_whole_with_umask_modes_and_leave_no_staging(tmp_path, umask_022):
    text = write_text_atomic(tmp_path / "sub" / "a.txt", "one\r\ntwo\n")
    data = write_json(tmp_path / "b.json", {"x": [1, 2]})
    table = write_csv(tmp_path / "c.csv", [{"k": "a", "v": 1}, {"k": "b", "v": 2}], ("k", "v"))
    assert text.read_bytes() == b"one\r\ntwo\n"  # newlines as given
    assert json.loads(data.read_text()) == {"x": [1, 2]} and data.read_text().endswith("\n")
    assert list(csv.DictReader(table.open())) == [{"k": "a", "v": "1"}, {"k": "b", "v": "2"}]
    assert {path.stat().st_mode & 0o777 for path in (text, data, table)} == {0o644}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "b.json", "c.csv", "sub"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = write_text_atomic(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as staging:
        staging.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_replace_folder_swaps_whole_folders(tmp_path, umask_022):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging = staging_folder(target)
    (staging / "new.txt").write_text("new")
    replace_folder(staging, target)
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert target.stat().st_mode & 0o777 == 0o755  # mkdtemp's 0700 is not what a model folder needs
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # staging and retired folders are gone
