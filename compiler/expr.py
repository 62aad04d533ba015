"""Safe evaluation of the small expression language used for sizes in graph YAML.

Supports numbers, strings, booleans, symbol names, + - * / // % **, comparisons,
`and`/`or`/`not` and `a if cond else b`. Anything else (calls, attributes) is refused.
"""

import ast
import operator

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}


class ExprError(ValueError):
    """An expression is malformed or names an undefined symbol (message says which)."""


def evaluate(text, symbols):
    """Evaluate `text` (a str expression, or a plain number/bool) against `symbols`."""
    if not isinstance(text, str):
        return text
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"malformed expression {text!r}: {exc.msg}") from None
    return _eval(tree.body, symbols, text)


def _eval(node, symbols, text):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        if node.id not in symbols:
            raise ExprError(f"undefined symbol '{node.id}' in {text!r}")
        return symbols[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval(node.left, symbols, text), _eval(node.right, symbols, text))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        value = _eval(node.operand, symbols, text)
        return {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}[type(node.op)](value)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        left = _eval(node.left, symbols, text)
        return _COMPARE[type(node.ops[0])](left, _eval(node.comparators[0], symbols, text))
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, symbols, text) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.IfExp):
        branch = node.body if _eval(node.test, symbols, text) else node.orelse
        return _eval(branch, symbols, text)
    raise ExprError(f"unsupported expression {text!r}")
