"""Internals of ``python -m fastxent bench`` (see ``fastxent.bench``): peers, timing, reports."""
