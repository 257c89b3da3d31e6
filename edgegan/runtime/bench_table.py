"""The table of ``edgegan bench``: one row per backend x precision x batch size (and
direction of a cyclegan bundle), printed with rich."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """The table's rows (led by the direction for a cyclegan bundle); the batch sizes of a
    combination skipped for one reason share a row."""
    rows: list[list[str]] = []
    lead = 1 if result.get("directions") else 0
    for r in result["results"]:
        key = ([r.get("direction", "")] if lead else []) + [r["backend"], r["precision"]]
        if r["status"] != "ok":
            prev = rows[-1] if rows else None
            variant = _variant(r)
            note = f"{r['status']}: {r['reason']}" + (f" [{', '.join(variant)}]" if variant else "")
            if prev and prev[: len(key)] == key and prev[-1] == note:
                prev[len(key)] += f",{r['batch']}"
                continue
            rows.append([*key, str(r["batch"]), *["-"] * 6, note])
            continue
        par = r.get("parity") or {}
        rows.append(
            [
                *key,
                str(r["batch"]),
                _fmt(r["latency_ms"]["p50"]),
                _fmt(r["latency_ms"]["p95"]),
                _fmt(r["images_per_s"], ".0f" if r["images_per_s"] >= 10 else ".2f"),
                _fmt(r["peak_mem_mb"], ".1f"),
                _fmt(par.get("max_abs"), ".2e"),
                _fmt(par.get("psnr"), ".1f"),
                r["device"]
                + (f", {r['threads']} threads" if r.get("threads") else "")
                + (", CUDA graph" if r.get("cuda_graphs") else "")
                + "".join(f", {part}" for part in _variant(r))
                + "".join(f", {part}" for part in _nonfinite(par)),
            ]
        )
    return rows


def _variant(row: dict[str, Any]) -> list[str]:
    """How a torch row ran, when not eager in the default layout."""
    return ([f"compiled {row['compile']}"] if row.get("compile") else []) + (
        ["channels-last"] if row.get("channels_last") else []
    )


def row_line(row: dict[str, Any]) -> str:
    """One finished row on one line, as ``edgegan bench`` reports it while it runs (a run cut
    short keeps these): ``torch fp16 batch 1 (compiled reduce-overhead): p50 0.61 ms``."""
    where = f"{row['direction']} " if row.get("direction") else ""  # a cyclegan bundle's
    what = f"{where}{row['backend']} {row['precision']} batch {row['batch']}"
    variant = _variant(row)
    what += f" ({', '.join(variant)})" if variant else ""
    if row.get("status") != "ok":
        return f"{what}: {row.get('status')} ({row.get('reason')})"
    broken = _nonfinite(row.get("parity") or {})
    return f"{what}: p50 {row['latency_ms']['p50']:.3f} ms" + (
        f" ({'; '.join(broken)})" if broken else ""
    )


def _nonfinite(parity: dict[str, Any]) -> list[str]:
    """What a row's parity says of NaN or infinite outputs (its own, the reference's)."""
    return [
        f"NaN/inf in {parity[key]} {what}"
        for key, what in (("nonfinite", "outputs"), ("reference_nonfinite", "reference outputs"))
        if parity.get(key)
    ]


HEADERS = ["backend", "precision", "batch", "p50 ms", "p95 ms", "img/s", "peak MB",
           "max abs", "PSNR dB", "device / note"]  # fmt: skip


def headers(result: dict[str, Any]) -> list[str]:
    """The table's columns: :data:`HEADERS`, led by ``direction`` for a cyclegan bundle."""
    return (["direction"] if result.get("directions") else []) + HEADERS


#: Columns the note needs at least beside the figures before a terminal's table is rich's.
NOTE_WIDTH = 24


def title(result: dict[str, Any]) -> str:
    size = "x".join(map(str, result["size"])) + " images; " if result.get("size") else ""
    return (
        f"edgegan bench {result['bundle']}  ({size}parity vs {result['reference']}; "
        f"{result['warmup']} warm-up + {result['iters']} timed runs)"
    )


def plain_table(result: dict[str, Any]) -> str:
    """The table as aligned plain columns (for a pipe, a file or a narrow terminal: every
    figure whole, one row per line, for grep and awk)."""
    from edgegan.export.api import format_table

    return (
        title(result)
        + "\n"
        + format_table([tuple(headers(result)), *map(tuple, table_rows(result))])
    )


def print_table(result: dict[str, Any], console: Any = None) -> None:
    """The results as a rich table in a terminal wide enough for every figure, else as
    :func:`plain_table` (rich crops cells that do not fit: 4379 images/s showed as 437)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    names, rows = headers(result), table_rows(result)
    # rich's layout: each column padded by one space a side, a border before each and after
    figures = sum(max(len(r[i]) for r in [names, *rows]) + 3 for i in range(len(names) - 1))
    if not console.is_terminal or console.width < figures + NOTE_WIDTH + 4:
        console.out(plain_table(result), highlight=False)
        return
    table = Table(title=Text(title(result)), title_justify="left")
    last, lead = len(names) - 1, len(names) - len(HEADERS)
    for i, h in enumerate(names):
        table.add_column(
            h,
            justify="right" if 2 + lead <= i <= 8 + lead else "left",
            no_wrap=i < last,
            overflow="fold",
            ratio=1 if i == last else None,
        )
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # plain text: "[trt]" is not markup
    console.print(table)
