import copy

import numpy as np
import pytest
import torch

from gen_platform.config import parse_params
from gen_platform.models.gan import GANParams
from gen_platform.settings import DataParams
from gen_platform.errors import ConfigError
from gen_platform.models import gan
from gen_platform.training.loop import EpochLoop


@pytest.mark.parametrize(("size", "channels"), [(8, 1), (28, 1), (32, 3), (64, 3)])
def test_networks_follow_image_size(size, channels):
    model = gan.GAN(gan.GANArchitecture(size, channels, latent_dim=8, hidden_channels=8, spectral_norm=True, ema=True))
    fake = model.generator(torch.randn(3, 8))
    assert fake.shape == (3, channels, size, size) and fake.abs().max() <= 1
    assert model.discriminator(fake).shape == (3,)
    samples = model.sample(5)
    assert samples.shape == (5, channels, size, size) and 0 <= samples.min() and samples.max() <= 1


@pytest.mark.parametrize(("override", "message"), [
    ({"d_steps_per_g_step": 0}, r"model\.gan\.d_steps_per_g_step: Input should be greater than or equal to 1"),
    ({"loss": "least_squares"}, r"model\.gan\.loss: Input should be 'non_saturating', 'hinge' or 'wgan_gp'"),
    ({"ema_decay": 1.0}, r"model\.gan\.ema_decay: Input should be less than 1"),
])
def test_invalid_gan_settings_name_the_field_and_allowed_values(override, message):
    with pytest.raises(ConfigError, match=message):
        parse_params({"model": {"family": "gan", "gan": override}})


def test_image_size_the_architecture_cannot_serve():
    for size in (6, 7):
        with pytest.raises(ConfigError, match=rf"data\.image_size: {size} cannot be served"):
            gan.architecture_from(DataParams(image_size=size), GANParams())


def _recipe(loss="non_saturating", ratio=1, ema=0.0) -> EpochLoop:
    """The GAN recipe in the shared loop, on the CPU."""
    torch.manual_seed(0)
    params = parse_params({"model": {"family": "gan", "gan": {"loss": loss, "d_steps_per_g_step": ratio,
                                                              "ema_decay": ema, "latent_dim": 8, "hidden_channels": 8}}})
    return EpochLoop(gan.FAMILY, params, torch.device("cpu"))


def _loader(n=64):
    images = np.random.default_rng(0).integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    return [images[start:start + 8] for start in range(0, n, 8)]


def _steps(optimizer):
    return {int(state["step"]) for state in optimizer.state.values()}


@pytest.mark.parametrize("loss", ["non_saturating", "hinge", "wgan_gp"])
@pytest.mark.parametrize("ratio", [1, 3])
def test_update_ratio_and_losses(loss, ratio):
    loop = _recipe(loss, ratio)
    stats = loop.train_epoch(_loader())
    assert stats["images"] == 64
    assert _steps(loop.recipe.optimizers["d_optimizer"]) == {8}
    assert _steps(loop.recipe.optimizers["g_optimizer"]) == {8 // ratio}
    assert torch.isfinite(torch.tensor([stats["d_loss"], stats["g_loss"]])).all()


def test_losses_at_known_points():
    real, fake = torch.tensor([2.0]), torch.tensor([-2.0])
    assert gan.discriminator_loss("hinge", real, fake).item() == 0.0
    assert gan.discriminator_loss("wgan_gp", real, fake).item() == -4.0
    assert gan.generator_loss("non_saturating", torch.tensor([0.0])).item() == pytest.approx(0.6931, abs=1e-4)


def test_checkpoint_resumes_exactly():
    """Both networks, both optimizers and the EMA are restored: the next epoch matches bit for bit."""
    first = _recipe("hinge", 2, ema=0.9)
    first.train_epoch(_loader())
    state = copy.deepcopy(first.state_dict())  # a checkpoint is a snapshot, not live tensors
    torch.manual_seed(42)
    expected = first.train_epoch(_loader())
    resumed = _recipe("hinge", 2, ema=0.9)
    resumed.load_state_dict(state)
    torch.manual_seed(42)
    assert resumed.train_epoch(_loader()) == expected
    for a, b in zip(first.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_ema_is_the_sampler_and_tracks_the_generator():
    recipe = _recipe(ema=0.5)
    before = [p.clone() for p in recipe.model.ema.module.parameters()]
    recipe.train_epoch(_loader())
    assert recipe.model.sampler is recipe.model.ema.module
    assert any(not torch.equal(a, b) for a, b in zip(before, recipe.model.ema.module.parameters()))


def test_per_epoch_fd_draws_fd_samples_images_whatever_the_validation_size(monkeypatch):
    """`fd_samples` generated images, in batches, against however many validation images there are."""
    seen = {}

    def fake_frechet(real, fake):
        seen.update(real=len(real), fake=len(fake))
        return 0.0

    monkeypatch.setattr(gan, "frechet_from_features", fake_frechet)
    hyper = GANParams(latent_dim=8, hidden_channels=8, fd_samples=700)
    recipe = gan.Recipe(gan.GAN(gan.architecture_from(DataParams(), hyper)), hyper, device=torch.device("cpu"))
    assert recipe.validation_end(torch.rand(180, 1, 8, 8), 256, seed=0, features=torch.nn.Identity()) == {"fd": 0.0}
    assert seen == {"real": 180, "fake": 700}


def test_per_epoch_fd_reuses_the_validation_features_and_equals_the_direct_computation():
    from gen_platform.evaluation.distribution import features_of, frechet_from_features, generate

    calls = []

    class Features(torch.nn.Module):
        def forward(self, images):
            calls.append(len(images))
            return torch.cat([images.flatten(1)[:, :6], images.flatten(1)[:, -6:]], 1)

    hyper = GANParams(latent_dim=8, hidden_channels=8, fd_samples=300)
    recipe = gan.Recipe(gan.GAN(gan.architecture_from(DataParams(), hyper)), hyper, device=torch.device("cpu"))
    real, features = torch.rand(200, 1, 8, 8), Features()
    first = recipe.validation_end(real, 512, seed=3, features=features)["fd"]
    assert recipe.validation_end(real, 512, seed=3, features=features)["fd"] == first
    assert calls == [200, 300, 300]  # the real images' features once, the samples' every epoch
    expected = frechet_from_features(features_of(real, features, 512), features_of(generate(recipe.model, 300, 3, 512),
                                                                                 features, 512))
    assert first == pytest.approx(expected)
