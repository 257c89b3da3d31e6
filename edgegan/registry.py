"""Named registries of plugin parts: conflicts, did-you-mean and provenance.

Every part (network, loss, dataset, metric, exporter, callback) is an :class:`Entry` in the
:class:`Registry` of its kind. Entries remember which plugin (and distribution) registered
them, so ``edgegan list`` and conflict errors can name it.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgegan.errors import (
    EdgeganError,
    PluginError,
    caller_stacklevel,
    did_you_mean,
    exception_line,
    first_line,
    unknown,
)

KINDS: tuple[str, ...] = ("models", "losses", "datasets", "metrics", "exporters", "callbacks")
"""The kinds of parts a plugin can register, one hook each (``edgegan_register_<kind>``)."""

MODEL_ROLES: tuple[str, ...] = ("generator", "discriminator")

# Singular nouns for messages ("unknown loss 'x'").
_NOUN = {
    "models": "model",
    "losses": "loss",
    "datasets": "dataset",
    "metrics": "metric",
    "exporters": "exporter",
    "callbacks": "callback",
}


@dataclass(frozen=True)
class Entry:
    """One registered part."""

    kind: str
    name: str
    factory: Callable[..., Any]
    role: str | None = None
    description: str = ""
    plugin: str = ""
    distribution: str = ""
    version: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``generator 'dcgan'`` or ``loss 'hinge'``: how messages name this entry."""
        return f"{self.role or _NOUN[self.kind]} '{self.name}'"

    @property
    def origin(self) -> str:
        """`` (plugin 'x', edgegan-x 1.0)`` for a part from an installed plugin, else ``''``:
        what a message adds so the user knows whose part failed."""
        if not self.plugin or self.distribution in ("", "edgegan"):
            return ""
        dist = f", {self.distribution} {self.version}".rstrip()
        return f" (plugin '{self.plugin}'{dist})"


