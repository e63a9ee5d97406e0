"""`genp data import-folder`: both layouts people have, a manifest (class names included) beside the data,
and every bad input rejected with the file named before anything is written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gen_platform import stages
from gen_platform.cli import app
from gen_platform.data.arrays import load_npz
from gen_platform.data.manifest import content_hash
from gen_platform.errors import DataError
from gen_platform.workspace import Workspace


def _image(path, value, size=(8, 8), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)


def _class_folders(root):
    _image(root / "dog" / "a.png", 10)
    _image(root / "dog" / "nested" / "b.jpg", 20)
    _image(root / "cat" / "c.png", 30)
    (root / "cat" / ".DS_Store").write_bytes(b"\0junk")  # hidden files are not part of a dataset
    return root


def test_class_subfolders_become_sorted_labels(tmp_path):
    manifest = stages.import_folder(_class_folders(tmp_path / "pets"), "pets", Workspace.at(tmp_path / "ws"))
    dataset = load_npz(tmp_path / "ws" / "data" / "raw" / "pets.npz")
    assert manifest.class_names == ["cat", "dog"]
    assert dataset.images.shape == (3, 8, 8, 1) and dataset.labels.tolist() == [0, 1, 1]
    assert dataset.images[0, 0, 0, 0] == 30  # cat/c.png
    written = json.loads((tmp_path / "ws" / "data" / "raw" / "pets.manifest.json").read_text())
    assert written == {"name": "pets", "image_size": 8, "channels": 1, "num_classes": 2, "class_names": ["cat", "dog"],
                       "image_count": 3, "source": "folder: pets/", "content_sha256": content_hash(dataset)}


def test_labels_csv_maps_class_names_and_keeps_rgb(tmp_path):
    folder = tmp_path / "shapes"
    _image(folder / "img" / "1.png", 50, mode="RGB")
    _image(folder / "img" / "2.png", 60, mode="RGB")
    _image(folder / "3.png", 70, mode="RGB")
    (folder / "labels.csv").write_text("file,label\nimg/1.png,square\nimg/2.png,circle\n3.png,square\n")
    manifest = stages.import_folder(folder, "shapes", Workspace.at(tmp_path / "ws"), channels=3)
    dataset = load_npz(tmp_path / "ws" / "data" / "raw" / "shapes.npz")
    assert manifest.class_names == ["circle", "square"] and dataset.labels.tolist() == [1, 0, 1]
    assert dataset.images.shape == (3, 8, 8, 3) and (manifest.channels, manifest.num_classes) == (3, 2)


def test_integer_class_names_keep_their_numeric_order(tmp_path):
    folder = tmp_path / "numbers"
    for index, label in enumerate(["10", "2", "0"]):
        _image(folder / f"{index}.png", index)
    (folder / "labels.csv").write_text("file,label\n0.png,10\n1.png,2\n2.png,0\n")
    manifest = stages.import_folder(folder, "numbers", Workspace.at(tmp_path / "ws"))
    labels = load_npz(tmp_path / "ws" / "data" / "raw" / "numbers.npz").labels
    assert manifest.class_names == ["0", "2", "10"] and labels.tolist() == [2, 1, 0]


def test_size_centre_crops_and_resizes_mixed_sizes(tmp_path):
    folder = tmp_path / "mixed"
    _image(folder / "a" / "small.png", 10, size=(10, 10))
    _image(folder / "b" / "wide.png", 20, size=(16, 12))
    manifest = stages.import_folder(folder, "mixed", Workspace.at(tmp_path / "ws"), size=8)
    assert load_npz(tmp_path / "ws" / "data" / "raw" / "mixed.npz").images.shape == (2, 8, 8, 1)
    assert (manifest.image_size, manifest.image_count) == (8, 2)


def _truncated_png(path):
    _image(path, 0, size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


BAD_FOLDERS = {
    "corrupt": (lambda root: (root / "cat" / "x.png").write_bytes(b"not a png at all"), r"cat/x\.png: not a readable image"),
    "truncated": (lambda root: _truncated_png(root / "cat" / "cut.png"), r"cat/cut\.png: not a readable image"),
    "non-image": (lambda root: (root / "dog" / "notes.txt").write_text("hello"), r"dog/notes\.txt: not a readable image"),
    "size mismatch": (lambda root: _image(root / "dog" / "big.png", 0, size=(9, 9)),
                      r"dog/big\.png: size 9×9 differs from the first image's 8×8 .*pass --size"),
    "not square": (lambda root: _image(root / "dog" / "wide.png", 0, size=(8, 6)), r"dog/wide\.png: 8×6 is not square"),
    "empty class": (lambda root: (root / "bird").mkdir(), r"bird: class 'bird' holds no images"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_a_bad_image_folder_is_rejected_with_the_file_named_and_nothing_written(tmp_path, case):
    spoil, message = BAD_FOLDERS[case]
    folder = _class_folders(tmp_path / "pets")
    spoil(folder)
    ws = Workspace.at(tmp_path / "ws")
    with pytest.raises(DataError, match=message):
        stages.import_folder(folder, "pets", ws)
    assert not (tmp_path / "ws" / "data").exists()


@pytest.mark.parametrize(("row", "message"), [
    ("../outside.png,cat", r"labels\.csv:3: '\.\./outside\.png' leaves the folder"),
    ("/etc/hostname,cat", r"labels\.csv:3: '/etc/hostname' leaves the folder"),
    ("missing.png,cat", r"labels\.csv:3: 'missing\.png' does not exist"),
])
def test_a_labels_csv_path_outside_the_folder_is_rejected(tmp_path, row, message):
    folder = tmp_path / "data"
    _image(folder / "a.png", 1)
    _image(tmp_path / "outside.png", 2)
    (folder / "labels.csv").write_text(f"file,label\na.png,dog\n{row}\n")
    with pytest.raises(DataError, match=message):
        stages.import_folder(folder, "data", Workspace.at(tmp_path / "ws"))
    assert not (tmp_path / "ws" / "data").exists()


def test_the_command_reports_what_it_wrote(tmp_path):
    folder = _class_folders(tmp_path / "pets")
    result = CliRunner().invoke(app, ["data", "import-folder", str(folder), "--name", "pets", "--size", "4",
                                      "--rgb", "--root", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    assert "3 images 4×4×3, 2 classes (cat, dog)" in result.output
    assert "set data.dataset: pets in params.yaml" in result.output


def test_the_model_card_lists_the_class_names():
    from gen_platform.config import parse_params
    from gen_platform.tracking.model_card import model_card

    card = model_card(parse_params({}), {"fd": 1.0}, "md5", "run", "samples.png", class_names=["cat", "dog"])
    assert "classes (label: name): 0: `cat`, 1: `dog`" in card
