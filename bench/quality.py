"""Side-by-side speed and quality at an equal budget (same data split, epochs, batch size, networks):

(a) our β-VAE (Ray Train) against pythae's BetaVAE built from the *same* encoder/decoder modules, and
(b) our GAN (Ray Train) against a plain single-process PyTorch DCGAN loop with the same networks.

Like for like. Identical on both sides: the networks and their initial weights (same seed, same constructors),
Adam with the fused kernel (ours by default, each reference told so), learning rates and betas, batch size,
epochs, the torch threads (ours: one Ray Train worker with every core; a reference: this process with every
core), and the test images every model is scored on. Not identical, and said so: the data path (ours reads the
uint8 shards a pipeline writes and converts each batch; pythae its DataLoader over a float tensor; the plain loop
indexes a float tensor in memory: both references skip work ours does), ours validates and checkpoints every
epoch (counted in its time), and ours runs in a Ray Train worker process. No Ray runtime is alive while a
reference trains: ours stops its runtime after each fit, and a reference refuses to start while a process the
runtime started is still running.

Each pair is trained over `SEEDS` training seeds (`train.seed` for ours, the torch seed for the references); the
data split and the domain classifier stay fixed (seed 0), so every model is scored on the same test images. A
seed is a round: its pair runs back to back, the reference first on even rounds and ours first on odd ones, so
machine drift hits both sides. Every model is scored by the same code: `fd` (and kid, precision, recall, density,
coverage) in the domain classifier's feature space on the test split; VAEs also by the importance-weighted `nll`.

Verdicts (bench/_stats.py), their targets and non-inferiority margins fixed here before any run:

- VAE time to quality, `vae_time_to_reference_nll_ratio`: ours is scored after every epoch; per seed, the time
  ours took to first reach the reference's final NLL (its epochs' wall seconds up to that one: training pass,
  validation, checkpoint) over the reference's training time (all its epochs); the median over seeds against
  `TARGETS` (a seed where ours never reaches it counts as infinite). Start-up (Ray's runtime and workers,
  pythae's trainer set-up) is left out on both sides and reported beside it. The training-pass images/s ratio is
  reported too.
- GAN speed, `gan_images_per_second_ratio`: ours ÷ the plain loop's images/s of the training passes after the
  first epoch, per seed; the median over seeds against `TARGETS`.
- With `--vae-prior-components K`, ours' β-VAE is the model the pipeline saves: after an epoch's weights, its latent
  prior is fitted (a K-component mixture over the codes of the first training images, gen_platform/models/vae.py)
  and the model is scored under it; the fit's seconds are added to that epoch's time. pythae's β-VAE keeps N(0, I):
  the comparison is then of the two models' time to the same NLL, not of one model's training.
- VAE NLL and GAN FD, no worse: per seed ours − reference (for the NLL, paired over the same test images);
  no worse when the mean difference + 2 seed-level standard errors is at most the margin (`NLL_MARGIN`,
  `FD_MARGIN`: fractions of the reference's mean over seeds).

    python -m bench.quality            # Fashion-MNIST and digits; writes bench/results/quality.json
    python -m bench.quality digits     # one dataset
    python -m bench.quality --precision bf16 --output /tmp/quality_bf16.json   # ours with bf16 autocast
    python -m bench.quality fashion-mnist --families vae --vae-prior-components 10 --output /tmp/quality_prior.json
                                       # ours' β-VAE with the fitted latent prior (below)
    python -m bench.quality --quick digits --output /tmp/quality_quick.json   # smoke run (or GENP_BENCH_QUICK=1):
                                       # 2 epochs, 2 seeds, 5 importance samples; never the committed result
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
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
from gen_platform.models import gan, get_family, vae
from gen_platform.models.family import AFTER_TRAINING_IMAGES
from gen_platform.models.vae import importance_weighted_log_likelihoods
from gen_platform.nets import adam
from gen_platform.training.hooks import EpochHook, WorkerState

from bench._results import add_quick_arguments, output_path, write_result
from bench._stats import no_worse_over_seeds, speed_ratios

RESULT = Path(__file__).parent / "results" / "quality.json"
THREADS = os.cpu_count() or 1
LAYOUT_NAME, LAYOUT = "single_1x2", {"num_workers": 1, "cpus_per_worker": THREADS}  # ours: train params
SEEDS = (0, 1, 2, 3, 4)
NLL_IMAGES, NLL_SAMPLES = 1000, 100
# The β-VAE as pythae defines it (β = 1, sampled from N(0, I)), not the pipeline's default β; with
# --vae-prior-components ours fits the latent prior the pipeline fits once training ends (model.vae.prior_components).
MODELS = {"vae": {"vae": {"beta": 1.0, "prior_components": 0}}, "gan": {}}
FAMILIES = tuple(MODELS)
SETTINGS = {  # dataset → (image size, epochs, test images scored)
    "fashion-mnist": (28, 3, 2000),
    "digits": (8, 15, 360),
}
# Targets: VAE time to the reference's NLL (at most this fraction of its time), GAN images/s (at least this ratio).
TARGETS = {"fashion-mnist": {"vae_time_to_reference_nll_ratio": 0.67, "gan_images_per_second_ratio": 1.0},
           "digits": {"vae_time_to_reference_nll_ratio": 1.0, "gan_images_per_second_ratio": 1.0}}
NLL_MARGIN = 0.01  # ours may be worse by at most 1 % of the reference's mean NLL (nats/image)
FD_MARGIN = 0.10   # and by at most 10 % of the reference's mean FD


class Budget(NamedTuple):
    seeds: tuple[int, ...]
    nll_samples: int
    epochs: int | None  # None: the dataset's SETTINGS


FULL, QUICK = Budget(SEEDS, NLL_SAMPLES, None), Budget((0, 1), 5, 2)


@dataclass
class Trained:
    """One side's training: the model, the median images/s of its training passes after the first epoch, its
    training seconds and start-up seconds, and (ours) each epoch's wall seconds and weights."""
    model: torch.nn.Module
    images_per_second: float
    train_seconds: float
    startup_seconds: float
    epochs: list[tuple[float, dict]] = field(default_factory=list)


