"""Example trading modules that talk to TACoreService through its public client only.

Not part of the installed ``tacoreservice`` package: run them from a checkout of the
repository (``python -m examples.scanpulse ...`` from the repository root).
"""
