"""Import and prepare stream a dataset a chunk of rows at a time: the files they write are the bytes the
whole-array code wrote (DVC's md5s and the manifests' hashes of existing data stay valid), the prepared splits are
the rows `split_dataset` picks, and a bad image leaves nothing behind whichever chunk it falls in."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from gen_platform import stages
from gen_platform.config import parse_params
from gen_platform.data.arrays import ImageArrays, load_npz, npz_writer, open_npz, write_npz
from gen_platform.data.folders import ImageFolder
from gen_platform.data.manifest import ContentHash, DatasetManifest, content_hash, npz_content_hash
from gen_platform.data.shards import ShardedSplit, ShardWriter, write_shards
from gen_platform.data.splits import SPLITS, split_dataset, split_rows, write_splits
from gen_platform.errors import DataError
from gen_platform.workspace import Workspace

DIGITS_SHA256 = "23459ac561ed65dfc13dece2d00d5d06dc74f5e4326c1fe736224e61c086c211"  # data/raw/digits.manifest.json


def _whole_array_npz(path, arrays):
    """The writer before streaming, kept here as the reference for its bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        named = {"images": arrays.images, "labels": arrays.labels}
        if arrays.split is not None:
            named["split"] = arrays.split
        for name, array in named.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(2020, 1, 1, 0, 0, 0)), buffer.getvalue(),
                             compress_type=zipfile.ZIP_DEFLATED)
    return path


def _dataset(n=500, size=6, own_split=False):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    images[::7] = 0  # runs of zeros: deflate finds matches that cross chunk boundaries
    split = (rng.random(n) < 0.25).astype(np.uint8) if own_split else None
    return ImageArrays(images, rng.integers(0, 5, n).astype(np.int64), split)


@pytest.mark.parametrize("own_split", [False, True])
def test_the_npz_has_the_bytes_of_the_whole_array_writer_however_it_is_chunked(tmp_path, own_split):
    arrays = _dataset(own_split=own_split)
    expected = _whole_array_npz(tmp_path / "old.npz", arrays).read_bytes()
    assert write_npz(tmp_path / "whole.npz", arrays).read_bytes() == expected
    with npz_writer(tmp_path / "chunked.npz") as npz:
        with npz.member("images", arrays.images.dtype, arrays.images.shape) as rows:
            for start in range(0, len(arrays), 37):
                rows.write(arrays.images[start:start + 37])
        npz.array("labels", arrays.labels)
        if own_split:
            npz.array("split", arrays.split)
    assert (tmp_path / "chunked.npz").read_bytes() == expected
    assert not list(tmp_path.glob("*.tmp"))


def test_the_digits_npz_and_hash_are_those_dvc_tracks(tmp_path, digits):
    path = write_npz(tmp_path / "digits.npz", digits)
    assert path.read_bytes() == _whole_array_npz(tmp_path / "old.npz", digits).read_bytes()
    assert content_hash(digits) == DIGITS_SHA256
    assert npz_content_hash(open_npz(path), chunk_bytes=1000) == DIGITS_SHA256


def test_a_member_given_the_wrong_rows_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="of 10 rows was given 4"):
        with npz_writer(tmp_path / "new" / "a.npz") as npz, npz.member("images", np.uint8, (10, 2, 2, 1)) as rows:
            rows.write(np.zeros((4, 2, 2, 1), np.uint8))
    assert not (tmp_path / "new").exists()


def test_streamed_content_hash_equals_the_whole_array_hash():
    arrays = _dataset()
    digest = ContentHash()
    digest.array(arrays.images.dtype, arrays.images.shape)
    for start in range(0, len(arrays), 64):
        digest.rows(arrays.images[start:start + 64])
    digest.array(arrays.labels.dtype, arrays.labels.shape)
    digest.rows(arrays.labels)
    assert digest.hexdigest() == content_hash(arrays)


def test_open_npz_streams_the_images_in_chunks_of_at_most_chunk_bytes(tmp_path):
    arrays = _dataset()
    dataset = open_npz(write_npz(tmp_path / "d.npz", arrays))
    chunks = list(dataset.chunks(chunk_bytes=1000))  # 108 bytes per image: 9 rows a chunk
    assert {len(chunk) for chunk in chunks[:-1]} == {9} and dataset.shape == arrays.images.shape
    assert np.array_equal(np.concatenate(chunks), arrays.images) and np.array_equal(dataset.labels, arrays.labels)


def test_a_truncated_images_member_is_named(tmp_path):
    arrays = _dataset()
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as archive:  # stored uncompressed, with rows missing
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, arrays.images)
        archive.writestr("images.npy", buffer.getvalue()[:-1000])
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, arrays.labels)
        archive.writestr("labels.npy", buffer.getvalue())
    with pytest.raises(DataError, match=r"d\.npz: 'images' ends before row"):
        list(open_npz(path).chunks(chunk_bytes=1000))


