"""The params building blocks of the method modules: the checked field types and the base
model, defined in :mod:`tacoreservice.fields` (the domain models use them too)."""

from tacoreservice import fields
from tacoreservice.fields import *  # noqa: F403 - this module re-exports fields.__all__

__all__ = list(fields.__all__)
