"""YAML reading that remembers the line of every mapping, so errors can name file and line."""

import yaml

from compiler.errors import GraphError


class LineDict(dict):
    """A dict from YAML that knows the 1-based line where it started."""

    line = 0


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        mapping = LineDict(super().construct_mapping(node, deep=deep))
        mapping.line = node.start_mark.line + 1
        return mapping


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)


def load_yaml(path):
    """Parse a YAML file into LineDicts; malformed YAML raises GraphError naming file and line."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as exc:
        raise GraphError(f"{path}: cannot read graph file: {exc.strerror}") from None
    try:
        document = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise GraphError(f"{where}: malformed YAML: {problem}") from None
    if not isinstance(document, dict):
        raise GraphError(f"{path}:1: a graph file must be a YAML mapping")
    return document
