"""Model registry: reference CNNs from the source documents (reproduced exactly) and the searchable families.

``REFERENCES[name].build(input_shape, num_classes)`` and
``FAMILIES[name](input_shape, num_classes, **params)`` both return an uncompiled Keras model.
The objective compiles it with the optimizer the trial (or the reference protocol) asks for.
Keras is reached through :mod:`hpo.backend` inside the builders, so that listing the registry stays instant.
Registry ids such as ``seed000_fashion`` are stable keys (stored studies and the report's retrain cache
use them); what a user reads is each reference's ``source`` and ``architecture``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from hpo import backend
from hpo.errors import UserError, choices_hint

# The documents the reference models come from (their registry ids keep the document number).
SOURCES = {
    "000": "CNN Image Classification From Scratch: Using MNIST, Fashion-MNIST, and CIFAR-10",
    "001": "Building Convolutional Neural Networks on MNIST Dataset (notebook)",
    "002": "Developing a custom CNN for Image Classification using the Fashion MNIST Dataset",
    "003": "The Rise of CNN in Image Classification (MNIST and CIFAR-10 tutorial)",
    "004": "A CNN from scratch with NumPy on MNIST",
}
# Parameters consumed by training rather than by the model builder, and their defaults.
TRAINING_PARAMS = {
    "learning_rate",
    "batch_size",
    "optimizer",
    "momentum",
    "clipnorm",
    "lr_schedule",
    "label_smoothing",
    "ema_half_life",
}
TRAINING_DEFAULTS = {
    "learning_rate": 1e-3,
    "batch_size": 32,
    "optimizer": "adam",
    "lr_schedule": "constant",
    "label_smoothing": 0.0,
    "ema_half_life": 0.0,  # epochs; 0: no moving average of the weights
}


@dataclass(frozen=True)
class Reference:
    """A published CNN: ``source`` is the document's title, ``architecture`` what the model is."""

    name: str  # registry id, stable
    build: Callable[..., Any]
    dataset: str
    architecture: str
    source: str
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 10
    normalization: str = "unit"
    published_accuracy: float | None = None  # the test accuracy the source reports, labelled as published

    @property
    def description(self) -> str:
        published = (
            f", published {self.published_accuracy:.2%}" if self.published_accuracy is not None else ""
        )
        return f'{self.architecture} (from "{self.source}"{published})'


def _layers():
    keras = backend.keras()
    return keras, keras.layers


def _sequential(input_shape, layers_: list, name: str):
    keras, L = _layers()
    return keras.Sequential([L.Input(shape=tuple(input_shape)), *layers_], name=name)


_TOKEN = re.compile(r"^([CDPABFR])(\d*\.?\d*)(?:x(\d+))?(v)?(?::(\w+))?(\+he)?(\+bn)?$")


def _stack(spec: str, input_shape, num_classes: int, name: str, **values: Any):
    """A plain CNN from a line of layer tokens, closed by a softmax ``Dense(num_classes)``.

    ``C32`` Conv2D 32 filters 3x3, same padding, ReLU (``x5``: 5x5; ``v``: valid padding; ``:tanh``: another
    activation; ``+he``: He-normal init; ``+bn``: conv, BatchNormalization, then the activation);
    ``P``/``A`` max/average pooling 2; ``B`` BatchNormalization; ``F`` Flatten; ``R0.5`` Dropout;
    ``D128`` Dense (``:tanh`` as for convs). ``{name}`` in the spec is filled from ``values``.
    """
    keras, L = _layers()
    layers_: list = [L.Input(shape=tuple(input_shape))]
    for token in spec.format(**values).split():
        m = _TOKEN.match(token)
        if m is None:
            raise ValueError(f"model spec {name}: bad token {token!r}")
        kind, num, kernel, valid, act, he, bn = m.groups()
        act = act or "relu"
        if kind == "C":
            conv = dict(
                padding="valid" if valid else "same",
                kernel_initializer="he_normal" if he else "glorot_uniform",
            )
            if bn:
                layers_ += [
                    L.Conv2D(int(num), int(kernel or 3), **conv),
                    L.BatchNormalization(),
                    L.Activation(act),
                ]
            else:
                layers_.append(L.Conv2D(int(num), int(kernel or 3), activation=act, **conv))
        elif kind == "D":
            layers_.append(L.Dense(int(num), activation=act))
        elif kind == "R":
            layers_.append(L.Dropout(float(num)))
        else:
            layers_.append(
                {"P": L.MaxPooling2D, "A": L.AveragePooling2D}[kind](2)
                if kind in "PA"
                else (L.BatchNormalization() if kind == "B" else L.Flatten())
            )
    layers_.append(L.Dense(num_classes, activation="softmax"))
    return keras.Sequential(layers_, name=name)


