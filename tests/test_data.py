"""Tests for ftkit.data.catalogue: catalogue sizes, pixel values against hand-computed
references, deterministic stratified subsets, leak-free photo crops, own
folders, and install hints when a source is missing. The network is blocked."""
import gzip
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ftkit.data import catalogue as D
from ftkit.data import sources as S
from ftkit.data.catalogue import DataUnavailableError, list_datasets, load_dataset

MEAN = np.array(D.IMAGENET_MEAN, np.float32).reshape(3, 1, 1)
STD = np.array(D.IMAGENET_STD, np.float32).reshape(3, 1, 1)


def _normalised(grey_uint8: np.ndarray) -> np.ndarray:
    """Hand reference: uint8 grey (H, W) -> (3, H, W) ImageNet-normalised."""
    return (grey_uint8[None].astype(np.float32) / 255.0 - MEAN) / STD


def _needs(name):
    """Skip a data set whose source is missing on a user's machine; in CI (CI=true) never:
    there the set-up must have installed every source, and a skip would hide that it did not."""
    entry = D._CATALOGUE[name]
    return pytest.mark.skipif(not entry.available() and not os.environ.get("CI"),
                              reason=f"{name} not installed: {entry.info.install}")


CATALOGUE = [pytest.param(n, marks=_needs(n)) for n in D._CATALOGUE]


def test_list_datasets_table():
    df = list_datasets()
    assert list(df.name) == ["fashion_mnist", "animals", "digits", "photo_crops"]
    assert {"classes", "train", "test", "available_offline", "similarity", "install"} <= set(df)
    row = df.set_index("name").loc["animals"]
    assert (row.classes, row.train, row.test) == (10, 8000, 2000)
    assert row.install == "pip install --no-deps animal-mnist==0.4"
    assert df.set_index("name").loc["fashion_mnist", "install"] == \
        "sudo apt-get install dataset-fashion-mnist"


@pytest.mark.parametrize("name", CATALOGUE)
def test_full_splits_have_documented_sizes_and_classes(name):
    info = D._CATALOGUE[name].info
    per_class = {"fashion_mnist": (6000, 1000), "animals": (800, 200), "photo_crops": (150, 50)}
    for split, size in info.sizes.items():
        ds = load_dataset(name, split)
        assert len(ds) == size and len(ds.targets) == size
        assert ds.targets.dtype == np.int64 and ds.classes == list(info.classes)
        assert len(ds.classes) == info.num_classes
        if name in per_class:
            want = per_class[name][split == "test"]
            assert np.bincount(ds.targets).tolist() == [want] * info.num_classes
    if name == "digits":
        assert (info.train_size, info.test_size) == (1438, 359)


@pytest.mark.parametrize("name", CATALOGUE)
def test_items_are_normalised_float_squares(name):
    ds = load_dataset(name, "test", n_per_class=2, image_size=40)
    assert len(ds) == 2 * len(ds.classes)
    x, y = ds[len(ds) - 1]
    assert x.shape == (3, 40, 40) and x.dtype == torch.float32
    assert isinstance(y, int) and y == ds.targets[-1]
    assert sorted(set(ds.targets.tolist())) == list(range(len(ds.classes)))
    # Normalised pixels lie between (0 - mean)/std and (1 - mean)/std.
    lo, hi = torch.tensor((0 - MEAN) / STD), torch.tensor((1 - MEAN) / STD)
    assert torch.all(x >= lo - 1e-5) and torch.all(x <= hi + 1e-5)


def test_pixels_to_input_is_the_datasets_transform():
    """One transform for single items and whole tensors: pixels_to_input gives, bit for bit, what
    ImageDataset gives item by item: on a batch (digits, at native size and resized) and on
    photo crops of different sizes, grey and colour, one at a time."""
    def pixels(ds, i):
        p = torch.tensor(ds._source.image(int(ds.indices[i])))
        return p[None] if p.ndim == 2 else p.permute(2, 0, 1)

    for size in (8, 20):
        ds = load_dataset("digits", "test", n_per_class=2, image_size=size)
        batch = D.pixels_to_input(torch.stack([pixels(ds, i) for i in range(len(ds))]), size, ds.mean, ds.std)
        assert batch.shape == (len(ds), 3, size, size)
        assert torch.equal(batch, torch.stack([ds[i][0] for i in range(len(ds))]))
    ds = load_dataset("photo_crops", "test", n_per_class=1, image_size=32)
    for i in range(len(ds)):
        assert torch.equal(D.pixels_to_input(pixels(ds, i)[None], 32, ds.mean, ds.std)[0], ds[i][0])


