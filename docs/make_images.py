"""`make docs-images`: every picture of README.md and docs/, made from real runs on this machine.

- samples-overview.png: 32 samples of each family's champion on digits, Fashion-MNIST and 64×64 photo crops (the
  rgb64 preset on fewer images and epochs), each trained by `dvc repro` in a throw-away copy of the repository;
- interpolation-vae-digits.png: the VAE's latent interpolations, as its evaluation draws them;
- curves.png: the per-epoch curves of the digits VAE and GAN, read back from MLflow;
- prefect-run-report.png, mlflow-compare.png: the Prefect UI's page of a `train` run's report and MLflow's
  comparison of two runs (β 1 and β 4), in headless Chromium, on the local stack (`infra/local/stack.py`);
- benchmark-speed.png, benchmark-stages.png: plots of bench/results/*.json (nothing typed by hand).

Pictures are written small (palette PNG, at most 1000 px wide); tests/unit/test_docs.py checks that every picture
the documentation links exists and that they stay small.

    python docs/make_images.py [--only samples,screens,bench] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

IMAGES = ROOT / "docs" / "images"
MAX_WIDTH = 1000
# (dataset, family, params overrides): enough epochs for pictures that look like their data, in minutes on 2 cores
TRAININGS = [
    ("digits", "vae", {"train": {"epochs": 30}}),
    ("digits", "gan", {"train": {"epochs": 60}}),
    ("fashion-mnist", "vae", {"train": {"epochs": 4}}),
    ("fashion-mnist", "gan", {"train": {"epochs": 4}}),
    ("photo-crops", "vae", {"train": {"epochs": 8}, "evaluate": {"metric_samples": 400}}),  # test split: 400
    ("photo-crops", "gan", {"train": {"epochs": 25}, "evaluate": {"metric_samples": 400}}),  # 8 collapsed
]
PHOTO_CROPS = 4000
CELL, GAP = 40, 3  # pixels per sample in the overview, and between samples


def save(image: Image.Image, name: str) -> Path:
    """`image` as a small PNG under docs/images: at most MAX_WIDTH wide, 256 colours."""
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.LANCZOS)
    path = IMAGES / name
    image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} kB)", flush=True)
    return path


def run(args: list[str], cwd: Path, env: dict | None = None) -> str:
    print("$", " ".join(args), flush=True)
    done = subprocess.run(args, cwd=cwd, env=env or os.environ.copy(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


# --- samples, interpolation, curves ------------------------------------------------------------------------------

def _workspace(base: Path, dataset: str) -> Path:
    from tests.integration.workspace import make_workspace

    if (base / dataset / "params.yaml").exists():  # kept from an earlier run (--keep): its trainings are reused
        return base / dataset
    workspace = make_workspace(base / dataset, {})
    if dataset == "photo-crops":
        shutil.copy(workspace / "presets" / "rgb64.yaml", workspace / "params.yaml")
        run(["genp", "data", "import", dataset, "--count", str(PHOTO_CROPS)], workspace)
    elif dataset != "digits":
        run(["genp", "data", "import", dataset], workspace)
    return workspace


def _trained_as_asked(workspace: Path, model: str, epochs: int) -> bool:
    """Whether `model` has a champion trained for `epochs` (a kept workspace's training is reused)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not (workspace / "mlflow.db").exists():
        return False
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    try:
        champion = client.get_model_version_by_alias(model, "champion")
    except MlflowException:
        return False
    return client.get_run(champion.run_id).data.params.get("train.epochs") == str(epochs)


def _train(workspace: Path, dataset: str, family: str, overrides: dict) -> None:
    if _trained_as_asked(workspace, f"{family}-{dataset}", overrides["train"]["epochs"]):
        return
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["data"]["dataset"], params["model"]["family"] = dataset, family
    for section, fields in overrides.items():
        params[section].update(fields)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], workspace)


def _grid(workspace: Path, model: str) -> Image.Image:
    """The grid of `model`'s champion in `workspace`, drawn by a process of its own (MLflow keeps the first store a
    process resolved `models:/` URIs in)."""
    path = workspace / "reports" / f"docs-grid-{model}.png"
    run([sys.executable, __file__, "--grid", model, str(path)], workspace,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workspace / 'mlflow.db'}"})
    return Image.open(path).copy()


