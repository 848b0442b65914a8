"""The training loop: Adam, shuffled mini-batches, validation loss each epoch, best weights kept.

Ctrl-C (or SIGTERM) stops training between batches; the best weights so far are restored so the caller can
still write a bundle. Progress (epoch, train/val loss, ETA) is shown with rich.
"""

from __future__ import annotations

import copy
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from edgeanom.errors import EdgeanomError


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    interrupted: bool = False
    stopped_early: bool = False
    diverged: bool = False  # a non-finite loss stopped training; the best earlier epoch is kept
    seconds: float = 0.0


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; an unavailable CUDA device is an error."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EdgeanomError(f"--device {name}: torch sees no CUDA device; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise EdgeanomError(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    return name


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while training, so a stopped job still saves its best model."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _batches(x: Any, batch_size: int, order: Optional[Any] = None) -> Iterator[Any]:
    n = x.shape[0]
    for start in range(0, n, batch_size):
        yield x[order[start : start + batch_size]] if order is not None else x[start : start + batch_size]


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]epoch"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("train {task.fields[train]}  val {task.fields[val]}  best {task.fields[best]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def fit(
    model: Any,
    train_x: np.ndarray,
    val_x: np.ndarray,
    *,
    loss_fn: Callable[[Any, Any], Any],
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    device: str = "cpu",
    seed: int = 0,
    patience: Optional[int] = None,
    progress: bool = True,
) -> FitResult:
    """Train `model` in place on float32 arrays; on return it holds the weights with the lowest val loss."""
    import torch

    if epochs < 1 or batch_size < 1:
        raise EdgeanomError(
            f"epochs and batch size must be >= 1, got epochs={epochs} batch_size={batch_size}"
        )
    torch.manual_seed(seed)
    dev = torch.device(device)
    model.to(dev)
    train_t = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.float32))
    val_t = torch.from_numpy(np.ascontiguousarray(val_x, dtype=np.float32))
    gen = torch.Generator().manual_seed(seed)
    result = FitResult()
    best_state: Optional[dict[str, Any]] = None
    started = time.perf_counter()

    def on_device(batch: Any) -> Any:
        return batch.to(dev, non_blocking=True)

    model.train()
    model.prepare(lambda: (on_device(b) for b in _batches(train_t, batch_size)))
    if not model.trainable:  # fitted by `prepare` alone (a memory bank): no epochs, no loss
        result.best_val_loss = 0.0
        result.seconds = time.perf_counter() - started
        model.cpu().eval()
        return result
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    with _progress(progress) as bar, sigterm_as_interrupt():
        task = bar.add_task("train", total=epochs, train="-", val="-", best="-")
        try:
            for epoch in range(1, epochs + 1):
                model.train()
                total, count = 0.0, 0
                for batch in _batches(train_t, batch_size, torch.randperm(train_t.shape[0], generator=gen)):
                    batch = on_device(batch)
                    optimiser.zero_grad(set_to_none=True)
                    loss = model.training_loss(batch, loss_fn)
                    loss.backward()
                    optimiser.step()
                    total += float(loss.detach()) * batch.shape[0]
                    count += batch.shape[0]
                train_loss = total / max(count, 1)
                if not np.isfinite(train_loss):
                    if best_state is None:
                        raise EdgeanomError(
                            f"training diverged in epoch {epoch} (loss {train_loss}); lower --lr"
                        )
                    result.diverged = True
                    break
                val_loss = evaluate_loss(model, val_t, loss_fn, batch_size, dev)
                result.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
                if val_loss < result.best_val_loss or best_state is None:
                    result.best_val_loss, result.best_epoch = val_loss, epoch
                    best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
                bar.update(
                    task,
                    advance=1,
                    train=f"{train_loss:.4g}",
                    val=f"{val_loss:.4g}",
                    best=f"{result.best_val_loss:.4g}@{result.best_epoch}",
                )
                if patience is not None and epoch - result.best_epoch >= patience:
                    result.stopped_early = True
                    break
        except KeyboardInterrupt:
            result.interrupted = True
    result.seconds = time.perf_counter() - started
    if best_state is None:
        raise EdgeanomError("training was interrupted before the first epoch finished; nothing to save")
    model.load_state_dict(best_state)
    model.cpu().eval()
    return result


def evaluate_loss(model: Any, x: Any, loss_fn: Callable[[Any, Any], Any], batch_size: int, dev: Any) -> float:
    """Mean loss over `x` in eval mode (no dropout, VAE uses its mean), weighted by batch size."""
    import torch

    model.eval()
    total = 0.0
    with torch.no_grad():
        for batch in _batches(x, batch_size):
            batch = batch.to(dev)
            total += float(model.training_loss(batch, loss_fn)) * batch.shape[0]
    return total / max(int(x.shape[0]), 1)