@_needs("fashion_mnist")
def test_fashion_pixels_match_raw_idx_file():
    folder = S.fashion_dir()
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    ds = load_dataset("fashion_mnist", "test", image_size=28)
    for i in (0, 1234, 9999):
        x, y = ds[i]
        np.testing.assert_allclose(x.numpy(), _normalised(raw[i]), atol=1e-6)
        assert y == labels[i]
    assert ds.classes[ds[0][1]] == "Ankle boot"          # the famous first test image


def test_digits_pixels_match_sklearn():
    from sklearn.datasets import load_digits

    digits = load_digits()
    ds = load_dataset("digits", "train", image_size=8)
    i = 17
    j = ds.indices[i]
    expected = _normalised(np.round(digits.images[j] * 255 / 16).astype(np.uint8))
    x, y = ds[i]
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-6)
    assert y == digits.target[j]
    # A known pixel: value 16 (full ink) -> 255 -> (1 - mean) / std.
    r, c = np.argwhere(digits.images[j] == 16)[0]
    np.testing.assert_allclose(x[:, r, c].numpy(), ((1 - MEAN) / STD).ravel(), atol=1e-6)


@_needs("animals")
def test_animals_pixels_labels_and_class_order():
    data_file, label_file = S.animal_files()
    with gzip.open(data_file) as f:
        images = pickle.load(f)
    with gzip.open(label_file) as f:
        labels = pickle.load(f)
    ds = load_dataset("animals", "train", image_size=28)
    x, y = ds[500]
    np.testing.assert_allclose(x.numpy(), _normalised(images[ds.indices[500]]), atol=1e-6)
    assert y == labels[ds.indices[500]]
    # Class order checked by shape: giraffes are the tallest and thinnest silhouettes.
    ink = images > 127
    aspect = [np.mean(ink[labels == c].any(2).sum(1) / ink[labels == c].any(1).sum(1))
              for c in range(10)]
    fill = [ink[labels == c].mean() for c in range(10)]
    assert ds.classes[int(np.argmax(aspect))] == "giraffe"
    assert ds.classes[int(np.argmin(fill))] == "giraffe"


@pytest.mark.parametrize("name", [pytest.param("animals", marks=_needs("animals")), "digits"])
def test_fixed_split_is_disjoint_and_complete(name):
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    assert not set(train.indices) & set(test.indices)
    assert len(set(train.indices) | set(test.indices)) == len(train) + len(test)
    assert np.array_equal(load_dataset(name, "train", seed=5).indices, train.indices)


@_needs("animals")
def test_subsampling_is_stratified_and_seeded():
    a = load_dataset("animals", "train", n_per_class=30, seed=1)
    b = load_dataset("animals", "train", n_per_class=30, seed=1)
    c = load_dataset("animals", "train", n_per_class=30, seed=2)
    assert np.array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    assert np.bincount(a.targets).tolist() == [30] * 10
    assert set(a.indices) <= set(load_dataset("animals", "train").indices)
    assert torch.equal(a[7][0], b[7][0])


def test_subsample_larger_than_smallest_class_states_maximum():
    # digits test: round(20 %) of 174 or 177 images -> 35 is the smallest class.
    with pytest.raises(ValueError, match="maximum is 35"):
        load_dataset("digits", "test", n_per_class=36)
    assert len(load_dataset("digits", "test", n_per_class=35)) == 350
    with pytest.raises(ValueError, match="positive int"):
        load_dataset("digits", n_per_class=0)


