"""CIFAR-10 and CIFAR-100: fetch, check and convert to one prepared ``.npz`` file.

``DATASETS`` names each data set's classes and official archive layout. Two
sources give the same prepared format (the JPEG archive exists for CIFAR-10
only):

* the JPEG archive (``cifar10-images/{train,test}/<class>/NNNN.jpg``), the
  source on machines without internet; each split is ordered by (class index,
  file name) and ``index`` is the position in that order (0..49999 / 0..9999);
* the official ``cifar-10-python.tar.gz`` (pickled batches) or
  ``cifar-100-python.tar.gz`` (``train``, ``test``, ``meta``; the fine labels
  are the labels); original order, ``index`` is the position within the split
  (CIFAR-10's batches 1..5 concatenated).

The prepared file holds ``train_images`` / ``test_images`` (uint8, N x 32 x 32 x
3, HWC RGB), ``train_labels`` / ``test_labels`` (int64, 0..C-1),
``train_index`` / ``test_index`` (int64) and ``classes`` (unicode, the C names
in label order); CIFAR-100's also ``superclasses`` (the 20 coarse names) and
``class_superclass`` (int64 (100,), each class's superclass). The ``train_`` /
``test_`` prefixes are the split flag. A quick-scale subset keeps the first
``n // C`` examples of each class in index order, and those keep their
original ``index`` values, so results at any scale refer to the same examples.

Every failure raises a :class:`DataError` subclass whose message names the file.
"""

from __future__ import annotations

import colorsys
import gzip
import hashlib
import http.client
import io
import logging
import os
import pickle
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

from prunelens.datasets import CLASSES, DATASETS, Dataset, dataset_info
from prunelens.runtime import DiskFullError, atomic_path

log = logging.getLogger("prunelens.data")

__all__ = [
    "CLASSES",
    "DATASETS",
    "ArchiveLayoutError",
    "BadImageError",
    "ChecksumError",
    "CorruptArchiveError",
    "DataError",
    "Dataset",
    "DownloadError",
    "MissingFileError",
    "PreparedFileError",
    "Split",
    "dataset_info",
    "download",
    "load_prepared",
    "prepare",
    "make_synthetic_images_archive",
    "make_synthetic_official_archive",
    "prepare_from_images",
    "prepare_from_official",
]

IMAGE_SHAPE = (32, 32, 3)
SPLITS = ("train", "test")
OFFICIAL_DIR = DATASETS["cifar10"].official_dir
OFFICIAL_TRAIN_BATCHES = DATASETS["cifar10"].train_members
OFFICIAL_TEST_BATCH = DATASETS["cifar10"].test_member
OFFICIAL_META = DATASETS["cifar10"].meta_member
IMAGES_TOP = "cifar10-images"
_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # images, labels, index

# Errors a damaged gzip/tar stream can surface as, depending on where it breaks.
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)
# PIL reports undecodable bytes with any of these.
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class DataError(RuntimeError):
    """Base of every data failure; the message names the offending file."""


class MissingFileError(DataError):
    """An archive or prepared file does not exist."""


class ChecksumError(DataError):
    """A file's checksum differs from the expected one."""


class CorruptArchiveError(DataError):
    """A truncated or otherwise unreadable gzip/tar/pickle archive."""


class ArchiveLayoutError(DataError):
    """Readable archive with unexpected content (paths, classes, empty splits)."""


class BadImageError(DataError):
    """An archive member that is not a decodable 32x32 image."""


class DownloadError(DataError):
    """A download that failed after its last try."""


class PreparedFileError(DataError):
    """A prepared ``.npz`` file that is unreadable or malformed."""


@dataclass(frozen=True)
class Split:
    """One split of a prepared file: images (N,32,32,3) uint8, labels, index,
    the class names and (CIFAR-100) superclass names and each class's one."""

    images: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    classes: tuple[str, ...] = CLASSES
    superclasses: tuple[str, ...] = ()
    superclass_of: tuple[int, ...] = ()

    @property
    def n_classes(self) -> int:
        return len(self.classes)


# --------------------------------------------------------------------- checks


