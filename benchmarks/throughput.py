"""Training throughput: a trial through hpo's objective against a plain Keras ``model.fit``.

Same model, batch size, data and epochs; the two run alternately in one process, and the
ratio is taken per round, so machine noise hits both sides alike. Throughput is images per
second of training time (validation excluded), skipping the first epoch (tracing/warm-up).

    python benchmarks/throughput.py                      # real Fashion-MNIST, 12k train images
    python benchmarks/throughput.py --synthetic --rounds 2 --train 4000
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def bench_splits(n_train: int, *, synthetic: bool):
    """``n_train`` Fashion-MNIST training images (or random ones, with 2,000 validation images), seed 0."""
    import numpy as np

    from hpo import data, sources

    if not synthetic:
        return data.load_splits("fashion_mnist", seed=0, max_train_samples=n_train)
    rng = np.random.default_rng(0)
    n = n_train + 2000
    raw = data.Raw(
        rng.integers(0, 255, (n, 28, 28, 1), dtype=np.uint8),
        rng.integers(0, 10, n),
        rng.integers(0, 255, (10, 28, 28, 1), dtype=np.uint8),
        np.arange(10),
        sources.FASHION_CLASSES,
        "synthetic",
    )
    return data.load_splits(
        "fashion_mnist", raw=raw, val_fraction=2000 / n, seed=0, max_train_samples=n_train
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=12000, help="training images")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument(
        "--rounds", type=int, default=4, help="alternating rounds (even: each side goes first equally often)"
    )
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--variant", default="extended", choices=["baseline", "extended", "double"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--synthetic", action="store_true", help="random images instead of Fashion-MNIST")
    args = ap.parse_args()

    from hpo import backend, models
    from hpo.training import make_optimizer, release, train

    backend.configure(threads=args.threads)
    import keras

    splits = bench_splits(args.train, synthetic=args.synthetic)
    params = {
        "variant": args.variant,
        "filters": args.filters,
        "dropout": 0.25,
        "learning_rate": 1e-3,
        "batch_size": args.batch_size,
        "optimizer": "adam",
    }
    n_train = len(splits.y_train)

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = self.tv = time.perf_counter()
            self.train_s = getattr(self, "train_s", [])

        def on_test_begin(self, logs=None):
            self.tv = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.train_s.append(self.tv - self.t0)

    def plain_keras() -> float:
        keras.utils.set_random_seed(0)
        model = models.build(
            "fashion_cnn",
            splits.input_shape,
            10,
            **{k: v for k, v in params.items() if k not in ("learning_rate", "batch_size", "optimizer")},
        )
        model.compile(
            optimizer=make_optimizer("adam", 1e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        timer = Timer()
        model.fit(
            splits.x_train,
            splits.y_train,
            batch_size=args.batch_size,
            epochs=args.epochs,
            validation_data=(splits.x_val, splits.y_val),
            callbacks=[timer],
            verbose=0,
        )
        secs = timer.train_s[1:] or timer.train_s
        del model
        release()
        return n_train * len(secs) / sum(secs)

    def via_hpo() -> float:
        result = train("fashion_cnn", params, splits, epochs=args.epochs, seed=0, measure_latency=False)
        result.model = None
        release()
        return result.images_per_sec

    print(
        f"model fashion_cnn/{args.variant} filters={args.filters} batch={args.batch_size}, "
        f"{n_train} train / {len(splits.y_val)} val images, {args.epochs} epochs, "
        f"{'synthetic' if args.synthetic else 'Fashion-MNIST'}"
    )
    print(f"{'round':>5} {'plain keras img/s':>18} {'hpo img/s':>10} {'ratio':>6}")
    ratios = []
    for r in range(args.rounds):
        # alternate which side goes first, so drift in machine load does not favour one
        first, second = (plain_keras, via_hpo) if r % 2 == 0 else (via_hpo, plain_keras)
        a = first()
        b = second()
        keras_ips, hpo_ips = (a, b) if first is plain_keras else (b, a)
        ratios.append(hpo_ips / keras_ips)
        print(f"{r:>5} {keras_ips:>18.0f} {hpo_ips:>10.0f} {ratios[-1]:>6.2f}", flush=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"median ratio hpo/plain keras: {statistics.median(ratios):.2f} (target >= 1.0); "
        f"peak RSS {peak_mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()