def test_photo_crops_train_and_test_never_share_pixels():
    photos = S._read_photos()
    train, test = D.photo_crop_boxes("train"), D.photo_crop_boxes("test")
    assert len(photos) == 12 and train.photo.nunique() == test.photo.nunique() == 12
    for p, photo in enumerate(photos):
        masks = []
        for boxes in (train, test):
            mask = np.zeros(photo.shape[:2], bool)
            for r in boxes[boxes.photo == p].itertuples():
                assert r.y >= 0 and r.x >= 0 and r.size >= 16
                assert r.y + r.size <= photo.shape[0] and r.x + r.size <= photo.shape[1]
                mask[r.y:r.y + r.size, r.x:r.x + r.size] = True
            masks.append(mask)
        assert not np.any(masks[0] & masks[1]), D.PHOTO_CLASSES[p]
        assert set(train[train.photo == p].cell).isdisjoint(test[test.photo == p].cell)
    ds = load_dataset("photo_crops", "train", image_size=24)
    r = train.iloc[3]
    crop = photos[r.photo][r.y:r.y + r["size"], r.x:r.x + r["size"]]
    assert np.array_equal(ds.raw_image(3)[..., 0], crop if crop.ndim == 2 else crop[..., 0])
    assert D.photo_crop_boxes("test").equals(test)                    # deterministic


def _write_folder(root: Path, classes=("cat", "dog"), n=5, size=(10, 12)):
    colours = {"cat": (255, 0, 0), "dog": 128, "emu": (0, 0, 255)}
    for c in classes:
        (root / c).mkdir(parents=True)
        for k in range(n):
            mode = "L" if isinstance(colours[c], int) else "RGB"
            Image.new(mode, size, colours[c]).save(root / c / f"{k}.png")


def test_own_folder_stratified_split_and_pixels(tmp_path):
    _write_folder(tmp_path / "pets")
    (tmp_path / "pets" / ".ipynb_checkpoints").mkdir()                # never a class
    train = load_dataset(tmp_path / "pets", "train", image_size=6)
    test = load_dataset(str(tmp_path / "pets"), "test", image_size=6)
    assert train.classes == ["cat", "dog"] and (len(train), len(test)) == (8, 2)
    assert train.info.sizes == {"train": 8, "test": 2} and train.info.name == "pets"
    assert np.bincount(test.targets).tolist() == [1, 1]
    x, y = train[0]                                                    # solid red, 10x12 -> 6x6
    assert x.shape == (3, 6, 6) and train.classes[y] == "cat"
    red = (np.array([1.0, 0.0, 0.0], np.float32).reshape(3, 1, 1) - MEAN) / STD
    np.testing.assert_allclose(x.numpy(), np.broadcast_to(red, (3, 6, 6)), atol=1e-5)
    x, y = train[len(train) - 1]                                       # grey 128 -> 3 channels
    np.testing.assert_allclose(x.numpy(), (128 / 255 - MEAN) / STD * np.ones((3, 6, 6)),
                               atol=1e-5)
    assert len(load_dataset(tmp_path / "pets", n_per_class=2)) == 4


def test_own_folder_with_train_and_val_subfolders(tmp_path):
    _write_folder(tmp_path / "train", n=3)
    _write_folder(tmp_path / "val", classes=("dog",), n=2)
    train = load_dataset(tmp_path, "train")
    test = load_dataset(tmp_path, "test")
    assert (len(train), len(test)) == (6, 2) and test.classes == ["cat", "dog"]
    assert test.targets.tolist() == [1, 1] and len(load_dataset(tmp_path, "val")) == 2
    _write_folder(tmp_path / "val2", classes=("emu",), n=1)
    shutil.rmtree(tmp_path / "val")
    (tmp_path / "val2").rename(tmp_path / "val")
    with pytest.raises(ValueError, match="emu"):
        load_dataset(tmp_path, "test")


