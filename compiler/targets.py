"""Compile targets: an SM (what tileiras builds for) and the device it stands for (how many SMs the
tile rules may fill, how fast its memory is).

A compute capability is not a device: sm_87 spans 8-16 SMs (Jetson Orin Nano to AGX), sm_89 24-142,
sm_120 about 30-188. `--gpu NAME` names a device of DEVICES; `--sm 87:16` gives an SM with its SM
count; a bare `--sm 87` assumes the SM's reference device (REFERENCE). Bandwidths are the vendors'
published memory bandwidths, for the floors `cgc inspect` prints (measured copy rates run lower).
"""

from dataclasses import dataclass

from compiler.errors import CompileError

# Every SM tileiras 13.4 builds for (`tileiras --help`, --gpu-name); sm_101 was renamed sm_110.
SUPPORTED_SMS = (80, 86, 87, 88, 89, 90, 100, 103, 107, 110, 120, 121)
FP8_SMS = (89, 90, 100, 103, 107, 110, 120, 121)  # convert float8 e4m3 in hardware (Ada and later)


@dataclass(frozen=True)
class Device:
    """A GPU as the tile rules and the floors see it."""

    name: str
    sm: int
    sm_count: int
    bandwidth_gbs: float  # published memory bandwidth, GB/s
    title: str


DEVICES = {device.name: device for device in (
    Device("a100", 80, 108, 2039, "NVIDIA A100 80GB SXM"),
    Device("a10", 86, 72, 600, "NVIDIA A10"),
    Device("rtx-3090", 86, 82, 936, "GeForce RTX 3090"),
    Device("rtx-a6000", 86, 84, 768, "RTX A6000"),
    Device("orin-nano", 87, 8, 68, "Jetson Orin Nano 8GB"),
    Device("orin-nano-super", 87, 8, 102, "Jetson Orin Nano Super 8GB"),
    Device("orin-nx", 87, 8, 102, "Jetson Orin NX 16GB"),
    Device("orin-agx", 87, 16, 205, "Jetson AGX Orin 64GB"),
    Device("l4", 89, 58, 300, "NVIDIA L4"),
    Device("rtx-4090", 89, 128, 1008, "GeForce RTX 4090"),
    Device("l40s", 89, 142, 864, "NVIDIA L40S"),
    Device("h100", 90, 132, 3350, "NVIDIA H100 SXM"),
    Device("h100-pcie", 90, 114, 2000, "NVIDIA H100 PCIe"),
    Device("h200", 90, 132, 4800, "NVIDIA H200"),
    Device("b200", 100, 148, 8000, "NVIDIA B200"),
    Device("thor", 110, 20, 273, "Jetson AGX Thor"),
    Device("rtx-5080", 120, 84, 960, "GeForce RTX 5080"),
    Device("rtx-5090", 120, 170, 1792, "GeForce RTX 5090"),
    Device("rtx-pro-6000", 120, 188, 1792, "RTX PRO 6000 Blackwell"),
    Device("gb10", 121, 48, 273, "DGX Spark (GB10)"),
)}
# The device a bare --sm stands for (its SM count feeds the tile rules); SMs without one assume
# ASSUMED_SM_COUNT, the H100's.
REFERENCE = {80: "a100", 86: "rtx-a6000", 87: "orin-agx", 89: "rtx-4090", 90: "h100", 100: "b200", 110: "thor",
             120: "rtx-5080", 121: "gb10"}
ASSUMED_SM_COUNT = 132
REFERENCE_SM_COUNTS = {sm: DEVICES[name].sm_count for sm, name in REFERENCE.items()}


@dataclass(frozen=True)
class Target:
    """One SM of a plan, with the SM count its tile rules assume and the device named, if any."""

    sm: int
    sm_count: int
    device: Device | None = None

    def record(self):
        """The plan's `devices` entry of this target."""
        device = self.device
        return {"sm_count": self.sm_count, "device": device.name if device else None,
                "title": device.title if device else None, "bandwidth_gbs": device.bandwidth_gbs if device else None}


def target_for_sm(sm, sm_count=None):
    """The target of `sm` (checked against SUPPORTED_SMS) with `sm_count` SMs, or its reference device's."""
    if sm not in SUPPORTED_SMS:
        raise CompileError(f"--sm {sm}: tileiras cannot build for sm_{sm}; supported: "
                           f"{', '.join(str(s) for s in SUPPORTED_SMS)}")
    reference = DEVICES.get(REFERENCE.get(sm))
    if sm_count is None:
        return Target(sm, reference.sm_count if reference else ASSUMED_SM_COUNT, reference)
    if not 1 <= sm_count <= 1024:
        raise CompileError(f"--sm {sm}:{sm_count}: the SM count must be between 1 and 1024")
    same = reference if reference and reference.sm_count == sm_count else None
    return Target(sm, sm_count, same)


def target_for_gpu(gpu_name, sm, sm_count):
    """The target of this machine's GPU: its SM and SM count, and the device of DEVICES whose name
    its product name contains (e.g. 'NVIDIA H200' -> h200), if one has that SM and count."""
    spoken = gpu_name.lower().replace("-", " ")
    for device in DEVICES.values():
        if device.sm == sm and device.sm_count == sm_count and device.name.replace("-", " ") in spoken:
            return Target(sm, sm_count, device)
    return Target(target_for_sm(sm).sm, sm_count, None)


def parse_sms(text):
    """Targets of `--sm 90,87:16`: comma-separated SMs, each optionally with `:SM count`."""
    targets = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        sm_text, _, count_text = part.partition(":")
        try:
            sm, count = int(sm_text), (int(count_text) if count_text else None)
        except ValueError:
            raise CompileError(f"--sm expects SMs such as 90 or 87:16 (SM:SM count), got {part!r}") from None
        targets.append(target_for_sm(sm, count))
    return _distinct(targets, "--sm")


def parse_gpus(text):
    """Targets of `--gpu h200,orin-agx`: devices of DEVICES by name."""
    targets = []
    for name in filter(None, (p.strip().lower() for p in text.split(","))):
        device = DEVICES.get(name)
        if device is None:
            raise CompileError(f"--gpu: unknown device {name!r}; known: {', '.join(sorted(DEVICES))} "
                               f"(or give --sm SM:SM_COUNT)")
        targets.append(Target(device.sm, device.sm_count, device))
    return _distinct(targets, "--gpu")


def _distinct(targets, flag):
    seen = {}
    for target in targets:
        if target.sm in seen and seen[target.sm] != target:
            raise CompileError(f"{flag}: two targets for sm_{target.sm} ({seen[target.sm].sm_count} and "
                               f"{target.sm_count} SMs); a plan holds one kernel set per SM, compile one plan each")
        seen[target.sm] = target
    return tuple(seen.values())
