"""Tuning benchmarks on digits, through the real tuning code (Ray Tune trials of the platform's loop):

- `asha`: how much compute ASHA needs to find (within 2 %) the best model a full grid finds over the same
  space: a grid of β × learning rate, every trial to `FULL.max_epochs`, against ASHA over the same grid. Compute is
  counted in trial-epochs (epochs actually trained, summed over trials).
- `fd_sample_size`: how many generated images the per-epoch `val_fd` of GANs needs to rank search trials. A
  4-configuration GAN grid is trained; each trial's final generator is then scored `FULL.fd_draws` times (fresh
  samples each time, the same validation images and classifier the search used) at several sample sizes.
  A size is good enough when single draws order the trials as the reference does (the mean of `FULL.fd_draws`
  other, independent draws of `FULL.reference_size` samples); reported per size: the draw-to-draw spread of FD and
  how often the order of a pair of trials, and the best trial, agree with that reference. Draw k of every trial
  uses the same latent seed, as the search does (every trial validates with the seed of `train.seed`).

    python -m bench.tune_efficiency [asha] [fd_sample_size]   # default both; writes bench/results/tune.json
    python -m bench.tune_efficiency --quick --output /tmp/tune.json   # smoke run: 2-trial grids of 2 epochs (asha)
                                                                     # and 1 (fd_sample_size), small FD draws
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Sequence

from gen_platform.config import parse_params
from gen_platform.data.arrays import to_tensor
from gen_platform.data.sources import digits
from gen_platform.data.splits import split_dataset
from gen_platform.evaluation.classifier import ClassifierArchitecture, FeatureModule, SavedClassifier, train_classifier
from gen_platform.evaluation.distribution import features_of, frechet_from_features, generate
from gen_platform.tracking.model_io import load_model_dir
from gen_platform.tuning.search import run_search

from bench._results import add_quick_arguments, output_path, write_result

RESULT = Path(__file__).parent / "results" / "tune.json"
GRACE, REDUCTION = 1, 3


class Budget(NamedTuple):
    betas: tuple[float, ...]  # asha: the grid is betas x learning rates
    learning_rates: tuple[float, ...]
    max_epochs: int
    d_steps: tuple[int, ...]  # fd_sample_size: the GAN grid is d_steps x generator learning rates
    g_learning_rates: tuple[float, ...]
    gan_epochs: int
    fd_sizes: tuple[int, ...]
    fd_draws: int
    reference_size: int


FULL = Budget((0.25, 0.5, 1.0, 2.0, 4.0, 8.0), (5e-4, 2e-3), 8, (1, 3), (5e-5, 2e-4), 4, (180, 500, 1000, 2000), 20, 5000)
QUICK = Budget((0.5, 2.0), (2e-3,), 2, (1, 3), (2e-4,), 1, (50, 100), 2, 200)


def asha(splits: dict, root: Path, budget: Budget) -> dict:
    from ray import tune

    params = parse_params({"model": {"family": "vae"}, "tune": {"trials": 1, "max_epochs": budget.max_epochs}})
    space = {"model.vae.beta": tune.grid_search(list(budget.betas)),
             "model.vae.learning_rate": tune.grid_search(list(budget.learning_rates))}
    outcomes = {}
    for name, early in (("grid", False), ("asha", True)):
        started = time.perf_counter()
        search = run_search(params, splits["train"], splits["val"], root, name=name, space=space,
                            early_stopping=early, reduction_factor=REDUCTION)
        outcomes[name] = {"trials": len(search.trials), "trial_epochs": search.trial_epochs,
                          "best_metric": round(search.best.metric, 4), "best_config": search.best.sample,
                          "stopped_early": sum(t.stopped_early for t in search.trials),
                          "wall_seconds": round(time.perf_counter() - started, 1)}
    grid, found = outcomes["grid"], outcomes["asha"]
    gap = (found["best_metric"] - grid["best_metric"]) / abs(grid["best_metric"])
    return {"metric": "val_neg_elbo (nats/image, lower is better)",
            "space": f"beta {_set(budget.betas)} x learning_rate {_set(budget.learning_rates)}, "
                     f"{len(budget.betas) * len(budget.learning_rates)} configurations", "max_epochs": budget.max_epochs,
            "asha": {"grace_epochs": GRACE, "reduction_factor": REDUCTION}, "grid_search": grid, "asha_search": found,
            "asha_gap_to_grid_best": round(gap, 4), "within_2_percent": gap <= 0.02,
            "compute_fraction": round(found["trial_epochs"] / grid["trial_epochs"], 3), "target_fraction": 0.4}


def _set(values: tuple) -> str:
    return "{" + ", ".join(f"{value:g}" for value in values) + "}"


def _agreement(draws: dict[str, list[float]], reference: dict[str, float]) -> tuple[float, float]:
    """Share of (trial pair, draw) whose order matches the reference, and share of draws whose best trial is
    the reference's best. Draw k of every trial is compared with draw k of the others."""
    names = sorted(reference)
    best = min(names, key=reference.get)
    pairs = list(itertools.combinations(names, 2))
    n_draws = len(draws[names[0]])
    agree = sum((draws[a][k] < draws[b][k]) == (reference[a] < reference[b]) for a, b in pairs for k in range(n_draws))
    best_agree = sum(min(names, key=lambda name: draws[name][k]) == best for k in range(n_draws))
    return agree / (len(pairs) * n_draws), best_agree / n_draws


