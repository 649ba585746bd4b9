"""The one door to TensorFlow and Keras (as KerasTuner reaches Keras through one backend module).

Everything else calls :func:`keras` or :func:`tensorflow` instead of importing them, so that loading a
study file, listing the registries or building a report from stored results never starts TensorFlow,
and so that its import is quiet: TensorFlow 2.21 writes absl/oneDNN lines to file descriptor 2 while it
loads, which ``TF_CPP_MIN_LOG_LEVEL`` does not stop; they are swallowed unless ``verbose``.
``TF_ENABLE_ONEDNN_OPTS`` is left alone: it changes the numerics.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from typing import Any, Iterator

from hpo.errors import UserError

_verbose = False
MISSING_TENSORFLOW = (
    "TensorFlow is not installed; install the package with one of its extras: "
    "pip install -e '.[cpu]' (CPU only) or pip install -e '.[gpu]' (CUDA)"
)


def set_verbose(verbose: bool) -> None:
    """``-v``: let TensorFlow's own log lines through (call before the first :func:`tensorflow`)."""
    global _verbose
    _verbose = verbose


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    """Send what C++ code writes to file descriptor 2 into a temporary file; replay it on an error."""
    if _verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def tensorflow() -> Any:
    """The ``tensorflow`` module, imported quietly once; a missing install is bad input (exit 2)."""
    loaded = sys.modules.get("tensorflow")
    if loaded is not None:
        return loaded
    if not _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _quiet_fd2():
        try:
            import tensorflow as tf
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] == "tensorflow":
                raise UserError(MISSING_TENSORFLOW) from None
            raise
        import keras  # noqa: F401  (loads its TensorFlow backend inside the quiet block too)
    if not _verbose:
        tf.get_logger().setLevel("ERROR")
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    return tf


def keras() -> Any:
    """The ``keras`` module, on TensorFlow."""
    tensorflow()
    import keras as keras_module

    return keras_module


def configure(*, threads: int = 0) -> None:
    """Thread limits and GPU memory growth. Must run before TensorFlow executes its first op."""
    if not _verbose:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    tf = tensorflow()
    try:  # several workers can share one GPU: each takes memory as it needs it, not all of it up front
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass  # already initialized in this process
    if threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
        except RuntimeError:
            pass  # already initialized in this process (tests): keep the existing setting


def device_name() -> str:
    """ "CPU (n cores)" or "GPU: name, ...": where training runs."""
    tf = tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count()} cores)"
    names = []
    for g in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(g).get("device_name", g.name))
        except (RuntimeError, ValueError):
            names.append(g.name)
    return "GPU: " + ", ".join(names)
