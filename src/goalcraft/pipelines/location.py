"""The code location as a step on k8s or Ray loads it: ``goalcraft.pipelines.location:defs``.

``goalcraft run`` with ``[gpu] target = "ray"`` (or ``"k8s"``) launches each run through this
pointer, and every step process (a Ray job, a Kubernetes Job) loads it again, so both build the
Definitions from the settings file named by ``GOALCRAFT_CONFIG`` as it is *then*, not from whatever an
earlier import of ``goalcraft.definitions`` read. The executor passes ``GOALCRAFT_CONFIG`` on to
every step (goalcraft.pipelines.gpu.ray_executor_config).
"""

from __future__ import annotations

import dagster as dg

#: ``(module, attribute)`` of the lazily built code location.
POINTER = (__name__, "defs")


@dg.definitions
def defs() -> dg.Definitions:
    from goalcraft.config import load_config
    from goalcraft.definitions import build_definitions

    return build_definitions(load_config())