def _progress(message: str) -> None:
    print(f"[quality {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _params(dataset: str, size: int, epochs: int, model: dict, seed: int = 0, precision: str = "fp32") -> PipelineParams:
    return parse_params({"data": {"dataset": dataset, "image_size": size}, "model": model,
                         "train": {"epochs": epochs, "max_failures": 0, "seed": seed, "precision": precision, **LAYOUT}})


@dataclass
class EpochWeights(EpochHook):
    """Rank 0 keeps each epoch's weights and wall seconds (start to reported: training pass, validation,
    checkpoint), written after the epoch's clock stopped so that the copy costs it nothing."""
    directory: str

    def on_epoch_start(self, state: WorkerState) -> None:
        self._started = time.monotonic()

    def on_epoch_end(self, state: WorkerState, model: torch.nn.Module) -> None:
        if state.rank == 0:
            self._weights = {name: value.detach().clone() for name, value in model.state_dict().items()}

    def on_epoch_reported(self, state: WorkerState, record: dict[str, float]) -> None:
        if state.rank == 0:
            seconds = time.monotonic() - self._started
            torch.save({"seconds": seconds, "weights": self._weights}, Path(self.directory) / f"{state.epoch:04d}.pt")


def _ours(params: PipelineParams, splits: dict[str, ImageArrays]) -> Trained:
    import ray

    from gen_platform.training.launcher import fit

    with tempfile.TemporaryDirectory() as root, tempfile.TemporaryDirectory() as weights:
        started = time.perf_counter()
        result = fit(params, splits["train"], splits["val"], run_name="quality", root=Path(root),
                     hooks=(EpochWeights(weights),))
        wall = time.perf_counter() - started
        ray.shutdown()  # the next reference trains with no Ray process alive
        epochs = [(saved["seconds"], saved["weights"]) for saved in
                  (torch.load(path, weights_only=True) for path in sorted(Path(weights).glob("*.pt")))]
    model = get_family(params.model.family).rebuild(result.architecture)
    model.load_state_dict(result.model_state)
    train_seconds = sum(seconds for seconds, _ in epochs)
    return Trained(model.eval(), statistics.median(r["images_per_second"] for r in result.history[1:] or result.history),
                   train_seconds, wall - train_seconds, epochs)


def _children() -> set[int]:
    import psutil

    return {child.pid for child in psutil.Process().children(recursive=True)
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE}


def _alone(before: set[int]) -> None:
    """A reference trains with no Ray runtime of ours alive: no runtime in this process, and no process started
    since `before` (the processes this benchmark found at its start) still running."""
    import psutil
    import ray

    if ray.is_initialized():
        raise RuntimeError("a reference must not train beside a Ray runtime: ray.shutdown() first")
    deadline = time.monotonic() + 30
    while left := _children() - before:
        if time.monotonic() > deadline:
            names = []
            for pid in left:
                try:
                    names.append(psutil.Process(pid).name())
                except psutil.NoSuchProcess:
                    pass
            raise RuntimeError(f"processes still running beside a reference: {names}")
        time.sleep(0.2)


def _pythae_beta_vae(params: PipelineParams, train: ImageArrays, workdir: str) -> Trained:
    """pythae's BetaVAE and trainer around the modules of one of our ConvVAEs (so the networks are identical)."""
    from pythae.data.preprocessors import DataProcessor
    from pythae.models import BetaVAE, BetaVAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    started = time.perf_counter()
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
                                       optimizer_params={"fused": True}, no_cuda=True, steps_saving=None,
                                       seed=params.train.seed)
    dataset = DataProcessor.to_dataset(DataProcessor().process_data(to_tensor(train.images).numpy()))
    trainer = BaseTrainer(model=model, train_dataset=dataset, training_config=trainer_config)
    trainer.prepare_training()
    startup = time.perf_counter() - started
    seconds = []
    for epoch in range(1, params.train.epochs + 1):
        started = time.perf_counter()
        trainer.train_step(epoch)
        seconds.append(time.perf_counter() - started)
    rates = [len(dataset) / s for s in seconds]
    return Trained(ours.eval(), statistics.median(rates[1:] or rates), sum(seconds), startup)


