import dataclasses
import math

import pytest
import torch

from gen_platform.models.vae import VAEParams
from gen_platform.settings import DataParams
from gen_platform.errors import ConfigError
from gen_platform.models.vae import neg_elbo
from gen_platform.models import get_family
from gen_platform.nets import downsampling_steps
from gen_platform.models.vae import (CODES_PER_IMAGE, ConvVAE, VAEArchitecture, architecture_from, fit_latent_prior,
                                     importance_weighted_nll, loss_terms)


@pytest.mark.parametrize(("size", "channels", "steps"), [(8, 1, 1), (28, 1, 2), (32, 3, 3), (64, 3, 4)])
def test_shapes_follow_image_size(size, channels, steps):
    assert downsampling_steps(size) == steps
    model = ConvVAE(VAEArchitecture(size, channels, latent_dim=5, hidden_channels=8))
    x = torch.rand(3, channels, size, size)
    out = model(x)
    assert out["logits"].shape == x.shape
    assert out["recon"].shape == out["kl"].shape == (3,)
    samples = model.sample(4)
    assert samples.shape == (4, channels, size, size) and 0 <= samples.min() and samples.max() <= 1


def test_image_size_that_cannot_be_served_is_rejected():
    with pytest.raises(ConfigError, match="data.image_size: 7 cannot be served"):
        architecture_from(DataParams(image_size=7), VAEParams())


def test_unknown_family_is_named():
    with pytest.raises(ConfigError, match="unknown family 'diffusion'"):
        get_family("diffusion")


def test_kl_is_zero_at_the_prior_and_loss_weights_it_by_beta():
    model = ConvVAE(VAEArchitecture(8, 1, 4, 8))
    outputs = {"recon": torch.tensor([10.0, 20.0]), "kl": torch.tensor([1.0, 3.0])}
    terms = loss_terms(outputs, beta=4.0)
    assert terms["loss"].item() == pytest.approx(15 + 4 * 2)
    assert terms["neg_elbo"].item() == pytest.approx(17)
    with torch.no_grad():
        model.to_stats.weight.zero_()
        model.to_stats.bias.zero_()
    assert model(torch.rand(2, 1, 8, 8))["kl"].abs().max().item() == pytest.approx(0, abs=1e-6)


def test_recon_is_bernoulli_cross_entropy_in_nats():
    model = ConvVAE(VAEArchitecture(8, 1, 4, 8))
    x = torch.rand(2, 1, 8, 8)
    out = model(x)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out["logits"], x, reduction="sum") / 2
    assert out["recon"].mean().item() == pytest.approx(expected.item(), rel=1e-5)