class Registry:
    """The parts of one kind, keyed by (name, role)."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown registry kind {kind!r}")
        self.kind = kind
        self._entries: dict[tuple[str, str | None], Entry] = {}

    def add(self, entry: Entry) -> None:
        key = (entry.name, entry.role)
        other = self._entries.get(key)
        if other is not None:
            if other.plugin == entry.plugin:
                raise PluginError(f"plugin '{entry.plugin}' registers {entry.label} twice")
            # A built-in cannot be uninstalled: the plugin must rename its part. Between two
            # installed plugins either may go (the later one loaded is not the wrong one).
            if other.distribution == "edgegan":
                fix = f"rename it or set EDGEGAN_DISABLE_PLUGINS={entry.plugin}"
            else:
                fix = (
                    f"uninstall one, or set EDGEGAN_DISABLE_PLUGINS={other.plugin} or "
                    f"EDGEGAN_DISABLE_PLUGINS={entry.plugin}"
                )
            if entry.distribution == entry.plugin and not entry.version:
                # registered in code: no distribution to uninstall, no variable skips it
                fix = "rename it in the plugin registered in code"
            raise PluginError(
                f"{entry.label} is registered twice: by plugin '{other.plugin}' "
                f"(distribution {other.distribution}) and by plugin '{entry.plugin}' "
                f"(distribution {entry.distribution}); {fix}"
            )
        self._entries[key] = entry

    def get(self, name: str, role: str | None = None) -> Entry:
        entry = self._entries.get((name, role))
        if entry is None:
            what = role or _NOUN[self.kind]
            error = unknown(what, name, self.names(role))
            if not did_you_mean(name, self.names(role)):  # a typo needs no more than that
                from edgegan.plugins.manager import misplaced_entry_points

                misplaced = misplaced_entry_points()  # a plugin's part, never loaded: why
                if misplaced:
                    error.args = (f"{error}; {misplaced[0]}",)
            raise error
        return entry

    def names(self, role: str | None = None) -> list[str]:
        return sorted(n for (n, r) in self._entries if r == role)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, tuple):
            return key in self._entries
        return (key, None) in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: (e.name, e.role or "")))

    def __len__(self) -> int:
        return len(self._entries)

    def build(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        role: str | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> Any:
        """Look up ``name`` and call its factory (see :func:`call_factory`) with ``params``
        over a run's recorded ``defaults`` (see :func:`with_recorded_defaults`)."""
        entry, context = self.get(name, role), context or {}
        params = with_recorded_defaults(entry, params or {}, defaults or {}, context)
        return call_factory(entry, params, context)

    def build_part(
        self, part: Any, context: Mapping[str, Any] | None = None, role: str | None = None
    ) -> Any:
        """:meth:`build` a config part (:class:`edgegan.config.PartConfig`): its factory
        called with its ``params`` over the ``defaults`` its run recorded."""
        return self.build(part.name, part.params, context, role, part.defaults)

    def recorded_defaults(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        role: str | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What a run records beside the user's ``params``: the value of every other
        parameter it was built with (its recorded ``defaults`` where it had them, the
        factory's defaults for the rest; see :func:`full_params`)."""
        entry, params, context = self.get(name, role), params or {}, context or {}
        used = with_recorded_defaults(entry, params, defaults or {}, context, warn=False)
        return {k: v for k, v in full_params(entry, used, context).items() if k not in params}


class StaleDefaultWarning(UserWarning):
    """A run recorded a default for a parameter its network's factory no longer takes."""


def with_recorded_defaults(
    entry: Entry,
    params: Mapping[str, Any],
    defaults: Mapping[str, Any],
    context: Mapping[str, Any],
    warn: bool = True,
) -> dict[str, Any]:
    """``params`` over the ``defaults`` a run recorded for the parameters its user left out.

    A recorded default that the factory no longer takes (a plugin's later version removed
    the parameter, or changed its type) is dropped with a :class:`StaleDefaultWarning`: the
    user never set it, so it must not stop the run from loading. A parameter the user set is
    never dropped."""
    if not defaults:
        return dict(params)
    accepted, var_kw = factory_parameters(entry.factory)

    def fits(key: str) -> bool:
        if key in context:
            return False
        if key not in accepted:
            return var_kw
        try:
            _check_type(entry, key, defaults[key], accepted[key])
        except EdgeganError:
            return False
        return True

    stale = [k for k in defaults if k not in params and not fits(k)]
    if stale and warn:
        warnings.warn(
            f"{entry.label} no longer takes the run's recorded default(s) for "
            f"{', '.join(stale)} (removed, or of another type now): its own defaults apply",
            StaleDefaultWarning,
            stacklevel=caller_stacklevel(),
        )
    kept = {k: v for k, v in defaults.items() if k not in params and k not in stale}
    return {**kept, **params}


def name_list(value: str | Iterable[str]) -> list[str]:
    """A list of names without repeats, in order; one name may stand for the list
    (``"onnxruntime"`` is one backend, not its letters)."""
    return list(dict.fromkeys([value] if isinstance(value, str) else value))


def factory_parameters(factory: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword parameters a factory accepts, and whether it takes ``**kwargs``."""
    sig = inspect.signature(factory)
    accepted: dict[str, inspect.Parameter] = {}
    var_kw = False
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            accepted[p.name] = p
    return accepted, var_kw


def _check_type(entry: Entry, name: str, value: Any, param: inspect.Parameter) -> Any:
    """Check ``value`` against the type of the parameter's default; int -> float is allowed."""
    default = param.default
    if default is inspect.Parameter.empty or default is None:
        return value
    expected = type(default)
    if value is None:
        # ``null`` only where the annotation admits it (``float | None = 1.0``).
        if "None" in str(param.annotation) or "Optional" in str(param.annotation):
            return value
        raise EdgeganError(
            f"parameter '{name}' of {entry.label} must be {expected.__name__}, got null"
        )
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        value = _as_float(value)
        ok = isinstance(value, float)
    elif expected is str:
        ok = isinstance(value, str)
    elif expected in (tuple, list):
        ok = isinstance(value, (list, tuple))
        if ok:
            value = expected(value)
            value = _check_items(entry, name, value, default)
    else:
        return value
    if not ok:
        raise EdgeganError(
            f"parameter '{name}' of {entry.label} must be {expected.__name__}, "
            f"got {type(value).__name__} {value!r}"
        )
    return value


def _as_float(value: Any) -> Any:
    """``value`` as a float where a float parameter accepts it (an int, or a numeric string:
    YAML 1.1 reads ``1e-4`` as one), else unchanged for the caller to refuse."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def _check_items(entry: Entry, name: str, value: Any, default: Any) -> Any:
    """Check a list/tuple value's elements when the default's are all of one plain type
    (``(3, 3)``: ints), converting ints and numeric strings to float as for a float."""
    kinds = {type(v) for v in default}
    if len(kinds) != 1 or (item := kinds.pop()) not in (bool, int, float, str):
        return value
    out = []
    for i, v in enumerate(value):
        if type(v).__module__ == "numpy" and hasattr(v, "item"):  # np.float64, built in code
            v = v.item()  # (numpy is not imported here: the CLI loads this module at start)
        if item is float:
            v = _as_float(v)
        if type(v) is not item:
            raise EdgeganError(
                f"parameter '{name}' of {entry.label} must be a {type(default).__name__} of "
                f"{item.__name__}, got {type(v).__name__} {v!r} at index {i}"
            )
        out.append(v)
    return type(value)(out)


def call_factory(entry: Entry, params: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
    """Call ``entry.factory`` with the config's ``params`` plus the task's ``context``.

    ``params`` are what the user wrote; each must be a parameter of the factory (unless it
    takes ``**kwargs``) and match the type of its default. ``context`` (image shape, latent
    size, number of classes, ...) is passed only for the names the factory accepts, so a
    factory declares just the context it needs.

    A factory's :class:`EdgeganError` is passed on as it is, and its ``ValueError`` (the
    documented way to refuse a value) becomes one line naming the part and its plugin. Any
    other exception from an installed plugin's factory (its optional dependency missing, its
    bug) becomes a :class:`PluginError` naming the plugin; a built-in's is not caught (it is
    edgegan's bug), nor is a ``MemoryError`` (the CLI tells the user to ask for less).
    """
    kwargs = bind_params(entry, params, context)
    try:
        return entry.factory(**kwargs)
    except EdgeganError:
        raise
    except ValueError as exc:  # the documented way for a factory to refuse a value
        raise EdgeganError(f"{entry.label}{entry.origin}: {first_line(exc)}") from exc
    except MemoryError:
        raise
    except Exception as exc:
        if not entry.origin:
            raise
        raise PluginError(
            f"{entry.label}{entry.origin} failed to build: {exception_line(exc)}"
        ) from exc


def full_params(
    entry: Entry, params: Mapping[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """``params`` plus the default of each parameter the user left out, in the factory's
    order: what a run records, so that it is rebuilt alike after a default changes (the
    task's ``context`` and defaults that are no plain YAML values are left out)."""
    accepted, _ = factory_parameters(entry.factory)
    out: dict[str, Any] = {}
    for key, p in accepted.items():
        if key in params:
            out[key] = params[key]
        elif key not in context and p.default is not inspect.Parameter.empty:
            if _plain(p.default):
                out[key] = list(p.default) if isinstance(p.default, tuple) else p.default
    out.update({k: v for k, v in params.items() if k not in out})  # a **kwargs factory's
    return out


def _plain(value: Any) -> bool:
    """A value YAML writes and reads back as itself (tuples as lists). Exact types: an Enum
    member or a numpy scalar is an int, float or str subclass that ``yaml.safe_dump``
    refuses."""
    if value is None or type(value) in (bool, int, float, str):
        return True
    return type(value) in (list, tuple) and all(_plain(v) for v in value)


class _Supplied:
    """A context value that the task supplies but a check without building cannot know
    (``num_classes`` comes from the dataset)."""

    def __repr__(self) -> str:
        return "<supplied by the task>"


SUPPLIED = _Supplied()


def bind_params(
    entry: Entry, params: Mapping[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """The keyword arguments :func:`call_factory` passes, after every check it makes (names,
    types, required parameters), without calling the factory: ``edgegan config show`` checks
    a config this way."""
    accepted, var_kw = factory_parameters(entry.factory)
    kwargs: dict[str, Any] = {}
    for key, value in params.items():
        if key in context:
            known = "" if context[key] is SUPPLIED else f" ({key}={context[key]!r})"
            raise EdgeganError(
                f"parameter '{key}' of {entry.label} is set by the task{known};"
                " remove it from the config"
            )
        if key not in accepted and not var_kw:
            names = sorted(k for k in accepted if k not in context)
            raise EdgeganError(
                f"unknown parameter '{key}' for {entry.label}{did_you_mean(key, names)}; "
                f"accepted: {', '.join(names) or 'none'}"
            )
        kwargs[key] = _check_type(entry, key, value, accepted[key]) if key in accepted else value
    for key, value in context.items():
        if key in accepted or var_kw:
            kwargs[key] = value
    missing = [
        n for n, p in accepted.items() if p.default is inspect.Parameter.empty and n not in kwargs
    ]
    if missing:
        section = _CONFIG_KEYS.get((entry.kind, entry.role))
        how = f" (set {section}.{missing[0]}=...)" if section else ""
        raise EdgeganError(
            f"{entry.label}{entry.origin} needs parameter(s): {', '.join(missing)}{how}"
        )
    return kwargs


#: Where a part's parameters go in a run's config, by (kind, role).
_CONFIG_KEYS = {
    ("datasets", None): "data",
    ("models", "generator"): "model.generator",
    ("models", "discriminator"): "model.discriminator",
    ("losses", None): "loss",
}

#: The keys of a part's config that are not factory parameters.
RESERVED_PARAMS = frozenset({"name", "defaults"})
#: The kinds chosen by a part config (``name`` and parameters); metrics and exporters are
#: chosen by name alone.
PART_CONFIG_KINDS = frozenset({"datasets", "models", "losses", "callbacks"})


def validate_registration(
    kind: str, name: Any, factory: Any, role: Any, plugin: str, description: Any = None
) -> None:
    """Reject malformed ``register(...)`` calls with a message naming the plugin."""
    if (
        not isinstance(name, str)
        or not name
        or any(c.isspace() or not c.isprintable() for c in name)
    ):  # a name is a config value and a row of `edgegan list`: no spaces, tabs or newlines
        raise PluginError(
            f"plugin '{plugin}' registered a {_NOUN[kind]} with invalid name {name!r}"
        )
    if not callable(factory):
        raise PluginError(
            f"plugin '{plugin}' registered {_NOUN[kind]} '{name}' with a non-callable factory"
        )
    if kind != "models" and role is not None:
        raise PluginError(
            f"plugin '{plugin}' registered {_NOUN[kind]} '{name}' with role {role!r}; "
            "only models take a role"
        )
    if kind == "models" and role not in MODEL_ROLES:
        raise PluginError(
            f"plugin '{plugin}' registered model '{name}' with role {role!r}; "
            f"role must be one of {', '.join(MODEL_ROLES)}"
        )
    if description is not None and not isinstance(description, str):
        raise PluginError(
            f"plugin '{plugin}' registered {_NOUN[kind]} '{name}' with a description of type "
            f"{type(description).__name__}; it must be a string"
        )
    # A part's config keeps these two keys for itself (``name``: which part; ``defaults``:
    # the defaults a run recorded): a factory that requires a parameter of either name could
    # never be built from a config (an optional one keeps its default, a bound one its value).
    reserved = []
    if kind in PART_CONFIG_KINDS:
        params: Mapping[str, inspect.Parameter]
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # no signature to read (a builtin): checked when called
            params = {}
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        reserved = [
            p
            for p in sorted(RESERVED_PARAMS & set(params))
            if params[p].default is inspect.Parameter.empty and params[p].kind not in variadic
        ]
    if reserved:
        raise PluginError(
            f"plugin '{plugin}' registered {_NOUN[kind]} '{name}' whose factory requires "
            f"'{reserved[0]}', which a part's config keeps for itself (name, defaults): "
            "rename that parameter"
        )