def test_own_folder_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(Path("digits"))                # a Path is a folder, not a catalogue name
    with pytest.raises(ValueError, match="no class folders"):
        load_dataset(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="has no images"):
        load_dataset(tmp_path)


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="fashion_mnist.*animals.*digits.*photo_crops"):
        load_dataset("imagenette")
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("digits", split="validation")
    with pytest.raises(ValueError, match="std"):
        load_dataset("digits", std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("digits", image_size=0)


@pytest.fixture
def no_fashion(tmp_path, monkeypatch):
    """No system Fashion-MNIST, an empty ftkit cache, a private temp dir."""
    monkeypatch.setattr(S, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "usr-share-missing")
    monkeypatch.setenv("FTKIT_DATA_DIR", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    return tmp_path


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_missing_fashion_offline_names_install_command(no_fashion):
    with pytest.raises(DataUnavailableError, match="sudo apt-get install dataset-fashion-mnist") \
            as err:
        load_dataset("fashion_mnist")
    assert err.value.install == "sudo apt-get install dataset-fashion-mnist"
    assert "torchvision" in str(err.value)
    assert _files(no_fashion / "cache") == [] and _files(no_fashion / "tmp") == []
    assert not list_datasets().set_index("name").loc["fashion_mnist", "available_offline"]


@_needs("fashion_mnist")
def test_fashion_download_moves_complete_files_only(no_fashion, monkeypatch):
    system = Path("/usr/share/datasets/fashion-mnist")
    calls = []

    class FakeFashionMNIST:                  # stands in for torchvision's download
        def __init__(self, root, train, download):
            raw = Path(root) / "FashionMNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            calls.append(train)
            if fail and not train:
                raise RuntimeError("connection reset")
            for name in S._FASHION_FILES["train" if train else "test"]:
                shutil.copyfile(system / name, raw / name)

    monkeypatch.setattr("torchvision.datasets.FashionMNIST", FakeFashionMNIST)
    fail = True
    with pytest.raises(DataUnavailableError, match="connection reset"):
        load_dataset("fashion_mnist", "test")
    assert _files(no_fashion / "cache") == [] and _files(no_fashion / "tmp") == []
    fail = False
    ds = load_dataset("fashion_mnist", "test", n_per_class=1)
    assert len(ds) == 10 and calls == [True, False, True, False]
    assert sorted(p.name for p in _files(no_fashion / "cache")) == sorted(
        n for pair in S._FASHION_FILES.values() for n in pair)
    assert _files(no_fashion / "tmp") == []


def test_missing_animals_names_install_command(monkeypatch):
    monkeypatch.setattr(S, "ANIMAL_MNIST_PACKAGE", "ftkit_no_such_package_animal_mnist")
    with pytest.raises(DataUnavailableError,
                       match=r"pip install --no-deps animal-mnist==0\.4") as err:
        load_dataset("animals")
    assert err.value.install == "pip install --no-deps animal-mnist==0.4"
    assert not list_datasets().set_index("name").loc["animals", "available_offline"]


def test_fingerprint_stable_and_sensitive():
    def fp(**kw):
        args = dict(split="train", n_per_class=20, seed=0, image_size=32) | kw
        return load_dataset("digits", **args).fingerprint()

    base = fp()
    assert base == fp() and len(base) == 32
    others = [fp(image_size=33), fp(seed=1), fp(n_per_class=21), fp(split="test"),
              fp(mean=(0.5, 0.5, 0.5)), fp(std=(0.5, 0.5, 0.5))]
    assert len({base, *others}) == 1 + len(others)
    crops = load_dataset("photo_crops", n_per_class=3, image_size=32)
    assert crops.fingerprint() == load_dataset("photo_crops", n_per_class=3,
                                               image_size=32).fingerprint() != base


def test_dataloader_over_300_images_yields_every_item_once():
    """No timing here (shared machines): the loader's speed is part of ``make bench``'s fit and features rows."""
    ds = load_dataset("photo_crops", "train", n_per_class=25, image_size=64)
    assert len(ds) == 300
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True)
    shapes, labels = set(), []
    for x, y in loader:
        shapes.add(tuple(x.shape[1:]))
        labels += y.tolist()
    assert shapes == {(3, 64, 64)} and sorted(labels) == sorted(int(t) for t in ds.targets)
