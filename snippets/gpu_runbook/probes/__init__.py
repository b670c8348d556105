"""Probes: the only code that touches the host. They record what they see, errors included, and never raise."""
