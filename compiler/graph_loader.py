"""Load a graph YAML into the IR: bind its size symbols, expand `repeat` blocks, check fields.

Symbols are bound in this order, each overriding the last: the YAML's `config` block, a named
preset, a checkpoint's config.json (through the YAML's `checkpoint_config` key map), and
`--set key=value` overrides; then `derived` expressions are evaluated in order.
"""

import json
import os

from compiler.errors import GraphError
from compiler.expr import ExprError, evaluate, substitute
from compiler.ir import Graph, Op, Tensor, Weight
from compiler.ops import OPS
from compiler.yaml_source import load_yaml

GRAPH_INPUTS = {"tokens": ("B", "S"), "start_pos": ("B",), "seq_lens": ("B",)}
DTYPES = ("float32", "float16", "bfloat16")
_TOP_KEYS = {"graph", "family", "config", "presets", "checkpoint_config", "derived", "forward", "outputs"}
_INIT_BY_ROLE = {"bias": "bias", "weight": "normal", "position_weight": "normal"}
MAX_DIM = 1 << 24       # one dimension (vocab, features, heads...): far above any transformer's
MAX_REPEAT = 4096       # layers of one repeat block
MAX_OPS = 100_000       # ops after expanding repeats
_POSITIVE_FLOATS = {"eps", "theta", "scale"}
_BLOCK_TYPES = {"graph": str, "family": str, "config": dict, "presets": dict, "checkpoint_config": dict,
                "derived": dict, "forward": list, "outputs": dict}


def graphs_dir():
    """The folder of the graph YAMLs shipped with cgc."""
    return os.path.dirname(os.path.abspath(__import__("graphs").__file__))


def resolve_graph_path(path_or_name):
    """Accept a path to a YAML, or a bare name of a shipped graph ("gpt2")."""
    if os.path.exists(path_or_name):
        return path_or_name
    shipped = os.path.join(graphs_dir(), f"{path_or_name}.yaml")
    if os.path.exists(shipped):
        return shipped
    raise GraphError(f"{path_or_name}: no such graph file (shipped graphs: {', '.join(list_shipped_graphs())})")


def list_shipped_graphs():
    """Names of the graph YAMLs shipped with cgc."""
    return sorted(f[:-5] for f in os.listdir(graphs_dir()) if f.endswith(".yaml"))


def load_graph(path, preset=None, checkpoint=None, overrides=None, dtype="float32"):
    """Read `path` and return the bound, expanded Graph (shapes not yet inferred)."""
    path = resolve_graph_path(path)
    doc = load_yaml(path)
    for key in doc:
        if key not in _TOP_KEYS:
            raise GraphError(f"{path}:{doc.line}: unknown top-level key '{key}' (expected: {', '.join(sorted(_TOP_KEYS))})")
    for key, kind in _BLOCK_TYPES.items():
        if doc.get(key) is not None and not isinstance(doc[key], kind):
            raise GraphError(f"{path}:{getattr(doc, 'line', 1)}: '{key}' must be a "
                             f"{'mapping' if kind is dict else kind.__name__ if kind is str else 'list'}, "
                             f"got {type(doc[key]).__name__}")
    if dtype not in DTYPES:
        raise GraphError(f"unknown dtype '{dtype}' (expected one of: {', '.join(DTYPES)})")
    symbols = _bind_symbols(path, doc, preset, checkpoint, overrides or {})
    name = doc.get("graph") or os.path.splitext(os.path.basename(path))[0]
    graph = Graph(name=name, family=doc.get("family", name), source=path, config=symbols, dtype=dtype)
    for input_name, shape in GRAPH_INPUTS.items():
        tensor = Tensor(input_name, shape, "int32")
        graph.inputs[input_name] = tensor
        graph.tensors[input_name] = tensor
    builder = _Builder(graph, path, symbols)
    forward = doc.get("forward")
    if not isinstance(forward, list) or not forward:
        raise GraphError(f"{path}:{doc.line}: 'forward' must be a non-empty list of ops")
    builder.build(forward, layer=None)
    outputs = doc.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        raise GraphError(f"{path}:{doc.line}: 'outputs' must map output names to tensors, e.g. {{logits: logits}}")
    for public, var in outputs.items():
        if not isinstance(var, str) or var not in builder.env:
            raise GraphError(f"{path}:{outputs.line}: output '{public}' names undefined tensor '{var}'")
        graph.outputs[public] = builder.env[var]
    return graph


def _bind_symbols(path, doc, preset, checkpoint, overrides):
    config = doc.get("config") or {}
    symbols = dict(config)
    presets = doc.get("presets") or {}
    if preset is not None:
        if preset not in presets:
            known = ", ".join(sorted(presets)) or "none"
            raise GraphError(f"{path}: unknown preset '{preset}' (known presets: {known})")
        if not isinstance(presets[preset], dict):
            raise GraphError(f"{path}:{presets.line}: preset '{preset}' must be a mapping of config keys")
        symbols.update(_check_keys(path, presets[preset], symbols, f"preset '{preset}'"))
    if checkpoint is not None:
        symbols.update(_checkpoint_symbols(path, doc, checkpoint, symbols))
    symbols.update(_check_keys(path, overrides, symbols, "--set"))
    for key, expression in (doc.get("derived") or {}).items():
        try:
            symbols[key] = evaluate(expression, symbols)
        except ExprError as exc:
            line = doc["derived"].line
            raise GraphError(f"{path}:{line}: derived symbol '{key}': {exc}") from None
    return symbols