def draw_grid(model: str, path: Path, rows: int = 4, columns: int = 8) -> None:
    """rows × columns samples of `model`'s champion, each scaled to CELL pixels."""
    import torch

    from gen_platform.tracking.model_io import load_generator

    torch.manual_seed(0)
    samples = load_generator(f"models:/{model}@champion").sample(rows * columns).clamp(0, 1)
    pictures = (samples.permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
    grid = Image.new("RGB", (columns * (CELL + GAP) - GAP, rows * (CELL + GAP) - GAP), "white")
    for index, picture in enumerate(pictures):
        cell = Image.fromarray(picture.squeeze(-1) if picture.shape[-1] == 1 else picture).convert("RGB")
        grid.paste(cell.resize((CELL, CELL), Image.NEAREST if cell.width < CELL else Image.LANCZOS),
                   ((index % columns) * (CELL + GAP), (index // columns) * (CELL + GAP)))
    grid.save(path)


def _overview(grids: dict[tuple[str, str], Image.Image]) -> Image.Image:
    datasets = list(dict.fromkeys(dataset for dataset, _ in grids))
    width, height = next(iter(grids.values())).size
    pad, label = 12, 22
    canvas = Image.new("RGB", (len(datasets) * (width + pad) + pad, 2 * (height + label + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    import matplotlib

    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), 14)
    for column, dataset in enumerate(datasets):
        for row, family in enumerate(("vae", "gan")):
            x, y = pad + column * (width + pad), pad + row * (height + label + pad)
            draw.text((x, y), f"{'β-VAE' if family == 'vae' else 'DCGAN'} · {dataset}", fill="black", font=font)
            canvas.paste(grids[(dataset, family)], (x, y + label))
    return canvas


def _curves(workspace: Path) -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.4), dpi=100)
    panels = {"vae-digits": ["train/loss", "val/neg_elbo"], "gan-digits": ["val/fd"]}
    for axis, (model, names) in zip(axes, panels.items()):
        run_id = client.get_model_version_by_alias(model, "champion").run_id
        for name in names:
            history = sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)
            axis.plot([m.step for m in history], [m.value for m in history], label=name)
        axis.set(title=f"{model}: per-epoch curves in MLflow", xlabel="epoch")
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return _figure_image(figure)


def _figure_image(figure) -> Image.Image:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    buffer.seek(0)
    return Image.open(buffer).copy()


def samples(base: Path) -> Path:
    """Trains every TRAININGS entry; returns the digits workspace (its store holds both digits champions)."""
    grids, workspaces = {}, {}
    for dataset, family, overrides in TRAININGS:
        workspace = workspaces.get(dataset) or workspaces.setdefault(dataset, _workspace(base, dataset))
        _train(workspace, dataset, family, overrides)
        grids[(dataset, family)] = _grid(workspace, f"{family}-{dataset}")
        if (dataset, family) == ("digits", "vae") and (workspace / "reports" / "interpolations.png").exists():
            save(Image.open(workspace / "reports" / "interpolations.png"), "interpolation-vae-digits.png")
    save(_overview(grids), "samples-overview.png")
    save(_curves(workspaces["digits"]), "curves.png")
    return workspaces["digits"]


# --- screenshots of the Prefect and MLflow UIs -------------------------------------------------------------------

def screens(workspace: Path) -> None:
    from playwright.sync_api import sync_playwright

    from bench._stack_client import api, create_run, local_stack, reported_mlflow_run, wait

    with local_stack(workspace, workspace / ".stack", GENP_DATA_POLL_SECONDS="0") as urls:
        base = urls["prefect"]
        runs = [wait(base, create_run(base, "train/train", {"request": {
            "epochs": 10, "overrides": {"model": {"vae": {"beta": beta}}}}})["id"], 900) for beta in (1.0, 4.0)]
        assert all(r["state_type"] == "COMPLETED" for r in runs), [r["state_type"] for r in runs]
        (report,) = [a for a in api(base, "POST", "/artifacts/filter",
                                    {"artifacts": {"flow_run_id": {"any_": [runs[-1]["id"]]}}}) if a["key"] == "run-report"]
        from mlflow import MlflowClient

        run_id = reported_mlflow_run(base, runs[0]["id"])
        experiment = MlflowClient(urls["mlflow"]).get_run(run_id).info.experiment_id
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(60_000)
                page.goto(f"{base}/artifacts/artifact/{report['id']}", wait_until="networkidle")
                page.get_by_text("MLflow run").first.wait_for()
                save(Image.open(_shot(page)), "prefect-run-report.png")
                # the experiment's runs side by side in MLflow's chart view, one section per metric prefix
                page.goto(f"{urls['mlflow']}/#/experiments/{experiment}?workflowType=machine_learning",
                          wait_until="domcontentloaded")  # MLflow's UI keeps polling: never network-idle
                page.get_by_role("button", name="Close").click()  # the assistant panel beside the runs
                page.locator('label:has(input[value="CHART"])').click()
                page.get_by_text("eval/fd").first.wait_for()
                page.wait_for_timeout(3000)  # the charts draw one after another
                save(Image.open(_shot(page)), "mlflow-compare.png")
            finally:
                browser.close()


def _shot(page) -> Path:
    path = Path(tempfile.mkstemp(suffix=".png")[1])
    page.screenshot(path=str(path), full_page=False)
    return path


# --- benchmark figures -------------------------------------------------------------------------------------------

def bench() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = ROOT / "bench" / "results"
    quality = json.loads((results / "quality.json").read_text())
    throughput = json.loads((results / "train_throughput.json").read_text())
    bars = []  # (label, median ratio, min, max): > 1 means gen_platform is faster
    for dataset, entries in quality["datasets"].items():
        for family in ("vae", "gan"):
            speed = entries[family]["images_per_second"]
            ratio = speed["median_of_round_ratios"]
            bars.append((f"{family.upper()} images/s\n{dataset}\nvs {'pythae' if family == 'vae' else 'plain loop'}",
                         ratio, speed.get("min", ratio), speed.get("max", ratio)))
    for dataset in ("digits", "fashion-mnist"):
        for key, label in (("ray_train", "Ray Train epoch"), ("ray_train_ddp", "2-worker DDP")):
            epoch = throughput[dataset][key]["epoch"]
            ratio = epoch["median_of_round_ratios"]
            bars.append((f"{label}\n{dataset}\nvs plain loop", ratio, epoch.get("min", ratio), epoch.get("max", ratio)))
    figure, axis = plt.subplots(figsize=(10, 3.8), dpi=100)
    positions = range(len(bars))
    ratios = [b[1] for b in bars]
    axis.bar(positions, ratios, color=["#4c72b0" if r >= 1 else "#dd8452" for r in ratios],
             yerr=[[b[1] - b[2] for b in bars], [b[3] - b[1] for b in bars]], capsize=4)
    axis.axhline(1.0, color="black", linewidth=1)
    axis.set_xticks(list(positions), [b[0] for b in bars], fontsize=8)
    axis.set(ylabel="speed ratio (median; bars: min–max)",
             title="gen_platform's speed against the references (bench/results: quality.json, train_throughput.json)")
    figure.tight_layout()
    save(_figure_image(figure), "benchmark-speed.png")

    feedback = json.loads((results / "feedback.json").read_text())
    stages = feedback["dvc_repro_stage_seconds_median"]
    figure, axis = plt.subplots(figsize=(10, 1.6), dpi=100)
    left = 0.0
    for stage, seconds in stages.items():
        axis.barh([0], [seconds], left=left)
        axis.text(left + seconds / 2, 0, f"{stage}\n{seconds:g} s", ha="center", va="center", fontsize=8, color="white")
        left += seconds
    axis.set(yticks=[], xlabel="seconds", title="`dvc repro -f` on digits, stage by stage (median, bench/results/feedback.json)")
    figure.tight_layout()
    save(_figure_image(figure), "benchmark-stages.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="samples,screens,bench", help="comma-separated: samples, screens, bench")
    parser.add_argument("--keep", type=Path, help="train in DIR and keep it (default: a temporary directory)")
    parser.add_argument("--grid", nargs=2, metavar=("MODEL", "PNG"), help=argparse.SUPPRESS)  # see _grid
    args = parser.parse_args()
    if args.grid:
        draw_grid(args.grid[0], Path(args.grid[1]))
        return
    parts = set(args.only.split(","))
    IMAGES.mkdir(parents=True, exist_ok=True)
    if "bench" in parts:
        bench()
    if parts & {"samples", "screens"}:
        base = args.keep or Path(tempfile.mkdtemp(prefix="genp-docs-images-"))
        base.mkdir(parents=True, exist_ok=True)
        try:
            workspace = samples(base) if "samples" in parts else base / "digits"
            if "screens" in parts:
                screens(workspace)
        finally:
            if args.keep is None:
                shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
