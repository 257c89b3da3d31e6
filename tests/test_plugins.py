"""Plugin loading through real entry points, isolation of broken plugins, and the registry."""

from __future__ import annotations

import warnings

import pytest

from edgegan.errors import EdgeganError, PluginError, UnknownNameError
from edgegan.plugins.manager import PluginWarning, get_manager, registry
from edgegan.registry import Entry, call_factory

TOY = """
from edgegan import hookimpl


def build_generator(*, latent_dim, channels, image_size, num_classes=0, width: int = 8):
    return ("generator", latent_dim, channels, image_size, num_classes, width)


def build_discriminator(*, channels, image_size, num_classes=0):
    return ("discriminator", channels, image_size, num_classes)


class ToyLoss:
    '''A toy loss.'''

    def __init__(self, margin: float = 1.0):
        self.margin = margin

    def d_loss(self, real_logits, fake_logits):
        return 0.0

    def g_loss(self, fake_logits):
        return 0.0


def build_dataset(*, split: str = "train", size: int = 4):
    return [split] * size


@hookimpl
def edgegan_register_models(register):
    register("{name}", build_generator, role="generator", description="toy G")
    register("{name}", build_discriminator, role="discriminator")


@hookimpl
def edgegan_register_losses(register):
    register("{name}", ToyLoss, flavour="sweet")


@hookimpl
def edgegan_register_datasets(register):
    register("{name}", build_dataset)
"""


def toy(name: str = "toy") -> str:
    return TOY.replace("{name}", name)


def one_loss(name: str) -> str:
    return f"""
from edgegan import hookimpl

class Loss:
    def d_loss(self, real_logits, fake_logits):
        return 0.0

    def g_loss(self, fake_logits):
        return 0.0

@hookimpl
def edgegan_register_losses(register):
    register({name!r}, Loss)
"""


def info(name: str):
    return get_manager().infos[name]


# -- loading ---------------------------------------------------------------------------------


def test_plugin_found_through_entry_points_with_provenance(fake_plugin, monkeypatch):
    name = fake_plugin(toy(), dist="edgegan-toy", version="1.2.3", name="toy")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", name)

    for kind, role in [
        ("models", "generator"),
        ("models", "discriminator"),
        ("losses", None),
        ("datasets", None),
    ]:
        entry = registry(kind).get("toy", role)
        assert (entry.plugin, entry.distribution, entry.version) == ("toy", "edgegan-toy", "1.2.3")

    gen = registry("models").get("toy", "generator")
    assert gen.description == "toy G"
    loss = registry("losses").get("toy")
    assert loss.description == "A toy loss."  # first line of the factory's docstring
    assert loss.meta == {"flavour": "sweet"}

    plugin = info("toy")
    assert not plugin.builtin and plugin.error is None
    assert plugin.hooks == [
        "edgegan_register_datasets",
        "edgegan_register_losses",
        "edgegan_register_models",
    ]
    assert plugin.provides == {
        "models": ["toy (generator)", "toy (discriminator)"],
        "losses": ["toy"],
        "datasets": ["toy"],
    }
    infos, error = get_manager().plugin_infos()
    assert error is None
    assert infos[-1].name == "toy" and all(i.builtin for i in infos[:-1])  # built-ins first

    built = registry("models").build(
        "toy",
        {"width": 3},
        {"latent_dim": 16, "channels": 1, "image_size": 28, "num_classes": 10},
        role="generator",
    )
    assert built == ("generator", 16, 1, 28, 10, 3)
    assert registry("datasets").build("toy", {"size": 2}, {"split": "test"}) == ["test", "test"]


def test_entry_point_may_name_an_object(fake_plugin, monkeypatch):
    source = """
    from edgegan import hookimpl

    class Plugin:
        @hookimpl
        def edgegan_register_losses(self, register):
            register("objloss", dict)

    plugin = Plugin()
    """
    name = fake_plugin(source, dist="edgegan-obj", target="edgegan_obj:plugin")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", name)
    assert registry("losses").get("objloss").plugin == "edgegan-obj"


def test_builtins_are_plugins_too():
    manager = get_manager()
    builtins = [i for i in manager.infos.values() if i.builtin]
    assert builtins and all(i.distribution == "edgegan" and i.error is None for i in builtins)
    assert all(not i.builtin for i in manager.infos.values() if i not in builtins)


def test_autoload_is_off_in_tests(fake_plugin):
    fake_plugin(toy(), dist="edgegan-toy", name="toy")
    assert "toy" not in get_manager().infos
    assert "toy" not in registry("losses")


