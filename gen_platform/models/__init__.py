"""Model families, found by name (params `model.family`). See `family.py` for the contract."""

from gen_platform.models import gan, vae
from gen_platform.models.family import FAMILIES, Family, get_family, register_family

register_family(vae.FAMILY)
register_family(gan.FAMILY)

__all__ = ["FAMILIES", "Family", "get_family", "register_family"]
