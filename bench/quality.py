"""Side-by-side quality at an equal budget (same data split, epochs, batch size, networks):

(a) our β-VAE (Ray Train) against pythae's BetaVAE built from the *same* encoder/decoder modules, and
(b) our GAN (Ray Train) against a plain single-process PyTorch DCGAN loop.

Ours runs in one layout, `single_1x2` (one Ray Train worker with all threads, the fast layout on a small CPU
machine); layout and precision comparisons (DDP workers, bf16) live in bench/profile_epoch.py and
bench/train_throughput.py. Each pair is trained over `SEEDS` training seeds (`train.seed` for ours, the torch
seed for pythae and the plain loop); the data split and the domain classifier stay fixed (seed 0), so every
model is scored on the same test images. A seed is a round: its pair runs back to back, the reference first on
even rounds and ours first on odd ones, so machine drift hits both sides.

Every model is scored by the same code: `fd` (and kid, precision, recall, density, coverage) in the domain
classifier's feature space on the test split; VAEs also by the importance-weighted `nll` (nats/image).
Throughput is the median images/s of training passes after the first epoch. Verdicts (bench/_stats.py):

- VAE speed: ours ÷ pythae images/s per round; the median of per-round ratios against the target (1.5x on
  Fashion-MNIST, 1.0x on digits), with the ratio of medians and the spread beside it;
- VAE NLL: per seed the paired per-image gap (ours - pythae NLL on the same test images) and its standard error;
  across seeds ours is worse only if the mean gap exceeds two seed-level standard errors (SD of the per-seed gaps
  / sqrt(seeds), an error that already contains the image noise);
- GAN FD: per seed ours - plain; the same rule over seeds; images/s ratios as for the VAE (no target).

    python -m bench.quality            # Fashion-MNIST and digits; writes bench/results/quality.json
    python -m bench.quality digits     # one dataset
    python -m bench.quality --quick digits --output /tmp/quality_quick.json   # smoke run (or GENP_BENCH_QUICK=1):
                                       # 2 epochs, 2 seeds, 5 importance samples; never the committed result
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from torch.nn import functional as F

from gen_platform.config import PipelineParams, parse_params
from gen_platform.data.arrays import ImageArrays, to_tensor
from gen_platform.data.sources import builtin
from gen_platform.data.splits import split_dataset
from gen_platform.evaluation.classifier import ClassifierArchitecture, FeatureModule, accuracy, train_classifier
from gen_platform.evaluation.distribution import distribution_metrics, features_of
from gen_platform.models.vae import importance_weighted_log_likelihoods
from gen_platform.models import gan, get_family, vae

from bench._results import write_result
from bench._stats import no_worse_over_seeds, speed_ratios

RESULT = Path(__file__).parent / "results" / "quality.json"
THREADS = os.cpu_count() or 1
LAYOUT_NAME, LAYOUT = "single_1x2", {"num_workers": 1, "cpus_per_worker": THREADS}  # ours: train params
SEEDS = (0, 1, 2)
NLL_IMAGES, NLL_SAMPLES = 1000, 100
SETTINGS = {  # dataset → (image size, epochs, test images scored, target VAE speed-up over pythae)
    "fashion-mnist": (28, 3, 2000, 1.5),
    "digits": (8, 15, 360, 1.0),
}


class Budget(NamedTuple):
    seeds: tuple[int, ...]
    nll_samples: int
    epochs: int | None  # None: the dataset's SETTINGS


FULL, QUICK = Budget(SEEDS, NLL_SAMPLES, None), Budget((0, 1), 5, 2)
Side = Callable[[int], tuple]  # seed → (scores, per-image log p(x) or None, training images/s)


def _progress(message: str) -> None:
    print(f"[quality {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _params(dataset: str, size: int, epochs: int, model: dict, seed: int = 0) -> PipelineParams:
    return parse_params({"data": {"dataset": dataset, "image_size": size}, "model": model,
                         "train": {"epochs": epochs, "max_failures": 0, "seed": seed, **LAYOUT}})


def _ours(params: PipelineParams, splits: dict[str, ImageArrays]) -> tuple[torch.nn.Module, float]:
    from gen_platform.training.launcher import fit

    with tempfile.TemporaryDirectory() as root:
        result = fit(params, splits["train"], splits["val"], run_name="quality", root=Path(root))
    model = get_family(params.model.family).rebuild(result.architecture)
    model.load_state_dict(result.model_state)
    return model.eval(), statistics.median(r["images_per_second"] for r in result.history[1:] or result.history)


def _pythae_beta_vae(params: PipelineParams, train: ImageArrays, workdir: str) -> tuple[torch.nn.Module, float]:
    """pythae's BetaVAE and trainer around the modules of one of our ConvVAEs (so the networks are identical)."""
    from pythae.data.preprocessors import DataProcessor
    from pythae.models import BetaVAE, BetaVAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)
    torch.manual_seed(params.train.seed)
    ours = vae.ConvVAE(vae.architecture_from(params.data, params.model.settings))

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.encoder, self.to_stats = ours.encoder, ours.to_stats

        def forward(self, x):
            mean, log_var = self.to_stats(self.encoder(x)).chunk(2, dim=1)
            return ModelOutput(embedding=mean, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.from_latent, self.decoder = ours.from_latent, ours.decoder

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.decoder(self.from_latent(z).view(-1, *ours.bottom_shape))))

    config = BetaVAEConfig(input_dim=(params.data.channels, params.data.image_size, params.data.image_size),
                           latent_dim=params.model.settings.latent_dim, beta=params.model.settings.beta, reconstruction_loss="bce")
    model = BetaVAE(config, Encoder(), Decoder())
    trainer_config = BaseTrainerConfig(output_dir=workdir, num_epochs=params.train.epochs,
                                       per_device_train_batch_size=params.train.batch_size,
                                       learning_rate=params.model.settings.learning_rate, optimizer_cls="Adam",
                                       no_cuda=True, steps_saving=None, seed=params.train.seed)
    dataset = DataProcessor.to_dataset(DataProcessor().process_data(to_tensor(train.images).numpy()))
    trainer = BaseTrainer(model=model, train_dataset=dataset, training_config=trainer_config)
    trainer.prepare_training()
    rates = []
    for epoch in range(1, params.train.epochs + 1):
        started = time.perf_counter()
        trainer.train_step(epoch)
        rates.append(len(dataset) / (time.perf_counter() - started))
    return ours.eval(), statistics.median(rates[1:] or rates)


