"""gpu-runbook: a read-only doctor for GPU hosts whose findings link to the runbook page that fixes them."""

__version__ = "0.1.0"
