"""What every pass may read besides the graph: the plan's settings, as one frozen value."""

from dataclasses import dataclass

from compiler.tiles import SHIPPED, TileRules


@dataclass(frozen=True)
class PassContext:
    """Settings a pass may depend on: `max_batch` (sequences the plan decodes at once), `sms`
    (target SMs, empty for a CPU-only plan), the plan's tile rules and `quant` ((mode, int4 group
    size[, int4 scale dtype]) of --quant or a pre-quantized checkpoint, or None)."""

    max_batch: int = 1
    sms: tuple = ()
    tile_rules: TileRules = SHIPPED
    quant: tuple | None = None


DEFAULT = PassContext()
