import pytest
import torch

from gen_platform.models.vae import VAEParams
from gen_platform.settings import DataParams
from gen_platform.errors import ConfigError
from gen_platform.models.vae import neg_elbo
from gen_platform.models import get_family
from gen_platform.nets import downsampling_steps
from gen_platform.models.vae import ConvVAE, VAEArchitecture, architecture_from, loss_terms


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