# --- SOURCES['000'] -------------------------------------------------------------------------------


def seed000_mnist(input_shape=(28, 28, 1), num_classes=10):
    """Two conv blocks, no regularization; 469,172 params (same padding, 7x7x64 flatten)."""
    return _stack("C32 C32 P C64 C64 P F D128 D10 D64", input_shape, num_classes, "seed000_mnist")


def seed000_fashion(input_shape=(28, 28, 1), num_classes=10, dropout: float = 0.5):
    """The Fashion CNN of SOURCES['000'] with Dropout after Flatten; 467,818 params."""
    spec = "C32 C32 P C64 C64 P F R{dropout} D128"
    return _stack(spec, input_shape, num_classes, "seed000_fashion", dropout=dropout)


def seed000_cifar10(input_shape=(32, 32, 3), num_classes=10, dropout: float = 0.5):
    """BatchNorm after the four 32/64 convs (same padding); two valid 128 convs; 362,346 params."""
    spec = "C32+bn C32+bn P C64+bn C64+bn P C128v C128v P F D128 R{dropout} D64"
    return _stack(spec, input_shape, num_classes, "seed000_cifar10", dropout=dropout)


# --- SOURCES['001'], ['003'], ['004'] ---------------------------------------------------------------------


def seed001_mnist(input_shape=(28, 28, 1), num_classes=10):
    """The notebook CNN of SOURCES['001']; 121,994 params."""
    return _stack("C32 P C64v P C64v F D64", input_shape, num_classes, "seed001_mnist")


def seed003_mnist(input_shape=(28, 28, 1), num_classes=10):
    """The tutorial MNIST CNN of SOURCES['003'] (valid padding); 121,930 params."""
    return _stack("C32v P C64v P F D64", input_shape, num_classes, "seed003_mnist")


def seed003_cifar10(input_shape=(32, 32, 3), num_classes=10):
    """The tutorial CIFAR-10 CNN of SOURCES['003'] (valid padding); 356,810 params."""
    return _stack("C32v P C64v P C128v F D128", input_shape, num_classes, "seed003_cifar10")


def seed004_mnist(input_shape=(28, 28, 1), num_classes=10):
    """The NumPy CNN of SOURCES['004']: conv 8@3x3 padding 1 (He init), max-pool 2, dense 128,
    softmax; SGD."""
    return _stack("C8+he P F D128", input_shape, num_classes, "seed004_mnist")


# --- the competitors in SOURCES['002'], adapted to 28x28x1 -----------------------------------------------


def lenet5(input_shape=(28, 28, 1), num_classes=10):
    """LeNet-5: 6@5x5 (same, so 28x28 plays the 32x32 role), avg-pool, 16@5x5, 120-84-softmax."""
    spec = "C6x5:tanh A C16x5v:tanh A F D120:tanh D84:tanh"
    return _stack(spec, input_shape, num_classes, "lenet5")


def alexnet(input_shape=(28, 28, 1), num_classes=10):
    """AlexNet's five-conv/three-dense layout for small inputs: 3x3 stride-1 convs, 3 pools, halved widths."""
    spec = "C48 B P C128 B P C192 C192 C128 P F D512 R0.5 D512 R0.5"
    return _stack(spec, input_shape, num_classes, "alexnet")


def resnet20(input_shape=(28, 28, 1), num_classes=10):
    """ResNet-20 (He et al. 2016, CIFAR variant): 3 stages x 3 basic blocks, 16/32/64 filters."""
    keras, L = _layers()
    inputs = L.Input(shape=tuple(input_shape))
    x = L.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = L.Activation("relu")(L.BatchNormalization()(x))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            stride = 2 if stage > 0 and block == 0 else 1
            y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
            y = L.Activation("relu")(L.BatchNormalization()(y))
            y = L.Conv2D(filters, 3, padding="same", use_bias=False)(y)
            y = L.BatchNormalization()(y)
            if stride != 1:
                x = L.BatchNormalization()(L.Conv2D(filters, 1, strides=stride, use_bias=False)(x))
            x = L.Activation("relu")(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(num_classes, activation="softmax")(x), name="resnet20")


