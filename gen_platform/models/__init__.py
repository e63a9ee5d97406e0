"""Model registry: a family name (params `model.family`) → the module that defines it.

Each family module provides `config_from_params(data, model) -> Config`, `build(config) -> nn.Module`,
and its loss. Adding a family means adding one module and one entry here.
"""

from __future__ import annotations

from types import ModuleType

from gen_platform.errors import ConfigError
from gen_platform.models import vae

FAMILIES: dict[str, ModuleType] = {"vae": vae}


def family(name: str) -> ModuleType:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"model.family: unknown family {name!r}; known: {sorted(FAMILIES)}") from None
