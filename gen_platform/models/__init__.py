"""Model registry: a family name (params `model.family`) → the module that defines it.

Each family module provides `Config` (a dataclass saved with the weights), `config_from_params(data, model)`,
`build(config) -> nn.Module` (with `sample(n)`), `Recipe` (how it trains one epoch and validates) and
`SELECTION_METRIC` (the lower-is-better score the champion rule and tuning use). Adding a family means
adding one module and one entry here.
"""

from __future__ import annotations

from types import ModuleType

from gen_platform.errors import ConfigError
from gen_platform.models import gan, vae

FAMILIES: dict[str, ModuleType] = {"vae": vae, "gan": gan}


def family(name: str) -> ModuleType:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"model.family: unknown family {name!r}; known: {sorted(FAMILIES)}") from None