def _plain_dcgan(params: PipelineParams, train: ImageArrays) -> Trained:
    """The textbook loop: one D step then one G step per batch, non-saturating loss, Adam(2e-4, β1=0.5) with the
    fused kernel as ours."""
    started = time.perf_counter()
    torch.manual_seed(params.train.seed)
    model = gan.GAN(gan.architecture_from(params.data, params.model.settings))
    settings = params.model.settings
    g_opt = adam(model.generator.parameters(), lr=settings.g_learning_rate, betas=(0.5, 0.999))
    d_opt = adam(model.discriminator.parameters(), lr=settings.d_learning_rate, betas=(0.5, 0.999))
    images = to_tensor(train.images) * 2 - 1
    startup, seconds = time.perf_counter() - started, []
    for _ in range(params.train.epochs):
        started = time.perf_counter()
        for batch in images[torch.randperm(len(images))].split(params.train.batch_size):
            fake = model.generator(torch.randn(len(batch), settings.latent_dim))
            d_loss = F.softplus(-model.discriminator(batch)).mean() + F.softplus(model.discriminator(fake.detach())).mean()
            d_opt.zero_grad()
            d_loss.backward()
            d_opt.step()
            g_loss = F.softplus(-model.discriminator(fake)).mean()
            g_opt.zero_grad()
            g_loss.backward()
            g_opt.step()
        seconds.append(time.perf_counter() - started)
    rates = [len(images) / s for s in seconds]
    return Trained(model.eval(), statistics.median(rates[1:] or rates), sum(seconds), startup)


