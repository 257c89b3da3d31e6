"""The ``edgegan`` command line: a thin click layer over the Python API.

Subcommands import torch (and the heavy parts of the package) only when they run, so
``edgegan --help`` and ``edgegan plugins`` start fast. A user mistake is one line on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import click

from edgegan import __version__
from edgegan.errors import EdgeganError

LIST_KINDS = ("models", "losses", "datasets", "metrics", "exporters", "callbacks")


def _format_warning(message: Any, category: type, *args: Any, **kwargs: Any) -> str:
    return f"warning: {message}\n"


class _Group(click.Group):
    """Turns :class:`EdgeganError` into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeganError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgegan")
def cli() -> None:
    """Train GANs and CycleGANs, and ship the generators to the edge."""
    warnings.formatwarning = _format_warning  # plugin warnings as one readable line


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1)
@click.option("--out", type=click.Path(), help="Run directory (default: runs/PRESET[-N]).")
@click.option("--resume", type=click.Path(), help="Continue the run in this directory.")
def train(args: tuple[str, ...], out: str | None, resume: str | None) -> None:
    """Train a model: edgegan train [PRESET|CONFIG.yaml] [key=value ...]

    With no arguments, trains the default preset (dcgan-mnist) on the bundled digits.
    Keys are dotted paths, e.g. train.steps=2000 loss.name=hinge model.generator.ngf=32.
    """
    from edgegan.config import load_config, load_run_config

    source = None
    overrides = list(args)
    if overrides and "=" not in overrides[0]:
        source = overrides.pop(0)
    if resume:
        if source:
            raise EdgeganError("--resume continues a run with its own config; drop the preset")
        if out:
            raise EdgeganError("--resume writes into the run it continues; drop --out")
        config = load_run_config(resume, overrides)
    else:
        config = load_config(source, overrides)

    from edgegan.train import train as run_training

    result = run_training(config, out_dir=out, resume=resume)
    if result.stopped_by == "signal":
        click.echo(
            f"interrupted at step {result.step}: checkpoint saved to {result.checkpoint}; "
            f"continue with: edgegan train --resume {result.run_dir}",
            err=True,
        )
        sys.exit(130)
    how = "time budget reached" if result.stopped_by == "max_seconds" else "done"
    click.echo(f"{how}: {result.step} steps in {result.seconds:.0f} s -> {result.run_dir}")
    if result.eval:
        click.echo("eval: " + ", ".join(f"{k}={v:.4g}" for k, v in result.eval.items()))


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Folder for the outputs.")
@click.option("--num", type=int, help="Number of images.")
@click.option("--labels", help="Class labels for a conditional generator, e.g. 3,3,7.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the latents.")
@click.option(
    "--format", "fmt", type=click.Choice(["png", "npz"]), default="png", show_default=True
)
@click.option("--backend", type=click.Choice(["torch"]), default="torch", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="torch device (cpu, cuda).")
@click.option("--overwrite", is_flag=True, help="Allow writing into a non-empty --out.")
def infer(
    run_dir: str,
    out: str,
    num: int | None,
    labels: str | None,
    seed: int,
    fmt: str,
    backend: str,
    device: str,
    overwrite: bool,
) -> None:
    """Sample images from a trained run's generator (EMA weights)."""
    from edgegan.sampling import infer as run_infer
    from edgegan.sampling import parse_labels

    paths = run_infer(
        run_dir,
        out,
        num=num,
        labels=parse_labels(labels),
        seed=seed,
        fmt=fmt,
        device=device,
        overwrite=overwrite,
    )
    click.echo(f"wrote {len(paths)} file(s) to {out}")


@cli.command(name="eval")
@click.argument("samples", type=click.Path())
@click.option(
    "--reference",
    default="mnist:test",
    show_default=True,
    help="Reference data: mnist[:train|test] or idx:FOLDER[:split].",
)
@click.option("--metric", default="digits", show_default=True, help="A registered metric.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_cmd(samples: str, reference: str, metric: str, as_json: bool) -> None:
    """Score generated samples (a PNG folder or an .npz from `edgegan infer`)."""
    from edgegan.metrics.evaluate import evaluate

    scores = evaluate(samples, reference=reference, metric=metric)
    if as_json:
        click.echo(json.dumps(scores, indent=2))
    else:
        width = max(len(k) for k in scores)
        for k, v in scores.items():
            click.echo(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """List plugins: name, version, hooks, what each provides, load errors."""
    from edgegan.plugins.manager import get_manager

    infos, error = get_manager().plugin_infos()
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in infos], indent=2))
    else:
        for info in infos:
            kind = "built-in" if info.builtin else info.distribution
            click.echo(f"{info.name} {info.version} ({kind})")
            if info.error:
                click.echo(f"  error: {info.error}")
            if info.hooks:
                click.echo(f"  hooks: {', '.join(info.hooks)}")
            for k, names in sorted(info.provides.items()):
                click.echo(f"  {k}: {', '.join(names)}")
    if error:
        raise EdgeganError(error)


@cli.command(name="list")
@click.argument("kind", type=click.Choice(LIST_KINDS))
def list_cmd(kind: str) -> None:
    """List the registered parts of one kind, with the plugin that provides each."""
    from edgegan.plugins.manager import get_manager

    entries = list(get_manager().registry(kind))
    if not entries:
        click.echo(f"no {kind} registered")
        return
    with_role = any(e.role for e in entries)
    rows = [
        (e.name, *([e.role or ""] if with_role else []), e.plugin, e.description) for e in entries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [f"{c:<{w}}" for c, w in zip(row, widths, strict=False)] + [row[-1]]
        click.echo("  ".join(cells).rstrip())


@cli.group()
def config() -> None:
    """Inspect presets and configs."""


@config.command("show")
@click.argument("preset", required=False)
@click.argument("overrides", nargs=-1)
def config_show(preset: str | None, overrides: tuple[str, ...]) -> None:
    """Print the resolved YAML of a preset (or config file) with overrides applied."""
    from edgegan.config import load_config

    args = list(overrides)
    if preset and "=" in preset:
        args.insert(0, preset)
        preset = None
    click.echo(load_config(preset, args).to_yaml(), nl=False)


@config.command("list")
def config_list() -> None:
    """List the shipped presets."""
    from edgegan.config import preset_names

    for name in preset_names():
        click.echo(name)


def main() -> None:
    cli(prog_name="edgegan")


if __name__ == "__main__":
    main()
