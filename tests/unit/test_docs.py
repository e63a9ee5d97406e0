"""The documentation holds: every image README.md and docs/*.md show exists (made by `make docs-images`), is a
PNG, and all of them stay small enough to live in the repository; local links resolve; CI runs the README's
test command."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s#]+)[^)]*\)")


def _images() -> dict[Path, list[Path]]:
    return {page: [(page.parent / target).resolve() for target in IMAGE_LINK.findall(page.read_text())]
            for page in PAGES}


def test_every_picture_the_documentation_shows_exists_as_a_png():
    shown = _images()
    assert shown[REPO / "README.md"], "the README shows pictures"
    missing = [f"{page.name}: {image}" for page, images in shown.items() for image in images if not image.is_file()]
    assert not missing, f"run `make docs-images`: {missing}"
    for images in shown.values():
        for image in images:
            assert image.parent == REPO / "docs" / "images" and Image.open(image).format == "PNG", image


def test_the_pictures_stay_small():
    pictures = list((REPO / "docs" / "images").glob("*.png"))
    assert sum(path.stat().st_size for path in pictures) <= 1_000_000, "keep docs/images to a few hundred kB"
    assert all(Image.open(path).width <= 1000 for path in pictures)


def test_every_local_link_of_the_documentation_resolves():
    broken = [f"{page.relative_to(REPO)}: {target}" for page in PAGES for target in LINK.findall(page.read_text())
              if "://" not in target and not (page.parent / target).exists()]
    assert not broken, broken


def test_ci_runs_the_readme_test_command_line_as_it_stands():
    (command,) = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("make test ")]
    assert command in (REPO / ".ci" / "run").read_text().splitlines()
