from __future__ import annotations

import numpy as np
import pytest

from hpo import models

EXPECTED_PARAMS = {
    "seed000_mnist": 469_172,
    "seed000_fashion": 467_818,
    "seed000_cifar10": 362_346,
    "seed001_mnist": 121_994,
    "seed003_mnist": 121_930,
    "seed003_cifar10": 356_810,
    "seed004_mnist": 202_202,
}


def _shape(name):
    return (32, 32, 3) if models.REFERENCES[name].dataset == "cifar10" else (28, 28, 1)


@pytest.mark.parametrize("name, count", EXPECTED_PARAMS.items())
def test_reference_parameter_counts(name, count):
    assert models.build(name, _shape(name), 10).count_params() == count


def test_seed000_cifar10_trainable_params():

    m = models.build("seed000_cifar10", (32, 32, 3), 10)
    trainable = sum(int(np.prod(w.shape)) for w in m.trainable_weights)
    assert trainable == 361_962


def test_seed004_layout():
    m = models.build("seed004_mnist", (28, 28, 1), 10)
    conv = m.layers[0]
    assert conv.filters == 8 and conv.kernel_size == (3, 3) and conv.padding == "same"
    assert models.REFERENCES["seed004_mnist"].optimizer == "sgd"


def test_family_baseline_is_seed002_and_extended_adds_conv_and_dropouts():
    base = models.build("fashion_cnn", (28, 28, 1), 10, variant="baseline", filters=32, dropout=0.25)
    ext = models.build("fashion_cnn", (28, 28, 1), 10, variant="extended", filters=32, dropout=0.25)
    convs = lambda m: [l.filters for l in m.layers if l.__class__.__name__ == "Conv2D"]
    drops = lambda m: sum(l.__class__.__name__ == "Dropout" for l in m.layers)
    assert convs(base) == [32, 64] and convs(ext) == [32, 64, 64]
    assert drops(ext) == 3
    assert sum(l.__class__.__name__ == "MaxPooling2D" for l in base.layers) == 2


def test_family_double_has_two_convs_per_block_like_seed000():
    dbl = models.build(
        "fashion_cnn", (28, 28, 1), 10, variant="double", filters=32, dropout=0.25, batch_norm=True
    )
    ref = models.build("seed000_fashion", (28, 28, 1), 10)
    convs = lambda m: [l.filters for l in m.layers if l.__class__.__name__ == "Conv2D"]
    assert convs(dbl) == convs(ref) == [32, 32, 64, 64]
    assert sum(l.__class__.__name__ == "Dropout" for l in dbl.layers) == 3
    assert sum(l.__class__.__name__ == "BatchNormalization" for l in dbl.layers) == 4
    assert dbl.output_shape == (None, 10)


# resnet20 takes ~10 s to build and train a step: the slow tier
ALL = [
    pytest.param(n, marks=pytest.mark.slow) if n == "resnet20" else n
    for n in [*models.REFERENCES, "fashion_baseline", "fashion_extended"]
]


@pytest.mark.parametrize("name", ALL)
def test_every_model_builds_and_trains_one_step(name):
    from hpo.training import make_optimizer

    shape = _shape(name) if name in models.REFERENCES else (28, 28, 1)
    params = (
        {}
        if name in models.REFERENCES
        else {"filters": 4, "l2": 1e-4, "dropout": 0.1, "batch_norm": True, "augmentation": "light"}
    )
    m = models.build(name, shape, 10, **params)
    m.compile(optimizer=make_optimizer("adam", 1e-3), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((8, *shape), dtype=np.float32)
    y = np.arange(8) % 10
    loss = m.train_on_batch(x, y)
    assert np.isfinite(float(np.asarray(loss).ravel()[0]))
    assert m.predict(x, verbose=0).shape == (8, 10)


def test_flip_augmentation_mirrors_some_training_images_and_leaves_inference_alone():
    import keras

    m = models.build("fashion_baseline", (28, 28, 1), 10, filters=4, augmentation="flip")
    flip = m.layers[0]
    assert flip.__class__.__name__ == "RandomFlip"
    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    out = keras.ops.convert_to_numpy(flip(x, training=True))
    mirrored = [np.allclose(o, xi[:, ::-1]) for o, xi in zip(out, x)]
    kept = [np.allclose(o, xi) for o, xi in zip(out, x)]
    assert all(a or b for a, b in zip(mirrored, kept)) and 0 < sum(mirrored) < 64
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(flip(x, training=False)), x)
    with pytest.raises(ValueError, match="'none', 'light' or 'flip'"):
        models.build("fashion_baseline", (28, 28, 1), 10, augmentation="warp")


