"""Canonical model and protocol codecs. Pure: no I/O, no services."""
