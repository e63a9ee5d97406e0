"""Statistics the side-by-side benchmarks (`bench.quality`, `bench.train_throughput`) report and judge by.

- `speed_ratios`: ours against a reference over interleaved rounds (round i of `ours` is paired with round i of
  `reference`): the median of per-round ratios, the ratio of medians and the spread of the per-round ratios;
  with a target, the verdict on the median of per-round ratios and, when it is missed, the factor it is missed by
  (target / median ratio; None when met, or when the median ratio is not positive and no factor applies).
- `no_worse_over_seeds`: per-seed differences (ours - reference, lower is better for both) judged across seeds
  against a non-inferiority margin the benchmark fixes before it runs: ours is no worse when the upper end of the
  difference's interval, mean + 2 seed-level standard errors (sample SD / sqrt(seeds)), is at most the margin.
  A noisy comparison therefore cannot pass by its noise: more spread widens the interval past the margin.
"""

from __future__ import annotations

import statistics

VERDICT_STATISTIC = "median_of_round_ratios"
NO_WORSE_RULE = ("no worse when mean difference (ours - reference) + 2 x standard error <= margin, "
                 "standard error = SD over seeds / sqrt(seeds)")


def speed_ratios(ours: list[float], reference: list[float], target: float | None = None) -> dict:
    if len(ours) != len(reference) or not ours:
        raise ValueError(f"need one reference per round: {len(ours)} rounds, {len(reference)} references")
    ratios = [o / r for o, r in zip(ours, reference)]
    median = statistics.median(ratios)
    result = {"median_of_round_ratios": round(median, 3),
              "ratio_of_medians": round(statistics.median(ours) / statistics.median(reference), 3),
              "round_ratios": [round(r, 3) for r in ratios], "min": round(min(ratios), 3), "max": round(max(ratios), 3)}
    if target is not None:
        met = median >= target
        result |= {"target": target, "met": met, "verdict_statistic": VERDICT_STATISTIC,
                   "shortfall": None if met or median <= 0 else round(target / median, 3)}
    return result


def no_worse_over_seeds(differences: list[float], margin: float) -> dict:
    if len(differences) < 2:
        raise ValueError("a spread over seeds needs at least two seeds")
    if margin < 0:
        raise ValueError(f"a non-inferiority margin is not negative, got {margin}")
    mean, sd = statistics.mean(differences), statistics.stdev(differences)
    error = sd / len(differences) ** 0.5
    return {"mean_difference": round(mean, 4), "difference_sd": round(sd, 4), "standard_error": round(error, 4),
            "upper_bound": round(mean + 2 * error, 4), "margin": round(margin, 4), "seeds": len(differences),
            "rule": NO_WORSE_RULE, "no_worse": mean + 2 * error <= margin}
