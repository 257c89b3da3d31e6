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


def build_fid_metric(
    reference: str | None = None,
    weights: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    prdc_k: int = 5,
) -> Any:
    """FID, KID, IS, precision, recall, density and coverage in FID's Inception-v3."""
    from edgegan.metrics.fid import FidMetric

    return FidMetric(
        reference=reference,
        weights=weights,
        batch_size=batch_size,
        device=device,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        is_splits=is_splits,
        prdc_k=prdc_k,
    )


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
    register(
        "fid",
        build_fid_metric,
        description=(
            "FID, KID, IS, precision/recall in FID's Inception-v3, as papers report them (needs "
            "pytorch-fid's weights file; reference: a folder or .npz of images, a stats .npz)"
        ),
    )
