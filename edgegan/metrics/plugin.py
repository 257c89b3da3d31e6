"""Built-in metrics. Imports no torch at module level: factories import their modules."""

from __future__ import annotations

from typing import Any

from edgegan import hookimpl


def build_digits_metric(
    reference: str = "mnist:test", batch_size: int = 500, device: str = "cpu"
) -> Any:
    """Frechet distance, class coverage and confidence of digits under a small MNIST CNN."""
    from edgegan.metrics.digits import DigitsMetric

    return DigitsMetric(reference=reference, batch_size=batch_size, device=device)


@hookimpl
def edgegan_register_metrics(register: Any) -> None:
    register(
        "digits",
        build_digits_metric,
        description=(
            "FD in the features of a shipped MNIST classifier, class coverage, confidence, "
            "class entropy, label accuracy (reference mnist[:train|test] or idx:FOLDER[:split])"
        ),
    )
