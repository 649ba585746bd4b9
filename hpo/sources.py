"""Where datasets come from: the files on disk (IDX, Keras .npz, CIFAR pickles, image folders and their
.tar.gz) and the Keras download, each read into one :class:`Raw` (uint8 images, labels, class names).

Source order for every dataset (the first that has the files wins):
  1. ``--data-dir`` / ``HPO_DATA_DIR``
  2. the Keras cache (``~/.keras/datasets/...``)
  3. an OS package folder (Debian's ``dataset-fashion-mnist``)
  4. the Keras download, for users who are online (skipped when ``HPO_OFFLINE=1``)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from hpo import backend
from hpo.errors import UserError, one_line
from hpo.paths import write_atomic

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def keras_cache() -> Path:
    """Keras's dataset cache, read when needed (``KERAS_HOME`` may change after import)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def cache_dir() -> Path:
    """hpo's own cache (decoded image folders), read when needed."""
    return Path(os.environ.get("HPO_CACHE_DIR", Path.home() / ".cache" / "hpo"))


_FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclass(frozen=True)
class Raw:
    x_train: np.ndarray  # uint8, (n, h, w, c)
    y_train: np.ndarray  # int64
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str


def _raw_npz(path: Path, *, source: str, class_names: tuple[str, ...] | None = None) -> Raw:
    """A Keras-style ``.npz`` (x_train, y_train, x_test, y_test; ``class_names`` when not given)."""
    with np.load(path) as f:
        names = class_names or tuple(str(c) for c in f["class_names"])
        return Raw(f["x_train"], f["y_train"], f["x_test"], f["y_test"], names, source)


# What a user missing a dataset is told (after where it was looked for).
HOW_TO_GET = {
    "fashion_mnist": (
        "Get it with `apt-get install dataset-fashion-mnist`, or put the four IDX .gz files in "
        "<data-dir>/fashion-mnist/ and pass --data-dir."
    ),
    "mnist": (
        "Put Keras's mnist.npz (from its download URL, online) in <data-dir>/ and pass --data-dir, or in "
        "~/.keras/datasets/."
    ),
    "cifar10": (
        "Put cifar-10-batches-py/ (Keras's download, online) or a cifar10-jpeg.tar.gz of "
        "train/<class>/*.jpg and test/<class>/*.jpg in <data-dir>/ and pass --data-dir."
    ),
    "image_folder": "Pass --data-dir pointing at the folder or .tar.gz.",
}


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise UserError(f"{path}: truncated IDX file ({arr.size} values for shape {dims}); download it again")
    return arr.reshape(dims)


def _fashion_dir_candidates(data_dir: Path | None) -> list[Path]:
    c = []
    if data_dir:
        c += [data_dir / "fashion-mnist", data_dir / "fashion_mnist", data_dir]
    return c + [keras_cache() / "fashion-mnist", DEBIAN_FASHION]


def load_fashion(data_dir: Path | None) -> Raw:
    tried = _fashion_dir_candidates(data_dir)
    for d in tried:
        if all((d / f).is_file() for f in _FASHION_FILES):
            xtr, ytr, xte, yte = (_read_idx(d / f) for f in _FASHION_FILES)
            return Raw(xtr, ytr, xte, yte, FASHION_CLASSES, str(d))
    return _download("fashion_mnist", tried)


def load_mnist(data_dir: Path | None) -> Raw:
    tried = ([data_dir / "mnist.npz"] if data_dir else []) + [keras_cache() / "mnist.npz"]
    for p in tried:
        if p.is_file():
            return _raw_npz(p, source=str(p), class_names=tuple(str(i) for i in range(10)))
    return _download("mnist", tried)


def load_cifar10(data_dir: Path | None) -> Raw:
    tried: list[Path] = []
    if data_dir:
        tried += [
            data_dir / "cifar10-jpeg.tar.gz",
            data_dir / "cifar10-jpeg",
            data_dir / "cifar-10-batches-py",
        ]
    tried += [keras_cache() / "cifar-10-batches-py"]
    for p in tried:
        if p.name == "cifar-10-batches-py" and (p / "data_batch_1").is_file():
            return _read_cifar_pickles(p)
        if p.exists() and p.name.startswith("cifar10-jpeg"):
            raw = _load_image_folder_path(p)
            if raw.class_names != CIFAR10_CLASSES:
                raise UserError(
                    f"{p}: expected the CIFAR-10 classes {CIFAR10_CLASSES}, found {raw.class_names}"
                )
            return raw
    return _download("cifar10", tried)


