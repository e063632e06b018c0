"""Device-side data: CIFAR integrity checks, the synthetic set, digits, augmentation."""

import copy
import hashlib
import io
import os
import pickle
import sys
import tarfile

import numpy as np
import pytest

from toolkit.device import data
from toolkit.errors import UserError


def _md5(blob: bytes) -> str:
    return hashlib.md5(blob).hexdigest()


def _fake_cifar10(root, per_batch=4, corrupt_member=None):
    """A tiny archive with the real CIFAR-10 layout; returns (archive path, {file: md5},
    archive md5). Also leaves nothing else in root."""
    rng = np.random.default_rng(0)
    info = data._CIFAR["cifar10"]
    blobs = {}
    for fname, _ in info["train"] + info["test"]:
        entry = {"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, size=per_batch)],
                 "batch_label": fname}
        blobs[fname] = pickle.dumps(entry, protocol=2)
    blobs["batches.meta"] = pickle.dumps({"label_names": ["c%d" % i for i in range(10)]})
    md5s = {name: _md5(blob) for name, blob in blobs.items()}
    if corrupt_member:
        blobs[corrupt_member] = blobs[corrupt_member][:-3] + b"xyz"
    path = os.path.join(str(root), info["archive"])
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in blobs.items():
            member = tarfile.TarInfo(info["folder"] + "/" + name)
            member.size = len(blob)
            tar.addfile(member, io.BytesIO(blob))
    with open(path, "rb") as f:
        archive_md5 = _md5(f.read())
    return path, md5s, archive_md5


def _patch_md5s(monkeypatch, md5s, archive_md5):
    info = copy.deepcopy(data._CIFAR["cifar10"])
    info["archive_md5"] = archive_md5
    info["train"] = [(f, md5s[f]) for f, _ in info["train"]]
    info["test"] = [(f, md5s[f]) for f, _ in info["test"]]
    info["meta"] = (info["meta"][0], md5s[info["meta"][0]])
    monkeypatch.setitem(data._CIFAR, "cifar10", info)


def test_fake_archive_loads_with_the_real_layout(tmp_path, monkeypatch):
    _, md5s, archive_md5 = _fake_cifar10(tmp_path)
    _patch_md5s(monkeypatch, md5s, archive_md5)
    ds = data.load_cifar("cifar10", str(tmp_path))
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (4, 3, 32, 32) and ds.y_test.dtype == np.int64
    assert ds.classes == 10 and ds.identity == "cifar10:md5=" + archive_md5
    assert ds.mean == pytest.approx((125.3 / 255, 123.0 / 255, 113.9 / 255))
    assert ds.std == pytest.approx((63.0 / 255, 62.1 / 255, 66.7 / 255))
    # the first image of the first batch is the first 3072 bytes, channel-major (NCHW)
    with tarfile.open(str(tmp_path / "cifar-10-python.tar.gz")) as tar:
        entry = pickle.loads(tar.extractfile("cifar-10-batches-py/data_batch_1").read())
    assert np.array_equal(ds.x_train[0].reshape(-1), entry["data"][0])
    assert ds.y_train[:4].tolist() == entry["labels"]


def test_env_var_gives_the_directory(tmp_path, monkeypatch):
    _, md5s, archive_md5 = _fake_cifar10(tmp_path)
    _patch_md5s(monkeypatch, md5s, archive_md5)
    monkeypatch.setenv("EDGEREPRO_DATA", str(tmp_path))
    assert len(data.load_dataset("cifar10").y_train) == 20


