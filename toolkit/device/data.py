"""Data sets for the accuracy experiments: CIFAR-10/100 from a local directory, a deterministic
synthetic CIFAR-shaped set, and scikit-learn's bundled digits upscaled to 32x32x3.

Device side: stdlib + numpy only (scikit-learn is imported lazily, for the digits set only), so
the PyTorch, ONNX Runtime Training and TensorRT cells share one loader and one augmentation.

Every loader returns a DataSet: uint8 images N x 3 x 32 x 32 (NCHW) and int64 labels for the train
and test splits, the class count, the normalisation constants of the NeuralScale code (the public
NeuralScale code's CIFAR-10 mean/std, used for every set here) and an `identity` string that
changes whenever the data do (archive MD5, or generator version + parameters, or a content hash):
caches key on it.

Nothing is ever downloaded (cells may run offline): CIFAR is read from EDGEREPRO_DATA or a directory
given by argument, either as the original archive or as its extracted folder, both checked against
the MD5 sums torchvision uses before anything is unpickled.
"""

import hashlib
import io
import json
import os
import pickle
import tarfile
from typing import Dict, List, Optional, Tuple

import numpy as np

from toolkit.errors import UserError

DATA_ENV = "EDGEREPRO_DATA"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

# CIFAR-10 normalisation of the public NeuralScale code, per channel, on
# images scaled to [0, 1].
MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)

# Archive name, its MD5, extracted folder, {member file: MD5} (train files, test files, meta), the
# label key inside the batches. Values as in torchvision.datasets.cifar.
_CIFAR = {
    "cifar10": {
        "classes": 10,
        "archive": "cifar-10-python.tar.gz",
        "archive_md5": "c58f30108f718f92721af3b95e74349a",
        "folder": "cifar-10-batches-py",
        "train": [
            ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        ],
        "test": [("test_batch", "40351d587109b95175f43aff81a1287e")],
        "meta": ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
        "label_key": "labels",
    },
    "cifar100": {
        "classes": 100,
        "archive": "cifar-100-python.tar.gz",
        "archive_md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "folder": "cifar-100-python",
        "train": [("train", "16019d7e3df5f24257cddd939b257f8d")],
        "test": [("test", "f0ef6b0ae62326f3e7ffdfab6717acfc")],
        "meta": ("meta", "7973b15100ade9c7d40fb424638fde48"),
        "label_key": "fine_labels",
    },
}

DATASET_NAMES = ("cifar10", "cifar100", "digits", "synthetic")
SYNTHETIC_VERSION = 1  # bump whenever the generator's output changes


class DataSet(object):
    """Train/test arrays plus what a trainer needs to use and to cache them."""

    def __init__(self, name, classes, x_train, y_train, x_test, y_test, identity,
                 mean=MEAN, std=STD, source=""):
        self.name: str = name
        self.classes = int(classes)
        self.x_train: np.ndarray = x_train  # uint8 N x 3 x 32 x 32
        self.y_train: np.ndarray = y_train  # int64 N
        self.x_test = x_test
        self.y_test = y_test
        self.identity: str = identity
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.source: str = source  # where it was read from (a path, "generated", ...)

    def describe(self) -> Dict[str, object]:
        """JSON-able provenance (no arrays)."""
        return {"name": self.name, "classes": self.classes, "identity": self.identity,
                "train": int(len(self.y_train)), "test": int(len(self.y_test)),
                "mean": list(self.mean), "std": list(self.std), "source": self.source}

    def __repr__(self):
        return "DataSet({name}, classes={classes}, train={train}, test={test})".format(
            **self.describe())


def load_dataset(name: str, root: Optional[str] = None, seed: int = 0, **kwargs) -> DataSet:
    """One entry point: "cifar10" | "cifar100" (from root or $EDGEREPRO_DATA), "digits" (seeded
    split), "synthetic" (seeded; kwargs go to synthetic())."""
    if name in _CIFAR:
        return load_cifar(name, root)
    if name == "digits":
        return digits(seed=seed, **kwargs)
    if name == "synthetic":
        return synthetic(seed=seed, **kwargs)
    raise UserError("unknown data set {!r}; valid: {}".format(name, ", ".join(DATASET_NAMES)))


