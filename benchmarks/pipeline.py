"""Input pipeline: hpo's (tf.data autotuner off, fixed prefetch) against tf.data's AUTOTUNE prefetch.

The two train the same model on the same data at the same time, each in its own process with one
TensorFlow thread: the --n-workers 2 layout (2 workers x 1 thread), so machine noise hits both.
Prints each epoch's wall time and how long the epoch waited for its first batch; the ratio is
taken over the epochs after the first (the first has no earlier iterator to wait for).

    python benchmarks/pipeline.py                        # real Fashion-MNIST, 48k train images, 4 epochs
    python benchmarks/pipeline.py --synthetic --train 4000 --epochs 2   # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LANES = ("hpo", "autotune")


def lane(args) -> dict:
    """Train for ``args.epochs`` with one pipeline; return per-epoch seconds and first-batch waits."""
    from hpo import backend

    backend.configure(threads=1)
    import keras
    import tensorflow as tf
    from throughput import bench_splits  # the same data as the throughput benchmark

    from hpo.training import VAL_BATCH, compile_model, datasets

    splits = bench_splits(args.train, synthetic=args.synthetic)
    params = {
        "variant": "extended",
        "filters": 32,
        "batch_norm": True,
        "dropout": 0.25,
        "l2": 1e-6,
        "learning_rate": 1e-3,
        "batch_size": args.batch_size,
        "optimizer": "adam",
        "lr_schedule": "cosine",
    }
    if args.lane == "hpo":
        train, val = datasets(splits, args.batch_size, seed=0)
    else:  # the pipeline hpo used before: the same, with tf.data's autotuned prefetch
        train = (
            tf.data.Dataset.from_tensor_slices((splits.x_train, splits.y_train))
            .shuffle(len(splits.y_train), seed=0, reshuffle_each_iteration=True)
            .batch(args.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
        val = (
            tf.data.Dataset.from_tensor_slices((splits.x_val, splits.y_val))
            .batch(VAL_BATCH)
            .cache()
            .prefetch(tf.data.AUTOTUNE)
        )
    model = compile_model("fashion_cnn", params, splits, epochs=args.epochs)

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch_s: list[float] = []
            self.wait_s: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0, self.first = time.perf_counter(), None

        def on_train_batch_begin(self, batch, logs=None):
            if self.first is None:
                self.first = time.perf_counter() - self.t0

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_s.append(time.perf_counter() - self.t0)
            self.wait_s.append(self.first)
            print(
                f"  {args.lane:8s} epoch {epoch + 1}: {self.epoch_s[-1]:6.1f} s, first batch after "
                f"{self.first:5.1f} s, val_accuracy {logs['val_accuracy']:.4f}",
                flush=True,
            )

    timer = Timer()
    model.fit(train, validation_data=val, epochs=args.epochs, verbose=0, callbacks=[timer])
    return {"epoch_s": timer.epoch_s, "wait_s": timer.wait_s, "n_train": len(splits.y_train)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=48000, help="training images")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--synthetic", action="store_true", help="random images instead of Fashion-MNIST")
    ap.add_argument("--lane", choices=LANES, help=argparse.SUPPRESS)  # internal: one child process
    args = ap.parse_args()
    if args.lane:
        print("RESULT " + json.dumps(lane(args)), flush=True)
        return
    if args.epochs < 2:
        ap.error("--epochs must be >= 2: the first epoch has no earlier iterator to wait for")
    procs = {
        name: subprocess.Popen(
            [sys.executable, __file__, *sys.argv[1:], "--lane", name], stdout=subprocess.PIPE, text=True
        )
        for name in LANES
    }
    results = {}
    for name, p in procs.items():
        out, _ = p.communicate()
        lines = out.splitlines()
        print("\n".join(line for line in lines if not line.startswith("RESULT ")))
        if p.returncode != 0 or not lines or not lines[-1].startswith("RESULT "):
            sys.exit(f"lane {name} failed (exit {p.returncode})")
        results[name] = json.loads(lines[-1][len("RESULT ") :])
    print(
        f"\n{results['hpo']['n_train']} training images, batch {args.batch_size}, {args.epochs} epochs, "
        "both lanes at once, one TensorFlow thread each"
    )
    print("| pipeline | mean epoch after the first (s) | mean wait for the first batch (s) |")
    print("|---|---|---|")
    mean = {}
    for name, r in results.items():
        mean[name] = statistics.mean(r["epoch_s"][1:])
        print(f"| {name} | {mean[name]:.1f} | {statistics.mean(r['wait_s'][1:]):.1f} |")
    print(
        f"epoch time ratio autotune / hpo: {mean['autotune'] / mean['hpo']:.2f} "
        "(> 1: hpo's pipeline is faster)"
    )


if __name__ == "__main__":
    main()