def _plain_dcgan(params: PipelineParams, train: ImageArrays) -> tuple[torch.nn.Module, float]:
    """The textbook loop: one D step then one G step per batch, non-saturating loss, Adam(2e-4, β1=0.5)."""
    torch.manual_seed(params.train.seed)
    model = gan.GAN(gan.architecture_from(params.data, params.model.settings))
    g_opt = torch.optim.Adam(model.generator.parameters(), lr=params.model.settings.g_learning_rate, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(model.discriminator.parameters(), lr=params.model.settings.d_learning_rate, betas=(0.5, 0.999))
    images = to_tensor(train.images) * 2 - 1
    rates = []
    for _ in range(params.train.epochs):
        started = time.perf_counter()
        for batch in images[torch.randperm(len(images))].split(params.train.batch_size):
            fake = model.generator(torch.randn(len(batch), params.model.settings.latent_dim))
            d_loss = F.softplus(-model.discriminator(batch)).mean() + F.softplus(model.discriminator(fake.detach())).mean()
            d_opt.zero_grad()
            d_loss.backward()
            d_opt.step()
            g_loss = F.softplus(-model.discriminator(fake)).mean()
            g_opt.zero_grad()
            g_loss.backward()
            g_opt.step()
        rates.append(len(images) / (time.perf_counter() - started))
    return model.eval(), statistics.median(rates[1:] or rates)


def _score(model: torch.nn.Module, test: torch.Tensor, features: FeatureModule,
           nll_samples: int = NLL_SAMPLES) -> tuple[dict[str, float], torch.Tensor | None]:
    """Distribution metrics, plus (VAE) the NLL and the per-image log-likelihoods it averages."""
    fake = torch.cat([model.sample(min(500, len(test) - i), torch.Generator().manual_seed(i))
                      for i in range(0, len(test), 500)])
    scores = distribution_metrics(features_of(test, features, 512), features_of(fake, features, 512))
    log_px = None
    if hasattr(model, "encode"):
        log_px = importance_weighted_log_likelihoods(model, test[:NLL_IMAGES], samples=nll_samples)
        scores["nll"] = -log_px.mean().item()
    return {k: round(v, 4) for k, v in scores.items()}, log_px


def _paired_nll_gap(ours: torch.Tensor, theirs: torch.Tensor) -> dict[str, float | bool]:
    """Mean of (our NLL - their NLL) per image and its standard error; worse (on this seed's images) only beyond two
    errors. The verdict across seeds is `no_worse_over_seeds` of these means."""
    gap = (theirs - ours).double()  # NLL = -log p(x)
    mean, error = gap.mean().item(), (gap.std() / len(gap) ** 0.5).item()
    return {"nll_gap": round(mean, 4), "nll_gap_standard_error": round(error, 4),
            "nll_no_worse_this_seed": mean <= 2 * error}


def _rounds(label: str, sides: dict[str, Side], seeds: tuple[int, ...]) -> list[dict]:
    """One round per seed: the two sides back to back, the first-named side first on even rounds, last on odd."""
    rounds = []
    for i, seed in enumerate(seeds):
        order = list(sides) if i % 2 == 0 else list(sides)[::-1]
        results = {}
        for side in order:
            _progress(f"{label} seed {seed}: {side} ...")
            started = time.perf_counter()
            results[side] = sides[side](seed)
            _progress(f"{label} seed {seed}: {side} done in {time.perf_counter() - started:.0f}s")
        rounds.append({"seed": seed, "order": order, **results})
    return rounds


def _spread(values: list[float]) -> dict:
    return {"per_seed": values, "mean": round(statistics.mean(values), 4), "sd": round(statistics.stdev(values), 4)}


def run(dataset: str, budget: Budget = FULL) -> dict:
    size, epochs, scored, target = SETTINGS[dataset]
    epochs = budget.epochs or epochs
    splits = split_dataset(builtin(dataset), seed=0, val_fraction=0.1, test_fraction=0.1)
    _progress(f"{dataset}: domain classifier")
    classifier = train_classifier(splits["train"], ClassifierArchitecture(size, 1, 10), 3, 128, 1e-3, 0)
    features = FeatureModule(classifier)
    test = to_tensor(splits["test"].images[:scored])

    def scored_side(train: Callable[[PipelineParams], tuple[torch.nn.Module, float]], family: str) -> Side:
        def side(seed: int) -> tuple[dict[str, float], torch.Tensor | None, float]:
            torch.set_num_threads(THREADS)
            model, rate = train(_params(dataset, size, epochs, {"family": family}, seed))
            return *_score(model, test, features, budget.nll_samples), rate
        return side

    def pythae(params: PipelineParams) -> tuple[torch.nn.Module, float]:
        with tempfile.TemporaryDirectory() as workdir:
            return _pythae_beta_vae(params, splits["train"], workdir)

    def ours(params: PipelineParams) -> tuple[torch.nn.Module, float]:
        return _ours(params, splits)

    vae_rounds = []
    for r in _rounds(f"{dataset} vae", {"pythae": scored_side(pythae, "vae"), "ours": scored_side(ours, "vae")},
                     budget.seeds):
        (theirs, their_log_px, their_rate), (mine, my_log_px, my_rate) = r["pythae"], r["ours"]
        vae_rounds.append({"seed": r["seed"], "order": r["order"],
                           "pythae": theirs | {"images_per_second": round(their_rate, 1)},
                           "ours": mine | {"images_per_second": round(my_rate, 1)},
                           "speedup": round(my_rate / their_rate, 3)} | _paired_nll_gap(my_log_px, their_log_px))
    gaps = no_worse_over_seeds([r["nll_gap"] for r in vae_rounds])
    nll = {"pythae_per_seed": [r["pythae"]["nll"] for r in vae_rounds],
           "ours_per_seed": [r["ours"]["nll"] for r in vae_rounds],
           "gap_per_seed": [r["nll_gap"] for r in vae_rounds],
           "gap_standard_error_per_seed": [r["nll_gap_standard_error"] for r in vae_rounds],
           "mean_gap": gaps["mean_difference"], "seed_sd": gaps["difference_sd"],
           "standard_error": gaps["standard_error"],
           "rule": "gap = ours - pythae NLL (nats/image) per image, averaged per seed; no worse when mean_gap <= "
                   "2 x standard_error, standard_error = seed_sd / sqrt(seeds) (a seed-level error that already "
                   "contains the per-image noise)",
           "nll_no_worse": gaps["no_worse"]}

    def plain(params: PipelineParams) -> tuple[torch.nn.Module, float]:
        return _plain_dcgan(params, splits["train"])

    gan_rounds = []
    for r in _rounds(f"{dataset} gan", {"plain_loop": scored_side(plain, "gan"), "ours": scored_side(ours, "gan")},
                     budget.seeds):
        (theirs, _, their_rate), (mine, _, my_rate) = r["plain_loop"], r["ours"]
        gan_rounds.append({"seed": r["seed"], "order": r["order"],
                           "plain_loop": theirs | {"images_per_second": round(their_rate, 1)},
                           "ours": mine | {"images_per_second": round(my_rate, 1)},
                           "fd_difference": round(mine["fd"] - theirs["fd"], 4)})
    differences = no_worse_over_seeds([r["fd_difference"] for r in gan_rounds])
    fd = {"plain_loop": _spread([r["plain_loop"]["fd"] for r in gan_rounds]),
          "ours": _spread([r["ours"]["fd"] for r in gan_rounds]),
          "difference_per_seed": [r["fd_difference"] for r in gan_rounds],
          **{k: differences[k] for k in ("mean_difference", "difference_sd", "standard_error")},
          "rule": "difference = ours - plain FD per seed; no worse when mean_difference <= 2 x standard_error, "
                  "standard_error = difference_sd / sqrt(seeds)",
          "fd_no_worse": differences["no_worse"]}

    return {
        "split": {k: len(v) for k, v in splits.items()}, "epochs": epochs,
        "batch_size": _params(dataset, size, epochs, {"family": "gan"}).train.batch_size,
        "classifier_test_accuracy": round(accuracy(classifier, splits["test"]), 4), "scored_test_images": len(test),
        "nll": {"test_images": min(NLL_IMAGES, len(test)), "importance_samples": budget.nll_samples},
        "seeds": list(budget.seeds),
        "vae": {"rounds": vae_rounds,
                "speedup": speed_ratios([r["ours"]["images_per_second"] for r in vae_rounds],
                                        [r["pythae"]["images_per_second"] for r in vae_rounds], target),
                "nll": nll},
        "gan": {"rounds": gan_rounds,
                "speed": speed_ratios([r["ours"]["images_per_second"] for r in gan_rounds],
                                      [r["plain_loop"]["images_per_second"] for r in gan_rounds]),
                "fd": fd},
    }


def main(argv: list[str] | None = None) -> dict:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", help=f"of {', '.join(SETTINGS)} (default: all)")
    parser.add_argument("--quick", action="store_true", default=os.environ.get("GENP_BENCH_QUICK") == "1",
                        help=f"smoke run: {QUICK.epochs} epochs, {len(QUICK.seeds)} seeds, {QUICK.nll_samples} "
                             "importance samples (or GENP_BENCH_QUICK=1)")
    parser.add_argument("--output", type=Path, help=f"default {RESULT} (quick: the temp directory)")
    arguments = parser.parse_args(argv)
    unknown = set(arguments.datasets) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown datasets {sorted(unknown)}; choose from {list(SETTINGS)}")
    budget = QUICK if arguments.quick else FULL
    output = arguments.output or (Path(tempfile.gettempdir()) / "quality_quick.json" if arguments.quick else RESULT)
    if arguments.quick and output.resolve() == RESULT.resolve():
        parser.error(f"a quick run does not overwrite {RESULT}")

    datasets = arguments.datasets or list(SETTINGS)
    results = {"benchmark": "quality", "quick": arguments.quick, "threads": THREADS, "layout": {LAYOUT_NAME: LAYOUT},
               "datasets": {name: run(name, budget) for name in datasets}}
    results["verdicts"] = {name: {"vae_speedup_met": r["vae"]["speedup"]["met"],
                                  "vae_speedup_shortfall": r["vae"]["speedup"]["shortfall"],
                                  "nll_no_worse": r["vae"]["nll"]["nll_no_worse"],
                                  "fd_no_worse": r["gan"]["fd"]["fd_no_worse"]}
                           for name, r in results["datasets"].items()}
    ray.shutdown()
    return write_result(output, results)


if __name__ == "__main__":
    main()