def _nll(model: torch.nn.Module, test: torch.Tensor, samples: int) -> torch.Tensor:
    """Per-image log p(x) of the first NLL_IMAGES test images, importance-weighted, the same draws for every model."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return importance_weighted_log_likelihoods(model, test[:NLL_IMAGES], samples=samples)


def _score(model: torch.nn.Module, test: torch.Tensor, features: FeatureModule) -> dict[str, float]:
    """Distribution metrics of test-sized samples against the test images, in the domain classifier's features."""
    fake = torch.cat([model.sample(min(500, len(test) - i), torch.Generator().manual_seed(i))
                      for i in range(0, len(test), 500)])
    scores = distribution_metrics(features_of(test, features, 512), features_of(fake, features, 512))
    return {k: round(v, 4) for k, v in scores.items()}


def _time_to_nll(ours: Trained, reference_nll: float, test: torch.Tensor, nll_samples: int,
                 finished: Callable[[dict], tuple[torch.nn.Module, float]]) -> dict:
    """Ours scored after every epoch: its NLL per epoch and the wall seconds until it first reached
    `reference_nll` (None when it never did). `finished` makes the model of an epoch's weights as the pipeline would
    save it, with the seconds that took beyond training (the fit of a latent prior): an epoch's time is the training
    up to it plus that."""
    curve, elapsed, reached = [], 0.0, None
    for seconds, weights in ours.epochs:
        elapsed += seconds
        model, finishing = finished(weights)
        nll = -_nll(model, test, nll_samples).mean().item()
        curve.append({"seconds": round(elapsed + finishing, 3), "nll": round(nll, 4)})
        if reached is None and nll <= reference_nll:
            reached = elapsed + finishing
    return {"nll_per_epoch": curve, "seconds_to_reference_nll": None if reached is None else round(reached, 3)}


def _paired_nll_gap(ours: torch.Tensor, theirs: torch.Tensor) -> dict[str, float]:
    """Mean of (our NLL - their NLL) per image and its standard error, on this seed's images."""
    gap = (theirs - ours).double()  # NLL = -log p(x)
    return {"nll_gap": round(gap.mean().item(), 4), "nll_gap_standard_error": round((gap.std() / len(gap) ** 0.5).item(), 4)}


def _rounds(label: str, sides: dict[str, Callable[[int], dict]], seeds: tuple[int, ...]) -> list[dict]:
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


def _median_against(values: list[float], target: float, higher_is_better: bool) -> dict:
    median = statistics.median(values)
    return {"per_seed": [None if math.isinf(v) else v for v in values],
            "median": None if math.isinf(median) else round(median, 3), "target": target,
            "met": median >= target if higher_is_better else median <= target, "verdict_statistic": "median over seeds"}


def _summary(trained: Trained) -> dict:
    return {"images_per_second": round(trained.images_per_second, 1), "train_seconds": round(trained.train_seconds, 2),
            "startup_seconds": round(trained.startup_seconds, 2)}