def save_npz(dataset: DataSet, path: str) -> None:
    """Write a data set as one .npz, so a job whose image lacks the library that made it (the
    digits set needs scikit-learn, which the framework images do not carry) can still read it."""
    meta = dict(dataset.describe(), x_shape=list(dataset.x_train.shape[1:]))
    tmp = "{}.tmp.{}.npz".format(path, os.getpid())
    np.savez(tmp, x_train=dataset.x_train, y_train=dataset.y_train, x_test=dataset.x_test,
             y_test=dataset.y_test, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    os.replace(tmp, path)


def load_npz(path: str) -> DataSet:
    """The data set save_npz wrote, with its name, identity and normalisation."""
    with np.load(path) as arrays:
        meta = json.loads(arrays["meta"].tobytes().decode())
        return DataSet(meta["name"], meta["classes"], arrays["x_train"], arrays["y_train"],
                       arrays["x_test"], arrays["y_test"], meta["identity"], mean=meta["mean"],
                       std=meta["std"], source="{} (from {})".format(meta["source"], path))


# --------------------------------------------------------------------------------------- CIFAR


def md5_of(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def data_dir(root: Optional[str] = None) -> Optional[str]:
    """The directory to search: the argument, else $EDGEREPRO_DATA, else None."""
    root = root if root else os.environ.get(DATA_ENV)
    return os.path.abspath(os.path.expanduser(root)) if root else None


def _expected_files(info) -> List[str]:
    return [f[0] for f in info["train"] + info["test"]] + [info["meta"][0]]


def load_cifar(name: str, root: Optional[str] = None) -> DataSet:
    """CIFAR-10 or -100 from `root` (or $EDGEREPRO_DATA): the extracted folder if it is present
    and intact, else the archive. Every file is MD5-checked before it is unpickled; a missing or
    corrupt set raises UserError naming the files, the directory and where to get them."""
    info = _CIFAR.get(name)
    if info is None:
        raise UserError("unknown CIFAR set {!r}; valid: {}".format(name, ", ".join(_CIFAR)))
    directory = data_dir(root)
    problems: List[str] = []
    if directory is None:
        problems.append("no data directory given (argument or ${})".format(DATA_ENV))
    else:
        folder = os.path.join(directory, info["folder"])
        archive = os.path.join(directory, info["archive"])
        if os.path.isdir(folder):
            blobs, problem = _read_folder(folder, info)
            if blobs is not None:
                return _cifar_from_blobs(name, info, blobs, folder)
            problems.append(problem)
        if os.path.isfile(archive):
            blobs, problem = _read_archive(archive, info)
            if blobs is not None:
                return _cifar_from_blobs(name, info, blobs, archive)
            problems.append(problem)
        if not problems:
            problems.append("neither {} nor {}/ found".format(info["archive"], info["folder"]))
    raise UserError(
        "{name}: {problems}. Expected {archive} (MD5 {md5}) or the extracted folder {folder}/ "
        "with {files} in {where}; get them from {url} (the 'python version') and set ${env} or "
        "pass the directory".format(
            name=name, problems="; ".join(problems), archive=info["archive"],
            md5=info["archive_md5"], folder=info["folder"], files=", ".join(_expected_files(info)),
            where=directory or "(no directory)", url=CIFAR_URL, env=DATA_ENV))


def verify_cifar(name: str, root: Optional[str] = None) -> DataSet:
    """load_cifar, then the shapes and labels the trainers rely on: a run checks every CIFAR set
    it needs this way before its first cell, so a bad set is one line, not a failed cell each."""
    dataset = load_cifar(name, root)
    info = _CIFAR[name]
    for split, x, y in (("train", dataset.x_train, dataset.y_train),
                        ("test", dataset.x_test, dataset.y_test)):
        if x.ndim != 4 or x.shape[1:] != (3, 32, 32) or len(x) != len(y) or not len(y):
            raise UserError("{}: the {} split has shape {} with {} labels; expected N x 3 x 32 "
                            "x 32 images and N labels".format(name, split, x.shape, len(y)))
        if y.min() < 0 or y.max() >= info["classes"]:
            raise UserError("{}: the {} split has labels outside 0..{}".format(
                name, split, info["classes"] - 1))
    return dataset


def _read_folder(folder: str, info) -> Tuple[Optional[Dict[str, bytes]], str]:
    files = info["train"] + info["test"] + [info["meta"]]
    blobs = {}
    for fname, md5 in files:
        path = os.path.join(folder, fname)
        if not os.path.isfile(path):
            return None, "{} is missing in {}".format(fname, folder)
        with open(path, "rb") as f:
            data = f.read()
        if _md5_bytes(data) != md5:
            return None, "{} is corrupt (MD5 {} != {})".format(path, _md5_bytes(data), md5)
        blobs[fname] = data
    return blobs, ""


def _read_archive(archive: str, info) -> Tuple[Optional[Dict[str, bytes]], str]:
    got = md5_of(archive)
    if got != info["archive_md5"]:
        return None, "{} is corrupt or not the original (MD5 {} != {})".format(
            archive, got, info["archive_md5"])
    blobs = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for fname, md5 in info["train"] + info["test"] + [info["meta"]]:
                member = tar.extractfile(info["folder"] + "/" + fname)
                if member is None:
                    raise KeyError(fname)
                data = member.read()
                if _md5_bytes(data) != md5:
                    return None, "{} in {} is corrupt".format(fname, archive)
                blobs[fname] = data
    except (KeyError, tarfile.TarError, OSError, EOFError) as exc:
        return None, "{} is unreadable or incomplete ({})".format(archive, exc)
    return blobs, ""


def _unpickle(data: bytes):
    # Only ever called on bytes whose MD5 matched the published sums.
    return pickle.load(io.BytesIO(data), encoding="latin1")


def _cifar_from_blobs(name, info, blobs, source) -> DataSet:
    def split(files):
        xs, ys = [], []
        for fname, _ in files:
            entry = _unpickle(blobs[fname])
            xs.append(np.asarray(entry["data"], dtype=np.uint8))
            ys.append(np.asarray(entry[info["label_key"]], dtype=np.int64))
        return np.concatenate(xs).reshape(-1, 3, 32, 32), np.concatenate(ys)

    x_train, y_train = split(info["train"])
    x_test, y_test = split(info["test"])
    # The per-file MD5s pin the content, so the archive MD5 identifies the set either way.
    return DataSet(name, info["classes"], x_train, y_train, x_test, y_test,
                   identity="{}:md5={}".format(name, info["archive_md5"]), source=source)


# ------------------------------------------------------------------------------------ synthetic


def synthetic(n_train: int = 2000, n_test: int = 500, classes: int = 10, seed: int = 0,
              noise: float = 48.0) -> DataSet:
    """A deterministic CIFAR-shaped set: each class is a smooth random colour pattern (a 4x4x3
    grid of random values upsampled to 32x32), each image that pattern with a random brightness
    shift, a random shift of up to 3 pixels and Gaussian pixel noise (std `noise`, 0..255 scale).
    A small CNN separates the classes within a few hundred SGD steps; the same arguments always
    give the same bytes (numpy's PCG64, independent of global RNG state)."""
    for what, value in (("n_train", n_train), ("n_test", n_test), ("classes", classes)):
        if int(value) != value or value < 1:
            raise UserError("synthetic: {} must be a positive integer, got {!r}".format(
                what, value))
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    coarse = rng.uniform(-1.0, 1.0, size=(classes, 3, 4, 4))
    templates = np.kron(coarse, np.ones((1, 1, 10, 10)))  # 40 x 40: room for shifts
    # Smooth the block edges a little so shifts change pixels gradually.
    templates = (templates + np.roll(templates, 1, axis=2) + np.roll(templates, 1, axis=3)) / 3.0

    def make(n):
        y = np.arange(n, dtype=np.int64) % classes
        rng.shuffle(y)
        dy = rng.integers(0, 9, size=n)
        dx = rng.integers(0, 9, size=n)
        rows = dy[:, None] + np.arange(32)[None, :]
        cols = dx[:, None] + np.arange(32)[None, :]
        base = templates[y[:, None, None, None], np.arange(3)[None, :, None, None],
                         rows[:, None, :, None], cols[:, None, None, :]]
        shift = rng.normal(0.0, 0.15, size=(n, 1, 1, 1))
        img = 128.0 + 80.0 * (base + shift) + rng.normal(0.0, noise, size=base.shape)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8), y

    x_train, y_train = make(int(n_train))
    x_test, y_test = make(int(n_test))
    identity = "synthetic:v{}:n={},{}:classes={}:seed={}:noise={!r}".format(
        SYNTHETIC_VERSION, n_train, n_test, classes, seed, float(noise))
    return DataSet("synthetic", classes, x_train, y_train, x_test, y_test, identity,
                   source="generated")


# --------------------------------------------------------------------------------------- digits


def digits(test_fraction: float = 0.2, seed: int = 0) -> DataSet:
    """scikit-learn's bundled handwritten digits (1797 real 8x8 images, 10 classes), upscaled to
    32x32 by pixel repetition, grey replicated to 3 channels, 0..16 mapped to 0..255. The split
    is stratified per class and seeded."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("the digits set needs scikit-learn: pip install -e '.[data]' "
                        "(or another dataset: synthetic, cifar10, cifar100)") from None
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)  # N x 8 x 8, 0..16
    y = np.asarray(bunch.target, dtype=np.int64)
    big = np.kron(images, np.ones((1, 4, 4)))
    grey = np.clip(np.rint(big * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    x = np.repeat(grey[:, None, :, :], 3, axis=1)
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    test_idx: List[int] = []
    for c in range(10):
        members = np.flatnonzero(y == c)
        rng.shuffle(members)
        test_idx.extend(members[: int(round(len(members) * float(test_fraction)))].tolist())
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test_idx] = True
    digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:16]
    identity = "digits:sha256={}:test={!r}:seed={}".format(digest, float(test_fraction), seed)
    return DataSet("digits", 10, x[~is_test], y[~is_test], x[is_test], y[is_test], identity,
                   source="sklearn.datasets.load_digits")


# ---------------------------------------------------------------------------- augment, batches


def augment(x: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Random crop (32, zero padding `pad`) + random horizontal flip, as torchvision's
    RandomCrop(32, padding=4) + RandomHorizontalFlip, for a uint8 NCHW batch. Deterministic given
    the generator's state."""
    n, c, h, w = x.shape
    padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=x.dtype)
    padded[:, :, pad:pad + h, pad:pad + w] = x
    dy = rng.integers(0, 2 * pad + 1, size=n)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    flip = rng.random(n) < 0.5
    cols = dx[:, None] + np.arange(w)[None, :]
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    rows = dy[:, None] + np.arange(h)[None, :]
    return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def normalize(x: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    """uint8 NCHW -> float32 ((x / 255) - mean) / std per channel."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return (x.astype(np.float32) / np.float32(255.0) - m) / s


def batch_indices(n: int, batch: int, rng: Optional[np.random.Generator] = None,
                  drop_last: bool = False) -> List[np.ndarray]:
    """Index arrays of one epoch: shuffled with `rng` (None = in order)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % batch if drop_last else n
    return [order[i:i + batch] for i in range(0, stop, batch) if len(order[i:i + batch])]
