"""`make run` then `make test` in one clone: the tests' workspaces are built from the repository's sources, never
from what a pipeline run left in it."""

import shutil
import subprocess

from tests.conftest import REPO
from tests.integration.workspace import GIT, pipeline_outputs, source_files


def test_pipeline_outputs_are_read_from_dvc_yaml():
    outputs = pipeline_outputs(REPO)
    assert {"data/prepared", "metrics/train.json", "models/generator", "plots/train", "reports/samples.png"} <= set(
        outputs)


def test_a_workspace_takes_sources_but_not_the_outputs_a_pipeline_run_left(tmp_path):
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy2(REPO / name, tmp_path / name)
    (tmp_path / "gen_platform").mkdir()
    (tmp_path / "gen_platform" / "stages.py").write_text("# committed\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(GIT + ["add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(GIT + ["commit", "-qm", "sources"], cwd=tmp_path, check=True)
    # what `make run` leaves: metrics (not ignored by git, and here one of them even committed), models, reports
    planted = ["metrics/train.json", "metrics/evaluate.json", "models/generator/state.pt", "reports/registry.json",
               "plots/train/val_loss.json", "data/prepared/train/shard-00000.npz"]
    for name in planted:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    subprocess.run(GIT + ["add", "-f", "metrics/train.json"], cwd=tmp_path, check=True)
    subprocess.run(GIT + ["commit", "-qm", "metrics"], cwd=tmp_path, check=True)
    (tmp_path / "gen_platform" / "new_module.py").write_text("# work in progress, not yet added\n")

    files = source_files(tmp_path)
    assert {"dvc.yaml", "params.yaml", "gen_platform/stages.py", "gen_platform/new_module.py"} <= set(files)
    assert [name for name in files if name in planted] == []