@pytest.mark.parametrize("own_split", [False, True])
def test_streamed_splits_are_the_rows_split_dataset_picks(tmp_path, own_split):
    arrays = _dataset(n=1000, own_split=own_split)
    dataset = open_npz(write_npz(tmp_path / "d.npz", arrays))
    rows = split_rows(len(dataset), dataset.split, 5, 0.1, 0.2)
    directories = {name: tmp_path / "streamed" / name for name in SPLITS}
    write_splits(dataset, rows, directories, chunk_bytes=1000, rows_per_shard=64)  # 9-row chunks, 64-row shards
    expected = split_dataset(arrays, 5, 0.1, 0.2)
    for name in SPLITS:
        streamed = ShardedSplit(str(directories[name]))
        assert np.array_equal(streamed.read().images, expected[name].images)
        assert np.array_equal(streamed.read().labels, expected[name].labels)
        whole = write_shards(tmp_path / "whole" / name, expected[name], rows_per_shard=64)
        assert [path.read_bytes() for path in streamed.files] == [path.read_bytes() for path in whole.files]
    if own_split:
        assert np.array_equal(rows["test"], np.flatnonzero(arrays.split == 1))


def test_shard_files_are_what_np_save_writes(tmp_path):
    arrays = _dataset(n=100)
    split = write_shards(tmp_path / "train", arrays, rows_per_shard=64)
    np.save(tmp_path / "images.npy", arrays.images[64:])
    np.save(tmp_path / "labels.npy", arrays.labels[64:])
    assert split.files[3].read_bytes() == (tmp_path / "images.npy").read_bytes()
    assert split.files[4].read_bytes() == (tmp_path / "labels.npy").read_bytes()


def test_a_split_written_short_of_its_rows_leaves_the_old_split(tmp_path):
    old = write_shards(tmp_path / "train", _dataset(n=10), rows_per_shard=4)
    before = [path.read_bytes() for path in old.files]
    arrays = _dataset(n=20)
    with pytest.raises(ValueError, match="of 4 rows was given 2"):
        with ShardWriter(tmp_path / "train", 20, (6, 6, 3), np.uint8, np.int64, rows_per_shard=4) as writer:
            writer.write(arrays.images[:18], arrays.labels[:18])
    assert [path.read_bytes() for path in old.files] == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["train"]  # no staging folder left


def test_prepare_streams_the_splits_of_the_whole_array_code(tmp_path):
    arrays = _dataset(n=300, own_split=True)
    ws = Workspace.at(tmp_path)
    write_npz(ws.raw("own"), arrays)
    params = parse_params({"data": {"dataset": "own", "image_size": 6, "channels": 3, "num_classes": 5},
                           "split": {"seed": 2, "val_fraction": 0.2}})
    sizes = stages.prepare(params, ws, chunk_bytes=500)
    expected = split_dataset(arrays, 2, 0.2, params.split.test_fraction)
    assert sizes == {name: len(expected[name]) for name in SPLITS}
    for name in SPLITS:
        assert np.array_equal(ws.prepared(name).read().images, expected[name].images)
    assert not list((tmp_path / "data" / "prepared").glob("*.tmp"))


def _folder(root, count=7, bad=None):
    """`count` grey 8×8 images in two classes; `bad` spoils the last one."""
    for index in range(count):
        path = root / f"class{index % 2}" / f"{index:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((9, 9) if bad == "size" and index == count - 1 else (8, 8), index * 30, np.uint8),
                        "L").save(path)
    if bad == "truncated":
        path.write_bytes(path.read_bytes()[:30])
    return root


def test_a_chunked_import_writes_what_a_single_chunk_import_writes(tmp_path):
    folder = _folder(tmp_path / "pets")
    one, chunked = Workspace.at(tmp_path / "one"), Workspace.at(tmp_path / "chunked")
    manifest = stages.import_folder(folder, "pets", one)
    assert stages.import_folder(folder, "pets", chunked, chunk_bytes=128) == manifest  # 2 images a chunk
    assert manifest.content_sha256 == content_hash(load_npz(one.raw("pets")))
    assert one.raw("pets").read_bytes() == chunked.raw("pets").read_bytes()


@pytest.mark.parametrize(("bad", "message"), [("truncated", r"class0/06\.png: not a readable image"),
                                              ("size", r"class0/06\.png: size 9×9 differs from the first image's")])
def test_a_bad_image_in_a_later_chunk_leaves_nothing_behind(tmp_path, bad, message):
    folder = _folder(tmp_path / "pets", bad=bad)
    with pytest.raises(DataError, match=message):
        stages.import_folder(folder, "pets", Workspace.at(tmp_path / "ws"), chunk_bytes=128)
    assert not (tmp_path / "ws").exists()
    ws = Workspace.at(tmp_path / "imported")
    before = stages.import_folder(_folder(tmp_path / "good"), "pets", ws)
    old = ws.raw("pets").read_bytes()
    with pytest.raises(DataError, match=message):
        stages.import_folder(folder, "pets", ws, chunk_bytes=128)
    assert ws.raw("pets").read_bytes() == old and DatasetManifest.read(ws.root, "pets") == before
    assert sorted(path.name for path in ws.raw("pets").parent.iterdir()) == ["pets.manifest.json", "pets.npz"]


def test_the_folder_listing_keeps_the_order_of_a_sorted_rglob(tmp_path):
    """The order of the images decides the npz's bytes: listing without a Path per file must not change it."""
    root = tmp_path / "pets" / "cat"
    for name in ["a/b.png", "a.png", "a-b.png", "a/a/c.png", "B.png", ".hidden/x.png", ".DS_Store", "z/.keep"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    (root / "link").symlink_to(root / "a")  # not entered, as rglob does not
    expected = [str(path) for path in sorted(root.rglob("*")) if path.is_file() and not path.name.startswith(".")]
    folder = ImageFolder.scan(tmp_path / "pets")
    assert folder.files.between(0, 100) == expected and len(folder) == 6 and folder.classes == ["cat"]
