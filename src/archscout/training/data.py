"""Classification datasets for training candidate networks: built-ins, synthetic tasks and user files.

Everything loads offline into CPU tensors split three ways (train / valid / test). The
search ranks architectures by validation metrics; the test split is held out for the
final report, so it is chosen by a FIXED seed (``TEST_SPLIT_SEED``) and never moves when
the search ``seed`` changes: test numbers from different runs stay comparable. ``seed``
only decides which of the remaining samples become the validation split.

Built-in names (``DATASETS``):

* ``"digits"``: scikit-learn's 1,797 8x8 handwritten digits, x float32 ``(N, 1, 8, 8)``
  scaled to [0, 1], 10 classes; 30% held out for test (stratified).
* ``"mnist1d"``: the ``mnist1d`` package's procedural generator (never its download),
  x float32 ``(N, 1, 40)`` (the package standardises it), 10 classes; the package's own
  4,000 / 1,000 train / test split for the default ``num_samples=5000``. Generated once
  per process and cached (about 1 s).
* ``"synthetic-images"``: ``(1, size, size)`` (size 16) images holding a bright Gaussian
  blob (peak 1.0) in one quadrant and a dimmer distractor blob (peak 0.5) in another,
  plus Gaussian pixel noise; class = the quadrant of the bright blob (4 classes). Needs
  spatially local features *and* a comparison across the image.
* ``"synthetic-seq"``: token-id sequences, x int64 ``(N, length)`` (length 20, vocab 12);
  every sequence holds token 1 ("A") once and token 2 ("B") once among random filler
  tokens 3..vocab-1; class = 1 when A comes before B. Needs mixing across positions.
* ``"synthetic-signal"``: 1-D signals ``(1, length)`` (length 64): a sine with random
  phase, amplitude in [0.5, 1.5] and frequency ``c + 1 +- 0.25`` cycles per window, plus
  Gaussian noise; class = c (4 classes). Rewards frequency-selective (convolutional) filters.

Synthetic tasks take options ``n`` (total samples, default 2000, 20% held out for test),
``noise`` (noise standard deviation), their shape parameters (``size``; ``length``,
``vocab``; ``length``, ``num_classes``) and ``data_seed`` (default 0), which generates the
samples. The task itself does not depend on ``seed``, only the train/valid split does.

User data, chosen by the name's form:

* ``*.npz``: keys ``x_train``, ``y_train`` and optionally ``x_valid``/``y_valid`` and
  ``x_test``/``y_test``; missing splits are carved off (test: fixed seed, fraction
  ``test_fraction`` = 0.2; valid: ``seed``). x layouts: ``(N, F)`` tabular -> ``(N, 1, F)``;
  ``(N, C, L)`` signals; ``(N, C, H, W)`` images (``(N, H, W, C)`` with C in 1/3/4 is
  transposed). A 2-D integer x (not uint8/bool) is taken as token ids (option ``tokens``
  overrides), ``vocab_size`` = max id + 1 unless the option ``vocab_size`` says more.
* ``*.csv``: a header row (optional when every cell is numeric); the label column is the
  option ``label``, else the column named ``label`` or ``target`` (any case), else the last
  one; every other column must be numeric. x float32 ``(N, 1, F)``.
* a directory with one sub-folder per class of images (read with Pillow, resized to
  ``size`` x ``size``, default 32): grayscale ``(1, H, W)`` when every image is grayscale,
  else RGB ``(3, H, W)``; ``color="gray"|"rgb"`` forces one.

Labels of user data are mapped to class ids 0..K-1 in sorted order (numbers numerically,
strings alphabetically); ``class_names`` keeps the originals. User features are
standardised to zero mean and unit variance (per feature for tabular data, per channel
for signals and images) with statistics of the non-test samples (train + valid: never
the test split, and independent of ``seed``), because networks and their default
learning rates expect unit-scale inputs; ``standardize=False`` turns it off. Token ids
are never standardised. Every problem with the data raises a one-line
:class:`~archscout.errors.DataError`.
"""
from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError

DATASETS: tuple[str, ...] = ("digits", "mnist1d", "synthetic-images", "synthetic-seq", "synthetic-signal")
TEST_SPLIT_SEED = 20240611      # fixed: the test split of a dataset never depends on the search seed
DEFAULT_TEST_FRACTION = 0.2     # of user data without an explicit test split
DIGITS_TEST_FRACTION = 0.3
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


@dataclass(frozen=True, eq=False)
class TaskData:
    """A classification task: three CPU tensor splits plus what a model builder needs to know.

    x tensors are float32 ``(N, *input_shape)`` or, for token tasks, int64 ``(N, L)`` with
    ``vocab_size`` set; y tensors are int64 class ids ``(N,)`` in ``[0, num_classes)``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    num_classes: int
    vocab_size: int | None = None
    class_names: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)  # how it was loaded (seed, fractions, options)

    def __post_init__(self) -> None:
        for split in ("train", "valid", "test"):
            x, y = self.split(split)
            if len(x) != len(y):
                raise DataError(f"dataset {self.name!r}: x_{split} has {len(x)} samples but y_{split} {len(y)}")
            if len(x) == 0:
                raise DataError(f"dataset {self.name!r}: the {split} split is empty")
            if tuple(x.shape[1:]) != tuple(self.input_shape):
                raise DataError(f"dataset {self.name!r}: x_{split} samples have shape {tuple(x.shape[1:])}, "
                                f"expected {tuple(self.input_shape)}")
            if y.dtype != torch.int64 or y.ndim != 1:
                raise DataError(f"dataset {self.name!r}: y_{split} must be a 1-D int64 tensor of class ids")
        if self.num_classes < 2:
            raise DataError(f"dataset {self.name!r}: needs at least 2 classes, has {self.num_classes}")

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of split ``name`` ("train", "valid" or "test")."""
        if name not in ("train", "valid", "test"):
            raise DataError(f"unknown split {name!r} (use train, valid or test)")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def describe(self) -> dict[str, Any]:
        """Settings and sizes that identify this task in a study's configuration (JSON-friendly)."""
        out: dict[str, Any] = {
            "name": self.name,
            "sizes": {"train": len(self.y_train), "valid": len(self.y_valid), "test": len(self.y_test)},
            "input_shape": list(self.input_shape),
            "x_dtype": str(self.x_train.dtype).replace("torch.", ""),
            "num_classes": self.num_classes,
        }
        if self.vocab_size is not None:
            out["vocab_size"] = self.vocab_size
        if self.options:
            out["options"] = dict(self.options)
        return out


def load_dataset(name: str, seed: int = 0, valid_fraction: float = 0.2, **options: Any) -> TaskData:
    """Load built-in dataset ``name`` or a user file/folder (see the module docstring).

    ``seed`` picks the train/valid split; ``valid_fraction`` is the share of the non-test
    samples used for validation (ignored when a user file brings its own valid split).
    """
    if not isinstance(valid_fraction, (int, float)) or not 0.0 < valid_fraction < 1.0:
        raise DataError(f"valid_fraction must be between 0 and 1 (exclusive), got {valid_fraction!r}")
    seed = int(seed)
    name = str(name)
    loader = _BUILTINS.get(name)
    if loader is not None:
        return loader(name, seed, float(valid_fraction), dict(options))
    path = Path(name).expanduser()
    suffix = path.suffix.lower()
    if suffix in (".npz", ".csv") or path.is_dir():
        if not path.exists():
            raise DataError(f"dataset file not found: {name}")
        if suffix == ".npz":
            return _load_npz(path, seed, float(valid_fraction), dict(options))
        if suffix == ".csv":
            return _load_csv(path, seed, float(valid_fraction), dict(options))
        return _load_image_folder(path, seed, float(valid_fraction), dict(options))
    if path.exists():
        raise DataError(f"unsupported dataset file {name} (use .npz, .csv or a folder of class sub-folders)")
    raise DataError(f"unknown dataset {name!r} (built-ins: {', '.join(DATASETS)}; or a .npz/.csv file or image folder)")


