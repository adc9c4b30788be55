"""Folder data splits: disjoint, complete, labelled by sub-folder, repeatable."""

from __future__ import annotations

import pytest

from dgm.errors import DataError
from dgm.folders import folder_split


def test_splits_are_disjoint_cover_every_file_and_label_by_sub_folder(tmp_path):
    for i in range(20):
        sub = tmp_path / ("cats" if i % 2 else "dogs")
        sub.mkdir(exist_ok=True)
        (sub / f"{i}.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not data")
    splits = {s: folder_split(str(tmp_path), {".wav"}, s, 0.2, 0.1, 7, "audio folder")
              for s in ("train", "val", "test")}
    files = [f for s in splits.values() for f in s.files]
    assert len(files) == len(set(files)) == 20
    assert [len(s.files) for s in splits.values()] == [14, 4, 2]
    train = splits["train"]
    assert train.classes == ("cats", "dogs")
    assert all(train.classes[label] == f.parent.name for f, label in zip(train.files,
                                                                            train.labels))
    again = folder_split(str(tmp_path), {".wav"}, "test", 0.2, 0.1, 7, "audio folder")
    assert again.files == splits["test"].files
    with pytest.raises(DataError, match="unknown split 'dev'"):
        folder_split(str(tmp_path), {".wav"}, "dev", 0.2, 0.1, 7, "audio folder")
    with pytest.raises(DataError, match="holds no image files"):
        folder_split(str(tmp_path), {".png"}, "train", 0.2, 0.1, 7, "image folder")
