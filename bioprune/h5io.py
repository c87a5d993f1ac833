"""HDF5 helpers: atomic writes (temp name in the same folder, then rename) and schema-checked reads."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from bioprune.errors import BiopruneError

SCHEMA_VERSION = 1
STR = h5py.string_dtype(encoding="utf-8")


def tmp_path_for(path: str | os.PathLike) -> Path:
    """A unique temporary name next to `path`, so the final rename is atomic on the same filesystem."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; rename it to `path` on success, delete it on any error."""
    tmp = tmp_path_for(path)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the final file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike, kind: str, **attrs) -> Iterator[h5py.File]:
    """Open a new HDF5 file for writing under a temporary name, stamped with kind and schema version."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["kind"] = kind
            f.attrs["schema_version"] = SCHEMA_VERSION
            for k, v in attrs.items():
                f.attrs[k] = v
            yield f


def open_h5(path: str | os.PathLike, kind: str, required: Sequence[str] = ()) -> h5py.File:
    """Open an HDF5 file read-only and check its kind, schema version and required datasets."""
    path = Path(path)
    if not path.exists():
        raise BiopruneError(f"{path}: file not found")
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as e:
        raise BiopruneError(f"{path}: not a readable HDF5 file ({e})") from None
    got_kind = f.attrs.get("kind")
    if got_kind != kind:
        f.close()
        raise BiopruneError(f"{path}: expected a bioprune '{kind}' file, found kind={got_kind!r}")
    version = int(f.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        f.close()
        raise BiopruneError(
            f"{path}: schema version {version}, this bioprune reads version {SCHEMA_VERSION}; re-run the stage that wrote it"
        )
    missing = [d for d in required if d not in f]
    if missing:
        f.close()
        raise BiopruneError(f"{path}: missing dataset(s) {', '.join(missing)}")
    return f


def read_str(ds: h5py.Dataset) -> list[str]:
    """Read a UTF-8 string dataset as a list of Python strings."""
    return [s.decode() if isinstance(s, bytes) else s for s in ds.asstr()[()]]


def write_str(f: h5py.Group, name: str, values: Sequence[str]) -> None:
    """Write a list of Python strings as a UTF-8 variable-length dataset."""
    f.create_dataset(name, data=np.array(list(values), dtype=object), dtype=STR)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
