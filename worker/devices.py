"""The device a worker serves (``AAM_DEVICE``) and how a job's ``gpus`` maps onto it.

One training at a time per worker: ``cuda:N`` serves that GPU alone; ``cuda`` (or ``auto`` on
a GPU host) serves every visible GPU, so a job asking for ``gpus: N`` runs under ``torchrun``
with N processes when the host has them; ``cpu`` serves the CPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from worker.errors import JobFailure

_CUDA = re.compile(r"cuda(:\d+)?")


@dataclass(frozen=True)
class DeviceInfo:
    name: str  # the worker's device as jobs record it: cuda:0 or cpu
    gpus: int  # GPUs one job may use (0 on a CPU worker)


@dataclass(frozen=True)
class Placement:
    device: str  # what the child process is given (cuda under torchrun: ranks pick LOCAL_RANK)
    nproc: int
    label: str  # the job's ``device`` field


def resolve_device(setting: str, *, cuda_devices: int | None = None) -> DeviceInfo:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``; ``cuda_devices`` overrides the GPU count
    (default: ask torch)."""
    value = setting.strip().lower()
    if value != "cpu" and value != "auto" and not _CUDA.fullmatch(value):
        raise ValueError(f"AAM_DEVICE must be cpu, cuda, cuda:N or auto, got {setting!r}")
    if value == "cpu":
        return DeviceInfo("cpu", 0)
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if value == "auto" and cuda_devices == 0:
        return DeviceInfo("cpu", 0)
    if cuda_devices == 0:
        raise ValueError(f"AAM_DEVICE={setting} but this host has no usable CUDA GPU")
    if ":" in value:
        index = int(value.split(":")[1])
        if index >= cuda_devices:
            raise ValueError(
                f"AAM_DEVICE={setting} but this host has {cuda_devices} GPU(s): "
                f"cuda:0..cuda:{cuda_devices - 1}"
            )
        return DeviceInfo(value, 1)
    return DeviceInfo("cuda:0", cuda_devices)


def place(device: DeviceInfo, gpus: int | None) -> Placement:
    """Where a job asking for ``gpus`` runs on this worker; a ``ConfigError`` failure when
    the worker cannot give it that many."""
    wanted = gpus or 1
    if wanted == 1:
        return Placement(device.name, 1, device.name)
    if device.gpus < wanted:
        have = "no GPU" if device.gpus == 0 else f"{device.gpus} GPU(s)"
        raise JobFailure(
            "ConfigError",
            f"config.gpus={wanted}, but the worker that took this job ({device.name}) can use "
            f"{have}; submit it with gpus <= {max(device.gpus, 1)}, or run a worker with "
            f"AAM_DEVICE=cuda on a host with {wanted} GPUs",
        )
    return Placement("cuda", wanted, f"cuda:0-{wanted - 1}")
