"""Loading plugins (built-in and entry points), isolating failures, and listing them.

Built-in parts are plugins too: the modules in :data:`BUILTIN_PLUGINS` are registered through
the same hooks as external packages. Loading follows these rules:

- an entry point that fails to import is reported (a :class:`PluginWarning`, and in
  ``edgegan plugins``) and skipped; ``EDGEGAN_STRICT_PLUGINS=1`` turns that into an error;
- ``EDGEGAN_LOAD_PLUGINS=a,b`` loads only those external plugins, ``EDGEGAN_DISABLE_PLUGINS=a,b``
  skips those (by entry-point or distribution name);
- ``EDGEGAN_DISABLE_PLUGIN_AUTOLOAD=1`` loads no external plugin unless named in
  ``EDGEGAN_LOAD_PLUGINS`` (the test suite sets it);
- two plugins registering one name is an error naming both distributions.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import inspect
import os
import re
import signal
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import pluggy

from edgegan.errors import PluginError, caller_stacklevel, did_you_mean, exception_line, first_line
from edgegan.plugins import hookspecs
from edgegan.registry import KINDS, Entry, Registry, validate_registration

ENTRY_POINT_GROUP = "edgegan"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "edgegan.nn.plugin",
    "edgegan.losses.plugin",
    "edgegan.data.plugin",
    "edgegan.metrics.plugin",
    "edgegan.train.callbacks",
    "edgegan.export.plugin",
)


class PluginWarning(UserWarning):
    """A plugin failed to load and was skipped."""


@dataclass
class PluginInfo:
    """What ``edgegan plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    provides: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    #: names this plugin registers that another plugin (or edgegan) already has
    conflicts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _norm(name: str) -> str:
    """A distribution or entry-point name as packaging compares them (PEP 503):
    ``Edgegan_Audit`` and ``edgegan-audit`` are one name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    return {_norm(p.strip()) for p in raw.split(",") if p.strip()}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _signature_problem(plugin: Any) -> str | None:
    """Which hook of ``plugin`` does not take the one argument ``register``, if any: first
    one that requires another argument (what pluggy refuses; an extra argument with a
    default is allowed), else one that takes anything but ``register``."""
    odd: list[tuple[str, list[str]]] = []
    for hook in hookspecs.HOOKS.values():
        fn = getattr(plugin, hook, None)
        if not callable(fn):
            continue
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            continue
        names = list(params)
        required = [
            n
            for n, p in params.items()
            if p.default is inspect.Parameter.empty
            and p.kind
            in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            and n not in ("register", "self", "cls")
        ]
        if required:
            return f"hook {hook} takes ({', '.join(names)}); it must take (register)"
        if names != ["register"]:
            odd.append((hook, names))
    if odd:
        hook, names = odd[0]
        return f"hook {hook} takes ({', '.join(names)}); it must take (register)"
    return None


def misplaced_entry_points() -> list[str]:
    """One line per installed entry point in a group that looks like edgegan's but is not
    (``edgegan.plugins``, ``edgegan_plugins``, ``Edgegan``): a plugin that declared one is never
    loaded, and nothing else says why."""
    lines = []
    deny = _env_list("EDGEGAN_DISABLE_PLUGINS") or set()
    for distribution in md.distributions():
        try:
            points = list(distribution.entry_points)
            dist = distribution.name or "a distribution without a name"
        except Exception:  # unreadable metadata: nothing to say about it here
            continue
        if _norm(dist) in deny:  # switched off: whatever it declares is not wanted here
            continue
        for ep in points:
            group = ep.group
            squashed = re.sub(r"[^a-z]", "", group.lower())
            if group == ENTRY_POINT_GROUP or not squashed.startswith(ENTRY_POINT_GROUP):
                continue
            if _norm(ep.name) in deny:  # as loading takes either name
                continue
            lines.append(
                f"{dist} declares the entry point '{ep.name}' in the group '{group}', which "
                f"edgegan does not read: the group is '{ENTRY_POINT_GROUP}' "
                f"([project.entry-points.{ENTRY_POINT_GROUP}] in its pyproject.toml)"
            )
    return sorted(set(lines))


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    """The distribution name and version of an entry point's package; the entry point's
    name and no version when it has none (a ``.dist-info`` without ``METADATA``, say)."""
    try:
        dist = ep.dist
        name, version = (dist.name, dist.version) if dist is not None else (None, None)
    except Exception:  # unreadable metadata: still load and list the plugin
        name, version = None, None
    return (name if isinstance(name, str) and name else ep.name), (
        version if isinstance(version, str) else ""
    )


def _from_signal(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by a signal handler (the CLI's SIGTERM handler raises
    ``SystemExit``) rather than by the plugin: that stops the command, whatever the plugin
    was doing."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    code = tb.tb_frame.f_code
    return any(
        getattr(signal.getsignal(sig), "__code__", None) is code
        for sig in (signal.SIGTERM, signal.SIGINT)
    )


def _who(info: PluginInfo) -> str:
    """``plugin 'x' (edgegan-x 1.0)``; ``plugin 'x'`` for one registered in code (no
    version, its distribution its own name)."""
    if info.distribution == info.name and not info.version:
        return f"plugin '{info.name}'"
    return f"plugin '{info.name}' ({origin(info.distribution, info.version)})"


def origin(dist: str, version: str) -> str:
    """``edgegan-x 1.0``, or ``edgegan-x`` when the version is unknown."""
    return f"{dist} {version}".rstrip()


class PluginManager:
    """Loads plugins once and builds one :class:`Registry` per kind on first use."""

    def __init__(self, *, load_entry_points: bool = True, strict: bool | None = None) -> None:
        self.strict = _env_flag("EDGEGAN_STRICT_PLUGINS") if strict is None else strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        #: plugin-name and part-name conflicts: errors on use, listed by `edgegan plugins`
        self.conflicts: list[str] = []
        #: installed plugins left unloaded, by normalised distribution name: why (the
        #: environment variable that says so)
        self.skipped: dict[str, str] = {}
        self._registries: dict[str, Registry] | None = None
        from edgegan import __version__

        for module_name in BUILTIN_PLUGINS:
            module = importlib.import_module(module_name)
            self.register(
                module, name=module_name, distribution="edgegan", version=__version__, builtin=True
            )
        if load_entry_points:
            self._load_entry_points()

    # -- loading -------------------------------------------------------------------------
    def register(
        self,
        plugin: Any,
        name: str,
        *,
        distribution: str | None = None,
        version: str = "",
        builtin: bool = False,
        check: bool = True,
    ) -> None:
        """Register a plugin object (a module or any object with hook implementations).

        With ``check`` (registering in code), the plugin is checked at once and refused, left
        unregistered, when it implements no edgegan hook, or when a hook fails or a part it
        registers clashes with a registered one; the others stay usable. (Plugins found
        through entry points are checked when the parts are first looked up, and listed with
        their problems by ``edgegan plugins``.)
        """
        if name in self.infos:
            raise PluginError(
                f"a plugin named '{name}' is already registered (to replace it, first call "
                f"get_manager().unregister('{name}'))"
            )
        other = self.pm.get_name(plugin)
        if other is not None:
            raise PluginError(
                f"it names the same module or object as plugin '{other}' "
                f"({self.infos[other].distribution}); each plugin needs its own"
            )
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(_signature_problem(plugin) or " ".join(str(exc).split())) from None
        callers = self.pm.get_hookcallers(plugin) or []
        # A hook this edgegan does not have: a misspelt name (edgegan_register_model), which
        # pluggy would silently never call, unless marked @hookimpl(optionalhook=True): a hook
        # of a newer edgegan, for a plugin that supports several versions.
        typos = [
            h.name
            for h in callers
            if not h.has_spec()
            and any(i.plugin is plugin and not i.optionalhook for i in h.get_hookimpls())
        ]
        if typos:
            self.pm.unregister(plugin)
            hints = [f"'{t}'{did_you_mean(t, hookspecs.HOOKS.values())}" for t in sorted(typos)]
            raise PluginError(
                f"plugin '{name}' implements unknown hook(s): {', '.join(hints)} (a hook of "
                "a newer edgegan? mark it @hookimpl(optionalhook=True) or upgrade edgegan)"
            )
        hooks = sorted(h.name for h in callers if h.name.startswith("edgegan_") and h.has_spec())
        self.infos[name] = PluginInfo(name, distribution or name, version, builtin, hooks)
        self._registries = None
        if check and not builtin:
            self._check_new(name)

    def _check_new(self, name: str) -> None:
        info = self.infos[name]
        problem = None
        if not info.hooks:
            problem = (
                f"plugin '{name}' implements no edgegan hook; decorate its hook functions "
                "with @edgegan.hookimpl"
            )
        else:
            # Other plugins' failures are not this check's to report: their state is put
            # back, and the parts are collected again (warning, or raising when strict) at
            # the next lookup if any of them failed.
            others = {n: (i.error, list(i.conflicts)) for n, i in self.infos.items() if n != name}
            with warnings.catch_warnings():  # its failure is raised below, not warned about
                warnings.simplefilter("ignore", PluginWarning)
                try:
                    self._registries = self._collect()
                except PluginError:
                    self._registries = None
            for n, (error, conflicts) in others.items():
                other = self.infos[n]
                if (other.error, other.conflicts) != (error, conflicts):
                    other.error, other.conflicts = error, conflicts
                    self._registries = None
            problem = info.error or (info.conflicts[0] if info.conflicts else None)
        if problem:
            self.unregister(name)
            raise PluginError(problem)

    def unregister(self, name: str) -> None:
        """Remove the plugin registered as ``name`` (to register a new version of it in a
        notebook, say); built-in plugins stay."""
        info = self.infos.get(name)
        if info is None:
            raise PluginError(f"no plugin named '{name}' is registered")
        if info.builtin:
            raise PluginError(f"'{name}' is built into edgegan and cannot be unregistered")
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        del self.infos[name]
        self._registries = None

    def _fail(self, info: PluginInfo, message: str) -> None:
        info.error = message
        if self.strict:
            raise PluginError(message + " (EDGEGAN_STRICT_PLUGINS is set)")
        warnings.warn(message, PluginWarning, stacklevel=caller_stacklevel())

    def _load_entry_points(self) -> None:
        allow = _env_list("EDGEGAN_LOAD_PLUGINS")
        deny = _env_list("EDGEGAN_DISABLE_PLUGINS") or set()
        autoload = not _env_flag("EDGEGAN_DISABLE_PLUGIN_AUTOLOAD")
        points = sorted(
            md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, *_dist_of(e))
        )
        self._warn_unknown_names(points, allow, deny)
        for ep in points:
            dist, version = _dist_of(ep)
            names = {_norm(ep.name), _norm(dist)}
            skip = None
            if names & deny:
                skip = "EDGEGAN_DISABLE_PLUGINS names it"
            elif allow is not None and not names & allow:
                skip = "EDGEGAN_LOAD_PLUGINS does not name it"
            elif allow is None and not autoload:
                skip = "EDGEGAN_DISABLE_PLUGIN_AUTOLOAD is set"
            if skip:
                self.skipped[_norm(dist)] = skip
                continue
            if ep.name in self.infos:
                # Listed (so `edgegan plugins` still works) and an error on use, as a part
                # name conflict is.
                info = PluginInfo(ep.name, dist, version, False)
                self.infos[f"{ep.name} ({dist})"] = info
                info.error = (
                    f"two plugins are named '{ep.name}': distributions "
                    f"{self.infos[ep.name].distribution} and {dist}; uninstall one or set "
                    f"EDGEGAN_DISABLE_PLUGINS={dist}"
                )
                self.conflicts.append(info.error)
                continue
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # a broken plugin must not take the CLI down
                if _from_signal(exc):
                    raise
                info = PluginInfo(ep.name, dist, version, False)
                self.infos[ep.name] = info
                self._fail(
                    info,
                    f"plugin '{ep.name}' ({origin(dist, version)}) failed to load: "
                    + exception_line(exc),
                )
                continue
            try:
                self.register(plugin, name=ep.name, distribution=dist, version=version, check=False)
            except (Exception, SystemExit) as exc:  # e.g. a hook not taking (register)
                if _from_signal(exc):
                    raise
                info = PluginInfo(ep.name, dist, version, False)
                self.infos[ep.name] = info
                detail = first_line(exc) if isinstance(exc, PluginError) else exception_line(exc)
                self._fail(
                    info,
                    f"plugin '{ep.name}' ({origin(dist, version)}) is not a valid edgegan "
                    "plugin: " + detail,
                )
                continue
            if not self.infos[ep.name].hooks:
                self._fail(
                    self.infos[ep.name],
                    f"plugin '{ep.name}' ({origin(dist, version)}) implements no edgegan hook; "
                    "decorate its hook functions with @edgegan.hookimpl",
                )

    def absent(self, plugin: str | None, distribution: str | None) -> str:
        """Why a part of ``plugin`` from ``distribution`` is not registered: it is not
        installed, left unloaded by the environment, failed to load, or no longer provides
        the part."""
        skip = self.skipped.get(_norm(distribution or ""))
        if skip:
            return f"is installed but not loaded: {skip}"
        info = self.infos.get(plugin or "")
        if info is not None and info.distribution == distribution:
            if info.error:
                return "is installed but failed to load (`edgegan plugins` says why)"
            return f"is installed at {info.version} but no longer provides it"
        return "is not installed"

    def _warn_unknown_names(
        self, points: list[md.EntryPoint], allow: set[str] | None, deny: set[str]
    ) -> None:
        """A name in EDGEGAN_LOAD_PLUGINS or EDGEGAN_DISABLE_PLUGINS that matches no installed
        plugin is most likely a typo: say so rather than load or skip nothing in silence."""
        known = {_norm(ep.name) for ep in points}
        known |= {_norm(_dist_of(ep)[0]) for ep in points}
        # each plugin once, as `edgegan plugins` spells it: its name and distribution
        listed = sorted({f"{ep.name} ({_dist_of(ep)[0]})" for ep in points})
        for var, names in (
            ("EDGEGAN_LOAD_PLUGINS", allow or set()),
            ("EDGEGAN_DISABLE_PLUGINS", deny),
        ):
            for name in sorted(names - known):
                warnings.warn(
                    f"{var} names '{name}', which is no installed plugin"
                    f"{did_you_mean(name, known)}; installed (either name works): "
                    f"{', '.join(listed) or 'none'}",
                    PluginWarning,
                    stacklevel=caller_stacklevel(),
                )

    # -- registries ----------------------------------------------------------------------
    def _collect(self) -> dict[str, Registry]:
        registries = {kind: Registry(kind) for kind in KINDS}
        collected: dict[str, list[Entry]] = {}
        for kind in KINDS:
            hook = getattr(self.pm.hook, hookspecs.HOOKS[kind])
            # Call each implementation on its own so every entry records its plugin.
            for impl in hook.get_hookimpls():
                info = self.infos[impl.plugin_name]
                if info.error:
                    continue
                entries: list[Entry] = []

                def register(
                    name: str,
                    factory: Any,
                    *,
                    role: str | None = None,
                    description: str = "",
                    _kind: str = kind,
                    _info: PluginInfo = info,
                    _entries: list[Entry] = entries,
                    **meta: Any,
                ) -> None:
                    validate_registration(_kind, name, factory, role, _info.name, description)
                    # A description, or else the docstring, as the first paragraph on one
                    # line (a first line alone may stop mid-sentence; `edgegan list` shows one
                    # row per part).
                    text = inspect.cleandoc(description or getattr(factory, "__doc__", None) or "")
                    summary = " ".join(text.split("\n\n")[0].split())
                    _entries.append(
                        Entry(
                            kind=_kind,
                            name=name,
                            factory=factory,
                            role=role,
                            description=summary,
                            plugin=_info.name,
                            distribution=_info.distribution,
                            version=_info.version,
                            meta=meta,
                        )
                    )

                try:
                    result = impl.function(register=register)
                except PluginError as exc:  # register()'s own check: name its distribution
                    message, bare = first_line(exc), f"plugin '{info.name}'"
                    if message.startswith(bare):
                        message = _who(info) + message[len(bare) :]
                    self._fail(info, message)
                    continue
                except (Exception, SystemExit) as exc:  # sys.exit() in a hook, too
                    if _from_signal(exc):
                        raise
                    self._fail(
                        info,
                        f"{_who(info)} failed in {hookspecs.HOOKS[kind]}: " + exception_line(exc),
                    )
                    continue
                if result is not None and not entries:  # an old-style hook returning its parts
                    what = (
                        "is a generator (it yields)"
                        if inspect.isgenerator(result)
                        else f"returned a {type(result).__name__}"
                    )
                    self._fail(
                        info,
                        f"{_who(info)}: hook {hookspecs.HOOKS[kind]} {what}; a hook must call "
                        "register(name, factory, ...) for each part, not return them",
                    )
                    continue
                collected.setdefault(info.name, []).extend(entries)
        # Add in loading order (built-ins first), so that a name clash names the later plugin
        # as the one to disable; a plugin that failed in any hook is skipped as a whole.
        # Every clash is collected (and listed by `edgegan plugins`) before any is raised.
        errors = list(self.conflicts)
        for info in self.infos.values():
            info.conflicts, info.provides = [], {}
            if info.error:
                continue
            for entry in collected.get(info.name, []):
                try:
                    registries[entry.kind].add(entry)
                except PluginError as exc:
                    info.conflicts.append(str(exc))
                    errors.append(str(exc))
                    continue
                label = f"{entry.name} ({entry.role})" if entry.role else entry.name
                info.provides.setdefault(entry.kind, []).append(label)
        if errors:
            more = (
                f" (and {len(errors) - 1} more: see `edgegan plugins`)" if len(errors) > 1 else ""
            )
            raise PluginError(errors[0] + more)
        return registries

    @property
    def registries(self) -> dict[str, Registry]:
        if self._registries is None:
            self._registries = self._collect()
        return self._registries

    def registry(self, kind: str) -> Registry:
        if kind not in KINDS:
            raise PluginError(f"unknown kind '{kind}'; kinds: {', '.join(KINDS)}")
        return self.registries[kind]

    def plugin_infos(self) -> tuple[list[PluginInfo], str | None]:
        """All plugins (built-in first) with what each provides, and the registry error (a
        name conflict, say) if collecting the parts failed."""
        for info in self.infos.values():
            info.provides = {}
        self._registries = None
        error = None
        try:
            _ = self.registries
        except PluginError as exc:
            error = str(exc)
        return sorted(self.infos.values(), key=lambda i: (not i.builtin, i.name)), error


_MANAGER: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide plugin manager (loaded on first call)."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager()
    return _MANAGER


def reset_manager(manager: PluginManager | None = None) -> None:
    """Forget the loaded plugins, so that the next :func:`get_manager` loads the installed
    ones again (after a ``pip install`` in a running process; tests), or install ``manager``
    as the process-wide one."""
    global _MANAGER
    _MANAGER = manager


def registry(kind: str) -> Registry:
    """Shortcut: ``get_manager().registry(kind)``."""
    return get_manager().registry(kind)