# -- splitting and assembly ---------------------------------------------------------------

def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted index arrays ``(kept, held_out)``: ``held_out`` takes ``round(fraction * n_c)`` samples
    of every class c (at least one of each class with 2+ samples, never all of them), chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = min(max(int(round(fraction * len(idx))), 1), len(idx) - 1) if len(idx) >= 2 else 0
        held.append(idx[:k])
        kept.append(idx[k:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def _carve(name: str, x: np.ndarray, y: np.ndarray, fraction: float, seed: int,
           what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    kept, held = stratified_split(y, fraction, seed)
    if len(held) == 0 or len(kept) == 0:
        raise DataError(f"dataset {name!r}: too few samples ({len(y)}) to split off a {what} set")
    return x[kept], y[kept], x[held], y[held]


def _assemble(name: str, parts: dict[str, tuple[np.ndarray, np.ndarray]], num_classes: int,
              vocab_size: int | None = None, class_names: tuple[str, ...] = (),
              options: Mapping[str, Any] | None = None) -> TaskData:
    """Numpy splits -> TaskData: x float32 (or int64 for tokens), y int64, contiguous CPU tensors."""
    tensors: dict[str, torch.Tensor] = {}
    for split, (x, y) in parts.items():
        x_dtype = np.int64 if vocab_size is not None else np.float32
        tensors[f"x_{split}"] = torch.from_numpy(np.ascontiguousarray(x, dtype=x_dtype))
        tensors[f"y_{split}"] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    return TaskData(name=name, input_shape=tuple(int(s) for s in tensors["x_train"].shape[1:]),
                    num_classes=int(num_classes), vocab_size=vocab_size, class_names=tuple(class_names),
                    options=dict(options or {}), **tensors)


def _split_three(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, valid_fraction: float,
                 seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Test by the fixed TEST_SPLIT_SEED first, then valid out of the rest by ``seed``."""
    x_rest, y_rest, x_test, y_test = _carve(name, x, y, test_fraction, TEST_SPLIT_SEED, "test")
    x_tr, y_tr, x_va, y_va = _carve(name, x_rest, y_rest, valid_fraction, seed, "validation")
    return {"train": (x_tr, y_tr), "valid": (x_va, y_va), "test": (x_test, y_test)}


def _standardise(parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """In place: zero mean / unit variance with statistics of the non-test samples (train + valid),
    per channel ((N, C, ...) arrays; for (N, 1, F) tabular data per feature). The test split never
    informs them, and they do not depend on the seed's train/valid split, so the test tensors stay
    identical across seeds. Constant features are only centred."""
    x_train = np.concatenate([parts["train"][0], parts["valid"][0]])
    if x_train.shape[1] == 1 and x_train.ndim == 3:      # tabular (N, 1, F): per feature
        axes: tuple[int, ...] = (0,)
    else:                                                  # per channel
        axes = (0, *range(2, x_train.ndim))
    mean = x_train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x_train.std(axis=axes, keepdims=True, dtype=np.float64)
    std[std < 1e-8] = 1.0
    for split, (x, y) in parts.items():
        parts[split] = (((x - mean) / std).astype(np.float32), y)


class _Options:
    """Pops typed options with defaults; anything left over is an error naming the dataset."""

    def __init__(self, dataset: str, options: dict[str, Any]) -> None:
        self.dataset, self.options = dataset, options

    def get(self, key: str, default: Any, check: Callable[[Any], bool] | None = None, what: str = "") -> Any:
        value = self.options.pop(key, default)
        if check is not None and value is not default and not _safe(check, value):
            raise DataError(f"dataset {self.dataset!r}: option {key}={value!r} is invalid ({what})")
        return value

    def int(self, key: str, default: int, low: int, high: int | None = None) -> int:
        value = self.options.pop(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
                high is not None and value > high):
            bound = f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")
            raise DataError(f"dataset {self.dataset!r}: option {key}={value!r} must be {bound}")
        return int(value)

    def float(self, key: str, default: float, low: float, high: float | None = None,
              low_open: bool = False, high_open: bool = False) -> float:
        value = self.options.pop(key, default)
        ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low)
        ok = ok and (high is None or (value < high if high_open else value <= high))
        if not ok:
            raise DataError(f"dataset {self.dataset!r}: option {key}={value!r} must be a number "
                            f"{'>' if low_open else '>='} {low}" + (f" and {'<' if high_open else '<='} {high}"
                                                                       if high is not None else ""))
        return float(value)

    def done(self) -> None:
        if self.options:
            raise DataError(f"dataset {self.dataset!r}: unknown option(s) {', '.join(sorted(self.options))}")


def _safe(check: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(check(value))
    except Exception:  # noqa: BLE001 - a failing check means an invalid value
        return False


# -- built-ins ----------------------------------------------------------------------------

_DIGITS_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}
_MNIST1D_CACHE: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}


def _load_digits(name: str, seed: int, valid_fraction: float, options: dict[str, Any]) -> TaskData:
    _Options(name, options).done()
    if "digits" not in _DIGITS_CACHE:
        from sklearn.datasets import load_digits  # imported here: scikit-learn takes ~0.7 s to import
        bunch = load_digits()
        x = (bunch.data.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
        _DIGITS_CACHE["digits"] = (x, bunch.target.astype(np.int64))
    x, y = _DIGITS_CACHE["digits"]
    parts = _split_three(name, x, y, DIGITS_TEST_FRACTION, valid_fraction, seed)
    return _assemble(name, parts, 10, class_names=tuple(str(i) for i in range(10)),
                     options={"seed": seed, "valid_fraction": valid_fraction})


def _load_mnist1d(name: str, seed: int, valid_fraction: float, options: dict[str, Any]) -> TaskData:
    opts = _Options(name, options)
    num_samples = opts.int("num_samples", 5000, 100)
    opts.done()
    if num_samples not in _MNIST1D_CACHE:
        from mnist1d.data import get_dataset_args, make_dataset
        args = get_dataset_args()
        args.num_samples = num_samples
        # make_dataset reseeds Python's and numpy's global RNGs; put them back so that loading
        # data never changes what other seeded code in this process draws.
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            d = make_dataset(args)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        _MNIST1D_CACHE[num_samples] = (d["x"][:, None, :].astype(np.float32), np.asarray(d["y"], np.int64),
                                       d["x_test"][:, None, :].astype(np.float32), np.asarray(d["y_test"], np.int64))
    x, y, x_test, y_test = _MNIST1D_CACHE[num_samples]
    x_tr, y_tr, x_va, y_va = _carve(name, x, y, valid_fraction, seed, "validation")
    parts = {"train": (x_tr, y_tr), "valid": (x_va, y_va), "test": (x_test, y_test)}
    return _assemble(name, parts, 10, class_names=tuple(str(i) for i in range(10)),
                     options={"seed": seed, "valid_fraction": valid_fraction, "num_samples": num_samples})


def _synthetic_images(rng: np.random.Generator, n: int, size: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    y = rng.permutation(np.arange(n) % 4)
    distractor = (y + rng.integers(1, 4, n)) % 4                 # always another quadrant
    half = size / 2.0
    sigma = max(size / 16.0, 0.75)                               # blob radius in pixels
    grid = np.arange(size, dtype=np.float64) + 0.5

    def blobs(quadrant: np.ndarray, peak: float) -> np.ndarray:
        margin = min(sigma, half / 4)
        rows = (quadrant // 2) * half + rng.uniform(margin, half - margin, n)
        cols = (quadrant % 2) * half + rng.uniform(margin, half - margin, n)
        d2 = (grid[None, :, None] - rows[:, None, None]) ** 2 + (grid[None, None, :] - cols[:, None, None]) ** 2
        return peak * np.exp(-d2 / (2 * sigma**2))

    x = blobs(y, 1.0) + blobs(distractor, 0.5) + noise * rng.standard_normal((n, size, size))
    return x[:, None].astype(np.float32), y


def _synthetic_seq(rng: np.random.Generator, n: int, length: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(3, vocab, (n, length))
    y = rng.permutation(np.arange(n) % 2)
    first = rng.integers(0, length, n)                            # two distinct positions per row
    second = (first + rng.integers(1, length, n)) % length
    lo, hi = np.minimum(first, second), np.maximum(first, second)
    rows = np.arange(n)
    x[rows, np.where(y == 1, lo, hi)] = 1                         # A: before B exactly when y == 1
    x[rows, np.where(y == 1, hi, lo)] = 2                         # B
    return x.astype(np.int64), y


def _synthetic_signal(rng: np.random.Generator, n: int, length: int, num_classes: int,
                      noise: float) -> tuple[np.ndarray, np.ndarray]:
    y = rng.permutation(np.arange(n) % num_classes)
    cycles = y + 1 + rng.uniform(-0.25, 0.25, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    amplitude = rng.uniform(0.5, 1.5, n)
    t = np.arange(length) / length
    x = amplitude[:, None] * np.sin(2 * np.pi * cycles[:, None] * t[None, :] + phase[:, None])
    x = x + noise * rng.standard_normal((n, length))
    return x[:, None].astype(np.float32), y


def _load_synthetic(name: str, seed: int, valid_fraction: float, options: dict[str, Any]) -> TaskData:
    opts = _Options(name, options)
    n = opts.int("n", 2000, 40)
    data_seed = opts.int("data_seed", 0, 0)
    rng = np.random.default_rng([data_seed, DATASETS.index(name)])
    vocab = None
    settings: dict[str, Any] = {"n": n, "data_seed": data_seed}
    if name == "synthetic-images":
        settings["size"] = size = opts.int("size", 16, 4, 512)
        settings["noise"] = noise = opts.float("noise", 0.3, 0.0)
        opts.done()
        x, y = _synthetic_images(rng, n, size, noise)
        num_classes = 4
    elif name == "synthetic-seq":
        settings["length"] = length = opts.int("length", 20, 2)
        settings["vocab"] = vocab = opts.int("vocab", 12, 4)
        opts.done()
        x, y = _synthetic_seq(rng, n, length, vocab)
        num_classes = 2
    else:
        settings["length"] = length = opts.int("length", 64, 8)
        settings["num_classes"] = num_classes = opts.int("num_classes", 4, 2)
        settings["noise"] = noise = opts.float("noise", 0.5, 0.0)
        opts.done()
        if num_classes + 1.25 >= length / 2:
            raise DataError(f"dataset {name!r}: num_classes={num_classes} needs length > {2 * (num_classes + 1.25):g} "
                            f"(the highest frequency must stay below the Nyquist limit)")
        x, y = _synthetic_signal(rng, n, length, num_classes, noise)
    parts = _split_three(name, x, y, DEFAULT_TEST_FRACTION, valid_fraction, seed)
    return _assemble(name, parts, num_classes, vocab_size=vocab, class_names=tuple(str(i) for i in range(num_classes)),
                     options={"seed": seed, "valid_fraction": valid_fraction, **settings})


_BUILTINS: dict[str, Callable[[str, int, float, dict[str, Any]], TaskData]] = {
    "digits": _load_digits,
    "mnist1d": _load_mnist1d,
    "synthetic-images": _load_synthetic,
    "synthetic-seq": _load_synthetic,
    "synthetic-signal": _load_synthetic,
}


# -- user data ----------------------------------------------------------------------------

def _class_ids(name: str, labels: list[np.ndarray], what: str) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Map labels (numbers or strings, possibly several arrays) to ids 0..K-1 in sorted order."""
    joined = np.concatenate([np.asarray(v).reshape(-1) for v in labels])
    if joined.dtype.kind in "iub":
        values = joined.astype(np.int64)
    elif joined.dtype.kind == "f":
        if not np.all(np.isfinite(joined)) or not np.all(joined == np.round(joined)):
            raise DataError(f"dataset {name!r}: {what} holds non-integer numbers (only classification is supported)")
        values = joined.astype(np.int64)
    elif joined.dtype.kind in "US":
        values = joined.astype(str)
    else:
        raise DataError(f"dataset {name!r}: {what} must hold class labels (numbers or strings), not {joined.dtype}")
    classes, ids = np.unique(values, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"dataset {name!r}: {what} has {len(classes)} class(es), needs at least 2")
    out, start = [], 0
    for v in labels:
        out.append(ids[start:start + len(v)].astype(np.int64))
        start += len(v)
    return out, tuple(str(c) for c in classes)


def _user_options(name: str, options: dict[str, Any]) -> tuple[_Options, float, bool]:
    opts = _Options(name, options)
    test_fraction = opts.float("test_fraction", DEFAULT_TEST_FRACTION, 0.0, 1.0, low_open=True, high_open=True)
    standardize = opts.get("standardize", True, lambda v: isinstance(v, bool), "true or false")
    return opts, test_fraction, standardize


def _load_npz(path: Path, seed: int, valid_fraction: float, options: dict[str, Any]) -> TaskData:
    name = str(path)
    opts, test_fraction, standardize = _user_options(name, options)
    tokens_opt = opts.get("tokens", None, lambda v: isinstance(v, bool), "true or false")
    vocab_opt = opts.get("vocab_size", None, lambda v: isinstance(v, int) and v >= 2, "an integer >= 2")
    opts.done()
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # noqa: BLE001 - zip, pickle or format errors all mean "unreadable"
        raise DataError(f"cannot read {name}: {exc}".splitlines()[0]) from None
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise DataError(f"{name} has no array {key!r} (found: {', '.join(sorted(arrays)) or 'none'})")
    splits = [s for s in ("train", "valid", "test") if f"x_{s}" in arrays or f"y_{s}" in arrays]
    for s in splits:
        if f"x_{s}" not in arrays or f"y_{s}" not in arrays:
            raise DataError(f"{name}: x_{s} and y_{s} must come together")
        x, y = arrays[f"x_{s}"], arrays[f"y_{s}"]
        if x.ndim < 2 or x.ndim > 4:
            raise DataError(f"{name}: x_{s} must be 2-D (N, F), 3-D (N, C, L) or 4-D (N, C, H, W), got shape {x.shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{name}: y_{s} must be 1-D with one label per row of x_{s} ({len(x)}), "
                            f"got shape {y.shape}")
        if x.dtype.kind not in "fiub":
            raise DataError(f"{name}: x_{s} must be numeric, not {x.dtype}")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise DataError(f"{name}: x_{s} holds NaN or infinite values")
        if x.shape[1:] != arrays["x_train"].shape[1:]:
            raise DataError(f"{name}: x_{s} samples have shape {x.shape[1:]}, x_train {arrays['x_train'].shape[1:]}")
    ids, class_names = _class_ids(name, [arrays[f"y_{s}"] for s in splits], "the labels")
    parts = {s: (arrays[f"x_{s}"], ids[i]) for i, s in enumerate(splits)}

    x_train = parts["train"][0]
    tokens = tokens_opt if tokens_opt is not None else (x_train.ndim == 2 and x_train.dtype.kind == "i")
    vocab_size = None
    if tokens:
        if any(x.ndim != 2 or x.dtype.kind not in "iu" for x, _ in parts.values()):
            raise DataError(f"{name}: token-id data must be 2-D integer arrays (N, L)")
        low = min(int(x.min()) for x, _ in parts.values())
        if low < 0:
            raise DataError(f"{name}: token ids must be >= 0, found {low}")
        vocab_size = max(int(x.max()) for x, _ in parts.values()) + 1
        if vocab_opt is not None:
            if vocab_opt < vocab_size:
                raise DataError(f"{name}: option vocab_size={vocab_opt} is smaller than the largest token id + 1 "
                                f"({vocab_size})")
            vocab_size = vocab_opt
    else:
        for s, (x, y) in parts.items():
            if x.ndim == 2:
                x = x[:, None, :]
            elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
                x = np.moveaxis(x, -1, 1)                            # channel-last images
            parts[s] = (x.astype(np.float32), y)

    if "test" not in parts:
        x_tr, y_tr, x_te, y_te = _carve(name, *parts["train"], test_fraction, TEST_SPLIT_SEED, "test")
        parts["train"], parts["test"] = (x_tr, y_tr), (x_te, y_te)
    if "valid" not in parts:
        x_tr, y_tr, x_va, y_va = _carve(name, *parts["train"], valid_fraction, seed, "validation")
        parts["train"], parts["valid"] = (x_tr, y_tr), (x_va, y_va)
    if standardize and not tokens:
        _standardise(parts)
    settings = {"seed": seed, "valid_fraction": valid_fraction, "test_fraction": test_fraction,
                "standardize": standardize}
    return _assemble(name, {s: parts[s] for s in ("train", "valid", "test")}, len(class_names),
                     vocab_size=vocab_size, class_names=class_names, options=settings)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _load_csv(path: Path, seed: int, valid_fraction: float, options: dict[str, Any]) -> TaskData:
    name = str(path)
    opts, test_fraction, standardize = _user_options(name, options)
    label_opt = opts.get("label", None, lambda v: isinstance(v, str), "a column name")
    opts.done()
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [[c.strip() for c in row] for row in csv.reader(f) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {name}: {exc}".splitlines()[0]) from None
    if not rows:
        raise DataError(f"{name} is empty")
    if all(_is_number(c) for c in rows[0]):
        header = [f"column {i + 1}" for i in range(len(rows[0]))]
        body = rows
    else:
        header, body = rows[0], rows[1:]
    if not body:
        raise DataError(f"{name} has a header but no data rows")
    if len(header) < 2:
        raise DataError(f"{name} needs at least one feature column and a label column")
    lower = [h.lower() for h in header]
    if label_opt is not None:
        if label_opt not in header:
            raise DataError(f"{name} has no column {label_opt!r} (columns: {', '.join(header)})")
        label_col = header.index(label_opt)
    elif "label" in lower:
        label_col = lower.index("label")
    elif "target" in lower:
        label_col = lower.index("target")
    else:
        label_col = len(header) - 1
    for i, row in enumerate(body, start=2 if body is not rows else 1):
        if len(row) != len(header):
            raise DataError(f"{name}: line {i} has {len(row)} cells, expected {len(header)}")
    feature_cols = [j for j in range(len(header)) if j != label_col]
    x = np.empty((len(body), len(feature_cols)), dtype=np.float64)
    for j_out, j in enumerate(feature_cols):
        for i, row in enumerate(body):
            try:
                x[i, j_out] = float(row[j])
            except ValueError:
                line = i + (1 if body is rows else 2)
                raise DataError(f"{name}: feature column {header[j]!r} is not numeric "
                                f"(line {line}: {row[j]!r})") from None
    if not np.all(np.isfinite(x)):
        raise DataError(f"{name}: the features hold NaN or infinite values")
    raw_labels = [row[label_col] for row in body]
    if all(_is_number(v) for v in raw_labels):
        labels = np.array([float(v) for v in raw_labels])
    else:
        labels = np.array(raw_labels, dtype=str)
    (y,), class_names = _class_ids(name, [labels], f"label column {header[label_col]!r}")
    parts = _split_three(name, x[:, None, :], y, test_fraction, valid_fraction, seed)
    if standardize:
        _standardise(parts)
    settings = {"seed": seed, "valid_fraction": valid_fraction, "test_fraction": test_fraction,
                "standardize": standardize, "label": header[label_col]}
    return _assemble(name, parts, len(class_names), class_names=class_names, options=settings)


def _load_image_folder(path: Path, seed: int, valid_fraction: float, options: dict[str, Any]) -> TaskData:
    name = str(path)
    opts, test_fraction, standardize = _user_options(name, options)
    size = opts.int("size", 32, 2, 1024)
    color = opts.get("color", "auto", lambda v: v in ("auto", "gray", "rgb"), "auto, gray or rgb")
    opts.done()
    from PIL import Image  # imported here: only image folders need Pillow

    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{name} has no class sub-folders (expected one folder of images per class)")
    if len(class_dirs) < 2:
        raise DataError(f"{name} has 1 class sub-folder, needs at least 2 classes")
    images: list[np.ndarray] = []
    labels: list[int] = []
    all_gray = True
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir()
                       if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"class folder {class_dir} holds no images")
        for file in files:
            try:
                with Image.open(file) as im:
                    all_gray = all_gray and im.mode in GRAY_MODES
                    rgb = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                    images.append(np.asarray(rgb, dtype=np.float32) / 255.0)
            except Exception as exc:  # noqa: BLE001 - any decoder failure means an unreadable image
                raise DataError(f"cannot read image {file}: {exc}".splitlines()[0]) from None
            labels.append(label)
    x = np.stack(images).transpose(0, 3, 1, 2)                     # (N, 3, H, W)
    if all_gray and color != "rgb":
        x = x[:, 0:1]                                               # gray -> RGB copied the channel: exact
    elif color == "gray":
        x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]  # ITU-R 601 luma, as Pillow's "L"
    y = np.asarray(labels, dtype=np.int64)
    parts = _split_three(name, x.astype(np.float32), y, test_fraction, valid_fraction, seed)
    if standardize:
        _standardise(parts)
    settings = {"seed": seed, "valid_fraction": valid_fraction, "test_fraction": test_fraction,
                "standardize": standardize, "size": size, "color": "gray" if x.shape[1] == 1 else "rgb"}
    return _assemble(name, parts, len(class_dirs), class_names=tuple(p.name for p in class_dirs), options=settings)


# -- augmentations ------------------------------------------------------------------------
# Batch transforms ``(x, generator) -> x`` applied to training batches only. They draw every
# random number from the generator they are given, so training stays reproducible, and work
# on whole batches with tensor ops (no per-sample Python). All expect float x with a channel
# dimension: (B, C, L) signals or (B, C, H, W) images.

def shift_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Translate each sample by a random whole number of pixels/steps (up to 1/8 of each spatial
    size, at least 1) along every spatial axis, filling with zeros."""
    if x.ndim not in (3, 4):
        raise DataError(f"the 'shift' augmentation needs (B, C, L) or (B, C, H, W) inputs, got shape {tuple(x.shape)}")
    spatial = x.shape[2:]
    margins = [max(1, s // 8) for s in spatial]
    padded = torch.nn.functional.pad(x, [m for m in reversed(margins) for _ in range(2)])
    b = x.shape[0]
    offsets = [torch.randint(0, 2 * m + 1, (b,), generator=generator) for m in margins]
    batch = torch.arange(b)
    chan = torch.arange(x.shape[1])
    if x.ndim == 3:
        cols = offsets[0][:, None] + torch.arange(spatial[0])[None, :]
        return padded[batch[:, None, None], chan[None, :, None], cols[:, None, :]]
    rows = offsets[0][:, None] + torch.arange(spatial[0])[None, :]
    cols = offsets[1][:, None] + torch.arange(spatial[1])[None, :]
    return padded[batch[:, None, None, None], chan[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def noise_batch(x: torch.Tensor, generator: torch.Generator, std: float = 0.1) -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``std`` (in units of the, usually standardised, input)."""
    return x + std * torch.randn(x.shape, generator=generator, dtype=x.dtype)


def flip_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the samples along the last axis (horizontal flip; time reversal for 1-D)."""
    mask = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(mask.view(-1, *([1] * (x.ndim - 1))), x.flip(-1), x)


AUGMENTATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "shift": shift_batch,
    "noise": noise_batch,
    "flip": flip_batch,
}