def fd_sample_size(splits: dict, root: Path, budget: Budget) -> dict:
    from ray import tune

    classifier = train_classifier(splits["train"], ClassifierArchitecture(8, 1, 10), 5, 128, 1e-3, 0)
    params = parse_params({"model": {"family": "gan"}, "tune": {"trials": 1, "max_epochs": budget.gan_epochs}})
    space = {"model.gan.d_steps_per_g_step": tune.grid_search(list(budget.d_steps)),
             "model.gan.g_learning_rate": tune.grid_search(list(budget.g_learning_rates))}
    started = time.perf_counter()
    search = run_search(params, splits["train"], splits["val"], root, SavedClassifier.of(classifier), name="gan-fd",
                        space=space, early_stopping=False)
    search_seconds = time.perf_counter() - started
    features = FeatureModule(classifier)
    real = features_of(to_tensor(splits["val"].images), features, 512)
    scores: dict[int, dict[str, list[float]]] = {n: {} for n in (*budget.fd_sizes, budget.reference_size)}
    for trial in search.trials:
        name = ",".join(f"{key}={value}" for key, value in sorted(trial.sample.items()))
        model = load_model_dir(trial.checkpoint_path)
        for n in scores:  # seeds differ between sizes: the reference's draws are independent of the others
            scores[n][name] = [frechet_from_features(real, features_of(generate(model, n, n * 1000 + k, 512),
                                                                       features, 512)) for k in range(budget.fd_draws)]
    reference = {name: statistics.mean(values) for name, values in scores.pop(budget.reference_size).items()}
    by_size = {}
    for n in budget.fd_sizes:
        pairs, best = _agreement(scores[n], reference)
        by_size[str(n)] = {
            "fd_mean_per_trial": {name: round(statistics.mean(v), 2) for name, v in scores[n].items()},
            "draw_sd_median_over_trials": round(statistics.median(statistics.stdev(v) for v in scores[n].values()), 3),
            "pair_order_agreement": round(pairs, 3), "best_trial_agreement": round(best, 3)}
    return {"family": "gan", "metric": "val_fd (FD in the domain classifier's feature space, lower is better)",
            "space": f"d_steps_per_g_step {_set(budget.d_steps)} x g_learning_rate {_set(budget.g_learning_rates)}, "
                     f"{len(search.trials)} trials of {budget.gan_epochs} epochs",
            "validation_images": len(splits["val"]), "draws_per_size": budget.fd_draws,
            "reference": f"mean of {budget.fd_draws} independent draws of {budget.reference_size} samples",
            "reference_fd_per_trial": {name: round(value, 2) for name, value in reference.items()},
            "search_wall_seconds": round(search_seconds, 1), "sizes": by_size,
            "default_fd_samples": params.model.settings.fd_samples,
            "previous_behaviour": f"as many samples as validation images ({len(splits['val'])})"}


PARTS = {"asha": asha, "fd_sample_size": fd_sample_size}


def main(parts: Sequence[str] = tuple(PARTS), quick: bool = False, output: Path | None = None) -> dict:
    """Runs `parts` and writes them, stamped with this commit: a part not run is not carried over from an older
    result (it would carry that result's commit under this one)."""
    import ray

    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown part(s) {sorted(unknown)}; choose from {sorted(PARTS)}")
    output = output_path(RESULT, quick, output)
    splits = split_dataset(digits(), 0, 0.1, 0.1)
    result: dict = {"benchmark": "tune_efficiency", "quick": quick}
    for part in parts:
        with tempfile.TemporaryDirectory() as root:
            result[part] = PARTS[part](splits, Path(root), QUICK if quick else FULL)
        result = write_result(output, result, shown={part: result[part]})
    ray.shutdown()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", help=f"of {', '.join(PARTS)} (default: both)")
    add_quick_arguments(parser, RESULT, "2-trial grids, 1-2 epochs, small FD draws")
    arguments = parser.parse_args()
    main(arguments.parts or list(PARTS), arguments.quick, arguments.output)