def _check_keys(path, values, symbols, origin):
    line = getattr(values, "line", 0)
    for key, value in values.items():
        if not isinstance(key, str) or key not in symbols:
            raise GraphError(f"{path}:{line}: {origin} sets unknown config key '{key}' "
                             f"(known: {', '.join(sorted(symbols))})")
    return values


def _checkpoint_symbols(path, doc, checkpoint, symbols):
    config_path = os.path.join(checkpoint, "config.json")
    try:
        if not os.path.isfile(config_path):
            raise GraphError(f"{config_path}: checkpoint has no config.json (a regular file)")
        with open(config_path, "rb") as handle:
            hf_config = json.loads(handle.read(16 << 20).decode("utf-8"))
    except OSError as exc:
        raise GraphError(f"{config_path}: cannot read config.json: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise GraphError(f"{config_path}: not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise GraphError(f"{config_path}:{exc.lineno}: malformed JSON: {exc.msg}") from None
    except RecursionError:
        raise GraphError(f"{config_path}: JSON nested too deeply") from None
    if not isinstance(hf_config, dict):
        raise GraphError(f"{config_path}: config.json must be a JSON object, got {type(hf_config).__name__}")
    mapping = doc.get("checkpoint_config") or {}
    bound = {}
    for hf_key, symbol in mapping.items():
        if not isinstance(symbol, str) or symbol not in symbols:
            raise GraphError(f"{path}:{mapping.line}: checkpoint_config maps '{hf_key}' to unknown symbol '{symbol}'")
        if hf_key in hf_config and hf_config[hf_key] is not None:
            value = hf_config[hf_key]
            if isinstance(value, (list, dict)) and not isinstance(symbols[symbol], (dict, type(None))):
                raise GraphError(f"{config_path}: '{hf_key}' is {type(value).__name__} {str(value)[:60]}, "
                                 f"expected a single value")
            try:
                evaluate(value, {})
            except ExprError as exc:
                raise GraphError(f"{config_path}: '{hf_key}': {exc}") from None
            bound[symbol] = value
    return bound


class _Builder:
    """Expands the forward list into ops, renaming reassigned variables into unique tensors."""

    def __init__(self, graph, path, symbols):
        self.graph = graph
        self.path = path
        self.symbols = symbols
        self.env = {name: name for name in GRAPH_INPUTS}
        self.op_names = set()

    def build(self, items, layer):
        for item in items:
            if not isinstance(item, dict):
                raise GraphError(f"{self.path}: every entry of 'forward' must be a mapping, got {str(item)[:60]!r}")
            if len(self.graph.ops) >= MAX_OPS:
                raise GraphError(f"{self.path}:{item.line}: the graph expands to more than {MAX_OPS} ops")
            if "repeat" in item:
                self._repeat(item, layer)
            else:
                self._op(item, layer)

    def _repeat(self, item, layer):
        where = f"{self.path}:{item.line}"
        if layer is not None:
            raise GraphError(f"{where}: nested 'repeat' blocks are not supported")
        unknown = [key for key in item if key not in ("repeat", "body")]
        if unknown:
            raise GraphError(f"{where}: repeat block has unknown field '{unknown[0]}' (expected: body, repeat)")
        try:
            count = evaluate(item["repeat"], self.symbols)
        except ExprError as exc:
            raise GraphError(f"{where}: repeat: {exc}") from None
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_REPEAT:
            raise GraphError(f"{where}: repeat count must be an integer in 0..{MAX_REPEAT}, got {str(count)[:60]}")
        body = item.get("body")
        if not isinstance(body, list):
            raise GraphError(f"{where}: repeat needs a 'body' list of ops")
        for index in range(count):
            self.build(body, index)

    def _op(self, item, layer):
        where = f"{self.path}:{item.line}" + (f" (layer {layer})" if layer is not None else "")
        kind = item.get("op")
        if not isinstance(kind, str) or kind not in OPS:
            raise GraphError(f"{where}: unknown op '{kind}' (known ops: {', '.join(sorted(OPS))})")
        schema = OPS[kind]
        known = {"op", "name", "out", *schema.inputs, *schema.optional_inputs, *schema.weights,
                 *schema.optional_weights, *schema.attrs, *schema.optional_attrs}
        for key in item:
            if not isinstance(key, str) or key not in known:
                raise GraphError(f"{where}: op '{kind}' has unknown field '{key}' (expected: {', '.join(sorted(known - {'op'}))})")
        prefix = f"l{layer}." if layer is not None else ""
        for field in ("name", *schema.inputs, *schema.optional_inputs, *schema.weights, *schema.optional_weights):
            if field in item and not isinstance(item[field], str):
                raise GraphError(f"{where}: op '{kind}' field '{field}' must be a name (a string), "
                                 f"got {type(item[field]).__name__}")
        name = self._unique_op_name(prefix + str(item.get("name", kind)))
        inputs = {}
        for role in (*schema.inputs, *schema.optional_inputs):
            if role not in item:
                if role in schema.inputs:
                    raise GraphError(f"{where}: op '{kind}' needs input '{role}'")
                continue
            var = item[role]
            if var not in self.env:
                raise GraphError(f"{where}: op '{kind}' input '{role}' names undefined tensor '{var}'")
            inputs[role] = self.env[var]
        weights = {}
        for role in (*schema.weights, *schema.optional_weights):
            if role not in item:
                if role in schema.weights:
                    raise GraphError(f"{where}: op '{kind}' needs weight '{role}'")
                continue
            weight_name = self._weight_name(where, item[role], layer)
            weights[role] = weight_name
            if weight_name not in self.graph.weights:
                init = "norm" if kind in ("layernorm", "rmsnorm") and role == "weight" else _INIT_BY_ROLE[role]
                self.graph.weights[weight_name] = Weight(weight_name, ("checkpoint", weight_name), init=init)
        attrs = {}
        for attr, attr_type in schema.attrs.items():
            if attr not in item:
                raise GraphError(f"{where}: op '{kind}' needs attribute '{attr}'")
            attrs[attr] = self._attr(where, kind, attr, attr_type, item[attr])
        for attr, (attr_type, default) in schema.optional_attrs.items():
            value = item.get(attr, default)
            attrs[attr] = None if value is None else self._attr(where, kind, attr, attr_type, value)
        outputs = self._outputs(where, kind, schema, item.get("out"), prefix)
        self.graph.ops.append(Op(kind, name, inputs, weights, outputs, attrs, where, layer))

    def _unique_op_name(self, name):
        candidate, suffix = name, 1
        while candidate in self.op_names:
            suffix += 1
            candidate = f"{name}{suffix}"
        self.op_names.add(candidate)
        return candidate

    def _weight_name(self, where, template, layer):
        try:
            return substitute(template, {**self.symbols, "layer": layer})
        except ExprError as exc:
            raise GraphError(f"{where}: weight {exc}") from None

    def _attr(self, where, kind, attr, attr_type, raw):
        try:
            if attr_type == "str":
                value = raw
            elif attr_type == "list":
                if not isinstance(raw, list) or len(raw) > 64:
                    raise ExprError(f"expected a list of at most 64 sizes, got {str(raw)[:60]}")
                value = [self._dim(evaluate(entry, self.symbols)) for entry in raw]
            else:
                value = evaluate(raw, self.symbols)
        except ExprError as exc:
            raise GraphError(f"{where}: op '{kind}' attribute '{attr}': {exc}") from None
        if attr_type == "int":
            try:
                value = self._dim(value)
            except ExprError as exc:
                raise GraphError(f"{where}: op '{kind}' attribute '{attr}': {exc}") from None
        elif attr_type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    attr in _POSITIVE_FLOATS and not value > 0):
                expected = "a positive number" if attr in _POSITIVE_FLOATS else "a number"
                raise GraphError(f"{where}: op '{kind}' attribute '{attr}' must be {expected}, got {str(value)[:60]}")
            value = float(value)
        elif attr_type == "str" and not isinstance(value, str):
            raise GraphError(f"{where}: op '{kind}' attribute '{attr}' must be a string, got {str(value)[:60]}")
        return value

    @staticmethod
    def _dim(value):
        """A size: a positive integer (an integral float such as 64.0 is accepted) up to MAX_DIM."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise ExprError(f"must be a positive integer, got {type(value).__name__} {str(value)[:60]}")
        if not 1 <= value <= MAX_DIM:
            raise ExprError(f"must be a positive integer up to {MAX_DIM}, got {int(value)}")
        return int(value)

    def _outputs(self, where, kind, schema, out, prefix):
        if out is None:
            raise GraphError(f"{where}: op '{kind}' needs 'out'")
        names = out if isinstance(out, list) else [out]
        if not all(isinstance(var, str) and var for var in names):
            raise GraphError(f"{where}: op '{kind}' field 'out' must name tensors (strings), got {str(out)[:60]}")
        if schema.multi_output != isinstance(out, list):
            shape = "a list of names" if schema.multi_output else "one name"
            raise GraphError(f"{where}: op '{kind}' field 'out' must be {shape}")
        tensors = []
        for var in names:
            tensor_name = prefix + str(var)
            suffix = 1
            while tensor_name in self.graph.tensors:
                suffix += 1
                tensor_name = f"{prefix}{var}.{suffix}"
            self.graph.tensors[tensor_name] = Tensor(tensor_name)
            self.env[var] = tensor_name
            tensors.append(tensor_name)
        return tensors