def run(dataset: str, budget: Budget = FULL, precision: str = "fp32", families: tuple[str, ...] = FAMILIES,
        vae_prior_components: int = 0) -> dict:
    size, epochs, scored = SETTINGS[dataset]
    epochs = budget.epochs or epochs
    splits = split_dataset(builtin(dataset), seed=0, val_fraction=0.1, test_fraction=0.1)
    _progress(f"{dataset}: domain classifier")
    classifier = train_classifier(splits["train"], ClassifierArchitecture(size, 1, 10), 3, 128, 1e-3, 0)
    features = FeatureModule(classifier)
    test = to_tensor(splits["test"].images[:scored])
    before = _children()
    models = MODELS | {"vae": {"vae": MODELS["vae"]["vae"] | {"prior_components": vae_prior_components}}}

    def trained(family: str, train: Callable[[PipelineParams], Trained], reference: bool) -> Callable[[int], tuple]:
        def side(seed: int) -> tuple[Trained, PipelineParams]:
            torch.set_num_threads(THREADS)
            if reference:
                _alone(before)
            params = _params(dataset, size, epochs, {"family": family, **models[family]}, seed, precision)
            return train(params), params
        return side

    def ours(params: PipelineParams) -> Trained:
        return _ours(params, splits)

    targets = TARGETS[dataset]
    result = {"split": {k: len(v) for k, v in splits.items()}, "epochs": epochs,
              "batch_size": _params(dataset, size, epochs, {"family": "gan"}).train.batch_size,
              "classifier_test_accuracy": round(accuracy(classifier, splits["test"]), 4),
              "scored_test_images": len(test),
              "nll": {"test_images": min(NLL_IMAGES, len(test)), "importance_samples": budget.nll_samples},
              "seeds": list(budget.seeds)}
    if "vae" in families:
        def pythae(params: PipelineParams) -> Trained:
            with tempfile.TemporaryDirectory() as workdir:
                return _pythae_beta_vae(params, splits["train"], workdir)

        rounds = _rounds(f"{dataset} vae", {"pythae": trained("vae", pythae, True), "ours": trained("vae", ours, False)},
                         budget.seeds)
        fit_images = to_tensor(splits["train"].images[:AFTER_TRAINING_IMAGES])
        vae_rounds = [_vae_round(r, test, fit_images, features, budget.nll_samples) for r in rounds]
        reference_nll = statistics.mean(r["pythae"]["nll"] for r in vae_rounds)
        gaps = no_worse_over_seeds([r["nll_gap"] for r in vae_rounds], NLL_MARGIN * reference_nll)
        nll = {"pythae_per_seed": [r["pythae"]["nll"] for r in vae_rounds],
               "ours_per_seed": [r["ours"]["nll"] for r in vae_rounds],
               "gap_per_seed": [r["nll_gap"] for r in vae_rounds],
               "gap_standard_error_per_seed": [r["nll_gap_standard_error"] for r in vae_rounds],
               "margin_fraction_of_reference": NLL_MARGIN, **gaps}
        result["vae_time_to_reference_nll_ratio"] = _median_against(
            [r["time_to_reference_nll_ratio"] for r in vae_rounds], targets["vae_time_to_reference_nll_ratio"], False)
        result["vae"] = {"rounds": vae_rounds,
                         "images_per_second": speed_ratios([r["ours"]["images_per_second"] for r in vae_rounds],
                                                           [r["pythae"]["images_per_second"] for r in vae_rounds]),
                         "nll": nll}
    if "gan" in families:
        def plain(params: PipelineParams) -> Trained:
            return _plain_dcgan(params, splits["train"])

        gan_rounds = []
        for r in _rounds(f"{dataset} gan", {"plain_loop": trained("gan", plain, True), "ours": trained("gan", ours, False)},
                         budget.seeds):
            (theirs, _), (mine, _) = r["plain_loop"], r["ours"]
            their_scores = _score(theirs.model, test, features)
            my_scores = _score(mine.model, test, features)
            gan_rounds.append({"seed": r["seed"], "order": r["order"],
                               "plain_loop": their_scores | _summary(theirs), "ours": my_scores | _summary(mine),
                               "images_per_second_ratio": round(mine.images_per_second / theirs.images_per_second, 3),
                               "fd_difference": round(my_scores["fd"] - their_scores["fd"], 4)})
        reference_fd = statistics.mean(r["plain_loop"]["fd"] for r in gan_rounds)
        fd = {"plain_loop": _spread([r["plain_loop"]["fd"] for r in gan_rounds]),
              "ours": _spread([r["ours"]["fd"] for r in gan_rounds]),
              "difference_per_seed": [r["fd_difference"] for r in gan_rounds], "margin_fraction_of_reference": FD_MARGIN,
              **no_worse_over_seeds([r["fd_difference"] for r in gan_rounds], FD_MARGIN * reference_fd)}
        result["gan_images_per_second_ratio"] = _median_against(
            [r["images_per_second_ratio"] for r in gan_rounds], targets["gan_images_per_second_ratio"], True)
        result["gan"] = {"rounds": gan_rounds,
                         "images_per_second": speed_ratios([r["ours"]["images_per_second"] for r in gan_rounds],
                                                           [r["plain_loop"]["images_per_second"] for r in gan_rounds]),
                         "fd": fd}
    return result


