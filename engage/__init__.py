"""Engage: the composition root (configuration, wiring, command line)."""