def _expected_digest(expected: str, algorithm: str) -> str:
    """Accept a bare hex digest or a ``sha256sum``-style line ("hash  name")."""
    # The name in a "hash  name" line is ignored: the archive may be renamed or
    # copied, and the hash alone identifies the content.
    tokens = expected.split()
    size = hashlib.new(algorithm).digest_size * 2
    digest = tokens[0].lower() if tokens else ""
    if len(digest) != size or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a {algorithm} digest: {expected!r}")
    return digest


def _file_digest(path: Path, algorithm: str) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _check_archive(path: Path, expected: str | None, algorithm: str) -> None:
    if not path.is_file():
        raise MissingFileError(f"archive not found: {path}")
    if expected is None:
        return
    want = _expected_digest(expected, algorithm)
    got = _file_digest(path, algorithm)
    if got != want:
        raise ChecksumError(
            f"{path}: {algorithm} mismatch (expected {want}, got {got})"
        )


def _check_subset(name: str, n: int | None, n_classes: int = len(CLASSES)) -> None:
    # Checked before the (slow) archive read so a bad config fails at once.
    if n is not None and (n <= 0 or n % n_classes != 0):
        raise ValueError(
            f"subset_{name} must be a positive multiple of {n_classes}, got {n}"
        )


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn low-level gzip/tar errors into a CorruptArchiveError naming ``path``."""
    try:
        yield
    except _ARCHIVE_ERRORS as exc:
        raise CorruptArchiveError(
            f"{path}: cannot read archive, truncated or corrupt? "
            f"({type(exc).__name__}: {exc})"
        ) from exc


# -------------------------------------------------------------------- subsets


def _subset_rows(
    split: str,
    labels: np.ndarray,
    n: int | None,
    classes: tuple[str, ...] = CLASSES,
) -> np.ndarray:
    """Rows (= indices) of the first ``n // C`` examples of each class, sorted.

    ``labels`` is the full split in index order; None keeps every row.
    """
    if n is None:
        return np.arange(len(labels), dtype=np.int64)
    if n > len(labels):
        raise ValueError(
            f"subset_{split}={n} exceeds the {split} split ({len(labels)} examples)"
        )
    per_class = n // len(classes)
    keep = []
    for label, name in enumerate(classes):
        rows = np.flatnonzero(labels == label)[:per_class]
        if len(rows) < per_class:
            raise ValueError(
                f"subset_{split}={n} needs {per_class} {name!r} examples, "
                f"the {split} split has {len(rows)}"
            )
        keep.append(rows)
    return np.sort(np.concatenate(keep)).astype(np.int64)


# --------------------------------------------------------------------- output


def _write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write via a temp file beside ``path`` and ``os.replace``: never partial."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _write_npz(out: Path, arrays: dict[str, np.ndarray]) -> None:
    # Uncompressed: decoded pixels barely compress and loading stays fast.
    _write_atomically(out, lambda f: np.savez(f, **arrays))


def _prepared_arrays(
    splits: dict[str, _Arrays], dataset: Dataset = DATASETS["cifar10"]
) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "classes": np.array(dataset.classes, dtype=np.str_)
    }
    if dataset.superclasses:
        arrays["superclasses"] = np.array(dataset.superclasses, dtype=np.str_)
        arrays["class_superclass"] = np.array(dataset.superclass_of, dtype=np.int64)
    for split, (images, labels, index) in splits.items():
        arrays[f"{split}_images"] = np.ascontiguousarray(images, dtype=np.uint8)
        arrays[f"{split}_labels"] = labels.astype(np.int64)
        arrays[f"{split}_index"] = index.astype(np.int64)
    return arrays


# ------------------------------------------------------------- JPEG archive


def _decode_image(archive: Path, member: str, data: bytes) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if (height, width) != IMAGE_SHAPE[:2]:
                raise BadImageError(
                    f"{archive}: member {member!r} is {width}x{height}, "
                    f"expected {IMAGE_SHAPE[1]}x{IMAGE_SHAPE[0]}"
                )
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except _IMAGE_ERRORS as exc:
        raise BadImageError(
            f"{archive}: member {member!r} is not a decodable image ({exc})"
        ) from exc


def prepare_from_images(
    archive: Path | str,
    out: Path | str,
    *,
    sha256: str | None,
    subset_train: int | None = None,
    subset_test: int | None = None,
) -> None:
    """Convert the JPEG archive to a prepared ``.npz`` (see module docstring).

    ``sha256`` is the hex digest or the content of the ``.sha256`` file; None
    skips the check. With a subset only the kept members are decoded, so a bad
    image elsewhere goes unnoticed (the checksum still covers the whole file).
    """
    archive, out = Path(archive), Path(out)
    _check_subset("train", subset_train)
    _check_subset("test", subset_test)
    _check_archive(archive, sha256, "sha256")
    # (split, class index, file name) -> (member name, encoded bytes)
    found: dict[tuple[str, int, str], tuple[str, bytes]] = {}
    with _reading(archive), tarfile.open(archive, mode="r|gz") as tar:
        # Streamed: one pass over the gzip. Decoding waits until the subset is
        # known: it is most of the time, and quick scale needs a tenth.
        for member in tar:
            if not member.isfile():
                continue
            parts = PurePosixPath(member.name).parts
            if len(parts) != 4 or parts[0] != IMAGES_TOP or parts[1] not in SPLITS:
                raise ArchiveLayoutError(
                    f"{archive}: unexpected member {member.name!r} "
                    f"(expected {IMAGES_TOP}/{{train,test}}/<class>/<file>)"
                )
            _, split, cls, name = parts
            if cls not in CLASSES:
                raise ArchiveLayoutError(
                    f"{archive}: unknown class directory {cls!r} "
                    f"in member {member.name!r}"
                )
            key = (split, CLASSES.index(cls), name)
            if key in found:
                raise ArchiveLayoutError(f"{archive}: duplicate member {member.name!r}")
            f = tar.extractfile(member)
            assert f is not None  # isfile() members always have a file object
            found[key] = (member.name, f.read())

    splits: dict[str, _Arrays] = {}
    for split, subset in zip(SPLITS, (subset_train, subset_test), strict=True):
        keys = sorted(k for k in found if k[0] == split)
        labels = np.array([k[1] for k in keys], dtype=np.int64)
        _check_split_classes(archive, split, labels.tolist())
        rows = _subset_rows(split, labels, subset)
        images = np.stack(
            [_decode_image(archive, *found[keys[i]]) for i in rows.tolist()]
        )
        splits[split] = (images, labels[rows], rows)
    _write_npz(out, _prepared_arrays(splits))


def _check_split_classes(
    archive: Path, split: str, labels: list[int], classes: tuple[str, ...] = CLASSES
) -> None:
    if not labels:
        raise ArchiveLayoutError(f"{archive}: the {split} split has no images")
    present = set(labels)
    missing = [c for i, c in enumerate(classes) if i not in present]
    if missing:
        raise ArchiveLayoutError(
            f"{archive}: the {split} split has no images of {', '.join(missing)}"
        )


# ---------------------------------------------------------- official archive


class _BatchUnpickler(pickle.Unpickler):
    """Unpickle only what CIFAR batches hold: dicts, lists, numpy arrays."""

    # Anything else in the pickle (e.g. os.system) is refused: the md5 may be
    # skipped, and a pickle can otherwise run arbitrary code.
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        # Old pickles name numpy.core, which numpy 2 only keeps as a shim.
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def _load_batch(archive: Path, member: str, f: IO[bytes]) -> dict[bytes, Any]:
    try:
        # encoding="bytes": the official batches are Python 2 pickles.
        batch = _BatchUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise CorruptArchiveError(
            f"{archive}: member {member!r} is not a CIFAR batch ({exc})"
        ) from exc
    if not isinstance(batch, dict):
        raise CorruptArchiveError(f"{archive}: member {member!r} is not a dict")
    return batch


def _batch_arrays(
    archive: Path,
    member: str,
    batch: dict[bytes, Any],
    labels_key: bytes = b"labels",
    n_classes: int = len(CLASSES),
) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[labels_key], dtype=np.int64)
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptArchiveError(
            f"{archive}: member {member!r} lacks data/labels ({exc})"
        ) from exc
    n = len(labels)
    if data.dtype != np.uint8 or data.shape != (n, int(np.prod(IMAGE_SHAPE))):
        raise CorruptArchiveError(
            f"{archive}: member {member!r} has data {data.dtype} {data.shape}, "
            f"expected uint8 ({n}, {int(np.prod(IMAGE_SHAPE))})"
        )
    if n and (labels.min() < 0 or labels.max() >= n_classes):
        raise CorruptArchiveError(
            f"{archive}: member {member!r} has labels not in 0..{n_classes - 1}"
        )
    # Rows are channel-planar (1024 R, 1024 G, 1024 B); store HWC like the JPEGs.
    return data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _meta_names(meta: dict[bytes, Any], key: bytes) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else n for n in meta.get(key, [])]


def _superclass_of(
    archive: Path, ds: Dataset, member: str, batch: dict[bytes, Any], fine: np.ndarray
) -> None:
    """Each fine label's coarse label in ``batch`` is the dataset's one."""
    try:
        coarse = np.asarray(batch[b"coarse_labels"], dtype=np.int64)
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptArchiveError(
            f"{archive}: member {member!r} lacks coarse_labels ({exc})"
        ) from exc
    want = np.asarray(ds.superclass_of, dtype=np.int64)
    if coarse.shape != fine.shape or not np.array_equal(coarse, want[fine]):
        raise ArchiveLayoutError(
            f"{archive}: member {member!r} has coarse_labels that do not match "
            "the fine labels' superclasses"
        )


def prepare_from_official(
    archive: Path | str,
    out: Path | str,
    *,
    md5: str | None,
    subset_train: int | None = None,
    subset_test: int | None = None,
    dataset: str = "cifar10",
) -> None:
    """Convert the official ``cifar-10-python.tar.gz`` or
    ``cifar-100-python.tar.gz`` (``dataset``) to a prepared ``.npz``."""
    archive, out = Path(archive), Path(out)
    ds = dataset_info(dataset)
    _check_subset("train", subset_train, ds.n_classes)
    _check_subset("test", subset_test, ds.n_classes)
    _check_archive(archive, md5, "md5")
    top = ds.official_dir
    wanted = {*ds.train_members, ds.test_member, ds.meta_member}
    batches: dict[str, dict[bytes, Any]] = {}
    with _reading(archive), tarfile.open(archive, mode="r|gz") as tar:
        for member in tar:
            path = PurePosixPath(member.name)
            if not member.isfile() or path.parent.name != top:
                continue
            if path.name in wanted:
                f = tar.extractfile(member)
                assert f is not None  # isfile() members always have a file object
                batches[path.name] = _load_batch(archive, member.name, f)
    missing = sorted(wanted - batches.keys())
    if missing:
        raise ArchiveLayoutError(
            f"{archive}: missing {', '.join(f'{top}/{m}' for m in missing)}"
        )
    meta = batches[ds.meta_member]
    checks = [(ds.names_key, ds.classes)]
    if ds.superclasses:
        checks.append((b"coarse_label_names", ds.superclasses))
    for key, expected in checks:
        names = _meta_names(meta, key)
        if tuple(names) != expected:
            shown = (
                names if len(names) <= 20 else [*names[:3], "...", f"({len(names)})"]
            )
            raise ArchiveLayoutError(
                f"{archive}: {top}/{ds.meta_member} names {key.decode()} {shown}, "
                f"expected the {len(expected)} of {ds.name}"
            )

    splits: dict[str, _Arrays] = {}
    members = {"train": ds.train_members, "test": (ds.test_member,)}
    for split, subset in zip(SPLITS, (subset_train, subset_test), strict=True):
        parts = [
            _batch_arrays(archive, m, batches[m], ds.labels_key, ds.n_classes)
            for m in members[split]
        ]
        if ds.superclasses:
            for m, (_, fine) in zip(members[split], parts, strict=True):
                _superclass_of(archive, ds, m, batches[m], fine)
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        _check_split_classes(archive, split, labels.tolist(), ds.classes)
        rows = _subset_rows(split, labels, subset, ds.classes)
        splits[split] = (images[rows], labels[rows], rows)
    _write_npz(out, _prepared_arrays(splits, ds))


# ------------------------------------------------------------------- loading


def load_prepared(
    path: Path | str,
    split: Literal["train", "test"],
    dataset: str | None = None,
) -> Split:
    """Load one split of a prepared file, checking dtypes and shapes, and
    that its classes are those of ``dataset`` (None: of any known data set)."""
    path = Path(path)
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not path.is_file():
        raise MissingFileError(f"prepared file not found: {path}")
    keys = (f"{split}_images", f"{split}_labels", f"{split}_index", "classes")
    extra = ("superclasses", "class_superclass")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in keys + extra if k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise PreparedFileError(f"{path}: unreadable prepared file ({exc})") from exc
    absent = [k for k in keys if k not in arrays]
    if absent:
        raise PreparedFileError(f"{path}: missing arrays {absent}")
    images, labels, index, classes = (arrays[k] for k in keys)

    names = tuple(classes.tolist()) if classes.ndim == 1 else ()
    known = [d for d in DATASETS.values() if d.classes == names]
    if dataset is not None:
        known = [d for d in known if d.name == dataset]
    ds = known[0] if known else None
    n = len(labels)
    n_classes = len(names)
    problems = []
    if images.dtype != np.uint8 or images.shape != (n, *IMAGE_SHAPE):
        problems.append(f"images {images.dtype} {images.shape}")
    if labels.dtype != np.int64 or labels.ndim != 1:
        problems.append(f"labels {labels.dtype} {labels.shape}")
    elif n and (labels.min() < 0 or labels.max() >= n_classes):
        problems.append(f"labels outside 0..{n_classes - 1}")
    if index.dtype != np.int64 or index.shape != (n,):
        problems.append(f"index {index.dtype} {index.shape}")
    if ds is None:
        shown = list(names) if len(names) <= 10 else [*names[:3], "..."]
        want = dataset or " or ".join(DATASETS)
        problems.append(f"classes {shown} ({n_classes}) are not {want}'s")
    elif ds.superclasses:
        sup = arrays.get("superclasses")
        of = arrays.get("class_superclass")
        if sup is None or tuple(sup.tolist()) != ds.superclasses:
            problems.append(f"superclasses are not {ds.name}'s")
        if of is None or of.dtype != np.int64 or of.shape != (n_classes,):
            problems.append("class_superclass is not int64 (C,)")
        elif of.min() < 0 or of.max() >= len(ds.superclasses):
            problems.append("class_superclass outside the superclasses")
    if problems:
        raise PreparedFileError(
            f"{path}: malformed {split} split: {'; '.join(problems)} "
            f"(expected uint8 (N, 32, 32, 3), int64 (N,) labels in 0..C-1 and "
            f"index, and a known data set's classes)"
        )
    assert ds is not None
    return Split(
        images=images,
        labels=labels,
        index=index,
        classes=ds.classes,
        superclasses=ds.superclasses,
        superclass_of=(
            tuple(arrays["class_superclass"].tolist()) if ds.superclasses else ()
        ),
    )


# ------------------------------------------------------------------ download


def download(
    url: str,
    out: Path | str,
    *,
    md5: str,
    retries: int = 3,
    deadline: float = 300,
    timeout: float = 60,
    backoff: float = 2.0,
    progress_every: float = 10,
) -> None:
    """Download ``url`` to ``out``, md5-checked, retrying transient failures.

    At most ``retries`` tries after the first, all within ``deadline`` seconds
    (config ``data.download_timeout``): each try's socket timeout is the
    smaller of ``timeout`` and the time left, and waits between tries grow as
    ``backoff * 2**k`` seconds. A checksum mismatch fails at once (another
    copy from the same server would not differ), as do client errors (HTTP
    4xx except 408/429). A log line every ``progress_every`` seconds says what
    is being waited for. Nothing is left at ``out`` or beside it unless the
    download succeeds.
    """
    out = Path(out)
    want = _expected_digest(md5, "md5")
    out.parent.mkdir(parents=True, exist_ok=True)
    stop_at = time.monotonic() + deadline
    failures: list[str] = []
    tries = 0
    for attempt in range(retries + 1):
        if attempt:
            wait = backoff * 2 ** (attempt - 1)
            if time.monotonic() + wait >= stop_at:
                failures.append(f"no time left for another try within {deadline:g} s")
                break
            time.sleep(wait)
        left = stop_at - time.monotonic()
        if left <= 0:
            break
        log.info(
            "downloading %s (try %d of %d, %.0f s left of the %g s bound)",
            url, attempt + 1, retries + 1, left, deadline,
        )  # fmt: skip
        tries += 1
        try:
            # Moved into place only when the md5 matches; removed otherwise.
            with atomic_path(out) as tmp, tmp.open("wb") as f:
                got = _fetch(url, f, min(timeout, left), out.name, progress_every)
                if got != want:
                    raise ChecksumError(
                        f"{out}: md5 mismatch downloading {url} (expected {want}, "
                        f"got {got}); not retried: a wrong or corrupt file at the "
                        "server, or a wrong data.official_md5"
                    )
            return
        except urllib.error.HTTPError as exc:
            failures.append(f"HTTP {exc.code} {exc.reason}")
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                break
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, DiskFullError):
                raise
            failures.append(f"{type(exc).__name__}: {exc}")
    raise DownloadError(
        f"download of {url} to {out} failed after {tries} "
        f"tr{'y' if tries == 1 else 'ies'} within the {deadline:g} s bound "
        f"(data.download_timeout): {'; '.join(failures)}"
    )


def _fetch(url: str, f: IO[bytes], timeout: float, label: str, every: float) -> str:
    """Stream ``url`` into ``f``, logging progress every ``every`` s; the md5."""
    digest = hashlib.md5()
    host = urllib.parse.urlsplit(url).netloc
    started = time.monotonic()
    # A blocked connect or first read is silent: a heartbeat says so meanwhile.
    answered = threading.Event()

    def heartbeat() -> None:
        while not answered.wait(every):
            log.info(
                "still waiting for %s (%.0f s; this try gives up after %.0f s)",
                host, time.monotonic() - started, timeout,
            )  # fmt: skip

    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            answered.set()
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            got, last = 0, time.monotonic()
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=label,
                disable=None,  # off when stderr is not a terminal (logs, Slurm)
            ) as bar:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                    got += len(chunk)
                    if time.monotonic() - last >= every:
                        last = time.monotonic()
                        rate = got / max(last - started, 1e-9) / 1e6
                        of = f" of {total / 1e6:.1f}" if total else ""
                        log.info(
                            "%s: %.1f%s MB (%.1f MB/s)", label, got / 1e6, of, rate
                        )
    finally:
        answered.set()
    return digest.hexdigest()


# ------------------------------------------------------- synthetic archives


def _synthetic_images(
    rng: np.random.Generator, labels: np.ndarray, n_classes: int = len(CLASSES)
) -> Iterator[np.ndarray]:
    """Noisy images around a class-specific colour, so a classifier can learn."""
    for label in labels:
        # Evenly spaced hues: classes differ in colour, not in scale.
        rgb = colorsys.hsv_to_rgb(label / n_classes, 0.8, 0.8)
        mean = np.array(rgb) * 255 + rng.normal(0, 20)
        noise = rng.normal(0, 40, IMAGE_SHAPE)
        yield np.clip(mean + noise, 0, 255).astype(np.uint8)


def _write_tar_gz(path: Path, dirs: list[str], files: list[tuple[str, bytes]]) -> None:
    """Write a .tar.gz whose bytes depend only on its content (no times, names)."""

    def write(f: IO[bytes]) -> None:
        # mtime=0 and an empty name in the gzip header (and TarInfo's zero
        # mtimes) make the archive, hence its checksum, reproducible.
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w") as tar,
        ):
            for name in dirs:
                info = tarfile.TarInfo(name)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            for name, data in files:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

    _write_atomically(path, write)


def make_synthetic_images_archive(
    path: Path | str,
    *,
    n_train_per_class: int,
    n_test_per_class: int,
    seed: int = 0,
) -> None:
    """Write a small archive in the JPEG archive's layout (for tests)."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    members: list[tuple[str, bytes]] = []
    for split, n in (("train", n_train_per_class), ("test", n_test_per_class)):
        for label, cls in enumerate(CLASSES):
            labels = np.full(n, label)
            for i, pixels in enumerate(_synthetic_images(rng, labels)):
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
                members.append(
                    (f"{IMAGES_TOP}/{split}/{cls}/{i:04d}.jpg", buf.getvalue())
                )
    dirs = [IMAGES_TOP, *(f"{IMAGES_TOP}/{split}" for split in SPLITS)]
    dirs += [f"{IMAGES_TOP}/{split}/{cls}" for split in SPLITS for cls in CLASSES]
    # Shuffled member order: readers must sort, not rely on the tar's order.
    _write_tar_gz(path, dirs, [members[i] for i in rng.permutation(len(members))])


