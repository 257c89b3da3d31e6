"""Built-in training callbacks, registered through the same hook as external ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgegan import hookimpl
from edgegan.errors import ConfigError


class TensorBoardCallback:
    """Writes the logged scalars and each sample grid to TensorBoard (``RUN/tensorboard``)."""

    def __init__(self, run_dir: Path, log_dir: str = "tensorboard") -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "TensorBoard logging (train.tensorboard=true, or the callback 'tensorboard') "
                "needs the tensorboard package: pip install 'edgegan[tensorboard]'"
            ) from None
        self._writer_cls = SummaryWriter
        self.log_dir = Path(run_dir) / log_dir
        self.writer: Any = None

    def on_train_start(self, trainer: Any) -> None:
        # A resumed run drops the events logged after its checkpoint (before a crash), as
        # metrics.jsonl drops those records: the steps are trained and logged again.
        purge = trainer.step + 1 if trainer.step else None
        self.writer = self._writer_cls(str(self.log_dir), purge_step=purge)

    def on_step_end(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, step)

    def on_validation(self, trainer: Any, step: int, scores: dict[str, float]) -> None:
        self.on_step_end(trainer, step, scores)

    def on_checkpoint(self, trainer: Any, path: Path) -> None:
        if self.writer is not None:
            images, _ = trainer.task.preview(trainer, trainer.fixed)
            self.writer.add_images("samples", (images[:64] + 1) / 2, trainer.step)
            self.writer.flush()

    def on_train_end(self, trainer: Any) -> None:
        if self.writer is not None:
            self.writer.close()


def build_tensorboard(run_dir: Path, log_dir: str = "tensorboard") -> TensorBoardCallback:
    """TensorBoard logging of metrics and samples (``train.tensorboard=true``)."""
    return TensorBoardCallback(run_dir, log_dir)


@hookimpl
def edgegan_register_callbacks(register: Any) -> None:
    register("tensorboard", build_tensorboard)
