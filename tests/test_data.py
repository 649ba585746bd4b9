from __future__ import annotations

import gzip
import tarfile

import numpy as np
import pytest

from hpo import data, sources
from hpo.errors import UserError
from tests.conftest import synthetic_images


def test_split_is_stratified_seeded_and_disjoint(data_dir):
    s1 = data.load_splits("mnist", data_dir=data_dir, val_fraction=0.25, seed=3)
    s2 = data.load_splits("mnist", data_dir=data_dir, val_fraction=0.25, seed=3)
    assert (len(s1.y_train), len(s1.y_val)) == (300, 100)
    np.testing.assert_array_equal(s1.y_val, s2.y_val)
    assert np.bincount(s1.y_val).tolist() == [10] * 10  # stratified
    assert s1.x_train.dtype == np.float32 and 0.0 <= s1.x_train.min() and s1.x_train.max() <= 1.0
    assert not hasattr(s1, "x_test")  # the search never sees the test set


def test_standardize_uses_the_dataset_stats(data_dir):
    s = data.load_splits("mnist", data_dir=data_dir, normalization="standardize")
    assert (s.mean, s.std) == (0.1307, 0.3081)
    assert s.x_train.min() < 0


def test_max_train_samples_subsets_and_rejects_too_many(data_dir):
    s = data.load_splits("mnist", data_dir=data_dir, val_fraction=0.25, max_train_samples=100)
    assert len(s.y_train) == 100 and len(s.y_val) == 100
    with pytest.raises(UserError, match="larger than the 300 training images"):
        data.load_splits("mnist", data_dir=data_dir, val_fraction=0.25, max_train_samples=301)


def test_fashion_idx_files_are_read(tmp_path):
    d = tmp_path / "fashion-mnist"
    d.mkdir()
    xtr, ytr = synthetic_images(50, seed=0)
    xte, yte = synthetic_images(20, seed=1)

    def idx(path, arr):
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
        with gzip.open(path, "wb") as f:
            f.write(header + arr.tobytes())

    for name, arr in zip(sources._FASHION_FILES, (xtr, ytr, xte, yte)):
        idx(d / name, arr)
    raw = data.load_raw("fashion_mnist", data_dir=tmp_path)
    assert raw.x_train.shape == (50, 28, 28, 1) and raw.class_names[0] == "T-shirt/top"
    np.testing.assert_array_equal(raw.y_test, yte)


def _image_tree(root, n_per_class=3, classes=("cat", "dog")):
    from PIL import Image

    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n_per_class):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / split / c / f"{i}.png")


def test_image_folder_from_dir_and_tar(tmp_path):
    root = tmp_path / "imgs"
    _image_tree(root)
    raw = data.load_raw("image_folder", data_dir=root)
    assert raw.x_train.shape == (6, 8, 8, 3) and raw.class_names == ("cat", "dog")
    tgz = tmp_path / "imgs.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(root, arcname="imgs")
    raw2 = data.load_raw("image_folder", data_dir=tgz)
    np.testing.assert_array_equal(raw.y_train, raw2.y_train)


def test_image_folder_cache_sees_an_image_added_inside_a_class_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    _image_tree(root)
    assert len(data.load_raw("image_folder", data_dir=root).y_train) == 6  # now cached
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
        root / "train" / "dog" / "new.png"
    )  # root's mtime stays
    raw = data.load_raw("image_folder", data_dir=root)
    assert len(raw.y_train) == 7 and list(raw.y_train).count(1) == 4


def test_empty_image_folder_is_one_clear_error(tmp_path):
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(UserError, match="no images found under train"):
        data.load_raw("image_folder", data_dir=tmp_path / "empty")


def test_labels_out_of_range(tmp_path):
    xtr, ytr = synthetic_images(40, seed=0)
    ytr = ytr.astype(np.int64)
    ytr[0] = 12
    np.savez(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xtr, y_test=ytr % 10)
    with pytest.raises(UserError, match="labels out of range: found 0..12"):
        data.load_raw("mnist", data_dir=tmp_path)


def test_missing_dataset_lists_where_it_looked(tmp_path):
    with pytest.raises(UserError) as e:
        data.load_raw("mnist", data_dir=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "mnist.npz") in msg and "HPO_OFFLINE" in msg and "\n" not in msg


def test_test_set_only_through_load_test(data_dir):
    x, y, raw = data.load_test("mnist", data_dir=data_dir, normalization="unit", mean=0, std=1)
    assert x.shape == (100, 28, 28, 1) and raw.dtype == np.uint8 and len(y) == 100
