"""Bounded evaluation of the small expression language used for sizes in graph YAML and `--set`.

Supports numbers, strings, booleans, None, symbol names, + - * / // % ** on numbers, comparisons,
`and`/`or`/`not` and `a if cond else b`. Anything else (calls, attributes, subscripts, string
arithmetic) is refused, and so are long expressions, deep nesting, exponents beyond
MAX_EXPONENT and results beyond MAX_MAGNITUDE, so that no expression can hang or exhaust memory.
"""

import ast
import math
import operator
import re

MAX_LENGTH = 500          # characters in one expression
MAX_NODES = 200           # syntax tree nodes in one expression
MAX_EXPONENT = 64
MAX_MAGNITUDE = 2 ** 62   # no size, count or constant of a transformer comes near this

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_CONSTANTS = {"True": True, "False": False, "None": None}


class ExprError(ValueError):
    """An expression is malformed, unsupported, out of bounds or names an undefined symbol."""


def evaluate(text, symbols):
    """Evaluate `text` (a str expression, or a plain number/bool/None) against `symbols`."""
    if not isinstance(text, str):
        return _check_value(text, text)
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression of {len(text)} characters (at most {MAX_LENGTH})")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"malformed expression {text!r}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExprError(f"malformed expression {text[:40]!r}...: nested too deeply") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ExprError(f"expression {text[:40]!r}... has more than {MAX_NODES} terms")
    return _eval(tree.body, symbols, text)


def _check_value(value, text):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_MAGNITUDE:
            raise ExprError(f"value {_short(value)} in {_short(text)} is out of range (|x| <= 2**62)")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
            raise ExprError(f"value {value!r} in {_short(text)} is not a finite number within 2**62")
        return value
    return value  # lists and maps (rope_scaling) pass through unevaluated


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value, text):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExprError(f"arithmetic on {type(value).__name__} value {_short(value)} in {_short(text)}")
    return value


def _binary(node, symbols, text):
    left = _number(_eval(node.left, symbols, text), text)
    right = _number(_eval(node.right, symbols, text), text)
    if isinstance(node.op, ast.Pow) and (abs(right) > MAX_EXPONENT or (abs(left) > 1 and right > MAX_EXPONENT)):
        raise ExprError(f"exponent {_short(right)} in {_short(text)} is larger than {MAX_EXPONENT}")
    try:
        result = _BINARY[type(node.op)](left, right)
    except ZeroDivisionError:
        raise ExprError(f"division by zero in {_short(text)}") from None
    except OverflowError:
        raise ExprError(f"{_short(text)} overflows") from None
    if isinstance(result, complex):
        raise ExprError(f"{_short(text)} has no real value")
    return _check_value(result, text)


def _eval(node, symbols, text):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)) or (
            isinstance(node, ast.Constant) and node.value is None):
        return _check_value(node.value, text)
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id not in symbols:
            raise ExprError(f"undefined symbol '{node.id}' in {_short(text)}")
        return symbols[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _binary(node, symbols, text)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _eval(node.operand, symbols, text)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _number(_eval(node.operand, symbols, text), text)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        left, right = _eval(node.left, symbols, text), _eval(node.comparators[0], symbols, text)
        try:
            return _COMPARE[type(node.ops[0])](left, right)
        except TypeError:
            raise ExprError(f"cannot compare {_short(left)} with {_short(right)} in {_short(text)}") from None
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, symbols, text) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.IfExp):
        branch = node.body if _eval(node.test, symbols, text) else node.orelse
        return _eval(branch, symbols, text)
    raise ExprError(f"unsupported expression {_short(text)} (only numbers, names, arithmetic, comparisons, "
                    f"and/or/not and 'a if c else b')")


_FIELD = re.compile(r"\{([^{}]*)\}")


def substitute(template, values):
    """`template` with each `{name}` replaced by values[name] (an int or str); no other formatting."""
    def replace(match):
        name = match.group(1)
        if not name.isidentifier():
            raise ExprError(f"name template {_short(template)}: '{{{name}}}' is not a plain symbol name")
        if name not in values:
            raise ExprError(f"name template {_short(template)} uses undefined symbol '{name}'")
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ExprError(f"name template {_short(template)}: symbol '{name}' is {_short(value)}, "
                            f"expected an integer or a string")
        return str(value)
    rest = _FIELD.sub("", template)
    if "{" in rest or "}" in rest:
        raise ExprError(f"name template {_short(template)} has an unmatched brace")
    return _FIELD.sub(replace, template)