def test_autoload_loads_installed_plugins(fake_plugin, monkeypatch):
    fake_plugin(toy(), dist="edgegan-toy", name="toy")
    monkeypatch.delenv("EDGEGAN_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("EDGEGAN_DISABLE_PLUGINS", "example")  # keep other installed ones out
    assert registry("losses").get("toy").distribution == "edgegan-toy"


@pytest.mark.parametrize("deny", ["toy", "edgegan-toy"])
def test_disable_plugins_skips_by_entry_point_or_distribution(fake_plugin, monkeypatch, deny):
    fake_plugin(toy(), dist="edgegan-toy", name="toy")
    monkeypatch.delenv("EDGEGAN_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("EDGEGAN_DISABLE_PLUGINS", f"example, {deny}")
    assert "toy" not in get_manager().infos
    assert "toy" not in registry("losses")


def test_disable_wins_over_load(fake_plugin, monkeypatch):
    fake_plugin(toy(), dist="edgegan-toy", name="toy")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", "toy")
    monkeypatch.setenv("EDGEGAN_DISABLE_PLUGINS", "toy")
    assert "toy" not in get_manager().infos


def test_allowlist_loads_only_named_plugins(fake_plugin, monkeypatch):
    fake_plugin(toy("first"), dist="edgegan-first", name="first")
    fake_plugin(toy("second"), dist="edgegan-second", name="second")
    fake_plugin(toy("third"), dist="edgegan-third", name="third")
    # Either the entry-point name or the distribution name selects a plugin.
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", "first,edgegan-third")
    assert set(get_manager().infos) >= {"first", "third"}
    assert "second" not in get_manager().infos
    assert {"first", "third"} <= set(registry("losses").names())
    assert "second" not in registry("losses").names()


def test_plugin_failing_to_import_is_reported_and_skipped(fake_plugin, monkeypatch):
    bad = fake_plugin(
        "raise ImportError('needs frobnicate')\n", dist="edgegan-bad", version="0.3", name="bad"
    )
    good = fake_plugin(toy(), dist="edgegan-toy", name="toy")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", f"{bad},{good}")
    with pytest.warns(
        PluginWarning,
        match=r"plugin 'bad' \(edgegan-bad 0.3\) failed to load: "
        r"ImportError: needs frobnicate",
    ):
        manager = get_manager()
    infos, error = manager.plugin_infos()
    assert error is None
    listed = {i.name: i for i in infos}
    assert "ImportError: needs frobnicate" in listed["bad"].error
    assert listed["bad"].provides == {}
    # Everything else still works: the built-ins and the healthy plugin.
    assert all(i.error is None for i in infos if i.name != "bad")
    assert registry("losses").get("toy").plugin == "toy"


def test_strict_mode_turns_a_broken_plugin_into_an_error(fake_plugin, monkeypatch):
    bad = fake_plugin("raise ImportError('needs frobnicate')\n", dist="edgegan-bad", name="bad")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", bad)
    monkeypatch.setenv("EDGEGAN_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"plugin 'bad'.*ImportError.*EDGEGAN_STRICT_PLUGINS"):
        get_manager()


def test_plugin_with_mismatched_hook_signature_is_reported(fake_plugin, monkeypatch):
    source = """
    from edgegan import hookimpl

    @hookimpl
    def edgegan_register_losses(reg):
        reg("never", dict)
    """
    bad = fake_plugin(source, dist="edgegan-sig", name="sig")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", bad)
    with pytest.warns(
        PluginWarning,
        match="plugin 'sig' .* is not a valid edgegan plugin: "
        "hook edgegan_register_losses takes \\(reg\\); it must take \\(register\\)$",
    ):
        get_manager()
    assert info("sig").error
    assert "never" not in registry("losses")


def test_plugin_with_a_misspelt_hook_is_reported(fake_plugin, monkeypatch):
    source = """
    from edgegan import hookimpl

    @hookimpl
    def edgegan_register_losses(register):
        register("typo-loss", dict)

    @hookimpl
    def edgegan_register_model(register):
        register("typo-net", dict, role="generator")
    """
    monkeypatch.setenv(
        "EDGEGAN_LOAD_PLUGINS", fake_plugin(source, dist="edgegan-typo", name="typo")
    )
    with pytest.warns(
        PluginWarning,
        match="unknown hook\\(s\\): 'edgegan_register_model' "
        "\\(did you mean 'edgegan_register_models'\\?\\)",
    ):
        get_manager()
    assert info("typo").error
    assert "typo-loss" not in registry("losses")


def test_an_optional_hook_of_a_newer_edgegan_is_no_typo(fake_plugin, monkeypatch):
    """pluggy's optionalhook: a plugin written for several edgegan versions implements a hook
    this one lacks; its other parts load, and the hook is not listed (it is never called)."""
    source = """
    from edgegan import hookimpl

    @hookimpl
    def edgegan_register_losses(register):
        register("later-loss", dict)

    @hookimpl(optionalhook=True)
    def edgegan_register_schedulers(register):
        raise AssertionError("never called")
    """
    monkeypatch.setenv(
        "EDGEGAN_LOAD_PLUGINS", fake_plugin(source, dist="edgegan-later", name="later")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_manager()
    assert not info("later").error
    assert info("later").hooks == ["edgegan_register_losses"]
    assert "later-loss" in registry("losses")


def test_plugin_whose_hook_raises_is_reported_and_skipped_as_a_whole(fake_plugin, monkeypatch):
    source = (
        toy("half")
        + """
@hookimpl
def edgegan_register_metrics(register):
    raise RuntimeError("boom")
"""
    )
    bad = fake_plugin(source, dist="edgegan-half", name="half")
    good = fake_plugin(toy(), dist="edgegan-toy", name="toy")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", f"{bad},{good}")
    with pytest.warns(
        PluginWarning,
        match="plugin 'half' \\(edgegan-half 1.0\\) failed in edgegan_register_metrics: "
        "RuntimeError: boom",
    ):
        losses = registry("losses")
    # Its other hooks ran fine, but a half-loaded plugin is not used at all.
    assert "half" not in losses
    assert ("half", "generator") not in registry("models")
    assert "boom" in info("half").error
    assert registry("losses").get("toy").plugin == "toy"


def test_strict_mode_turns_a_failing_hook_into_an_error(fake_plugin, monkeypatch):
    source = """
    from edgegan import hookimpl

    @hookimpl
    def edgegan_register_losses(register):
        raise RuntimeError("boom")
    """
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", fake_plugin(source, dist="edgegan-boom"))
    monkeypatch.setenv("EDGEGAN_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="RuntimeError: boom"):
        registry("losses")


# -- name conflicts --------------------------------------------------------------------------


def test_two_plugins_registering_one_name_is_an_error_naming_both(fake_plugin, monkeypatch):
    one = fake_plugin(one_loss("shared"), dist="edgegan-one", name="one")
    two = fake_plugin(one_loss("shared"), dist="edgegan-two", name="two")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", f"{one},{two}")
    with pytest.raises(PluginError) as exc_info:
        registry("losses")
    message = str(exc_info.value)
    assert "loss 'shared' is registered twice" in message
    assert "edgegan-one" in message and "edgegan-two" in message
    # either may go: the one loaded first is not the right one to keep by that alone
    assert message.endswith(
        "; uninstall one, or set EDGEGAN_DISABLE_PLUGINS=one or EDGEGAN_DISABLE_PLUGINS=two"
    )
    # `edgegan plugins` still lists everything, with the conflict as the error.
    infos, error = get_manager().plugin_infos()
    assert error == message
    assert {"one", "two"} <= {i.name for i in infos}


def test_same_name_for_generator_and_discriminator_is_fine(fake_plugin, monkeypatch):
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", fake_plugin(toy(), dist="edgegan-toy"))
    models = registry("models")
    assert ("toy", "generator") in models and ("toy", "discriminator") in models


def test_plugin_clashing_with_a_builtin_is_an_error(fake_plugin, monkeypatch):
    assert "hinge" in registry("losses")  # the built-in it clashes with
    from edgegan.plugins.manager import reset_manager

    reset_manager()
    clash = fake_plugin(one_loss("hinge"), dist="edgegan-clash", name="clash")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", clash)
    with pytest.raises(PluginError) as exc_info:
        registry("losses")
    message = str(exc_info.value)
    assert "loss 'hinge' is registered twice" in message
    assert "distribution edgegan)" in message and "edgegan-clash" in message
    assert "EDGEGAN_DISABLE_PLUGINS=clash" in message  # the plugin, not the built-in


def test_two_distributions_with_one_entry_point_name(fake_plugin, monkeypatch):
    fake_plugin(one_loss("a"), dist="edgegan-a", name="same")
    fake_plugin(one_loss("b"), dist="edgegan-b", name="same")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", "same")
    manager = get_manager()  # loads: `edgegan plugins` must still list everything
    with pytest.raises(PluginError, match="two plugins are named 'same'") as exc_info:
        registry("losses")
    message = str(exc_info.value)
    assert "edgegan-a and edgegan-b" in message
    assert "EDGEGAN_DISABLE_PLUGINS=edgegan-b" in message
    infos, error = manager.plugin_infos()
    assert error == message
    assert [(i.distribution, i.error) for i in infos if i.name == "same"] == [
        ("edgegan-a", None),
        ("edgegan-b", message),
    ]
    # The fix the message gives works.
    from edgegan.plugins.manager import reset_manager

    reset_manager()
    monkeypatch.setenv("EDGEGAN_DISABLE_PLUGINS", "edgegan-b")
    assert registry("losses").get("a").distribution == "edgegan-a"
    assert "b" not in registry("losses")


def test_every_part_conflict_is_listed_on_its_plugin(fake_plugin, monkeypatch):
    source = """
    from edgegan import hookimpl

    @hookimpl
    def edgegan_register_losses(register):
        register("hinge", dict)
        register("own-loss", dict)
        register("lsgan", dict)
    """
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", fake_plugin(source, dist="edgegan-clash"))
    infos, error = get_manager().plugin_infos()
    assert error.startswith("loss 'hinge' is registered twice")
    assert "rename it or set EDGEGAN_DISABLE_PLUGINS=edgegan-clash" in error  # a built-in stays
    assert error.endswith("(and 1 more: see `edgegan plugins`)")
    (row,) = [i for i in infos if i.distribution == "edgegan-clash"]
    assert [c.split(" is ")[0] for c in row.conflicts] == ["loss 'hinge'", "loss 'lsgan'"]
    assert row.provides == {"losses": ["own-loss"]}

    from click.testing import CliRunner

    from edgegan.cli import cli

    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 2
    assert "  losses: own-loss\n  conflict: loss 'hinge' is registered twice" in result.output


def test_a_plugin_registering_one_name_twice(fake_plugin, monkeypatch):
    source = """
    from edgegan import hookimpl

    @hookimpl
    def edgegan_register_losses(register):
        register("twice", dict)
        register("twice", dict)
    """
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", fake_plugin(source, dist="edgegan-dup", name="dup"))
    with pytest.raises(PluginError, match="^plugin 'dup' registers loss 'twice' twice$"):
        registry("losses")


def test_two_entry_points_naming_one_module(fake_plugin, monkeypatch):
    fake_plugin(one_loss("mine"), dist="edgegan-mine", name="mine")
    fake_plugin("", dist="edgegan-alias", name="alias", target="edgegan_mine")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", "mine,alias")
    with pytest.warns(PluginWarning, match="names the same module or object as plugin"):
        get_manager()
    # Entry points load in name order: 'alias' came first, so 'mine' is the one refused;
    # the message names both distributions.
    assert "edgegan-alias" in info("mine").error and "edgegan-mine" in info("mine").error


def test_a_plugin_without_hookimpl_is_reported(fake_plugin, monkeypatch):
    source = """
    def edgegan_register_losses(register):
        register("undecorated", dict)
    """
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", fake_plugin(source, dist="edgegan-nodeco"))
    with pytest.warns(PluginWarning, match="implements no edgegan hook; decorate .*hookimpl"):
        get_manager()
    assert "undecorated" not in registry("losses")


@pytest.mark.parametrize("spelling", ["Edgegan_Toy", "edgegan.toy", "TOY"])
def test_plugin_names_in_the_env_are_normalised(fake_plugin, monkeypatch, spelling):
    fake_plugin(toy(), dist="edgegan-toy", name="toy")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", spelling)
    assert registry("losses").get("toy").distribution == "edgegan-toy"


def test_a_plugin_name_in_the_env_that_matches_nothing_warns(fake_plugin, monkeypatch):
    fake_plugin(toy(), dist="edgegan-toy", name="toy")
    monkeypatch.setenv("EDGEGAN_DISABLE_PLUGINS", "edgegan-tyo")
    with pytest.warns(
        PluginWarning,
        match="EDGEGAN_DISABLE_PLUGINS names 'edgegan-tyo', which is no installed plugin "
        "\\(did you mean 'edgegan-toy'\\?\\); installed \\(either name works\\): .*"
        "toy \\(edgegan-toy\\)",
    ):
        get_manager()


# -- lookups ---------------------------------------------------------------------------------


def test_unknown_name_lists_known_names_and_the_closest(fake_plugin, monkeypatch):
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", fake_plugin(toy("widget"), dist="edgegan-w"))
    with pytest.raises(
        UnknownNameError,
        match=r"unknown loss 'widgte' \(did you mean 'widget'\?\)"
        r"; known: .*widget",
    ):
        registry("losses").get("widgte")
    with pytest.raises(
        UnknownNameError,
        match=r"unknown generator 'widgets' \(did you mean "
        r"'widget'\?\)",
    ):
        registry("models").get("widgets", "generator")
    with pytest.raises(UnknownNameError) as exc_info:
        registry("datasets").get("zzzzzz")
    assert "did you mean" not in str(exc_info.value)
    assert "widget" in str(exc_info.value)


def test_unknown_kind():
    with pytest.raises(PluginError, match="unknown kind 'model'; kinds: models, losses"):
        get_manager().registry("model")


# -- invalid registrations -------------------------------------------------------------------

INVALID = {
    "non-callable factory": ('register("x", 42)', "losses", "non-callable factory"),
    "model without role": ('register("x", dict)', "models", "role None"),
    "model with an unknown role": (
        'register("x", dict, role="critic")',
        "models",
        "role 'critic'; role must be one of generator, discriminator",
    ),
    "role on a loss": (
        'register("x", dict, role="generator")',
        "losses",
        "only models take a role",
    ),
    "empty name": ('register("", dict)', "datasets", "invalid name ''"),
    "non-string name": ("register(3, dict)", "metrics", "invalid name 3"),
    # accepted, they broke `edgegan list`'s rows and cannot be typed as one config value
    "name with a newline": ('register("a\\nb", dict)', "losses", "invalid name 'a\\nb'"),
    "name with a space": ('register("my loss", dict)', "losses", "invalid name 'my loss'"),
    # accepted, it used to break `edgegan list losses` for everyone (TypeError in join)
    "non-string description": (
        'register("x", dict, description=["least", "squares"])',
        "losses",
        "registered loss 'x' with a description of type list; it must be a string",
    ),
    # accepted, 'name' could never be set (it picks the part) and 'defaults' failed on use
    "factory requiring 'name'": (
        'register("x", lambda name, size=1: None)',
        "losses",
        "registered loss 'x' whose factory requires 'name', which a part's config keeps for "
        "itself (name, defaults): rename that parameter",
    ),
    "factory requiring 'defaults'": (
        'register("x", lambda defaults: None)',
        "datasets",
        "whose factory requires 'defaults'",
    ),
}


def test_optional_or_bound_reserved_parameters_and_other_kinds_are_accepted():
    """Refusing them skipped plugins that worked: an optional 'name' keeps its default, a
    functools.partial's bound one its value, and a metric or exporter has no part config."""
    import functools

    from edgegan.registry import validate_registration

    def net(size: int = 1, name: str = "small"):
        return size

    validate_registration("models", "n", functools.partial(net, name="big"), "generator", "p")
    validate_registration("losses", "l", lambda name="a", defaults=None: None, None, "p")
    validate_registration("metrics", "m", lambda name: None, None, "p")


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_registration_names_the_plugin(fake_plugin, monkeypatch, case):
    call, kind, expected = INVALID[case]
    source = f"""
from edgegan import hookimpl

@hookimpl
def edgegan_register_{kind}(register):
    {call}
"""
    name = fake_plugin(source, dist="edgegan-sloppy", name="sloppy")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", name)
    with pytest.warns(PluginWarning, match=r"^plugin 'sloppy' \(edgegan-sloppy 1.0\) ") as record:
        registry(kind)  # its distribution named, as every other failure names it
    assert expected in str(record[0].message)
    assert expected in info("sloppy").error
    assert "x" not in registry(kind)

    from edgegan.plugins.manager import reset_manager

    reset_manager()
    monkeypatch.setenv("EDGEGAN_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'sloppy'"):
        registry(kind)


# -- call_factory ----------------------------------------------------------------------------


def build_model(
    *,
    channels,
    image_size,
    num_classes=0,
    width: int = 64,
    dropout: float = 0.0,
    spectral_norm: bool = False,
    act: str = "relu",
    kernel: tuple = (3, 3),
    extra=None,
):
    return dict(
        channels=channels,
        image_size=image_size,
        num_classes=num_classes,
        width=width,
        dropout=dropout,
        spectral_norm=spectral_norm,
        act=act,
        kernel=kernel,
        extra=extra,
    )


MODEL = Entry(kind="models", name="toy", factory=build_model, role="generator", plugin="p")
CONTEXT = {"channels": 1, "image_size": 28, "latent_dim": 64, "num_classes": 10}


def test_call_factory_passes_params_and_only_accepted_context():
    built = call_factory(MODEL, {"width": 32, "act": "gelu"}, CONTEXT)
    assert built["width"] == 32 and built["act"] == "gelu"
    assert (built["channels"], built["image_size"], built["num_classes"]) == (1, 28, 10)
    # latent_dim is not a parameter of build_model, so it is not passed (no TypeError).


def test_call_factory_coerces_compatible_types():
    built = call_factory(MODEL, {"dropout": 1, "kernel": [5, 5], "extra": {"a": 1}}, CONTEXT)
    assert built["dropout"] == 1.0 and isinstance(built["dropout"], float)
    assert built["kernel"] == (5, 5)
    assert call_factory(MODEL, {"kernel": []}, CONTEXT)["kernel"] == ()
    assert built["extra"] == {"a": 1}  # no default type: passed as is
    assert call_factory(MODEL, {"dropout": "1e-1"}, CONTEXT)["dropout"] == 0.1  # YAML 1.1 floats


def test_call_factory_unknown_parameter_suggests_the_closest():
    with pytest.raises(EdgeganError) as exc_info:
        call_factory(MODEL, {"widht": 32}, CONTEXT)
    message = str(exc_info.value)
    assert "unknown parameter 'widht' for generator 'toy' (did you mean 'width'?)" in message
    assert "accepted: act, dropout, extra, kernel, spectral_norm, width" in message


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"width": "wide"}, "parameter 'width' of generator 'toy' must be int, got str 'wide'"),
        ({"width": 1.5}, "must be int, got float 1.5"),
        ({"width": True}, "must be int, got bool True"),
        ({"spectral_norm": 1}, "parameter 'spectral_norm' of generator 'toy' must be bool"),
        ({"dropout": "lots"}, "must be float, got str 'lots'"),
        ({"act": 3}, "must be str, got int 3"),
        ({"kernel": 3}, "must be tuple, got int 3"),
        (
            {"kernel": [3, "3"]},
            "'kernel' of generator 'toy' must be a tuple of int, got str '3' at index 1",
        ),
        ({"kernel": [3, 2.5]}, "must be a tuple of int, got float 2.5 at index 1"),
        ({"kernel": [True, 3]}, "must be a tuple of int, got bool True at index 0"),
    ],
)
def test_call_factory_checks_types_against_defaults(params, expected):
    with pytest.raises(EdgeganError) as exc_info:
        call_factory(MODEL, params, CONTEXT)
    assert expected in str(exc_info.value)


def test_call_factory_missing_required_parameter():
    def build(*, size, depth: int = 2):
        return size

    entry = Entry(kind="datasets", name="needy", factory=build, plugin="p", distribution="e-p")
    with pytest.raises(EdgeganError) as info:
        call_factory(entry, {"depth": 3}, {"split": "train"})
    # it named neither the plugin nor the key to set
    assert str(info.value) == (
        "dataset 'needy' (plugin 'p', e-p) needs parameter(s): size (set data.size=...)"
    )
    assert call_factory(entry, {"size": 7}, {}) == 7


def test_call_factory_rejects_a_param_that_the_task_sets():
    with pytest.raises(
        EdgeganError,
        match="parameter 'num_classes' of generator 'toy' is set by "
        "the task \\(num_classes=10\\); remove it",
    ):
        call_factory(MODEL, {"num_classes": 3}, CONTEXT)
    # Even for a context key this factory does not accept.
    with pytest.raises(EdgeganError, match="'latent_dim' .* is set by the task"):
        call_factory(MODEL, {"latent_dim": 3}, CONTEXT)


def test_call_factory_var_kwargs_takes_everything():
    def build(width: int = 1, **kwargs):
        return width, kwargs

    entry = Entry(kind="losses", name="open", factory=build, plugin="p")
    width, kwargs = call_factory(entry, {"width": 2, "anything": "goes"}, {"split": "train"})
    assert width == 2 and kwargs == {"anything": "goes", "split": "train"}


def test_call_factory_with_a_class_factory():
    class Loss:
        def __init__(self, margin: float = 1.0):
            self.margin = margin

    entry = Entry(kind="losses", name="cls", factory=Loss, plugin="p")
    assert call_factory(entry, {"margin": 2}, {"split": "x"}).margin == 2.0
    with pytest.raises(
        EdgeganError,
        match="unknown parameter 'margn' for loss 'cls' "
        "\\(did you mean 'margin'\\?\\); accepted: margin",
    ):
        call_factory(entry, {"margn": 2}, {})


# -- the documented example ------------------------------------------------------------------


def _documented_plugin() -> tuple[str, str]:
    """The pyproject.toml and module of the complete plugin in "Writing a plugin"."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    start = text.find("### A complete plugin")
    assert start >= 0, "README.md lost its 'A complete plugin' section"
    blocks = re.findall(r"```(toml|python)\n(.*?)```", text[start:], re.S)
    return blocks[0][1], blocks[1][1]


def test_the_documented_example_plugin_works(fake_plugin, monkeypatch, tmp_path):
    import re

    import torch

    pyproject, module = _documented_plugin()
    dist = re.search(r'^name = "(.+)"', pyproject, re.M).group(1)
    version = re.search(r'^version = "(.+)"', pyproject, re.M).group(1)
    ep_name, target = re.search(
        r"\[project\.entry-points\.edgegan\]\n(\S+) = \"(.+)\"", pyproject
    ).groups()
    fake_plugin(module, dist=dist, version=version, name=ep_name, module=target)
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", ep_name)
    monkeypatch.setenv("EDGEGAN_STRICT_PLUGINS", "1")

    entry = registry("losses").get("smooth-bce")
    assert (entry.distribution, entry.version) == (dist, version)
    loss = registry("losses").build("smooth-bce", {"smoothing": 0.2})
    real, fake = torch.tensor([3.0, -1.0]), torch.tensor([-2.0, 0.5])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        real, torch.full_like(real, 0.8)
    ) + torch.nn.functional.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    assert torch.allclose(loss.d_loss(real, fake), expected)
    assert torch.allclose(loss.g_loss(fake), torch.nn.functional.softplus(-fake).mean())
    with pytest.raises(EdgeganError, match="did you mean 'smoothing'"):
        registry("losses").build("smooth-bce", {"smothing": 0.2})

    callback = registry("callbacks").build("csv-log", {}, {"run_dir": tmp_path})
    callback.on_step_end(None, 10, {"step": 10, "g_loss": 1.5})
    callback.on_step_end(None, 20, {"step": 20, "g_loss": 1.25})
    callback.on_train_end(None)
    assert (tmp_path / "metrics.csv").read_text().split() == ["step,g_loss", "10,1.5", "20,1.25"]


def test_call_factory_refuses_null_for_a_typed_parameter():
    with pytest.raises(
        EdgeganError, match="parameter 'width' of generator 'toy' must be int, got null"
    ):
        call_factory(MODEL, {"width": None}, CONTEXT)
    assert call_factory(MODEL, {"extra": None}, CONTEXT)["extra"] is None  # default None

    def build(*, scale: float | None = 1.0):
        return scale

    entry = Entry(kind="losses", name="opt", factory=build, plugin="p")
    assert call_factory(entry, {"scale": None}, {}) is None  # the annotation admits None


def test_a_factorys_value_error_is_one_line_naming_the_plugin():
    def build(*, smoothing: float = 0.1):
        if not 0 <= smoothing < 1:
            raise ValueError("smoothing must be in [0, 1)")
        return smoothing

    entry = Entry(
        kind="losses",
        name="smooth",
        factory=build,
        plugin="sm",
        distribution="edgegan-sm",
        version="0.3",
    )
    with pytest.raises(EdgeganError) as exc_info:
        call_factory(entry, {"smoothing": 1.5}, {})
    assert str(exc_info.value) == (
        "loss 'smooth' (plugin 'sm', edgegan-sm 0.3): smoothing must be in [0, 1)"
    )


def test_a_given_description_is_shown_as_its_first_paragraph_on_one_line(fake_plugin, monkeypatch):
    source = """
from edgegan import hookimpl

@hookimpl
def edgegan_register_losses(register):
    register("wordy", dict, description="A loss\\n    over two lines.\\n\\nDetails.")
"""
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", fake_plugin(source, dist="edgegan-w", name="w"))
    assert registry("losses").get("wordy").description == "A loss over two lines."
    from click.testing import CliRunner

    from edgegan.cli import cli

    rows = CliRunner().invoke(cli, ["list", "losses"]).output.splitlines()
    assert [r for r in rows if "wordy" in r or "lines." in r] == [
        next(r for r in rows if r.startswith("wordy ") and r.endswith("  A loss over two lines."))
    ]


def test_default_description_is_the_docstrings_first_paragraph():
    exporters = registry("exporters")
    assert exporters.get("onnx-int8").description.endswith("images (a translator), parity-checked.")
    assert all("\n" not in e.description for kind in ("models", "losses") for e in registry(kind))


def test_generator_kind_is_read_from_the_factorys_signature():
    from edgegan.config import check_generator_kind, generator_kind

    def latent(latent_dim, channels):
        return None

    def optional_latent(channels, channels_out, latent_dim: int = 8):
        return None

    def translator(channels, channels_out):
        return None

    def anything(**kwargs):
        return None

    def fixed_latent(channels, image_size):  # a wrapped network of a fixed latent size
        return None

    def kind(factory):
        return generator_kind(Entry(kind="models", name="x", factory=factory, role="generator"))

    assert kind(latent) == "latent"
    assert kind(translator) == "image-to-image"
    assert kind(optional_latent) is None  # could be either: left to the interface checks
    assert kind(anything) is None
    assert kind(fixed_latent) is None
    entry = Entry(kind="models", name="t", factory=translator, role="generator", plugin="p")
    with pytest.raises(EdgeganError, match="generator 't' is an image-to-image generator"):
        check_generator_kind("gan", entry)
    check_generator_kind("cyclegan", entry)
    check_generator_kind("some-plugin-task", entry)  # a task without a known kind: no check


def test_list_elements_are_checked_against_the_defaults():
    def build(scales: list = [0.5, 1.0], names: tuple = ("a",), mixed: tuple = (1, "x")):  # noqa: B006
        return scales, names, mixed

    entry = Entry(kind="losses", name="l", factory=build, plugin="p")
    scales, names, mixed = call_factory(entry, {"scales": [1, "1e-4"], "mixed": [None]}, {})
    assert scales == [1.0, 0.0001] and all(type(v) is float for v in scales)
    assert names == ("a",) and mixed == (None,)  # a mixed default's elements are unchecked
    import numpy as np

    assert call_factory(entry, {"scales": [np.float64(0.5), np.int64(2)]}, {})[0] == [0.5, 2.0]
    with pytest.raises(EdgeganError, match="'scales' of loss 'l' must be a list of float, got str"):
        call_factory(entry, {"scales": ["big"]}, {})
    with pytest.raises(EdgeganError, match="must be a tuple of str, got int 1 at index 0"):
        call_factory(entry, {"names": [1]}, {})


def test_a_plugin_registered_in_code_is_checked_at_once():
    from edgegan import hookimpl
    from edgegan.plugins.manager import PluginManager, reset_manager

    class Clash:
        @hookimpl
        def edgegan_register_losses(self, register):
            register("hinge", object)

    class Mine:
        @hookimpl
        def edgegan_register_losses(self, register):
            register("my-hinge", object)

    class Broken:
        @hookimpl
        def edgegan_register_losses(self, register):
            raise RuntimeError("no")

    manager = PluginManager(load_entry_points=False)
    reset_manager(manager)
    # A clash used to be accepted, and then broke every lookup of every kind.
    with pytest.raises(PluginError, match="loss 'hinge' is registered twice") as info:
        manager.register(Clash(), name="clash")
    # no environment variable can skip a plugin registered in code
    assert str(info.value).endswith("; rename it in the plugin registered in code")
    with pytest.raises(PluginError, match="plugin 'broken' failed in edgegan_register_losses"):
        manager.register(Broken(), name="broken")
    with pytest.raises(PluginError, match="plugin 'empty' implements no edgegan hook"):
        manager.register(object(), name="empty")
    assert not {"clash", "broken", "empty"} & set(manager.infos)  # refused, not half-there
    manager.register(Mine(), name="mine")
    assert "my-hinge" in manager.registry("losses").names()
    with pytest.raises(PluginError, match="first call get_manager\\(\\).unregister\\('mine'\\)"):
        manager.register(Mine(), name="mine")  # a notebook cell run twice
    manager.unregister("mine")
    manager.register(Mine(), name="mine")
    with pytest.raises(PluginError, match="built into edgegan"):
        manager.unregister("edgegan.losses.plugin")


def test_registering_in_code_leaves_other_plugins_failures_to_be_reported(fake_plugin, monkeypatch):
    from edgegan import hookimpl

    source = (
        toy("half")
        + "\n@hookimpl\ndef edgegan_register_metrics(register):\n    raise RuntimeError('boom')\n"
    )
    monkeypatch.setenv(
        "EDGEGAN_LOAD_PLUGINS", fake_plugin(source, dist="edgegan-half", name="half")
    )

    class Mine:
        @hookimpl
        def edgegan_register_losses(self, register):
            register("my-loss", object)

    with pytest.warns(PluginWarning) as seen:  # the check of Mine keeps half's failure quiet
        get_manager().register(Mine(), name="mine")
        losses = registry("losses")  # ... and the lookup reports it, as without Mine
    assert [str(w.message) for w in seen] == [
        "plugin 'half' (edgegan-half 1.0) failed in edgegan_register_metrics: RuntimeError: boom"
    ]
    assert "my-loss" in losses and "half" not in losses
    monkeypatch.setenv("EDGEGAN_STRICT_PLUGINS", "1")
    from edgegan.plugins.manager import reset_manager

    reset_manager()
    get_manager().register(Mine(), name="mine")
    with pytest.raises(PluginError, match="boom.*EDGEGAN_STRICT_PLUGINS is set"):
        registry("losses")


def test_full_params_records_plain_defaults_only():
    """What a run records of a factory's defaults: YAML-plain values, never the task's
    context; an Enum member or a numpy scalar (int/float/str subclasses that
    yaml.safe_dump refuses) used to stop the run when config.yaml was written."""
    import enum
    import types

    import numpy as np
    import yaml

    from edgegan.registry import full_params

    class Init(str, enum.Enum):
        NORMAL = "normal"

    def factory(
        channels, image_size, ngf=64, gain=np.sqrt(2.0), init=Init.NORMAL, k=(3, 3),
        scale=None, name="x", flag=False, **extra,
    ):  # fmt: skip
        return None

    entry = types.SimpleNamespace(factory=factory)
    got = full_params(entry, {"ngf": 8, "more": 1}, {"channels": 1, "image_size": 28})
    assert got == {"ngf": 8, "k": [3, 3], "scale": None, "name": "x", "flag": False, "more": 1}
    assert yaml.safe_load(yaml.safe_dump(got)) == got


def test_recorded_defaults_sit_under_the_users_params_and_stale_ones_go_with_a_warning():
    import types
    import warnings

    from edgegan.config import ConfigError, config_from_dict, load_config
    from edgegan.registry import StaleDefaultWarning, with_recorded_defaults

    def factory(channels, ngf=64, norm="batch"):
        return None

    entry = types.SimpleNamespace(factory=factory, label="generator 'g'")
    ctx = {"channels": 1}
    recorded = {"ngf": 8, "norm": "instance", "dropout": True, "channels": 3}
    with pytest.warns(StaleDefaultWarning, match=r"for dropout, channels \(removed, or of"):
        got = with_recorded_defaults(entry, {"ngf": 32}, recorded, ctx)
    assert got == {"norm": "instance", "ngf": 32}  # the user's value wins
    with pytest.warns(StaleDefaultWarning, match="for norm "):  # a str parameter now
        assert with_recorded_defaults(entry, {}, {"ngf": 8, "norm": 2}, ctx) == {"ngf": 8}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert with_recorded_defaults(entry, {"ngf": 32}, {}, ctx) == {"ngf": 32}
        # a parameter the user set is passed on, unknown or not: the factory's check refuses it
        assert with_recorded_defaults(entry, {"dropout": True}, {}, ctx) == {"dropout": True}

    # YAML: the part's `defaults` key, apart from the parameters, and back
    data = load_config("dcgan-mnist").to_dict()
    data["model"]["generator"] = {"name": "dcgan", "ngf": 16, "defaults": {"init": "normal"}}
    part = config_from_dict(data).model.generator
    assert (part.params, part.defaults) == ({"ngf": 16}, {"init": "normal"})
    assert config_from_dict(data).to_dict()["model"]["generator"] == data["model"]["generator"]
    data["model"]["generator"]["defaults"] = "normal"
    with pytest.raises(ConfigError, match="'model.generator.defaults' holds a run's recorded"):
        config_from_dict(data)
    # only the networks record defaults: elsewhere `defaults` is a parameter like any other
    data["model"]["generator"]["defaults"] = {}
    data["loss"] = {"name": "bce", "defaults": {"x": 1}}
    loss = config_from_dict(data).loss
    assert (loss.params, loss.defaults) == ({"defaults": {"x": 1}}, {})


# -- a broken plugin is one line naming it -----------------------------------------------------


def test_a_plugin_factorys_other_failures_are_one_line_naming_the_plugin(fake_plugin, monkeypatch):
    source = """
    from edgegan import hookimpl

    def build_lazy(smoothing: float = 0.1):
        import edgegan_no_such_module  # a heavy dependency, imported inside the factory

    def build_sized(n=None):
        return list(range(n))  # TypeError for a wrong user value: a default None is unchecked

    def build_cuda(scale: float = 1.0):
        raise RuntimeError("CUDA extension missing\\nsee the build log")

    @hookimpl
    def edgegan_register_losses(register):
        register("lazy", build_lazy)
        register("cuda", build_cuda)

    @hookimpl
    def edgegan_register_datasets(register):
        register("sized", build_sized)
    """
    monkeypatch.setenv(
        "EDGEGAN_LOAD_PLUGINS", fake_plugin(source, dist="edgegan-lazy", version="0.2", name="lazy")
    )
    cases = [
        (
            "losses",
            "lazy",
            {},
            "loss 'lazy' (plugin 'lazy', edgegan-lazy 0.2) failed to build: "
            "ModuleNotFoundError: No module named 'edgegan_no_such_module'",
        ),
        (
            "datasets",
            "sized",
            {"n": "ten"},
            "dataset 'sized' (plugin 'lazy', edgegan-lazy 0.2) failed to build: "
            "TypeError: 'str' object cannot be interpreted as an integer",
        ),
        (
            "losses",
            "cuda",
            {},
            "loss 'cuda' (plugin 'lazy', edgegan-lazy 0.2) failed to build: "
            "RuntimeError: CUDA extension missing",  # the first line alone
        ),
    ]
    for kind, name, params, expected in cases:
        with pytest.raises(PluginError) as exc_info:
            registry(kind).build(name, params, {"split": "train"})
        assert str(exc_info.value) == expected
        assert exc_info.value.__cause__ is not None  # EDGEGAN_DEBUG=1 shows the traceback


def test_a_factorys_edgegan_error_passes_and_a_builtins_bug_is_not_blamed_on_a_plugin():
    def refuse():
        raise EdgeganError("no data under /nowhere")

    def buggy():
        raise RuntimeError("edgegan's own bug")

    plugin = dict(plugin="p", distribution="edgegan-p", version="1.0")
    with pytest.raises(EdgeganError) as exc_info:
        call_factory(Entry(kind="datasets", name="d", factory=refuse, **plugin), {}, {})
    assert str(exc_info.value) == "no data under /nowhere"
    assert not isinstance(exc_info.value, PluginError)
    builtin = dict(plugin="edgegan.losses.plugin", distribution="edgegan")
    with pytest.raises(RuntimeError, match="edgegan's own bug"):
        call_factory(Entry(kind="losses", name="l", factory=buggy, **builtin), {}, {})


def test_a_plugin_without_metadata_is_named_by_its_entry_point(fake_plugin, monkeypatch, tmp_path):
    name = fake_plugin(one_loss("bare-loss"), dist="edgegan-bare", name="bare")
    # A .dist-info left without METADATA (a broken install): its distribution has no name.
    (tmp_path / "site-edgegan-bare-1.0" / "edgegan_bare-1.0.dist-info" / "METADATA").unlink()
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", name)
    monkeypatch.setenv("EDGEGAN_DISABLE_PLUGINS", "edgegan-nothing")  # compared with dist names
    with pytest.warns(PluginWarning, match="EDGEGAN_DISABLE_PLUGINS names 'edgegan-nothing'"):
        entry = registry("losses").get("bare-loss")
    assert (entry.plugin, entry.distribution, entry.version) == ("bare", "bare", "")
    assert entry.origin == " (plugin 'bare', bare)"
    infos, error = get_manager().plugin_infos()
    assert error is None and [i.provides for i in infos if i.name == "bare"] == [
        {"losses": ["bare-loss"]}
    ]


def test_a_plugin_calling_sys_exit_is_reported_not_fatal(fake_plugin, monkeypatch):
    at_import = fake_plugin("import sys\nsys.exit('needs a GPU')\n", dist="edgegan-quit")
    source = """
    import sys
    from edgegan import hookimpl

    @hookimpl
    def edgegan_register_losses(register):
        sys.exit("no GPU")
    """
    in_hook = fake_plugin(source, dist="edgegan-quit2")
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", f"{at_import},{in_hook}")
    with pytest.warns(PluginWarning) as seen:
        losses = registry("losses")
    assert [str(w.message) for w in seen] == [
        "plugin 'edgegan-quit' (edgegan-quit 1.0) failed to load: SystemExit: needs a GPU",
        "plugin 'edgegan-quit2' (edgegan-quit2 1.0) failed in edgegan_register_losses: "
        "SystemExit: no GPU",
    ]
    assert "hinge" in losses  # everything else still works

    from edgegan.plugins.manager import reset_manager

    reset_manager()
    monkeypatch.setenv("EDGEGAN_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="'edgegan-quit' .* SystemExit: needs a GPU"):
        registry("losses")


def test_sigterm_while_a_plugin_loads_still_stops_the_command(fake_plugin, monkeypatch):
    import signal

    def terminate(signum, frame):  # as the CLI's handler: SIGTERM as SystemExit
        raise SystemExit(128 + signum)

    source = "import signal\nsignal.raise_signal(signal.SIGTERM)\n"
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", fake_plugin(source, dist="edgegan-slow"))
    old = signal.signal(signal.SIGTERM, terminate)
    try:
        with pytest.raises(SystemExit) as exc_info:
            get_manager()
    finally:
        signal.signal(signal.SIGTERM, old)
    assert exc_info.value.code == 128 + signal.SIGTERM


def test_a_hook_returning_its_parts_is_refused(fake_plugin, monkeypatch):
    source = """
    from edgegan import hookimpl

    class HingeLoss:
        pass

    @hookimpl
    def edgegan_register_losses(register):  # old pluggy style: registered nothing, silently
        return [("hinge2", HingeLoss)]
    """
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", fake_plugin(source, dist="edgegan-ret", name="ret"))
    with pytest.warns(PluginWarning) as seen:
        infos, error = get_manager().plugin_infos()
    assert error is None
    (row,) = [i for i in infos if i.name == "ret"]
    assert row.error == (
        "plugin 'ret' (edgegan-ret 1.0): hook edgegan_register_losses returned a list; a hook "
        "must call register(name, factory, ...) for each part, not return them"
    )
    assert [str(w.message) for w in seen] == [row.error]
    assert "hinge2" not in registry("losses")

    from edgegan import hookimpl

    class Yields:
        @hookimpl
        def edgegan_register_metrics(self, register):
            register("yielded", dict)
            yield

    with pytest.raises(PluginError, match="edgegan_register_metrics is a generator \\(it yields"):
        get_manager().register(Yields(), name="yields")

    class RegistersAndReturns:  # what it returns is ignored: its parts are registered
        @hookimpl
        def edgegan_register_metrics(self, register):
            register("kept", dict)
            return ["kept"]

    get_manager().register(RegistersAndReturns(), name="returns")
    assert "kept" in registry("metrics")


def test_multi_line_plugin_errors_are_shown_as_one_line(fake_plugin, monkeypatch):
    hook = """
    from edgegan import hookimpl

    @hookimpl
    def edgegan_register_losses(register):
        raise RuntimeError("boom\\nsecond line")
    """
    raises = fake_plugin(hook, dist="edgegan-raises", name="raises")
    broken = fake_plugin(
        "raise ImportError('needs frobnicate\\nbuilt for another Python')\n",
        dist="edgegan-broken",
        name="broken",
    )
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", f"{raises},{broken}")
    with pytest.warns(PluginWarning) as seen:
        infos, _ = get_manager().plugin_infos()
    assert sorted(str(w.message) for w in seen) == [
        "plugin 'broken' (edgegan-broken 1.0) failed to load: ImportError: needs frobnicate",
        "plugin 'raises' (edgegan-raises 1.0) failed in edgegan_register_losses: "
        "RuntimeError: boom",
    ]
    assert all("\n" not in (i.error or "") for i in infos)

    from edgegan.plugins.manager import reset_manager

    reset_manager()
    monkeypatch.setenv("EDGEGAN_LOAD_PLUGINS", raises)
    monkeypatch.setenv("EDGEGAN_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError) as exc_info:
        registry("losses")
    assert str(exc_info.value) == (
        "plugin 'raises' (edgegan-raises 1.0) failed in edgegan_register_losses: "
        "RuntimeError: boom (EDGEGAN_STRICT_PLUGINS is set)"
    )


def test_what_a_plugin_provides_is_not_repeated_by_each_lookup():
    from edgegan import hookimpl
    from edgegan.plugins.manager import PluginManager

    class Mine:
        @hookimpl
        def edgegan_register_losses(self, register):
            register("mine", dict)

    manager = PluginManager(load_entry_points=False)
    manager.register(Mine(), name="mine")
    for _ in range(2):
        manager._registries = None  # as after another register() or unregister()
        assert "mine" in manager.registry("losses")
    assert manager.infos["mine"].provides == {"losses": ["mine"]}


def test_a_bad_hook_signature_blames_the_hook_pluggy_refuses():
    from edgegan import hookimpl
    from edgegan.plugins.manager import PluginManager

    class Plugin:
        @hookimpl
        def edgegan_register_models(self, register, verbose=False):  # allowed: a default
            pass

        @hookimpl
        def edgegan_register_losses(self, reg):
            pass

    with pytest.raises(
        PluginError, match="^hook edgegan_register_losses takes \\(reg\\); it must take"
    ):
        PluginManager(load_entry_points=False).register(Plugin(), name="p")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"EDGEGAN_LOAD_PLUGINS": "edgegan-smooth"}, None),
        ({}, "is installed but not loaded: EDGEGAN_DISABLE_PLUGIN_AUTOLOAD is set"),
        (
            {"EDGEGAN_LOAD_PLUGINS": "smooth", "EDGEGAN_DISABLE_PLUGINS": "edgegan-smooth"},
            "is installed but not loaded: EDGEGAN_DISABLE_PLUGINS names it",
        ),
        ({"EDGEGAN_LOAD_PLUGINS": "other"}, "is not installed"),
        (
            {"EDGEGAN_LOAD_PLUGINS": "smooth", "broken": "1"},
            "is installed but failed to load (`edgegan plugins` says why)",
        ),
        (  # installed and loaded, but its new version dropped the part
            {"EDGEGAN_LOAD_PLUGINS": "smooth", "renamed": "1"},
            "is installed at 1.0 but no longer provides it",
        ),
    ],
)
def test_a_runs_missing_plugin_part_says_why_it_is_missing(fake_plugin, monkeypatch, env, expected):
    """A resumed or exported run whose plugin is disabled used to say it 'is not installed'."""
    from edgegan.config import provenance_hint
    from edgegan.plugins.manager import reset_manager

    env = dict(env)
    source = "raise ImportError('needs scipy')" if env.pop("broken", None) else one_loss("smooth")
    if env.pop("renamed", None):
        source = one_loss("smooth-v2")
    fake_plugin(source, dist="edgegan-smooth", name="smooth")
    if env.get("EDGEGAN_LOAD_PLUGINS") == "other":
        fake_plugin(one_loss("other"), dist="edgegan-other", name="other")
        parts_dist = "edgegan-gone"
    else:
        parts_dist = "edgegan-smooth"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_manager()
    parts = {"loss": {"name": "smooth", "plugin": "smooth", "distribution": parts_dist,
                      "version": "1.0"}}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        hint = provenance_hint(parts)
    if expected is None:
        assert hint == ""
    else:
        assert hint == (
            f"; the run was trained with loss 'smooth' of plugin 'smooth' ({parts_dist} 1.0), "
            f"which {expected}"
        )


def test_an_entry_point_in_a_near_miss_group_is_pointed_out(fake_plugin, tmp_path, monkeypatch):
    """[project.entry-points."edgegan.plugins"]: never loaded, and nothing said why."""
    from click.testing import CliRunner

    from edgegan.cli import cli

    fake_plugin(one_loss("forgot-loss"), dist="edgegan-forgot")
    points = tmp_path / "site-edgegan-forgot-1.0" / "edgegan_forgot-1.0.dist-info"
    (points / "entry_points.txt").write_text("[edgegan.plugins]\nforgot = edgegan_forgot\n")
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0 and "forgot" not in result.stdout  # not loaded
    said = (
        "edgegan-forgot declares the entry point 'forgot' in the group 'edgegan.plugins', "
        "which edgegan does not read: the group is 'edgegan' ([project.entry-points.edgegan] "
        "in its pyproject.toml)"
    )
    assert result.stderr == f"warning: {said}\n"
    # where its author first meets it: the part it was to provide is unknown
    with pytest.raises(EdgeganError, match="^unknown loss 'forgot-loss'") as info:
        registry("losses").get("forgot-loss")
    assert str(info.value).endswith(f"; {said}")
    with pytest.raises(EdgeganError) as info:  # a typo's suggestion is enough
        registry("losses").get("hinje")
    assert str(info.value).startswith("unknown loss 'hinje' (did you mean 'hinge'?)")
    assert "forgot" not in str(info.value)
    # switched off (by either name), it is no longer pointed out
    for name in ("edgegan-forgot", "forgot"):
        monkeypatch.setenv("EDGEGAN_DISABLE_PLUGINS", name)
        result = CliRunner().invoke(cli, ["plugins"])
        assert result.exit_code == 0 and result.stderr == "", (name, result.stderr)


def test_an_empty_default_tuple_takes_a_list_of_any_items():
    """mutation testing: _check_items popping the item type of an empty default (a
    parameter defaulting to () then failed with KeyError on any list) passed the suite."""

    def build(*, sizes: tuple = ()):
        return sizes

    entry = Entry(kind="losses", name="sized", factory=build, plugin="p")
    assert call_factory(entry, {"sizes": [1, "a"]}, {}) == (1, "a")
    assert call_factory(entry, {"sizes": []}, {}) == ()


def test_a_name_with_an_unprintable_character_is_refused():
    """mutation testing: validate_registration checking only whitespace (a name with a
    control character, which breaks `edgegan list` rows, was accepted) passed the suite."""
    from edgegan.registry import validate_registration

    for name in ("a\x00b", "loss\x1b[31m", "a\u200bb"):
        with pytest.raises(PluginError, match="invalid name"):
            validate_registration("losses", name, dict, None, "p")
    validate_registration("losses", "my-loss_2", dict, None, "p")


def test_registry_names_and_entries_are_sorted_whatever_the_registration_order():
    """mutation testing: Registry.names() in registration order (unsorted rows and
    'known names' in errors, varying with plugin load order) passed the suite."""
    from edgegan.registry import Registry

    reg = Registry("losses")
    for name in ("zeta", "alpha", "mid"):
        reg.add(Entry(kind="losses", name=name, factory=dict, plugin="p"))
    assert reg.names() == ["alpha", "mid", "zeta"]
    assert [e.name for e in reg] == ["alpha", "mid", "zeta"]


def test_a_part_recorded_without_a_version_is_named_without_a_stray_space():
    """A plugin registered in code records no version: "(mod ), which ..." had a stray space."""
    from edgegan.config import provenance_hint
    from edgegan.plugins.manager import reset_manager

    reset_manager()
    parts = {"loss": {"name": "gone", "plugin": "mod", "distribution": "mod", "version": ""}}
    hint = provenance_hint(parts)
    assert hint.startswith("; the run was trained with loss 'gone' of plugin 'mod' (mod), which")
