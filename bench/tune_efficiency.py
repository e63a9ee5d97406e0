"""How much compute ASHA needs to find (within 2 %) the best model a full grid finds, over the same space.

Both searches run the real tuning code (Ray Tune trials, each a Ray Train training) on digits: a grid of
β × learning rate, every trial to `MAX_EPOCHS`, against ASHA over the same grid. Compute is counted in
trial-epochs (epochs actually trained, summed over trials).

    python -m bench.tune_efficiency      # writes bench/results/tune.json
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from gen_platform.config import parse_params
from gen_platform.data.sources import digits
from gen_platform.data.splits import split_dataset
from gen_platform.tuning.search import run_search

RESULT = Path(__file__).parent / "results" / "tune.json"
MAX_EPOCHS, GRACE, REDUCTION = 8, 1, 3


def main() -> None:
    import ray
    from ray import tune

    params = parse_params({"model": {"family": "vae"}, "tune": {"trials": 1, "max_epochs": MAX_EPOCHS,
                                                                 "grace_epochs": GRACE}})
    space = {"beta": tune.grid_search([0.25, 0.5, 1.0, 2.0, 4.0, 8.0]), "learning_rate": tune.grid_search([5e-4, 2e-3])}
    splits = split_dataset(digits(), 0, 0.1, 0.1)
    outcomes = {}
    with tempfile.TemporaryDirectory() as root:
        for name, early in (("grid", False), ("asha", True)):
            started = time.perf_counter()
            search = run_search(params, splits["train"], splits["val"], Path(root), name=name, space=space,
                                early_stopping=early, reduction_factor=REDUCTION)
            outcomes[name] = {"trials": len(search.trials), "trial_epochs": search.trial_epochs,
                              "best_metric": round(search.best.metric, 4), "best_sample": search.best.sample,
                              "stopped_early": sum(t.stopped_early for t in search.trials),
                              "wall_seconds": round(time.perf_counter() - started, 1)}
    ray.shutdown()
    grid, asha = outcomes["grid"], outcomes["asha"]
    gap = (asha["best_metric"] - grid["best_metric"]) / abs(grid["best_metric"])
    result = {"benchmark": "tune_efficiency", "metric": "val_neg_elbo (nats/image, lower is better)",
              "space": "beta {0.25..8} x learning_rate {5e-4, 2e-3}, 12 configurations",
              "max_epochs": MAX_EPOCHS, "asha": {"grace_epochs": GRACE, "reduction_factor": REDUCTION},
              "grid_search": grid, "asha_search": asha,
              "asha_gap_to_grid_best": round(gap, 4), "within_2_percent": gap <= 0.02,
              "compute_fraction": round(asha["trial_epochs"] / grid["trial_epochs"], 3), "target_fraction": 0.4}
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
