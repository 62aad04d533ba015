"""What one decode step reads from memory, from the plan alone: every weight read whole once,
except tables only gathered by token or position (embeddings, RoPE tables: one row a sequence).
The batch-1 floor of a device is these bytes over its memory bandwidth."""

from runtime.dtypes import itemsize

GATHERING_TEMPLATES = ("embed", "rope", "attention")  # their 2-D weight operands are looked up by row


def decode_weight_bytes(plan):
    """Bytes of weights one decode step reads (0 for a plan without a decode program)."""
    program = plan["programs"].get("decode")
    if program is None:
        return 0
    read = {}
    for launch in program["launches"]:
        template = plan["kernels"][launch["kernel"]]["template"]
        for operand in launch["args"]:
            if operand["region"] != "weights":
                continue
            row_bytes = operand["shape"][-1] * itemsize(operand["dtype"]) if operand["shape"] else 0
            whole = _nbytes(operand)
            gathered = template in GATHERING_TEMPLATES and len(operand["shape"]) == 2
            nbytes = min(whole, program["batch"] * row_bytes) if gathered else whole
            key = operand["offset"]
            read[key] = max(read.get(key, 0), nbytes)
    return sum(read.values())


def kv_bytes_per_position(plan):
    """Bytes of KV cache a decode step reads per cached position of one sequence."""
    limits = plan["limits"]
    return plan["regions"]["kv"] // max(1, limits["max_seq"] * limits["max_batch"])


def _nbytes(operand):
    count = 1
    for dim in operand["shape"]:
        count *= dim
    return count * itemsize(operand["dtype"])
