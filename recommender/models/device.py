"""Where PyTorch models run: one place that turns ``"auto"``/``"cuda:1"``/``"cpu"`` into a device.

Models take a ``device`` hyperparameter (text, so it survives a JSON bundle) and call
:func:`resolve_device` once when they build their network. ``"auto"`` prefers a CUDA GPU,
then Apple's MPS, then the CPU.
"""
from __future__ import annotations

import torch

#: Accepted device names besides ``"auto"`` (an index may follow ``cuda``, e.g. ``"cuda:1"``).
DEVICE_KINDS = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Names of the devices this machine can use, CPU first (for menus and test parametrisation)."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(1, torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The :class:`torch.device` for a device name.

    Parameters
    ----------
    name : str, torch.device or None
        ``"auto"`` (or None): CUDA if available, then MPS, then CPU. Otherwise ``"cpu"``,
        ``"cuda"``, ``"cuda:<index>"`` or ``"mps"``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        The name is not a device, or the device is not available on this machine (the message
        lists the ones that are).
    """
    if name is None:
        name = "auto"
    text = str(name).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    usable = ", ".join(["auto"] + available_devices())
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {name!r}; use one of: {usable}.") from None
    if device.type not in DEVICE_KINDS:
        raise ValueError(f"unsupported device {name!r}; use one of: {usable}.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} is not available: this machine has no usable CUDA GPU. "
                             f"Use one of: {usable}.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} is not available: this machine has "
                             f"{torch.cuda.device_count()} CUDA GPU(s). Use one of: {usable}.")
    if device.type == "mps" and not _mps_available():
        raise ValueError(f"device {name!r} is not available on this machine (no Apple MPS). Use one of: {usable}.")
    return device