def _vae_round(r: dict, test: torch.Tensor, fit_images: torch.Tensor, features: FeatureModule, nll_samples: int) -> dict:
    """One seed's pair of β-VAEs scored: ours as the pipeline saves it (its latent prior fitted on `fit_images` when
    its `prior_components` ask for one), after every epoch and at the end."""
    (theirs, _), (mine, params) = r["pythae"], r["ours"]

    def finished(weights: dict) -> tuple[torch.nn.Module, float]:
        """Ours with these weights and its prior fitted, and the fit's seconds (0 with N(0, I))."""
        model = vae.ConvVAE(vae.architecture_from(params.data, params.model.settings))
        model.load_state_dict(weights)
        started = time.perf_counter()
        vae.fit_latent_prior(model, fit_images, params.train.seed)
        return model.eval(), time.perf_counter() - started

    final, _ = finished(mine.model.state_dict())
    their_log_px, my_log_px = _nll(theirs.model, test, nll_samples), _nll(final, test, nll_samples)
    their_nll = -their_log_px.mean().item()
    to_nll = _time_to_nll(mine, their_nll, test, nll_samples, finished)
    reached = to_nll["seconds_to_reference_nll"]
    return {"seed": r["seed"], "order": r["order"],
            "pythae": _score(theirs.model, test, features) | {"nll": round(their_nll, 4)} | _summary(theirs),
            "ours": _score(final, test, features) | {"nll": round(-my_log_px.mean().item(), 4)} | _summary(mine) | to_nll,
            "time_to_reference_nll_ratio": math.inf if reached is None else round(reached / theirs.train_seconds, 3),
            "speedup": round(mine.images_per_second / theirs.images_per_second, 3)} | _paired_nll_gap(my_log_px, their_log_px)


def _verdicts(r: dict) -> dict[str, bool]:
    verdicts = {}
    if "vae" in r:
        verdicts |= {"vae_time_to_reference_nll_ratio_met": r["vae_time_to_reference_nll_ratio"]["met"],
                     "nll_no_worse": r["vae"]["nll"]["no_worse"]}
    if "gan" in r:
        verdicts |= {"gan_images_per_second_ratio_met": r["gan_images_per_second_ratio"]["met"],
                     "fd_no_worse": r["gan"]["fd"]["no_worse"]}
    return verdicts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", help=f"of {', '.join(SETTINGS)} (default: all)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="ours' train.precision (the references train in fp32): fp32, the platform's CPU default, "
                             "or bf16 autocast")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES),
                        help="which pairs to run (default: both)")
    parser.add_argument("--vae-prior-components", type=int, default=0, metavar="K",
                        help="ours' β-VAE samples from, and is scored under, a K-component latent prior fitted after "
                             "training (model.vae.prior_components; the fit's seconds count in its time to quality); "
                             "0 (default): N(0, I), as pythae's")
    add_quick_arguments(parser, RESULT,
                        f"{QUICK.epochs} epochs, {len(QUICK.seeds)} seeds, {QUICK.nll_samples} importance samples")
    arguments = parser.parse_args(argv)
    unknown = set(arguments.datasets) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown datasets {sorted(unknown)}; choose from {list(SETTINGS)}")
    budget = QUICK if arguments.quick else FULL
    output = output_path(RESULT, arguments.quick, arguments.output)

    datasets = arguments.datasets or list(SETTINGS)
    results = {"benchmark": "quality", "quick": arguments.quick, "threads": THREADS, "layout": {LAYOUT_NAME: LAYOUT},
               "ours_precision": arguments.precision, "ours_vae_prior_components": arguments.vae_prior_components,
               "targets": TARGETS, "margins": {"nll": NLL_MARGIN, "fd": FD_MARGIN},
               "datasets": {name: run(name, budget, arguments.precision, tuple(arguments.families),
                                      arguments.vae_prior_components) for name in datasets}}
    results["verdicts"] = {name: _verdicts(r) for name, r in results["datasets"].items()}
    return write_result(output, results)


if __name__ == "__main__":
    main()