def test_corrupted_archive_is_caught_by_its_md5(tmp_path, monkeypatch):
    path, md5s, archive_md5 = _fake_cifar10(tmp_path)
    _patch_md5s(monkeypatch, md5s, archive_md5)
    with open(path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(UserError, match="corrupt") as err:
        data.load_cifar("cifar10", str(tmp_path))
    assert str(tmp_path) in str(err.value) and data.CIFAR_URL in str(err.value)


def test_corrupted_member_of_a_matching_archive_is_caught(tmp_path, monkeypatch):
    _, md5s, archive_md5 = _fake_cifar10(tmp_path, corrupt_member="data_batch_3")
    _patch_md5s(monkeypatch, md5s, archive_md5)
    with pytest.raises(UserError, match="data_batch_3 in .* is corrupt"):
        data.load_cifar("cifar10", str(tmp_path))


def test_real_constants_reject_a_wrong_file(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not the CIFAR archive")
    with pytest.raises(UserError) as err:
        data.load_cifar("cifar10", str(tmp_path))
    text = str(err.value)
    assert "c58f30108f718f92721af3b95e74349a" in text and "corrupt" in text
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"nor this")
    with pytest.raises(UserError, match="eb9058c3a382ffc7106e4002c42a8d85"):
        data.load_cifar("cifar100", str(tmp_path))


def test_extracted_folder_is_checked_per_file(tmp_path, monkeypatch):
    path, md5s, archive_md5 = _fake_cifar10(tmp_path)
    _patch_md5s(monkeypatch, md5s, archive_md5)
    with tarfile.open(path) as tar:
        tar.extractall(str(tmp_path))
    os.remove(path)
    assert len(data.load_cifar("cifar10", str(tmp_path)).y_test) == 4
    with open(str(tmp_path / "cifar-10-batches-py" / "test_batch"), "ab") as f:
        f.write(b"!")
    with pytest.raises(UserError, match="test_batch is corrupt"):
        data.load_cifar("cifar10", str(tmp_path))
    # the real torchvision sums reject the fake folder too
    monkeypatch.undo()
    with pytest.raises(UserError, match="data_batch_1 is corrupt"):
        data.load_cifar("cifar10", str(tmp_path))


def test_missing_set_lists_the_expected_files(tmp_path, monkeypatch):
    with pytest.raises(UserError) as err:
        data.load_cifar("cifar100", str(tmp_path))
    text = str(err.value)
    for part in ("cifar-100-python.tar.gz", "cifar-100-python/", "train", "test", "meta",
                 str(tmp_path), "https://www.cs.toronto.edu/~kriz/cifar.html", "EDGEREPRO_DATA"):
        assert part in text
    assert "\n" not in text
    with pytest.raises(UserError, match="data_batch_1, data_batch_2.*test_batch, batches.meta"):
        data.load_cifar("cifar10", str(tmp_path))
    monkeypatch.delenv("EDGEREPRO_DATA", raising=False)
    with pytest.raises(UserError, match="no data directory given"):
        data.load_dataset("cifar10")
    with pytest.raises(UserError, match="unknown data set"):
        data.load_dataset("imagenet")


def test_synthetic_is_deterministic_per_seed():
    a, b, c = data.synthetic(60, 20, seed=3), data.synthetic(60, 20, seed=3), \
        data.synthetic(60, 20, seed=4)
    assert a.x_train.shape == (60, 3, 32, 32) and a.x_train.dtype == np.uint8
    assert a.y_train.dtype == np.int64 and set(a.y_train.tolist()) == set(range(10))
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert a.identity == b.identity != c.identity
    assert not np.array_equal(a.x_train, c.x_train)


def test_synthetic_classes_are_separable():
    # A cheap stand-in for "a small CNN learns it" (the slow training test does that):
    # class means computed on the train split classify the test split.
    ds = data.synthetic(500, 200, seed=0)
    xtr = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float64)
    xte = ds.x_test.reshape(len(ds.x_test), -1).astype(np.float64)
    means = np.stack([xtr[ds.y_train == k].mean(0) for k in range(10)])
    pred = np.argmin(((xte[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == ds.y_test).mean() > 0.8


def test_digits_shape_and_labels():
    ds = data.digits(seed=0)
    assert ds.x_train.shape[1:] == (3, 32, 32) and ds.x_train.dtype == np.uint8
    assert len(ds.y_train) + len(ds.y_test) == 1797
    assert sorted(set(ds.y_test.tolist())) == list(range(10))
    assert 0.15 < len(ds.y_test) / 1797 < 0.25
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
    assert np.array_equal(ds.x_train[:, 0], ds.x_train[:, 2])  # grey in 3 channels
    # 4x4 pixel repetition of the 8x8 originals
    assert np.array_equal(ds.x_train[:, :, ::4, ::4].repeat(4, 2).repeat(4, 3), ds.x_train)
    again = data.digits(seed=0)
    assert np.array_equal(again.y_test, ds.y_test) and again.identity == ds.identity
    assert not np.array_equal(data.digits(seed=1).y_test, ds.y_test)


def test_digits_without_sklearn_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(UserError, match="scikit-learn"):
        data.digits()


def test_augment_is_a_seeded_crop_and_flip():
    x = np.random.default_rng(0).integers(0, 256, size=(16, 3, 32, 32), dtype=np.uint8)
    a = data.augment(x, np.random.default_rng(7))
    b = data.augment(x, np.random.default_rng(7))
    assert a.shape == x.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    flips = 0
    for i in range(len(x)):
        found = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                 if np.array_equal(a[i], (lambda c: c[..., ::-1] if f else c)(
                     padded[i, :, dy:dy + 32, dx:dx + 32]))]
        assert found, i
        flips += found[0][2]
    assert 0 < flips < len(x)


def test_normalize_and_batches():
    x = np.full((2, 3, 32, 32), 255, dtype=np.uint8)
    out = data.normalize(x)
    assert out.dtype == np.float32
    assert out[0, 0, 0, 0] == pytest.approx((1 - 125.3 / 255) / (63.0 / 255), rel=1e-6)
    idx = data.batch_indices(10, 4, np.random.default_rng(0))
    assert [len(i) for i in idx] == [4, 4, 2]
    assert sorted(np.concatenate(idx).tolist()) == list(range(10))
    assert [len(i) for i in data.batch_indices(10, 4, None, drop_last=True)] == [4, 4]


def test_a_training_job_reads_the_digits_set_the_host_wrote(tmp_path):
    """Images carry no scikit-learn: the host writes the set as .npz, the job reads it back."""
    from toolkit.device.dataset_export import export_dataset
    from toolkit.device.training.common import load_data

    job = {"settings": {"data": {"name": "digits"}, "seed": 3},
           "artifacts": {"dataset_file": str(tmp_path / "digits.npz")}}
    written = export_dataset(job)["dataset"]
    read = load_data(job)
    direct = data.digits(seed=3)
    assert read.identity == direct.identity == written["identity"]
    assert np.array_equal(read.x_train, direct.x_train)
    assert np.array_equal(read.y_test, direct.y_test)
    assert (read.mean, read.std, read.classes) == (direct.mean, direct.std, 10)
