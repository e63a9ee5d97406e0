"""gen_platform: reproducible training of generative image models.

The library is orchestration-agnostic: DVC stages (through the `genp` CLI) and Prefect flows call the
same stage functions in `gen_platform.stages`.
"""

__version__ = "0.1.0"
