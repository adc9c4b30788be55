"""The image plugin: codec round trips, digits split, folder data set, grids, networks."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from dgm.errors import DataError
from dgm_image import datasets
from dgm_image.codec import read_image, write_image
from dgm_image.networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from dgm_image.previews import make_grid, write_grid


@pytest.mark.parametrize("channels,mode", [(1, "L"), (3, "RGB")])
def test_png_round_trip_is_exact_on_8_bit_values(tmp_path, channels, mode):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (channels, 7, 5), generator=g).float() / 127.5 - 1
    write_image(x, tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == mode and im.size == (5, 7)
    torch.testing.assert_close(read_image(tmp_path / "a.png", mode), x, atol=1e-6, rtol=0)


def test_jpeg_is_read_and_resized(tmp_path):
    Image.new("RGB", (20, 10), (255, 0, 0)).save(tmp_path / "a.jpg")
    x = read_image(tmp_path / "a.jpg", "RGB", size=(4, 6))
    assert x.shape == (3, 4, 6)
    assert x[0].mean() > 0.9 and x[1].mean() < -0.9
    assert read_image(tmp_path / "a.jpg", "L").shape == (1, 10, 20)


def test_digits_split_sizes_levels_and_order():
    from sklearn.datasets import load_digits

    sizes = {s: len(datasets.digits(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 1000, "val": 350, "test": 447}
    test = datasets.digits("test")
    assert test.info.levels == 17 and test.info.shape == (1, 8, 8)
    raw = load_digits()
    assert torch.equal(test[0]["x"].flatten(), torch.tensor(raw.data[1350] / 8 - 1,
                                                            dtype=torch.float32))
    assert test[0]["c"].item() == raw.target[1350]
    assert torch.isin(test.images, torch.linspace(-1, 1, 17)).all()


def make_folder(root, classes=("cats", "dogs"), per_class=10, size=(6, 6)):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", size, color=c * 100 + i).save(root / name / f"{i}.png")


def test_folder_data_set_labels_from_subfolders_and_disjoint_splits(tmp_path):
    make_folder(tmp_path)
    parts = {s: datasets.folder(s, str(tmp_path), mode="L") for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [16, 2, 2]
    assert parts["train"].info.classes == ("cats", "dogs")
    assert parts["train"].info.shape == (1, 6, 6) and parts["train"].info.levels == 256
    seen = [tuple(p.images[:, 0, 0, 0].tolist()) for p in parts.values()]
    assert len(set(seen[0]) & set(seen[1])) == 0 and len(set(seen[0]) & set(seen[2])) == 0
    train = parts["train"]
    for i in range(len(train)):
        brightness = (train[i]["x"][0, 0, 0].item() + 1) * 127.5
        assert train[i]["c"].item() == (1 if brightness >= 100 else 0)


def test_folder_data_set_names_every_bad_file_at_once_or_skips_them(tmp_path):
    from PIL import Image

    from dgm.errors import RecipeWarning

    make_folder(tmp_path, classes=("a",), per_class=5)
    (tmp_path / "a" / "bad.png").write_text("not an image")
    (tmp_path / "a" / "worse.png").write_text("nor this")
    Image.new("L", (16, 16)).save(tmp_path / "a" / "zz-big.png")  # sorted last
    split = {"mode": "L", "val_fraction": 0, "test_fraction": 0}
    with pytest.raises(DataError, match=r"3 bad file\(s\): .*bad.png.*worse.png.*zz-big.png "
                                        r"\(16x16 while the first image is 6x6.*skip_bad"):
        datasets.folder("train", str(tmp_path), **split)
    with pytest.warns(RecipeWarning, match="skipped 3 bad file"):
        data = datasets.folder("train", str(tmp_path), skip_bad=True, **split)
    assert len(data) == 5
    with pytest.warns(DeprecationWarning, match="skip_unreadable is deprecated"), \
            pytest.warns(RecipeWarning):
        datasets.folder("train", str(tmp_path), skip_unreadable=True, **split)


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        datasets.folder("train", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="holds no image files"):
        datasets.folder("train", str(tmp_path))
    (tmp_path / "x").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "x" / "a.png")
    Image.new("L", (5, 4)).save(tmp_path / "x" / "b.png")
    with pytest.raises(DataError, match=r"set data.size = \[H, W\]"):
        datasets.folder("train", str(tmp_path), val_fraction=0, test_fraction=0)


def test_grid_tiles_and_enlarges(tmp_path):
    images = torch.linspace(-1, 1, 10).view(10, 1, 1, 1).expand(10, 1, 8, 8)
    grid = make_grid(images, columns=4, padding=1, min_cell=32)
    assert grid.shape == (1, 3 * 34, 4 * 34)
    assert grid[0, 1, 1] == -1 and grid[0, 1 + 34, 1] == images[4, 0, 0, 0]
    write_grid(images, tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (4 * 34, 3 * 34)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 12)])
def test_networks_produce_the_shapes_the_contract_needs(shape):
    x = torch.randn(2, *shape)
    for enc in (MLPEncoder(shape, 5), ConvEncoder(shape, 5, channels=[8, 8])):
        assert enc(x).shape == (2, 10)
    for dec in (MLPDecoder(shape, 5, 2), ConvDecoder(shape, 5, 2, channels=[8, 8])):
        assert dec(torch.randn(2, 5)).shape == (2, 2 * shape[0], *shape[1:])