def make_synthetic_official_archive(
    path: Path | str,
    *,
    n_per_class_train: int,
    n_per_class_test: int,
    seed: int = 0,
    dataset: str = "cifar10",
) -> str:
    """Write a small archive in the official pickle layout of ``dataset``
    (``cifar-10-python.tar.gz`` or ``cifar-100-python.tar.gz``, for tests);
    return its md5."""
    path = Path(path)
    ds = dataset_info(dataset)
    rng = np.random.default_rng(seed)
    superclass_of = np.asarray(ds.superclass_of, dtype=np.int64)

    def batch(labels: np.ndarray, title: str) -> bytes:
        images = np.stack(list(_synthetic_images(rng, labels, ds.n_classes)))
        content = {
            b"batch_label": title.encode(),
            ds.labels_key: labels.tolist(),
            # Channel-planar rows, as in the official release.
            b"data": images.transpose(0, 3, 1, 2).reshape(len(labels), -1),
            b"filenames": [f"synthetic_{i}.png".encode() for i in range(len(labels))],
        }
        if ds.superclasses:
            content[b"coarse_labels"] = superclass_of[labels].tolist()
        # Bytes keys mimic the Python 2 pickles read with encoding="bytes".
        return pickle.dumps(content, protocol=4)

    # Shuffled labels: "original order" must not coincide with class order.
    classes = np.arange(ds.n_classes)
    train = rng.permutation(np.repeat(classes, n_per_class_train))
    test = rng.permutation(np.repeat(classes, n_per_class_test))
    n_batches = len(ds.train_members)
    blobs = {
        name: batch(labels, f"training batch {i + 1} of {n_batches}")
        for i, (name, labels) in enumerate(
            zip(ds.train_members, np.array_split(train, n_batches), strict=True)
        )
    }
    blobs[ds.test_member] = batch(test, "testing batch 1 of 1")
    meta: dict[bytes, Any] = {ds.names_key: [c.encode() for c in ds.classes]}
    if ds.superclasses:
        meta[b"coarse_label_names"] = [c.encode() for c in ds.superclasses]
    else:
        meta[b"num_cases_per_batch"] = len(train) // n_batches
        meta[b"num_vis"] = int(np.prod(IMAGE_SHAPE))
    blobs[ds.meta_member] = pickle.dumps(meta, protocol=4)

    files = [(f"{ds.official_dir}/{name}", data) for name, data in blobs.items()]
    _write_tar_gz(path, [ds.official_dir], files)
    return _file_digest(path, "md5")


def prepare(
    source: Literal["images", "official"],
    archive: Path | str,
    out: Path | str,
    *,
    sha256: str | None,
    md5: str | None,
    subset_train: int | None = None,
    subset_test: int | None = None,
    dataset: str = "cifar10",
) -> None:
    """Prepare ``dataset`` (``data.dataset``) from either source
    (``data.source``; the JPEG archive holds CIFAR-10 only)."""
    subsets = {"subset_train": subset_train, "subset_test": subset_test}
    if source == "official":
        prepare_from_official(archive, out, md5=md5, dataset=dataset, **subsets)
    elif dataset != "cifar10":
        raise ValueError(f"the JPEG archive holds cifar10, not {dataset}")
    else:
        prepare_from_images(archive, out, sha256=sha256, **subsets)
