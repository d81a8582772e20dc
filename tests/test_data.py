"""Tests for prunelens.data: preparation from both sources, errors, download."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import pickle
import socket
import struct
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import QuietHandler, serve
from PIL import Image

from prunelens import data
from prunelens.data import (
    CLASSES,
    ArchiveLayoutError,
    BadImageError,
    ChecksumError,
    CorruptArchiveError,
    DataError,
    DownloadError,
    MissingFileError,
    PreparedFileError,
    load_prepared,
    prepare_from_images,
    prepare_from_official,
)

REAL_ARCHIVE = Path("/work/shared/data/cifar10-images.tar.gz")
N_TRAIN, N_TEST = 6, 3  # per class, in the synthetic archives


@pytest.fixture(scope="module")
def images_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "cifar10-images.tar.gz"
    data.make_synthetic_images_archive(
        path, n_train_per_class=N_TRAIN, n_test_per_class=N_TEST, seed=1
    )
    return path


@pytest.fixture(scope="module")
def official_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("official") / "cifar-10-python.tar.gz"
    md5 = data.make_synthetic_official_archive(
        path, n_per_class_train=N_TRAIN, n_per_class_test=N_TEST, seed=2
    )
    return path, md5


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _decoded_members(archive: Path) -> dict[str, list[tuple[int, str, np.ndarray]]]:
    """Independent reading of a JPEG archive: split -> [(label, name, pixels)]."""
    out: dict[str, list[tuple[int, str, np.ndarray]]] = {"train": [], "test": []}
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            if m.isfile():
                _, split, cls, name = m.name.split("/")
                f = tar.extractfile(m)
                assert f is not None
                pixels = np.asarray(Image.open(f).convert("RGB"))
                out[split].append((CLASSES.index(cls), name, pixels))
    return out


def _official_batches(archive: Path) -> dict[str, dict[bytes, object]]:
    with tarfile.open(archive) as tar:
        return {
            Path(m.name).name: pickle.load(tar.extractfile(m), encoding="bytes")  # type: ignore[arg-type]
            for m in tar.getmembers()
            if m.isfile()
        }


def _write_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def _jpeg(size: tuple[int, int] = (32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def _all_classes(split: str) -> dict[str, bytes]:
    return {f"cifar10-images/{split}/{c}/0000.jpg": _jpeg() for c in CLASSES}


# ----------------------------------------------------------------- JPEG source


def test_images_round_trip(images_archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared.npz"
    # The .sha256 file's "hash  name" content is accepted as well as the bare hash.
    prepare_from_images(
        images_archive, out, sha256=f"{_sha256(images_archive)}  whatever.tar.gz\n"
    )
    with np.load(out) as npz:
        assert npz["classes"].tolist() == list(CLASSES)
        assert npz["classes"].dtype.kind == "U"
    expected = _decoded_members(images_archive)
    for split, per_class in (("train", N_TRAIN), ("test", N_TEST)):
        s = load_prepared(out, split)
        n = per_class * len(CLASSES)
        assert s.images.shape == (n, 32, 32, 3)
        assert s.images.dtype == np.uint8
        assert s.labels.dtype == np.int64
        assert s.index.dtype == np.int64
        assert s.index.tolist() == list(range(n))
        # Ordered by (class index, file name), whatever the tar's member order.
        members = sorted(expected[split], key=lambda m: (m[0], m[1]))
        assert s.labels.tolist() == [m[0] for m in members]
        np.testing.assert_array_equal(s.images, np.stack([m[2] for m in members]))


def test_synthetic_images_are_class_dependent(
    images_archive: Path, tmp_path: Path
) -> None:
    out = tmp_path / "prepared.npz"
    prepare_from_images(images_archive, out, sha256=None)
    s = load_prepared(out, "train")
    means = np.stack([s.images[s.labels == c].mean(axis=(0, 1, 2)) for c in range(10)])
    # Nearest class-mean colour classifies most training images correctly.
    pixel_means = s.images.mean(axis=(1, 2))
    dist = ((pixel_means[:, None, :] - means[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == s.labels).mean() > 0.8


def test_synthetic_archives_are_reproducible(tmp_path: Path) -> None:
    # Same seed, same bytes: configs may pin the synthetic archives' checksums.
    a, b, c = (tmp_path / f"{n}.tar.gz" for n in "abc")
    for path in (a, b):
        data.make_synthetic_images_archive(
            path, n_train_per_class=1, n_test_per_class=1
        )
    data.make_synthetic_images_archive(
        c, n_train_per_class=1, n_test_per_class=1, seed=5
    )
    assert _sha256(a) == _sha256(b) != _sha256(c)
    md5s = [
        data.make_synthetic_official_archive(
            tmp_path / f"o{i}.tar.gz", n_per_class_train=1, n_per_class_test=1
        )
        for i in range(2)
    ]
    assert md5s[0] == md5s[1]


def test_images_subset_keeps_original_index(
    images_archive: Path, tmp_path: Path
) -> None:
    full, sub = tmp_path / "full.npz", tmp_path / "sub.npz"
    prepare_from_images(images_archive, full, sha256=None)
    prepare_from_images(
        images_archive, sub, sha256=None, subset_train=20, subset_test=10
    )
    f, s = load_prepared(full, "train"), load_prepared(sub, "train")
    assert np.bincount(s.labels, minlength=10).tolist() == [2] * 10
    # First two of each class; class c starts at c * N_TRAIN in the full split.
    assert s.index.tolist() == [c * N_TRAIN + i for c in range(10) for i in range(2)]
    np.testing.assert_array_equal(s.images, f.images[s.index])
    np.testing.assert_array_equal(s.labels, f.labels[s.index])
    t = load_prepared(sub, "test")
    assert t.index.tolist() == [c * N_TEST for c in range(10)]


@pytest.mark.parametrize("n", [0, -10, 15, 10 * N_TRAIN + 10])
def test_bad_subset_size(images_archive: Path, tmp_path: Path, n: int) -> None:
    out = tmp_path / "prepared.npz"
    with pytest.raises(ValueError, match="subset_train"):
        prepare_from_images(images_archive, out, sha256=None, subset_train=n)
    assert not out.exists()


# ------------------------------------------------------------- official source


def test_official_round_trip(
    official_archive: tuple[Path, str], tmp_path: Path
) -> None:
    archive, md5 = official_archive
    out = tmp_path / "prepared.npz"
    prepare_from_official(archive, out, md5=md5)
    batches = _official_batches(archive)
    for split, names in (
        ("train", [f"data_batch_{i}" for i in range(1, 6)]),
        ("test", ["test_batch"]),
    ):
        s = load_prepared(out, split)
        raw = np.concatenate([batches[b][b"data"] for b in names])  # type: ignore[misc]
        labels = sum((batches[b][b"labels"] for b in names), [])  # type: ignore[arg-type]
        n = len(labels)
        assert n == len(CLASSES) * (N_TRAIN if split == "train" else N_TEST)
        assert s.images.shape == (n, 32, 32, 3)
        assert s.images.dtype == np.uint8
        assert (s.labels.dtype, s.index.dtype) == (np.int64, np.int64)
        # Original order, channel-planar rows turned into HWC.
        assert s.labels.tolist() == labels
        assert s.index.tolist() == list(range(n))
        np.testing.assert_array_equal(
            s.images, raw.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
        )
    assert sorted(set(load_prepared(out, "train").labels.tolist())) == list(range(10))


def test_official_subset(official_archive: tuple[Path, str], tmp_path: Path) -> None:
    archive, md5 = official_archive
    full, sub = tmp_path / "full.npz", tmp_path / "sub.npz"
    prepare_from_official(archive, full, md5=md5)
    prepare_from_official(archive, sub, md5=None, subset_train=30, subset_test=20)
    f, s = load_prepared(full, "train"), load_prepared(sub, "train")
    expected = np.sort(
        np.concatenate([np.flatnonzero(f.labels == c)[:3] for c in range(10)])
    )
    assert s.index.tolist() == expected.tolist()
    np.testing.assert_array_equal(s.images, f.images[s.index])
    np.testing.assert_array_equal(s.labels, f.labels[s.index])
    assert np.bincount(load_prepared(sub, "test").labels).tolist() == [2] * 10


def _py2_pickle(obj: object) -> bytes:
    """Pickle as Python 2's cPickle did for the official batches (protocol 2).

    Python 3 cannot write these (str opcodes for bytes, ``numpy.core`` names).
    """

    def enc(o: object) -> bytes:
        if isinstance(o, bytes):
            if len(o) < 256:
                return b"U" + bytes([len(o)]) + o
            return b"T" + struct.pack("<i", len(o)) + o
        if isinstance(o, int):
            return b"J" + struct.pack("<i", o)
        if isinstance(o, list):
            return b"](" + b"".join(map(enc, o)) + b"e"
        if isinstance(o, dict):
            return b"}(" + b"".join(enc(k) + enc(v) for k, v in o.items()) + b"u"
        assert isinstance(o, np.ndarray)
        assert o.dtype == np.uint8
        dtype = (
            b"cnumpy\ndtype\n" + enc(b"u1") + b"K\x00K\x01\x87R(K\x03" + enc(b"|")
        ) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        return (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n(K\x00t"
            + enc(b"b")
            + b"\x87R(K\x01("
            + b"".join(enc(d) for d in o.shape)
            + b"t"
            + dtype
            + b"\x89"
            + enc(o.tobytes())
            + b"tb"
        )

    return b"\x80\x02" + enc(obj) + b"."


def test_official_python2_pickles(
    official_archive: tuple[Path, str], tmp_path: Path
) -> None:
    # The real batches are Python 2 pickles naming numpy.core.multiarray.
    archive, md5 = official_archive
    py2 = tmp_path / "py2.tar.gz"
    _write_tar(
        py2,
        {
            f"cifar-10-batches-py/{name}": _py2_pickle(batch)
            for name, batch in _official_batches(archive).items()
        },
    )
    prepare_from_official(archive, tmp_path / "a.npz", md5=md5)
    prepare_from_official(py2, tmp_path / "b.npz", md5=None)
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_official_refuses_unsafe_pickle(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    archive, out = tmp_path / "evil.tar.gz", tmp_path / "prepared.npz"
    _write_tar(archive, {"cifar-10-batches-py/data_batch_1": pickle.dumps(Evil())})
    with pytest.raises(CorruptArchiveError, match=r"evil\.tar\.gz.*builtins\.print"):
        prepare_from_official(archive, out, md5=None)
    assert not out.exists()


def test_official_missing_batch(tmp_path: Path) -> None:
    archive, out = tmp_path / "partial.tar.gz", tmp_path / "prepared.npz"
    _write_tar(archive, {"cifar-10-batches-py/readme.html": b"hi"})
    with pytest.raises(ArchiveLayoutError, match=r"partial\.tar\.gz.*data_batch_1"):
        prepare_from_official(archive, out, md5=None)
    assert not out.exists()


# ---------------------------------------------------------------------- errors


def test_missing_archive(tmp_path: Path) -> None:
    out = tmp_path / "prepared.npz"
    with pytest.raises(MissingFileError, match="nope.tar.gz"):
        prepare_from_images(tmp_path / "nope.tar.gz", out, sha256=None)
    with pytest.raises(MissingFileError, match="nope.tar.gz"):
        prepare_from_official(tmp_path / "nope.tar.gz", out, md5=None)
    assert not out.exists()


def test_checksum_mismatch(
    images_archive: Path, official_archive: tuple[Path, str], tmp_path: Path
) -> None:
    out = tmp_path / "prepared.npz"
    with pytest.raises(ChecksumError, match=images_archive.name) as err:
        prepare_from_images(images_archive, out, sha256="0" * 64)
    assert "0" * 64 in str(err.value)
    assert _sha256(images_archive) in str(err.value)
    with pytest.raises(ChecksumError, match=official_archive[0].name):
        prepare_from_official(official_archive[0], out, md5="f" * 32)
    with pytest.raises(ValueError, match="not a sha256 digest"):
        prepare_from_images(images_archive, out, sha256="abc")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("which", ["images", "official"])
def test_truncated_gzip(
    which: str,
    images_archive: Path,
    official_archive: tuple[Path, str],
    tmp_path: Path,
) -> None:
    source = images_archive if which == "images" else official_archive[0]
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    out = tmp_path / "prepared.npz"
    prepare = (
        functools.partial(prepare_from_images, cut, out, sha256=None)
        if which == "images"
        else functools.partial(prepare_from_official, cut, out, md5=None)
    )
    with pytest.raises(CorruptArchiveError, match="cut.tar.gz"):
        prepare()
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tar.gz"]


def test_not_a_gzip(tmp_path: Path) -> None:
    archive, out = tmp_path / "plain.tar.gz", tmp_path / "prepared.npz"
    archive.write_bytes(b"this is not a gzip file at all" * 10)
    with pytest.raises(CorruptArchiveError, match="plain.tar.gz"):
        prepare_from_images(archive, out, sha256=None)
    assert not out.exists()


def test_corrupt_tar_inside_gzip(tmp_path: Path) -> None:
    archive, out = tmp_path / "garbage.tar.gz", tmp_path / "prepared.npz"
    archive.write_bytes(gzip.compress(b"\x01" * 4096))
    with pytest.raises(CorruptArchiveError, match="garbage.tar.gz"):
        prepare_from_images(archive, out, sha256=None)
    assert not out.exists()


def test_non_image_member(tmp_path: Path) -> None:
    archive, out = tmp_path / "text.tar.gz", tmp_path / "prepared.npz"
    members = _all_classes("train") | _all_classes("test")
    members["cifar10-images/train/cat/x.jpg"] = b"just some text\n"
    _write_tar(archive, members)
    with pytest.raises(BadImageError, match=r"text\.tar\.gz.*train/cat/x\.jpg"):
        prepare_from_images(archive, out, sha256=None)
    assert not out.exists()


def test_wrong_size_image(tmp_path: Path) -> None:
    archive, out = tmp_path / "big.tar.gz", tmp_path / "prepared.npz"
    members = _all_classes("train") | _all_classes("test")
    members["cifar10-images/test/dog/0001.jpg"] = _jpeg((64, 48))
    _write_tar(archive, members)
    with pytest.raises(BadImageError, match=r"big\.tar\.gz.*test/dog/0001\.jpg.*64x48"):
        prepare_from_images(archive, out, sha256=None)
    assert not out.exists()


def test_unknown_class_directory(tmp_path: Path) -> None:
    archive, out = tmp_path / "zoo.tar.gz", tmp_path / "prepared.npz"
    members = _all_classes("train") | _all_classes("test")
    members["cifar10-images/train/unicorn/0000.jpg"] = _jpeg()
    _write_tar(archive, members)
    with pytest.raises(ArchiveLayoutError, match=r"zoo\.tar\.gz.*'unicorn'"):
        prepare_from_images(archive, out, sha256=None)
    assert not out.exists()


def test_unexpected_member_path(tmp_path: Path) -> None:
    archive, out = tmp_path / "flat.tar.gz", tmp_path / "prepared.npz"
    _write_tar(archive, {"cifar10-images/0000.jpg": _jpeg()})
    with pytest.raises(ArchiveLayoutError, match=r"flat\.tar\.gz.*0000\.jpg"):
        prepare_from_images(archive, out, sha256=None)
    assert not out.exists()


def test_split_without_images(tmp_path: Path) -> None:
    archive, out = tmp_path / "notest.tar.gz", tmp_path / "prepared.npz"
    _write_tar(archive, _all_classes("train"))
    with pytest.raises(ArchiveLayoutError, match=r"notest\.tar\.gz.*test split"):
        prepare_from_images(archive, out, sha256=None)
    assert not out.exists()


def test_split_missing_a_class(tmp_path: Path) -> None:
    archive, out = tmp_path / "nocat.tar.gz", tmp_path / "prepared.npz"
    members = _all_classes("train") | _all_classes("test")
    del members["cifar10-images/test/cat/0000.jpg"]
    _write_tar(archive, members)
    with pytest.raises(ArchiveLayoutError, match=r"nocat\.tar\.gz.*test split.*cat"):
        prepare_from_images(archive, out, sha256=None)
    assert not out.exists()


def test_load_prepared_errors(images_archive: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="absent.npz"):
        load_prepared(tmp_path / "absent.npz", "train")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(PreparedFileError, match="junk.npz"):
        load_prepared(junk, "train")
    good = tmp_path / "good.npz"
    prepare_from_images(images_archive, good, sha256=None)
    with np.load(good) as npz:
        arrays = dict(npz)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **(arrays | {"train_images": arrays["train_images"].astype(float)}))
    with pytest.raises(PreparedFileError, match=r"bad\.npz.*images float64"):
        load_prepared(bad, "train")
    load_prepared(bad, "test")  # the other split is still fine
    partial = tmp_path / "partial.npz"
    np.savez(partial, **{k: v for k, v in arrays.items() if k != "test_index"})
    with pytest.raises(PreparedFileError, match=r"partial\.npz.*test_index"):
        load_prepared(partial, "test")
    with pytest.raises(ValueError, match="split"):
        load_prepared(good, "val")  # type: ignore[arg-type]


def test_real_archive_checksum() -> None:
    expected = (REAL_ARCHIVE.parent / f"{REAL_ARCHIVE.name}.sha256").read_text()
    assert _sha256(REAL_ARCHIVE) == expected.split()[0]


# -------------------------------------------------------------------- download


class _Handler(QuietHandler):
    """Serves a directory; /flaky/<file> fails with 503 on its first request."""

    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path.startswith("/flaky/"):
            if self.requests.count(self.path) == 1:
                self.send_error(503)
                return
            self.path = self.path.removeprefix("/flaky")
        super().do_GET()


@pytest.fixture
def server(
    official_archive: tuple[Path, str],
) -> Iterator[tuple[str, list[str]]]:
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    with serve(official_archive[0].parent, handler) as url:
        yield url, requests


def test_download_and_prepare(
    server: tuple[str, list[str]], official_archive: tuple[Path, str], tmp_path: Path
) -> None:
    url, _ = server
    archive, md5 = official_archive
    out = tmp_path / "dl" / archive.name
    data.download(f"{url}/{archive.name}", out, md5=md5, timeout=5, backoff=0.01)
    assert out.read_bytes() == archive.read_bytes()
    assert [p.name for p in out.parent.iterdir()] == [archive.name]
    prepared = tmp_path / "prepared.npz"
    prepare_from_official(out, prepared, md5=md5)
    assert len(load_prepared(prepared, "test").labels) == 10 * N_TEST


def test_download_retries_transient_errors(
    server: tuple[str, list[str]], official_archive: tuple[Path, str], tmp_path: Path
) -> None:
    url, requests = server
    archive, md5 = official_archive
    out = tmp_path / archive.name
    data.download(f"{url}/flaky/{archive.name}", out, md5=md5, timeout=5, backoff=0.01)
    assert len(requests) == 2
    assert out.read_bytes() == archive.read_bytes()


def test_download_md5_mismatch_fails_after_one_download(
    server: tuple[str, list[str]], official_archive: tuple[Path, str], tmp_path: Path
) -> None:
    url, requests = server
    archive, _ = official_archive
    out = tmp_path / archive.name
    with pytest.raises(ChecksumError, match=r"md5 mismatch.*not retried") as err:
        data.download(
            f"{url}/{archive.name}", out, md5="0" * 32, retries=3, backoff=0.01
        )
    assert str(out) in str(err.value)
    assert "\n" not in str(err.value)
    assert len(requests) == 1  # the same server would send the same bytes
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", held
    finally:
        done.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def test_download_that_never_answers_is_bounded_and_logs_progress(
    silent_server: tuple[str, list[socket.socket]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, held = silent_server
    out = tmp_path / "x.tar.gz"
    caplog.set_level("INFO", logger="prunelens.data")
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"x\.tar\.gz.*within the 2 s bound") as err:
        data.download(
            f"{url}/x.tar.gz", out, md5="0" * 32, retries=5, deadline=2,
            backoff=0.01, progress_every=0.3,
        )  # fmt: skip
    # The bound holds with all tries counted (socket timeouts are cut to it).
    assert time.monotonic() - started < 4
    assert "timed out" in str(err.value)
    assert "\n" not in str(err.value)
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith(f"downloading {url}/x.tar.gz (try 1 of 6") for m in messages
    )
    assert any(m.startswith("still waiting for 127.0.0.1:") for m in messages)
    assert held  # it did connect
    assert list(tmp_path.iterdir()) == []


def test_download_404_fails_without_retrying(
    server: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, requests = server
    out = tmp_path / "missing.tar.gz"
    with pytest.raises(DataError, match=r"missing\.tar\.gz.*HTTP 404"):
        data.download(
            f"{url}/missing.tar.gz", out, md5="0" * 32, retries=2, backoff=0.01
        )
    assert len(requests) == 1  # a client error cannot be fixed by retrying
    assert list(tmp_path.iterdir()) == []


def test_download_unreachable(tmp_path: Path) -> None:
    # A port just bound and released: nothing listens, so connecting is refused.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "x.tar.gz"
    with pytest.raises(DownloadError, match=r"x\.tar\.gz.*after 3 tries"):
        data.download(
            f"http://127.0.0.1:{port}/x.tar.gz",
            out,
            md5="0" * 32,
            retries=2,
            timeout=2,
            backoff=0.01,
        )
    assert list(tmp_path.iterdir()) == []