def test_training_lowers_the_negative_elbo():
    torch.manual_seed(0)
    model = ConvVAE(VAEArchitecture(8, 1, 4, 16))
    data = (torch.rand(64, 1, 8, 8) > 0.5).float()
    before = neg_elbo(model, data, 64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        model.train()
        loss = loss_terms(model(data), beta=1.0)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert neg_elbo(model, data, 64) < before - 1.0


def test_neg_elbo_is_repeatable_and_restores_the_rng():
    model = ConvVAE(VAEArchitecture(8, 1, 4, 8))
    data = torch.rand(10, 1, 8, 8)
    torch.manual_seed(123)
    first = neg_elbo(model, data, 4, seed=5)
    marker = torch.rand(1)
    torch.manual_seed(123)
    second = neg_elbo(model, data, 4, seed=5)
    assert first == second and torch.equal(marker, torch.rand(1))


def _model_with_codes(components: int, codes_of) -> ConvVAE:
    """A VAE whose encoder gives the codes `codes_of(images)` (means) with a small spread, whatever its weights."""
    model = ConvVAE(VAEArchitecture(8, 1, latent_dim=2, hidden_channels=8, prior_components=components))
    model.encode = lambda x: (codes_of(x), torch.full((len(x), 2), math.log(0.01)))
    return model


def test_the_fitted_prior_samples_where_the_codes_of_the_training_images_are():
    # two kinds of image, all-dark and all-bright, coded at (-3, 0) and (3, 0): a prior N(0, I) puts most draws
    # between them, where no image's code is; the fitted mixture puts them at the two codes, half each.
    images = torch.cat([torch.zeros(300, 1, 8, 8), torch.ones(100, 1, 8, 8)])
    model = _model_with_codes(2, lambda x: torch.stack([x.mean((1, 2, 3)) * 6 - 3, torch.zeros(len(x))], 1))
    figures = fit_latent_prior(model, images, seed=0)
    assert figures["prior_fit_codes"] == 400 * CODES_PER_IMAGE
    latents = model.sample_latents(4000, torch.Generator().manual_seed(0))
    assert (latents[:, 0].abs() < 2).float().mean() < 0.01  # none between the two codes
    assert (latents[:, 0] > 0).float().mean() == pytest.approx(0.25, abs=0.03)  # 100 of 400 images are bright
    assert latents[:, 1].std() == pytest.approx(0.1, rel=0.15)  # the spread of q(z|x), not that of N(0, I)
    assert torch.equal(latents, model.sample_latents(4000, torch.Generator().manual_seed(0)))
    standard = torch.distributions.Normal(0.0, 1.0).log_prob(latents).sum(1)
    assert model.prior_log_prob(latents).mean() > standard.mean() + 5  # nats per code: the fit describes them


def test_the_nll_scores_the_prior_the_model_samples_from():
    torch.manual_seed(0)
    plain = ConvVAE(VAEArchitecture(8, 1, latent_dim=4, hidden_channels=8))
    fitted = ConvVAE(VAEArchitecture(8, 1, latent_dim=4, hidden_channels=8, prior_components=1))
    fitted.load_state_dict(plain.state_dict(), strict=False)  # same networks; one component, still N(0, I)
    images = (torch.rand(20, 1, 8, 8) > 0.5).float()
    assert importance_weighted_nll(fitted, images, 8) == pytest.approx(importance_weighted_nll(plain, images, 8))
    fitted.prior_scale_tril.mul_(2.0)  # N(0, 4I)
    z = torch.randn(5, 4)
    assert fitted.prior_log_prob(z) == pytest.approx(torch.distributions.Normal(0.0, 2.0).log_prob(z).sum(1))
    assert importance_weighted_nll(fitted, images, 8) != pytest.approx(importance_weighted_nll(plain, images, 8))


def test_a_model_saved_before_the_fitted_prior_loads_and_samples_n01():
    saved = {"image_size": 8, "channels": 1, "latent_dim": 4, "hidden_channels": 8}  # no prior_components
    old = ConvVAE(VAEArchitecture(**saved))
    assert not [name for name in old.state_dict() if name.startswith("prior_")]
    model = get_family("vae").rebuild(saved)
    model.load_state_dict(old.state_dict())
    assert torch.equal(model.sample_latents(6, torch.Generator().manual_seed(3)),
                       torch.randn(6, 4, generator=torch.Generator().manual_seed(3)))


def test_after_training_fits_the_prior_of_the_trained_model_and_leaves_a_gan_alone(digits):
    from gen_platform.training.launcher import FitResult, after_training

    architecture = VAEArchitecture(8, 1, latent_dim=4, hidden_channels=8, prior_components=3)
    trained = ConvVAE(architecture).state_dict()
    result = FitResult("vae", trained, dataclasses.asdict(architecture), [], [], "checkpoint")
    finished = after_training(result, digits, seed=0)
    assert finished.model_state["prior_means"].abs().max() > 0 and result.model_state is trained
    assert all(torch.equal(finished.model_state[name], trained[name]) for name in trained if not name.startswith("prior_"))
    again = after_training(result, digits, seed=0)
    assert all(torch.equal(again.model_state[name], finished.model_state[name]) for name in trained)
    gan = FitResult("gan", {}, {}, [], [], "checkpoint")
    assert after_training(gan, digits, seed=0) is gan
