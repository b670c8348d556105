"""Checks, one module per runbook section; importing this package registers them all."""

from gpu_runbook import facts  # noqa: F401  (registers the shared facts first)
from gpu_runbook.checks import (  # noqa: F401
    containerd,
    containers,
    devices,
    engines,
    fabric,
    health,
    init,
    kubernetes,
    operator,
    pcie,
    services,
    sharing,
)
