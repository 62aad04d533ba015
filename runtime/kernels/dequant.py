"""NumPy reference of templates/dequant.py.jinja."""

from runtime.quant import dequantize


def dequant(constants, codes, scale, minimum, out):
    """out = the float weight of int4 codes, scales and minima, in the stored layout."""
    out.write(dequantize("int4", constants.get("weight_layout", "in_out"), codes.array, scale.read(), minimum.read(),
                         constants["quant_group"]))
