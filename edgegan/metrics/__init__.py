"""Metrics for generated images: feature-space Frechet distance, class coverage, confidence.

Importing this package is cheap (no torch); the names below load their module on first use::

    from edgegan.metrics import evaluate, evaluate_generator, evaluate_tensors, load_samples, Scorer
    from edgegan.metrics import frechet_distance, feature_stats
    from edgegan.metrics import DigitsMetric, DigitClassifier, load_digit_classifier
    from edgegan.metrics import FidMetric  # FID and KID in FID's Inception-v3 features
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgegan.lazy import lazy_attribute

# Imported eagerly (the module imports neither NumPy nor torch at load time): the function
# ``evaluate`` shares its name with its module, and a lazy export would be shadowed by the
# submodule attribute that the import system sets on this package.
from edgegan.metrics.evaluate import (
    Scorer,
    evaluate,
    evaluate_generator,
    evaluate_tensors,
    load_samples,
)

if TYPE_CHECKING:  # the real types for type checkers (at run time: loaded on first use)
    from edgegan.metrics.classifier import (
        DigitClassifier,
        features,
        load_digit_classifier,
        logits,
    )
    from edgegan.metrics.digits import DigitsMetric, reference_stats
    from edgegan.metrics.fid import FidMetric
    from edgegan.metrics.frechet import feature_stats, frechet_distance

_EXPORTS = {
    "frechet_distance": "edgegan.metrics.frechet",
    "feature_stats": "edgegan.metrics.frechet",
    "DigitsMetric": "edgegan.metrics.digits",
    "FidMetric": "edgegan.metrics.fid",
    "reference_stats": "edgegan.metrics.digits",
    "DigitClassifier": "edgegan.metrics.classifier",
    "load_digit_classifier": "edgegan.metrics.classifier",
    "features": "edgegan.metrics.classifier",
    "logits": "edgegan.metrics.classifier",
}

__all__ = [
    "DigitClassifier",
    "DigitsMetric",
    "FidMetric",
    "Scorer",
    "evaluate",
    "evaluate_generator",
    "evaluate_tensors",
    "feature_stats",
    "features",
    "frechet_distance",
    "load_digit_classifier",
    "load_samples",
    "logits",
    "reference_stats",
]


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _EXPORTS.get(name), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