def test_light_augmentation_fills_the_border_with_the_background_of_the_normalized_data():
    import keras

    from hpo import data
    from hpo.training import compile_model

    x = np.zeros((8, 28, 28), dtype=np.uint8)
    x[:, 8:20, 8:20] = 200  # a bright object on a black background
    y = np.arange(8) % 10
    black = float(data.normalize(np.zeros(1, np.uint8), "standardize", 0.2860, 0.3530)[0])
    names = tuple(str(k) for k in range(10))
    xn = data.normalize(x[..., None], "standardize", 0.2860, 0.3530)
    splits = data.Splits(xn, y, xn[:0], y[:0], names, "synthetic", 0.2860, 0.3530)
    model = compile_model("fashion_baseline", {"filters": 4, "augmentation": "light"}, splits, epochs=1)
    shift = model.layers[0]
    assert shift.__class__.__name__ == "RandomTranslation" and shift.fill_value == pytest.approx(black)
    assert black == pytest.approx(-0.810, abs=1e-3)
    moved = keras.ops.convert_to_numpy(shift(splits.x_train, training=True))
    assert moved.min() == pytest.approx(black, abs=1e-5)  # no grey (0.0) border in a shifted image
    assert not np.isclose(moved, 0.0, atol=1e-3).any()


def test_the_long_training_regularizers_are_training_only_layers_within_the_datas_range():
    import keras

    from hpo import data
    from hpo.callbacks import ema_momentum
    from hpo.training import compile_model

    x = np.zeros((64, 28, 28), dtype=np.uint8)
    x[:, 8:20, 4:12] = 200  # a bright object, off-centre, on a black background
    y = np.arange(64) % 10
    xn = data.normalize(x[..., None], "standardize", 0.2860, 0.3530)
    names = tuple(str(k) for k in range(10))
    splits = data.Splits(xn, y, xn[:0], y[:0], names, "synthetic", 0.2860, 0.3530)
    params = {
        "filters": 4,
        "flip": True,
        "translate": 0.1,
        "erasing": 0.5,
        "label_smoothing": 0.1,
        "ema_half_life": 1.0,
        "batch_size": 32,
    }
    model = compile_model("fashion_baseline", params, splits, epochs=1)
    flip, shift, erase = model.layers[:3]
    assert flip.__class__.__name__ == "RandomFlip" and flip.mode == "horizontal"  # not vertical too
    assert shift.__class__.__name__ == "RandomTranslation"
    assert shift.fill_value == pytest.approx(float(xn.min()))  # the background, not a grey 0.0
    assert erase.__class__.__name__ == "RandomErasing"
    assert tuple(erase.factor) == pytest.approx((0.5, 0.5))  # a fixed probability, not U(0, p)
    erased = keras.ops.convert_to_numpy(erase(xn, training=True))
    changed = (~np.isclose(erased, xn)).reshape(64, -1).any(axis=1)
    assert 12 <= changed.sum() <= 52  # about half the images
    assert erased.min() >= xn.min() - 1e-6 and erased.max() <= xn.max() + 1e-6  # noise within the range
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(erase(xn, training=False)), xn)
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    opt = model.optimizer
    assert opt.use_ema and opt.ema_momentum == pytest.approx(ema_momentum(1.0, steps_per_epoch=2))
    plain = compile_model("fashion_baseline", {"filters": 4}, splits, epochs=1)
    assert [layer.__class__.__name__ for layer in plain.layers[:1]] == ["Conv2D"]
    assert plain.loss == "sparse_categorical_crossentropy" and not plain.optimizer.use_ema
