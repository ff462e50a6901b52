"""Tests for the training datasets (archscout.training.data): built-ins, user files, augmentations."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
torch.set_num_threads(1)

from archscout.errors import ArchscoutError, DataError  # noqa: E402
from archscout.training.data import (  # noqa: E402
    AUGMENTATIONS, DATASETS, TaskData, load_dataset, stratified_split,
)


def rows(x: torch.Tensor) -> list[bytes]:
    return [r.numpy().tobytes() for r in x.reshape(len(x), -1)]


def assert_disjoint(d: TaskData) -> None:
    tr, va, te = set(rows(d.x_train)), set(rows(d.x_valid)), set(rows(d.x_test))
    assert not tr & va and not tr & te and not va & te


def assert_one_line(exc: pytest.ExceptionInfo) -> None:
    msg = str(exc.value)
    assert msg and "\n" not in msg


# -- built-ins ------------------------------------------------------------------------------

def test_digits_shapes_partition_and_fixed_test_split() -> None:
    from sklearn.datasets import load_digits

    d0, d1 = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert d0.input_shape == (1, 8, 8) and d0.num_classes == 10 and d0.vocab_size is None
    assert d0.x_train.dtype == torch.float32 and d0.y_train.dtype == torch.int64
    assert 0.0 <= float(d0.x_train.min()) and float(d0.x_train.max()) <= 1.0
    assert len(d0.y_test) == pytest.approx(0.3 * 1797, abs=10)
    assert len(d0.y_valid) == pytest.approx(0.2 * (1797 - len(d0.y_test)), abs=10)
    # the three splits partition the 1,797 images exactly (digits has duplicate images, so compare multisets)
    raw = Counter(rows(torch.from_numpy((load_digits().data / 16.0).astype(np.float32))))
    got = Counter(rows(d0.x_train) + rows(d0.x_valid) + rows(d0.x_test))
    assert got == raw
    assert torch.equal(d0.x_test, d1.x_test) and torch.equal(d0.y_test, d1.y_test)
    assert not torch.equal(d0.y_valid, d1.y_valid) or not torch.equal(d0.x_valid, d1.x_valid)
    assert torch.equal(load_dataset("digits", seed=1).x_valid, d1.x_valid)     # seeded, reproducible
    assert set(d0.y_valid.tolist()) == set(range(10))                          # stratified


def test_mnist1d_shapes_split_and_cache() -> None:
    import random
    py_state, np_state = random.getstate(), np.random.get_state()
    d0 = load_dataset("mnist1d", seed=0)
    assert random.getstate() == py_state and np.array_equal(np.random.get_state()[1], np_state[1])
    d1 = load_dataset("mnist1d", seed=3, valid_fraction=0.25)
    assert d0.input_shape == (1, 40) and d0.num_classes == 10 and d0.x_train.dtype == torch.float32
    assert len(d0.y_test) == 1000 and len(d0.y_train) + len(d0.y_valid) == 4000
    assert len(d1.y_valid) == pytest.approx(1000, abs=10)
    assert torch.equal(d0.x_test, d1.x_test)
    assert_disjoint(d0)
    with pytest.raises(DataError, match="num_samples"):
        load_dataset("mnist1d", num_samples=5)


@pytest.mark.parametrize("name,shape,classes", [
    ("synthetic-images", (1, 16, 16), 4), ("synthetic-seq", (20,), 2), ("synthetic-signal", (1, 64), 4)])
def test_synthetic_shapes_and_splits(name: str, shape: tuple[int, ...], classes: int) -> None:
    d = load_dataset(name, seed=0, n=400)
    assert d.input_shape == shape and d.num_classes == classes
    assert len(d.y_train) + len(d.y_valid) + len(d.y_test) == 400 and len(d.y_test) == 80
    assert set(d.y_train.tolist()) == set(range(classes))
    assert torch.equal(d.x_test, load_dataset(name, seed=5, n=400).x_test)    # task fixed, split by seed
    assert not torch.equal(load_dataset(name, seed=0, n=400, data_seed=1).x_test, d.x_test)
    if name != "synthetic-seq":                                                # token rows can repeat
        assert_disjoint(d)


def test_synthetic_options_and_task_semantics() -> None:
    seq = load_dataset("synthetic-seq", n=200, length=9, vocab=6)
    assert seq.x_train.dtype == torch.int64 and seq.vocab_size == 6 and seq.input_shape == (9,)
    x, y = seq.x_train, seq.y_train
    assert ((x == 1).sum(1) == 1).all() and ((x == 2).sum(1) == 1).all() and int(x.max()) < 6
    a_first = (x == 1).int().argmax(1) < (x == 2).int().argmax(1)
    assert torch.equal(a_first.long(), y)
    img = load_dataset("synthetic-images", n=100, size=8, noise=0.0)
    assert img.input_shape == (1, 8, 8)
    # without noise the brightest pixel sits in the labelled quadrant
    flat = img.x_train[:, 0].reshape(len(img.y_train), -1).argmax(1)
    quadrant = (flat // 8 >= 4).long() * 2 + (flat % 8 >= 4).long()
    assert torch.equal(quadrant, img.y_train)
    sig = load_dataset("synthetic-signal", n=120, length=32, num_classes=3)
    assert sig.input_shape == (1, 32) and sig.num_classes == 3
    with pytest.raises(DataError, match="Nyquist"):
        load_dataset("synthetic-signal", length=8, num_classes=4)
    with pytest.raises(DataError, match="unknown option"):
        load_dataset("synthetic-images", colour="red")
    with pytest.raises(DataError, match="option n="):
        load_dataset("synthetic-seq", n="many")


def test_describe_and_names() -> None:
    assert set(DATASETS) == {"digits", "mnist1d", "synthetic-images", "synthetic-seq", "synthetic-signal"}
    desc = load_dataset("synthetic-seq", n=100).describe()
    assert desc["name"] == "synthetic-seq" and desc["input_shape"] == [20] and desc["vocab_size"] == 12
    assert desc["sizes"]["test"] == 20 and desc["x_dtype"] == "int64" and desc["options"]["n"] == 100


def test_stratified_split_is_a_seeded_partition() -> None:
    y = np.repeat(np.arange(3), [10, 20, 1])
    kept, held = stratified_split(y, 0.3, seed=4)
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(len(y)))
    assert Counter(y[held].tolist()) == {0: 3, 1: 6}                           # singleton class stays in kept
    assert np.array_equal(held, stratified_split(y, 0.3, seed=4)[1])


# -- user data -------------------------------------------------------------------------------

def test_npz_carves_missing_splits_and_standardises(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "tab.npz"
    np.savez(path, x_train=rng.normal(5.0, 3.0, (200, 6)), y_train=np.array(["cat", "dog"] * 100))
    d = load_dataset(str(path), seed=1)
    assert d.input_shape == (1, 6) and d.num_classes == 2 and d.class_names == ("cat", "dog")
    assert len(d.y_train) + len(d.y_valid) + len(d.y_test) == 200 and len(d.y_test) == 40
    fit = torch.cat([d.x_train, d.x_valid])                                   # statistics of the non-test samples
    assert torch.allclose(fit.mean(0), torch.zeros(1, 6), atol=1e-5)
    assert torch.allclose(fit.std(0, unbiased=False), torch.ones(1, 6), atol=1e-4)
    assert_disjoint(d)
    assert torch.equal(d.x_test, load_dataset(str(path), seed=2).x_test)
    raw = load_dataset(str(path), standardize=False)
    assert float(raw.x_train.mean()) == pytest.approx(5.0, abs=0.5)


def test_npz_given_splits_images_and_tokens(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    img = tmp_path / "img.npz"
    np.savez(img, x_train=rng.random((30, 5, 5, 3)), y_train=np.arange(30) % 3 + 10,
             x_valid=rng.random((9, 5, 5, 3)), y_valid=np.arange(9) % 3 + 10,
             x_test=rng.random((6, 5, 5, 3)), y_test=np.arange(6) % 3 + 10)
    d = load_dataset(str(img))
    assert d.input_shape == (3, 5, 5) and (len(d.y_train), len(d.y_valid), len(d.y_test)) == (30, 9, 6)
    assert d.class_names == ("10", "11", "12") and d.y_train.max() == 2
    tok = tmp_path / "tok.npz"
    np.savez(tok, x_train=rng.integers(0, 7, (50, 12)), y_train=np.arange(50) % 2)
    t = load_dataset(str(tok), vocab_size=10)
    assert t.x_train.dtype == torch.int64 and t.vocab_size == 10 and t.input_shape == (12,)


def test_csv_label_columns_and_headerless(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    lines = ["a,Label,b"] + [f"{i},{'yes' if i % 3 else 'no'},{i * 0.5}" for i in range(60)]
    path.write_text("\n".join(lines) + "\n")
    d = load_dataset(str(path))
    assert d.input_shape == (1, 2) and d.class_names == ("no", "yes") and d.num_classes == 2
    assert d.x_train.dtype == torch.float32 and len(d.y_test) == 12
    target = tmp_path / "target.csv"
    target.write_text("target,f1\n" + "".join(f"{i % 4},{i}\n" for i in range(80)))
    assert load_dataset(str(target)).num_classes == 4
    bare = tmp_path / "bare.csv"
    bare.write_text("".join(f"{i},{i * 2},{i % 2}\n" for i in range(40)))
    b = load_dataset(str(bare))
    assert b.input_shape == (1, 2) and b.num_classes == 2
    named = tmp_path / "named.csv"
    named.write_text("x1,cls,x2\n" + "".join(f"{i},{'ab'[i % 2]},{-i}\n" for i in range(30)))
    n = load_dataset(str(named), label="cls", standardize=False)
    assert n.class_names == ("a", "b") and n.input_shape == (1, 2)
    assert torch.equal(n.x_train[:, 0, 1], -n.x_train[:, 0, 0])               # features x1, x2 in file order


def _png(path: Path, value: int, mode: str = "L", size: int = 10) -> None:
    from PIL import Image
    color = value if mode == "L" else (value, 255 - value, 30)
    Image.new(mode, (size, size), color).save(path)


def test_image_folder_gray_and_rgb(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for c, value in (("cats", 40), ("dogs", 200)):
        (root / c).mkdir(parents=True)
        for i in range(6):
            _png(root / c / f"{i}.png", value + i)
    (root / "cats" / "notes.txt").write_text("ignored")
    d = load_dataset(str(root), size=7)
    assert d.input_shape == (1, 7, 7) and d.class_names == ("cats", "dogs")
    assert len(d.y_train) + len(d.y_valid) + len(d.y_test) == 12
    assert load_dataset(str(root), size=4, color="rgb").input_shape == (3, 4, 4)
    _png(root / "dogs" / "c.png", 90, mode="RGB")
    assert load_dataset(str(root)).input_shape == (3, 32, 32)
    assert load_dataset(str(root), color="gray").input_shape == (1, 32, 32)


# -- bad input ------------------------------------------------------------------------------

def test_bad_inputs_raise_one_line_data_errors(tmp_path: Path) -> None:
    def bad(name: str, match: str, **options: object) -> None:
        with pytest.raises(DataError, match=match) as exc:
            load_dataset(name, **options)
        assert_one_line(exc)

    bad("imagenet", "unknown dataset")
    bad(str(tmp_path / "missing.npz"), "not found")
    bad(str(tmp_path / "missing.csv"), "not found")
    bad("digits", "valid_fraction", valid_fraction=1.5)
    bad("digits", "unknown option", size=3)

    npz = tmp_path / "noy.npz"
    np.savez(npz, x_train=np.zeros((10, 3)))
    bad(str(npz), "y_train")
    onecls = tmp_path / "one.npz"
    np.savez(onecls, x_train=np.zeros((10, 3)), y_train=np.zeros(10))
    bad(str(onecls), "at least 2")
    floaty = tmp_path / "reg.npz"
    np.savez(floaty, x_train=np.zeros((10, 3)), y_train=np.linspace(0, 1, 10))
    bad(str(floaty), "non-integer")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    bad(str(tmp_path / "garbage.npz"), "cannot read")

    text = tmp_path / "text.csv"
    text.write_text("f,label\n1,a\nx,b\n3,a\n")
    bad(str(text), "column 'f' is not numeric")
    single = tmp_path / "single.csv"
    single.write_text("label\n1\n2\n")
    bad(str(single), "feature column")
    nolabel = tmp_path / "nolabel.csv"
    nolabel.write_text("f,g\n1,2\n3,4\n")
    bad(str(nolabel), "no column 'y'", label="y")
    onelabel = tmp_path / "onelabel.csv"
    onelabel.write_text("f,label\n1,a\n2,a\n3,a\n")
    bad(str(onelabel), "at least 2")
    (tmp_path / "empty.csv").write_text("")
    bad(str(tmp_path / "empty.csv"), "empty")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("f,label\n1,a\n2\n")
    bad(str(ragged), "line 3")

    empty = tmp_path / "empty_dir"
    empty.mkdir()
    bad(str(empty), "no class sub-folders")
    lonely = tmp_path / "lonely"
    (lonely / "a").mkdir(parents=True)
    _png(lonely / "a" / "0.png", 5)
    bad(str(lonely), "at least 2 classes")
    (lonely / "b").mkdir()
    bad(str(lonely), "holds no images")
    (lonely / "b" / "broken.png").write_bytes(b"\x89PNG broken")
    bad(str(lonely), "cannot read image")
    (tmp_path / "weird.txt").write_text("x")
    bad(str(tmp_path / "weird.txt"), "unsupported dataset file")
    assert issubclass(DataError, ArchscoutError)


def test_tiny_dataset_cannot_be_split(tmp_path: Path) -> None:
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=np.zeros((2, 3)), y_train=np.array([0, 1]))
    with pytest.raises(DataError, match="too few samples"):
        load_dataset(str(path))


# -- augmentations ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
@pytest.mark.parametrize("shape", [(5, 2, 16), (5, 1, 8, 8)])
def test_augmentations_keep_shape_and_follow_the_generator(name: str, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    aug = AUGMENTATIONS[name]
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(a, b)
    c = torch.cat([aug(x, torch.Generator().manual_seed(s)) for s in range(8)])
    assert not torch.equal(c, x.repeat(8, *([1] * (x.ndim - 1))))             # it does change something


def test_shift_moves_content_by_whole_pixels() -> None:
    x = torch.zeros(50, 1, 8, 8)
    x[:, 0, 4, 4] = 1.0
    out = AUGMENTATIONS["shift"](x, torch.Generator().manual_seed(0))
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(50))                # margin 1 keeps the pixel inside
    pos = out.reshape(50, -1).argmax(1)
    assert ((pos // 8 - 4).abs() <= 1).all() and ((pos % 8 - 4).abs() <= 1).all()
    assert len(set(pos.tolist())) > 1
