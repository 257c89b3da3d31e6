"""edgegan: train GANs and CycleGANs, ship the generators to the edge.

Importing this package is cheap (no torch): the CLI's ``--help`` and ``plugins`` stay fast.
"""

from __future__ import annotations

from edgegan.plugins.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