REFERENCES: dict[str, Reference] = {
    r.name: r
    for r in [
        Reference(
            "seed000_mnist",
            seed000_mnist,
            "mnist",
            "MNIST CNN, two conv blocks, no regularization",
            SOURCES["000"],
            epochs=5,
            published_accuracy=0.985,
        ),
        Reference(
            "seed000_fashion",
            seed000_fashion,
            "fashion_mnist",
            "Fashion-MNIST CNN with Dropout",
            SOURCES["000"],
            epochs=10,
            published_accuracy=0.924,
        ),
        Reference(
            "seed000_cifar10",
            seed000_cifar10,
            "cifar10",
            "CIFAR-10 CNN, BatchNorm + Dropout",
            SOURCES["000"],
            epochs=20,
            published_accuracy=0.740,
        ),
        Reference(
            "seed001_mnist",
            seed001_mnist,
            "mnist",
            "MNIST notebook CNN",
            SOURCES["001"],
            batch_size=128,
            epochs=20,
            published_accuracy=0.9931,
        ),
        Reference("seed003_mnist", seed003_mnist, "mnist", "tutorial MNIST CNN", SOURCES["003"], epochs=5),
        Reference(
            "seed003_cifar10", seed003_cifar10, "cifar10", "tutorial CIFAR-10 CNN", SOURCES["003"], epochs=10
        ),
        Reference(
            "seed004_mnist",
            seed004_mnist,
            "mnist",
            "NumPy CNN (conv 8@3x3, dense 128), rebuilt in Keras",
            SOURCES["004"],
            optimizer="sgd",
            learning_rate=0.01,
            epochs=5,
        ),
        Reference(
            "lenet5",
            lenet5,
            "fashion_mnist",
            "LeNet-5, a competitor in the Fashion-MNIST study",
            SOURCES["002"],
            normalization="standardize",
            epochs=50,
            published_accuracy=0.86,
        ),
        Reference(
            "alexnet",
            alexnet,
            "fashion_mnist",
            "AlexNet, small-input adaptation, a competitor in the Fashion-MNIST study",
            SOURCES["002"],
            normalization="standardize",
            epochs=50,
            published_accuracy=0.89,
        ),
        Reference(
            "resnet20",
            resnet20,
            "fashion_mnist",
            "ResNet-20, a competitor in the Fashion-MNIST study",
            SOURCES["002"],
            normalization="standardize",
            epochs=50,
            published_accuracy=0.88,
        ),
    ]
}
# A published accuracy with no model in the registry: the hand-tuned CNN of the Fashion-MNIST study
# (the ``fashion_cnn`` family is that CNN made searchable).
PUBLISHED_ONLY = (("fashion_mnist", "hand-tuned custom CNN (the fashion_cnn family)", 0.90, SOURCES["002"]),)


# --- searchable families ---------------------------------------------------------------------


def _augmentation(
    augmentation: str, flip: bool, translate: float, erasing: float, background: float, value_range
) -> list:
    """The training-only augmentation layers of :func:`fashion_cnn` (none: an empty list)."""
    L = backend.keras().layers
    layers_: list = []
    if augmentation == "light":  # suggested by SOURCES['003']: small shifts and rotations (training only)
        layers_ += [
            # the border filled with the images' background (a black pixel as normalized), not grey
            L.RandomTranslation(0.1, 0.1, fill_mode="constant", fill_value=background),
            L.RandomRotation(0.03, fill_mode="constant", fill_value=background),
        ]
    elif augmentation == "flip":  # mirror images left-right (clothes are near-symmetric; training only)
        layers_ += [L.RandomFlip("horizontal")]
    elif augmentation != "none":
        raise ValueError(f"augmentation must be 'none', 'light' or 'flip', got {augmentation!r}")
    if flip:  # "horizontal": Keras's default flips vertically too
        layers_.append(L.RandomFlip("horizontal"))
    if translate > 0:
        layers_.append(L.RandomTranslation(translate, translate, fill_mode="constant", fill_value=background))
    if erasing > 0:
        # (p, p): a fixed probability (a single float draws it from U(0, p)); noise within the pixels' range
        # (the layer's default range is 0-255)
        layers_.append(L.RandomErasing(factor=(erasing, erasing), value_range=tuple(value_range)))
    return layers_


