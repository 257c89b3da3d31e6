"""Plugin loading and the hook contract (see :mod:`edgegan.plugins.hookspecs`)."""

from edgegan.plugins.hookspecs import hookimpl, hookspec
from edgegan.plugins.manager import PluginInfo, PluginManager, get_manager, reset_manager

__all__ = ["PluginInfo", "PluginManager", "get_manager", "hookimpl", "hookspec", "reset_manager"]
