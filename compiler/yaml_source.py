"""YAML reading that remembers the line of every mapping, so errors can name file and line.

Bounded: files over MAX_BYTES, duplicate keys, and documents whose aliases expand to more than
MAX_NODES nodes (a "billion laughs" bomb) or refer to themselves are refused before they are built.
"""

import os

import yaml

from compiler.errors import GraphError

MAX_BYTES = 4 << 20
MAX_NODES = 200_000


class LineDict(dict):
    """A dict from YAML that knows the 1-based line where it started."""

    line = 0


class _Refused(yaml.YAMLError):
    def __init__(self, problem, mark):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                raise _Refused(f"a mapping key must be a scalar, got {type(key).__name__}", key_node.start_mark) from None
            if duplicate:
                raise _Refused(f"duplicate key {key!r}", key_node.start_mark)
        mapping = LineDict(super().construct_mapping(node, deep=deep))
        mapping.line = node.start_mark.line + 1
        return mapping


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)


def _expanded_size(node, sizes, active):
    """Nodes of `node` with every alias expanded (memoized per node; a cycle is refused)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in active:
        raise _Refused("an alias refers to a node that contains it", node.start_mark)
    active.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    else:
        children = ()
    for child in children:
        total += _expanded_size(child, sizes, active)
        if total > MAX_NODES:
            raise _Refused(f"the document expands to more than {MAX_NODES} nodes (aliases?)", node.start_mark)
    active.discard(key)
    sizes[key] = total
    return total


def load_yaml(path):
    """Parse a YAML file into LineDicts; malformed YAML raises GraphError naming file and line."""
    try:
        if not os.path.isfile(path):
            raise GraphError(f"{path}: not a regular file")
        if os.path.getsize(path) > MAX_BYTES:
            raise GraphError(f"{path}: {os.path.getsize(path)} bytes, larger than a graph file may be ({MAX_BYTES})")
        with open(path, "rb") as handle:
            text = handle.read(MAX_BYTES + 1).decode("utf-8")
    except OSError as exc:
        raise GraphError(f"{path}: cannot read graph file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = text_line(exc.object, exc.start)
        raise GraphError(f"{path}:{line}: graph file is not UTF-8 (byte {exc.start})") from None
    document = parse(text, str(path))
    if not isinstance(document, dict):
        raise GraphError(f"{path}:1: a graph file must be a YAML mapping")
    return document


def parse(text, where):
    """The YAML document of `text` (bounded as the module says); GraphError names `where` and line."""
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _expanded_size(node, {}, set())
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark is not None else where
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise GraphError(f"{at}: malformed YAML: {problem}") from None
    except RecursionError:
        raise GraphError(f"{where}: malformed YAML: nested too deeply") from None
    finally:
        loader.dispose()


def text_line(data, offset):
    """1-based line of byte `offset` in `data`."""
    return data.count(b"\n", 0, offset) + 1
