"""A dataset describes itself: `data/raw/<name>.manifest.json`, written beside `<name>.npz` when the dataset is
imported and versioned with it by DVC (`data.dvc` tracks all of data/raw). It holds the facts the pipeline needs
about the images (size, channels, classes and their names), how many there are, where they came from and a hash of
their content. `params.yaml` does not repeat these facts: `config.load_params` reads them from here, and a value
stated in the params that contradicts the manifest is an error naming both.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from gen_platform.data.arrays import CHUNK_BYTES, ImageArrays, NpzImages, npz_writer
from gen_platform.errors import ConfigError, DataError

FACTS = ("image_size", "channels", "num_classes")  # the `data.*` params a manifest supplies
RAW_DIR = Path("data") / "raw"  # relative to a repository or workspace root


def raw_path(root: Path, dataset: str) -> Path:
    return root / RAW_DIR / f"{dataset}.npz"


def manifest_path(root: Path, dataset: str) -> Path:
    return root / RAW_DIR / f"{dataset}.manifest.json"


@dataclass(frozen=True)
class DatasetManifest:
    name: str
    image_size: int
    channels: int
    num_classes: int
    class_names: list[str]  # label i is the class named class_names[i]
    image_count: int
    source: str  # e.g. "built-in: digits", "folder: photos/ (class subfolders)"
    content_sha256: str  # of the images and labels themselves, whatever the npz compression

    @classmethod
    def describe(cls, name: str, arrays: ImageArrays, class_names: list[str], source: str) -> DatasetManifest:
        return cls.of(name, arrays.images.shape, arrays.labels, class_names, source, content_hash(arrays))

    @classmethod
    def of(cls, name: str, image_shape: tuple[int, ...], labels: np.ndarray, class_names: list[str], source: str,
           content_sha256: str) -> DatasetManifest:
        """The manifest of images of `image_shape` (N×H×W×C) and their `labels`, hashed as they were streamed."""
        _, height, width, channels = image_shape
        if height != width:
            raise DataError(f"{name}: images are {height}×{width}; the pipeline takes square images (import a "
                            "folder with --size to crop and resize)")
        if len(labels) and int(labels.max()) >= len(class_names):
            raise DataError(f"{name}: label {int(labels.max())} has no class name ({len(class_names)} given)")
        return cls(name, int(height), int(channels), len(class_names), list(class_names), len(labels), source,
                   content_sha256)

    def write(self, root: Path) -> Path:
        path = manifest_path(root, self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return partial.replace(path)

    @classmethod
    def read(cls, root: Path, dataset: str) -> DatasetManifest:
        path = manifest_path(root, dataset)
        try:
            text = path.read_text()
        except FileNotFoundError:
            hint = (f"{raw_path(root, dataset).name} was imported before datasets had manifests: run "
                    f"`genp data describe {dataset}`" if raw_path(root, dataset).exists()
                    else f"import the dataset first (`genp data import {dataset}` or `genp data import-folder`)")
            raise ConfigError(f"{path}: no manifest for dataset {dataset!r}; {hint}") from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, where: str) -> DatasetManifest:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{where}: not valid JSON ({error})") from None
        expected = {field.name for field in fields(cls)}
        if not isinstance(raw, dict) or set(raw) != expected:
            found = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
            raise ConfigError(f"{where}: expected the fields {sorted(expected)}, found {found}")
        return cls(**raw)


class ContentHash:
    """`content_hash` fed a chunk of rows at a time: each array's dtype and shape, then its rows in order."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def array(self, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self._digest.update(str((np.dtype(dtype).str, tuple(int(n) for n in shape))).encode())

    def rows(self, rows: np.ndarray) -> None:
        self._digest.update(memoryview(np.ascontiguousarray(rows)).cast("B"))

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def content_hash(arrays: ImageArrays) -> str:
    digest = ContentHash()
    for array in (arrays.images, arrays.labels):
        digest.array(array.dtype, array.shape)
        digest.rows(array)
    return digest.hexdigest()


def npz_content_hash(dataset: NpzImages, chunk_bytes: int = CHUNK_BYTES) -> str:
    """`content_hash` of an npz, reading its images a chunk at a time."""
    digest = ContentHash()
    digest.array(dataset.dtype, dataset.shape)
    for chunk in dataset.chunks(chunk_bytes):
        digest.rows(chunk)
    digest.array(dataset.labels.dtype, dataset.labels.shape)
    digest.rows(dataset.labels)
    return digest.hexdigest()


def write_hashed_npz(path: Path, count: int, image_chunks: Iterable[np.ndarray],
                     labels: np.ndarray) -> tuple[tuple[int, ...], str]:
    """Write `count` images, arriving in chunks of rows, and their labels as the npz at `path` (the bytes
    `write_npz` writes for the whole arrays); the images' shape and their `content_hash`. Memory holds a chunk, not
    the images. The first chunk is read before anything is written, and on an error `path` is left as it was."""
    chunks = iter(image_chunks)
    first = next(chunks)
    shape, dtype = (count, *first.shape[1:]), first.dtype
    chunks = itertools.chain([first], chunks)
    del first  # the chain hands it on and lets go of it: one chunk is held at a time
    digest = ContentHash()
    digest.array(dtype, shape)
    with npz_writer(path) as npz:
        with npz.member("images", dtype, shape) as images:
            for chunk in chunks:
                images.write(chunk)
                digest.rows(chunk)
                del chunk  # before the next chunk is made, not after
        npz.array("labels", labels)
    digest.array(labels.dtype, labels.shape)
    digest.rows(labels)
    return shape, digest.hexdigest()


def with_dataset_facts(raw: dict[str, Any], root: Path, source: str,
                       manifest: DatasetManifest | None = None) -> dict[str, Any]:
    """`raw` params (overrides merged) with `data.image_size`, `channels` and `num_classes` taken from
    `manifest`, else from the manifest of `data.dataset` under `root`. A value already stated must agree with it.
    A dataset not imported under `root` (neither npz nor manifest) is left as the params say: `prepare` names
    what is missing."""
    data = dict(raw.get("data") or {})
    dataset = str(data.get("dataset", "digits"))
    where = f"the manifest of {dataset!r}" if manifest else str(manifest_path(root, dataset))
    if manifest is None:
        if not (manifest_path(root, dataset).exists() or raw_path(root, dataset).exists()):
            return raw
        manifest = DatasetManifest.read(root, dataset)
    for fact in FACTS:
        described = getattr(manifest, fact)
        if fact in data and data[fact] != described:
            raise ConfigError(f"{source}: data.{fact} is {data[fact]!r}, but {where} says {described!r}; the "
                              f"manifest describes the data: remove data.{fact} from the parameters")
        data[fact] = described
    return {**raw, "data": data}