def _read_cifar_pickles(d: Path) -> Raw:
    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        with open(d / name, "rb") as f:
            b = pickle.load(f, encoding="bytes")
        x = np.asarray(b[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(b[b"labels"])

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    xte, yte = batch("test_batch")
    return Raw(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        xte,
        yte,
        CIFAR10_CLASSES,
        str(d),
    )


def load_image_folder(data_dir: Path | None) -> Raw:
    if data_dir is None:
        raise UserError(
            "dataset 'image_folder' needs --data-dir (or HPO_DATA_DIR) pointing at a folder with "
            "train/<class>/*.png|jpg and test/<class>/*, or at a .tar.gz of one"
        )
    return _load_image_folder_path(data_dir)


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _fingerprint(path: Path) -> str:
    """The cache key of an image folder: every image's relative path, size and mtime (a folder's own
    mtime does not change when an image inside a class folder does), or an archive's size and mtime."""
    h = hashlib.sha1(str(path.resolve()).encode())
    files = (
        sorted(f for f in path.rglob("*") if f.suffix.lower() in _IMAGE_SUFFIXES) if path.is_dir() else [path]
    )
    for f in files:
        st = f.stat()
        h.update(f"\n{f.relative_to(path) if f != path else ''}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _load_image_folder_path(path: Path) -> Raw:
    """``train/<class>/*`` and ``test/<class>/*`` under ``path`` (a folder or a .tar.gz), cached as .npz."""
    cache = cache_dir() / f"image_folder-{_fingerprint(path)}.npz"
    if cache.is_file():
        return _raw_npz(cache, source=str(path))
    files: dict[str, dict[str, list[tuple[str, Callable[[], bytes]]]]] = {"train": {}, "test": {}}
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        tar = tarfile.open(path)
        for m in tar.getmembers():
            parts = Path(m.name).parts
            if (
                m.isfile()
                and m.name.lower().endswith(_IMAGE_SUFFIXES)
                and len(parts) >= 3
                and parts[-3] in files
            ):
                files[parts[-3]].setdefault(parts[-2], []).append(
                    (m.name, lambda m=m: tar.extractfile(m).read())
                )
    elif path.is_dir():
        for split in files:
            for cls_dir in sorted((path / split).glob("*")) if (path / split).is_dir() else []:
                for f in sorted(cls_dir.iterdir()) if cls_dir.is_dir() else []:
                    if f.suffix.lower() in _IMAGE_SUFFIXES:
                        files[split].setdefault(cls_dir.name, []).append((str(f), f.read_bytes))
    else:
        raise UserError(
            f"{path}: not a folder or a .tar.gz; expected train/<class>/* and test/<class>/* inside"
        )
    for split in files:
        if not files[split]:
            raise UserError(
                f"{path}: no images found under {split}/<class>/ (looked for {', '.join(_IMAGE_SUFFIXES)}); "
                "put images in train/<class>/ and test/<class>/"
            )
    class_names = tuple(sorted(files["train"]))
    extra = set(files["test"]) - set(class_names)
    if extra:
        raise UserError(f"{path}: test/ has classes not in train/: {', '.join(sorted(extra))}")
    arrays = {}
    for split in files:
        xs, ys = [], []
        for label, cls in enumerate(class_names):
            for name, read in sorted(files[split].get(cls, [])):
                xs.append(_decode(read(), name))
                ys.append(label)
        shapes = {x.shape for x in xs}
        if len(shapes) != 1:
            raise UserError(
                f"{path}/{split}: images have different sizes {sorted(shapes)[:3]}; resize them to one size"
            )
        arrays[f"x_{split}"], arrays[f"y_{split}"] = np.stack(xs), np.asarray(ys, dtype=np.int64)
    raw = Raw(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], class_names, str(path)
    )
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)

        def save(p: Path) -> None:
            with p.open("wb") as f:  # a file object: np.savez would add .npz to a name
                np.savez(f, **arrays, class_names=np.asarray(class_names))

        write_atomic(cache, save)
    except OSError:
        pass  # a cache we cannot write only costs time
    return raw


def _decode(blob: bytes, name: str) -> np.ndarray:
    try:
        img = Image.open(io.BytesIO(blob))
        img = img.convert("L" if img.mode in ("1", "L", "I", "I;16") else "RGB")
    except Exception as e:  # PIL raises many types for a bad file
        raise UserError(f"{name}: not a readable image ({e}); remove or replace it") from None
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def _download(name: str, tried: list[Path]) -> Raw:
    how_to_get = HOW_TO_GET[name]
    where = ", ".join(str(t) for t in tried)
    if os.environ.get("HPO_OFFLINE") == "1":
        raise UserError(
            f"dataset {name!r} not found (looked in: {where}; download disabled by HPO_OFFLINE=1). "
            f"{how_to_get}"
        )
    keras = backend.keras()
    try:
        (xtr, ytr), (xte, yte) = getattr(keras.datasets, name).load_data()
    except Exception as e:
        raise UserError(
            f"dataset {name!r} not found (looked in: {where}; Keras download failed: "
            f"{one_line(e, 160)}). {how_to_get}"
        ) from None
    classes = {"fashion_mnist": FASHION_CLASSES, "cifar10": CIFAR10_CLASSES}.get(
        name, tuple(map(str, range(10)))
    )
    return Raw(xtr, ytr, xte, yte, classes, f"keras download ({keras_cache()})")
