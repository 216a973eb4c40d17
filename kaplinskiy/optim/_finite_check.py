"""The finite check without a host synchronisation: the step is skipped on the device, the verdict read later.

Rejecting a non-finite (or skipping an all-zero) gradient before anything is touched needs the check's result
before the base optimizer's step. Read on the host, that result makes the host wait for the device every step,
and the device then idles while the host issues the step (measured on an H100: most of the gap between
ForgettingGuard with and without the check). torch's fused Adam, AdamW and SGD take the verdict on the device
instead, as ``found_inf`` (the mechanism ``torch.amp.GradScaler`` uses): their kernels leave parameters and
state untouched when it is set. The guard's projection is told the same flag, the verdict is copied to the
host without waiting, and the warning is raised once the copy has arrived (at a later step, or when the
certificate is read).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, MutableMapping
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._acceptance import NonFiniteStepWarning

__all__ = ["PendingVerdict", "VerdictQueue", "found_inf", "takes_found_inf"]


def takes_found_inf(optimizer: Optimizer) -> bool:
    """Whether ``optimizer.step()`` honours a device flag ``found_inf`` (torch's fused Adam, AdamW, SGD)."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False))


@contextlib.contextmanager
def found_inf(optimizer: Optimizer, skip: Tensor) -> Iterator[None]:
    """Hand ``skip`` (a 0-dim float tensor, 1 = do not step) to the optimizer's fused kernels for one step."""
    saved = {name: getattr(optimizer, name) for name in ("found_inf", "grad_scale") if hasattr(optimizer, name)}
    optimizer.found_inf, optimizer.grad_scale = skip, None
    try:
        yield
    finally:
        for name in ("found_inf", "grad_scale"):
            if name in saved:
                setattr(optimizer, name, saved[name])
            else:
                delattr(optimizer, name)


class PendingVerdict:
    """A step's verdict (and its loss, for the certificate's ``phi_before``) on its way to the host: copied
    without waiting, read once it has arrived."""

    def __init__(
        self, verdict: Tensor, step: int, loss: Tensor | float | None = None, spare: Tensor | None = None
    ) -> None:
        """``spare``: a pinned host buffer of an earlier verdict, already read, to copy into (no allocation)."""
        self.step = step
        self._loss: Tensor | float | None = loss.detach() if isinstance(loss, Tensor) else loss
        if verdict.is_cuda:
            fits = spare is not None and spare.shape == verdict.shape and spare.dtype == verdict.dtype
            fits = fits and spare.is_pinned()  # not a copy's (pickle does not keep memory pinned)
            self._host = spare.copy_(verdict, non_blocking=True) if fits else _to_host(verdict)
            if isinstance(self._loss, Tensor) and self._loss.is_cuda:
                self._loss = _to_host(self._loss)
            self._event: torch.cuda.Event | None = torch.cuda.Event()
            self._event.record()
        else:
            self._host, self._event = verdict, None

    def ready(self) -> bool:
        """Whether the verdict can be read without waiting for the device."""
        return self._event is None or self._event.query()

    def read(self) -> tuple[bool, bool]:
        """``(non_finite, all_zero)``; waits for the copy if it has not arrived."""
        if self._event is not None:
            self._event.synchronize()
        bad, zero = self._host.tolist()
        return bool(bad), bool(zero)

    def loss(self) -> float | None:
        """The step's loss as a number (after :meth:`read`)."""
        return None if self._loss is None else float(self._loss)

    def spare(self) -> Tensor | None:
        """The pinned host buffer, for a later verdict to reuse (after :meth:`read`), or None on a CPU."""
        return self._host if self._event is not None else None


def _to_host(tensor: Tensor) -> Tensor:
    """A copy of a CUDA tensor into pinned host memory, started without waiting."""
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    return host.copy_(tensor, non_blocking=True)


class VerdictQueue:
    """The verdicts of an optimizer's deferred checks, read oldest first once they reach the host.

    A rejected step warns (:class:`~kaplinskiy.NonFiniteStepWarning`); a skipped one (rejected, or a zero
    gradient) is counted in the optimizer's record ``record["skipped"]`` and, if it is the last step, its
    certificate ``record["certificate"]`` is marked as not accepted. The last step's certificate gets its
    ``phi_before`` from the loss sent with the verdict (reading it at the step would wait for the device).
    """

    def __init__(self, who: str) -> None:
        self.who = who
        self._pending: list[PendingVerdict] = []
        self._spares: list[Tensor] = []  # pinned buffers of verdicts read: allocating one costs tens of us

    def push(self, verdict: Tensor, step: int, loss: Tensor | float | None = None) -> None:
        """Send step ``step``'s verdict (and its loss) to the host, without waiting."""
        spare = self._spares.pop() if self._spares else None
        self._pending.append(PendingVerdict(verdict, step, loss, spare))

    def settle(self, record: MutableMapping[str, Any], *, wait: bool) -> None:
        """Read the verdicts that have arrived (all of them, when ``wait``) into ``record``."""
        while self._pending and (wait or self._pending[0].ready()):
            pending = self._pending.pop(0)
            bad, zero = pending.read()
            if (spare := pending.spare()) is not None:
                self._spares.append(spare)
            if bad:
                warnings.warn(
                    f"{self.who}: non-finite loss or gradient at step {pending.step}; the step was skipped on "
                    "the device, parameters and state unchanged",
                    NonFiniteStepWarning,
                    stacklevel=4,
                )
            cert = record.get("certificate")
            last = cert is not None and cert["step"] == pending.step
            if last:
                cert["phi_before"] = pending.loss()
            if bad or zero:
                record["skipped"] = record.get("skipped", 0) + 1
                if last:
                    cert.update(accepted=False, eta=0.0, t=0.0)
