"""A per-version model card (markdown): data version, parameters, metrics, sample grid."""

from __future__ import annotations

from gen_platform.config import PipelineParams


def model_card(params: PipelineParams, scores: dict[str, float], data_version: str, run_id: str,
               sample_grid: str, class_names: list[str] | None = None) -> str:
    rows = "\n".join(f"| `{name}` | {value:.5g} |" for name, value in sorted(scores.items()))
    settings = "\n".join(f"| `{k}` | `{v}` |" for k, v in params.model.logged().items()) + "\n" + "\n".join(
        f"| `train.{k}` | `{v}` |" for k, v in params.train.model_dump().items()
        if k in {"epochs", "batch_size", "num_workers", "seed"})
    memorisation = (f"- memorisation: `copy_rate` {scores['copy_rate']:.3f} (share of samples closer to a training image "
                    f"than {params.evaluate.copy_quantile:.0%} of test images are); the closest sample/training pairs: "
                    "run artifact `closest_training_images.png`\n" if "copy_rate" in scores else "")
    classes = ("- classes (label: name): " + ", ".join(f"{label}: `{name}`" for label, name in enumerate(class_names))
               + "\n" if class_names else "")
    return f"""# {params.registered_model_name}

A {params.model.family.upper()} trained by gen_platform on `{params.data.dataset}`
({params.data.image_size}×{params.data.image_size}×{params.data.channels}, {params.data.num_classes} classes).

- data version (DVC md5 of data/raw): `{data_version}`
- MLflow run: `{run_id}`
- sample grid: run artifact `{sample_grid}`
{classes}{memorisation}
## Parameters
| parameter | value |
|---|---|
{settings}

## Metrics
Distribution metrics use the features of a classifier trained on the same dataset (not Inception), so they
compare models on this dataset only. `nll`, `*_neg_elbo` in nats per image; lower `fd`, `kid`, `nll` are better.

| metric | value |
|---|---|
{rows}
"""
