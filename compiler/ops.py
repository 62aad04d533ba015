"""The op vocabulary of graph YAML: each op's tensor inputs, weights and attributes."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OpSchema:
    """Which YAML fields an op takes; attrs map a name to its type ("int", "float", ...)."""

    inputs: tuple = ()
    optional_inputs: tuple = ()
    weights: tuple = ()
    optional_weights: tuple = ()
    attrs: dict = field(default_factory=dict)
    optional_attrs: dict = field(default_factory=dict)  # name -> (type, default)
    multi_output: bool = False


OPS = {
    "embed": OpSchema(inputs=("tokens",), weights=("weight",), optional_weights=("position_weight",),
                      attrs={"vocab": "int", "dim": "int"}, optional_attrs={"positions": ("int", None)}),
    "layernorm": OpSchema(inputs=("x",), weights=("weight", "bias"), attrs={"eps": "float"}),
    "rmsnorm": OpSchema(inputs=("x",), weights=("weight",), attrs={"eps": "float"},
                        optional_attrs={"group": ("int", None)}),
    "linear": OpSchema(inputs=("x",), weights=("weight",), optional_weights=("bias",),
                       attrs={"features": "int"}, optional_attrs={"layout": ("str", "out_in")}),
    "split": OpSchema(inputs=("x",), attrs={"sizes": "list"}, multi_output=True),
    "rope": OpSchema(inputs=("x",), attrs={"heads": "int", "head_dim": "int", "theta": "float"},
                     optional_attrs={"scaling": ("any", None)}),
    "attention": OpSchema(inputs=("q", "k", "v"), attrs={"heads": "int", "kv_heads": "int", "head_dim": "int"},
                          optional_attrs={"scale": ("float", None)}),
    "gelu": OpSchema(inputs=("x",)),
    "silu_mul": OpSchema(inputs=("gate", "up")),
    "add": OpSchema(inputs=("a", "b")),
}

# Ops that only compiler passes create (never written in YAML).
INTERNAL_OPS = {"add_norm"}

LAYOUTS = ("out_in", "in_out")