def fashion_cnn(
    input_shape=(28, 28, 1),
    num_classes=10,
    *,
    variant: str = "baseline",
    filters: int = 32,
    kernel_size: int = 3,
    l2: float = 0.0,
    dropout: float = 0.0,
    batch_norm: bool = False,
    dense_units: int = 128,
    augmentation: str = "none",
    flip: bool = False,
    translate: float = 0.0,
    erasing: float = 0.0,
    background: float = 0.0,
    value_range: tuple[float, float] = (0.0, 1.0),
):
    """The custom CNN of SOURCES['002'] (the Fashion-MNIST study) as a searchable family.

    baseline: conv(f) - pool - conv(2f) - pool - dense - output (the study's 32/64 when f = 32);
              a single Dropout before the output when dropout > 0.
    extended: the baseline plus one conv(2f) and three Dropout layers (the study's section 4.2).
    double:   two convs per block, conv(f) x2 - pool - conv(2f) x2 - pool
              (the Fashion CNN layout of SOURCES['000']),
              with the extended variant's three Dropout layers; about 3x the extended variant's compute.
    L2 applies to every conv and dense kernel; BatchNorm (optional) follows each conv. Augmentation, for
    training only: ``augmentation`` "light" (small shifts and rotations), ``flip`` (left-right),
    ``translate`` (shifts up to that fraction of the image), ``erasing`` (the probability that a random
    patch becomes noise, Zhong et al. 2017). ``background`` (the fill of shifted borders) and
    ``value_range`` (which bounds the noise) are set by training from the data, not searched.
    """
    keras = backend.keras()
    L = keras.layers
    if variant not in ("baseline", "extended", "double"):
        raise ValueError(f"variant must be 'baseline', 'extended' or 'double', got {variant!r}")
    reg = keras.regularizers.L2(l2) if l2 > 0 else None

    def conv(f):
        out = [L.Conv2D(f, kernel_size, padding="same", kernel_regularizer=reg, use_bias=not batch_norm)]
        if batch_norm:
            out.append(L.BatchNormalization())
        return out + [L.Activation("relu")]

    def drop():
        return [L.Dropout(dropout)] if dropout > 0 else []

    layers_ = _augmentation(augmentation, flip, translate, erasing, background, value_range)
    if variant == "double":
        layers_ += [
            *conv(filters),
            *conv(filters),
            L.MaxPooling2D(2),
            *drop(),
            *conv(2 * filters),
            *conv(2 * filters),
            L.MaxPooling2D(2),
            *drop(),
        ]
    else:
        layers_ += [*conv(filters), L.MaxPooling2D(2)]
        if variant == "extended":
            layers_ += drop()
        layers_ += [*conv(2 * filters), L.MaxPooling2D(2)]
        if variant == "extended":
            layers_ += [*drop(), *conv(2 * filters)]
    layers_ += [
        L.Flatten(),
        L.Dense(dense_units, activation="relu", kernel_regularizer=reg),
        *drop(),
        L.Dense(num_classes, activation="softmax"),
    ]
    return _sequential(input_shape, layers_, f"fashion_{variant}")


def fashion_baseline(input_shape=(28, 28, 1), num_classes=10, **params):
    return fashion_cnn(input_shape, num_classes, **{**params, "variant": "baseline"})


def fashion_extended(input_shape=(28, 28, 1), num_classes=10, **params):
    return fashion_cnn(input_shape, num_classes, **{**params, "variant": "extended"})


FAMILIES: dict[str, Callable[..., Any]] = {
    "fashion_cnn": fashion_cnn,  # `variant` is a searched parameter
    "fashion_baseline": fashion_baseline,
    "fashion_extended": fashion_extended,
}
# Keyword arguments each family accepts from a search space.
FAMILY_PARAMS: dict[str, set[str]] = {
    "fashion_cnn": {
        "variant",
        "filters",
        "kernel_size",
        "l2",
        "dropout",
        "batch_norm",
        "dense_units",
        "augmentation",
        "flip",
        "translate",
        "erasing",
    },
}
FAMILY_PARAMS["fashion_baseline"] = FAMILY_PARAMS["fashion_cnn"] - {"variant"}
FAMILY_PARAMS["fashion_extended"] = FAMILY_PARAMS["fashion_cnn"] - {"variant"}


def build(name: str, input_shape: tuple[int, ...], num_classes: int, **params: Any):
    """Build a reference (by name) or a family member (by name and params)."""
    if name in REFERENCES:
        return REFERENCES[name].build(input_shape, num_classes)
    if name in FAMILIES:
        return FAMILIES[name](input_shape, num_classes, **params)
    raise UserError(choices_hint("model", name, [*REFERENCES, *FAMILIES]))


def searchable_params(family: str) -> set[str]:
    """What a search space may name for ``family``: its builder's keywords and the training parameters."""
    return FAMILY_PARAMS.get(family, set()) | TRAINING_PARAMS
