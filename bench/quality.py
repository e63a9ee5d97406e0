"""Side-by-side quality at an equal budget (same data split, epochs, batch size, networks):

(a) our β-VAE (Ray Train) against pythae's BetaVAE built from the *same* encoder/decoder modules, and
(b) our GAN (Ray Train, DDP on both networks) against a plain single-process PyTorch DCGAN loop.

Ours runs in three layouts on the same cores: the default (2 DDP workers x 1 thread), one worker with all
threads, and one worker with bf16 autocast (VAE only), because on a small CPU machine the layout decides the
speed. "NLL no worse" is judged on the paired per-image difference over the same test images: ours is worse
only if the mean difference exceeds two standard errors.

Every model is scored by the same code: `fd` (and kid, precision, recall, density, coverage) in the domain
classifier's feature space on the test split; VAEs also by the importance-weighted `nll` (nats/image).
Throughput is the median images/s of training passes after the first epoch.

    python -m bench.quality            # Fashion-MNIST and digits; writes bench/results/quality.json
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from gen_platform.config import PipelineParams, parse_params
from gen_platform.data.arrays import ImageArrays, to_tensor
from gen_platform.data.sources import builtin
from gen_platform.data.splits import split_dataset
from gen_platform.evaluation.classifier import ClassifierArchitecture, FeatureModule, accuracy, train_classifier
from gen_platform.evaluation.distribution import distribution_metrics
from gen_platform.models.vae import importance_weighted_log_likelihoods
from gen_platform.models import gan, get_family, vae

RESULT = Path(__file__).parent / "results" / "quality.json"
THREADS = os.cpu_count() or 1
LAYOUTS = {  # name → train params
    "ddp_2x1": {"num_workers": 2, "cpus_per_worker": 1},
    "single_1x2": {"num_workers": 1, "cpus_per_worker": THREADS},
    "single_1x2_bf16": {"num_workers": 1, "cpus_per_worker": THREADS, "precision": "bf16"},
}
GAN_LAYOUTS = ("ddp_2x1", "single_1x2")
NLL_IMAGES, NLL_SAMPLES = 1000, 100
SETTINGS = {  # dataset → (image size, epochs, test images scored)
    "fashion-mnist": (28, 3, 2000),
    "digits": (8, 15, 360),
}


def _params(dataset: str, size: int, epochs: int, model: dict, layout: str = "ddp_2x1") -> PipelineParams:
    return parse_params({"data": {"dataset": dataset, "image_size": size}, "model": model,
                         "train": {"epochs": epochs, "max_failures": 0, **LAYOUTS[layout]}})


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
    from pythae.models import BetaVAE, BetaVAEArchitecture
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

    config = BetaVAEArchitecture(input_dim=(params.data.channels, params.data.image_size, params.data.image_size),
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


def _score(model: torch.nn.Module, test: torch.Tensor, features: FeatureModule) -> tuple[dict[str, float], torch.Tensor | None]:
    """Distribution metrics, plus (VAE) the NLL and the per-image log-likelihoods it averages."""
    fake = torch.cat([model.sample(min(500, len(test) - i), torch.Generator().manual_seed(i))
                      for i in range(0, len(test), 500)])
    scores = distribution_metrics(test, fake, features)
    log_px = None
    if hasattr(model, "encode"):
        log_px = importance_weighted_log_likelihoods(model, test[:NLL_IMAGES], samples=NLL_SAMPLES)
        scores["nll"] = -log_px.mean().item()
    return {k: round(v, 4) for k, v in scores.items()}, log_px


def _paired_nll_gap(ours: torch.Tensor, theirs: torch.Tensor) -> dict[str, float | bool]:
    """Mean of (our NLL - their NLL) per image and its standard error; worse only beyond two errors."""
    gap = (theirs - ours).double()  # NLL = -log p(x)
    mean, error = gap.mean().item(), (gap.std() / len(gap) ** 0.5).item()
    return {"nll_gap": round(mean, 4), "nll_gap_standard_error": round(error, 4), "nll_no_worse": mean <= 2 * error}


def run(dataset: str) -> dict:
    size, epochs, scored = SETTINGS[dataset]
    splits = split_dataset(builtin(dataset), seed=0, val_fraction=0.1, test_fraction=0.1)
    classifier = train_classifier(splits["train"], ClassifierArchitecture(size, 1, 10), 3, 128, 1e-3, 0)
    features = FeatureModule(classifier)
    test = to_tensor(splits["test"].images[:scored])
    torch.set_num_threads(THREADS)

    with tempfile.TemporaryDirectory() as workdir:
        pythae_vae, pythae_rate = _pythae_beta_vae(_params(dataset, size, epochs, {"family": "vae"}),
                                                   splits["train"], workdir)
    pythae_scores, pythae_log_px = _score(pythae_vae, test, features)

    def ours(family: str, layout: str) -> tuple[dict[str, float], torch.Tensor | None, float]:
        torch.set_num_threads(THREADS)
        model, rate = _ours(_params(dataset, size, epochs, {"family": family}, layout), splits)
        return *_score(model, test, features), rate

    vae_results = {}
    for layout in LAYOUTS:
        scores, log_px, rate = ours("vae", layout)
        vae_results[layout] = scores | {"images_per_second": round(rate, 1),
                                        "speedup": round(rate / pythae_rate, 3)} | _paired_nll_gap(log_px, pythae_log_px)

    gan_params = _params(dataset, size, epochs, {"family": "gan"})
    torch.set_num_threads(THREADS)
    plain_gan, plain_rate = _plain_dcgan(gan_params, splits["train"])
    plain_scores, _ = _score(plain_gan, test, features)
    gan_results = {}
    for layout in GAN_LAYOUTS:
        scores, _, rate = ours("gan", layout)
        gan_results[layout] = scores | {"images_per_second": round(rate, 1),
                                        "fd_no_worse": scores["fd"] <= plain_scores["fd"]}
    return {
        "split": {k: len(v) for k, v in splits.items()}, "epochs": epochs, "batch_size": gan_params.train.batch_size,
        "classifier_test_accuracy": round(accuracy(classifier, splits["test"]), 4), "scored_test_images": len(test),
        "nll": {"test_images": min(NLL_IMAGES, len(test)), "importance_samples": NLL_SAMPLES},
        "vae": {"pythae": pythae_scores | {"images_per_second": round(pythae_rate, 1)}, "ours": vae_results,
                "target_speedup": 1.5},
        "gan": {"plain_loop": plain_scores | {"images_per_second": round(plain_rate, 1)}, "ours": gan_results},
    }


def main() -> None:
    import ray

    datasets = sys.argv[1:] or list(SETTINGS)
    results = {"benchmark": "quality", "threads": THREADS, "layouts": LAYOUTS,
               "datasets": {name: run(name) for name in datasets}}
    ray.shutdown()
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
