"""Constraint expressions over metrics, e.g. ``latency<=0.004`` or ``para < 2 and latency < 0.005``.

Expressions are parsed with Python's ``ast`` and only a small safe subset is accepted:
metric names, numbers, arithmetic (+ - * /), comparisons, ``and``/``or``/``not``,
and the functions ``abs``, ``min``, ``max``. Nothing is ever ``eval``-ed.
"""
from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping
from typing import Any

from ..errors import ConstraintError

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_CMP = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
        ast.Eq: operator.eq, ast.NotEq: operator.ne}
_FUNCS = {"abs": abs, "min": min, "max": max}
# Allowed argument counts (min, max) of each function: min(x) alone would compare a list.
_ARITY = {"abs": (1, 1), "min": (2, None), "max": (2, None)}
# Deepest expression tree accepted; checking and evaluating recurse once per level.
MAX_DEPTH = 200


class Constraint:
    """A hard budget over metrics. ``names`` are the metrics it reads."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ConstraintError("empty constraint expression")
        self.text = text.strip()
        try:
            tree = ast.parse(self.text, mode="eval")
        except (SyntaxError, ValueError):  # ValueError: NUL bytes, integers too long to convert
            raise ConstraintError(f"constraint {self.text!r} is not a valid expression") from None
        except (RecursionError, MemoryError):  # the parser's own nesting limits
            raise ConstraintError(f"constraint {self.text!r} is nested too deeply") from None
        if _depth(tree.body) > MAX_DEPTH:
            raise ConstraintError(f"constraint {self.text!r} is nested too deeply (more than {MAX_DEPTH} levels)")
        self._tree = tree.body
        self.names: set[str] = set()
        self._check(self._tree)
        self._check_logical(self._tree)
        if not self.names:
            raise ConstraintError(f"constraint {self.text!r} names no metric")

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            if node.id in _FUNCS:
                raise ConstraintError(f"constraint {self.text!r}: {node.id} must be called")
            self.names.add(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ConstraintError(f"constraint {self.text!r}: only numbers are allowed as constants")
            try:  # evaluated as floats, like the metrics: no unbounded integer arithmetic
                float(node.value)
            except OverflowError:
                raise ConstraintError(f"constraint {self.text!r}: the number {self._source(node)!r} "
                                      "is too large") from None
        elif isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            self._check(node.operand)
        elif isinstance(node, ast.Compare) and all(type(o) in _CMP for o in node.ops):
            for n in [node.left, *node.comparators]:
                self._check(n)
        elif isinstance(node, ast.BoolOp):
            for n in node.values:
                self._check(n)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
              and not node.keywords and node.args):
            low, high = _ARITY[node.func.id]
            if len(node.args) < low or (high is not None and len(node.args) > high):
                wanted = f"{low} argument" if low == high else f"at least {low} arguments"
                raise ConstraintError(f"constraint {self.text!r}: {node.func.id}() takes {wanted}")
            for n in node.args:
                self._check(n)
        else:
            raise ConstraintError(f"constraint {self.text!r}: unsupported syntax {self._source(node)!r}")

    def _source(self, node: ast.AST) -> str:
        """The text of ``node`` as written (unparsing could fail on huge integer literals)."""
        return ast.get_source_segment(self.text, node) or type(node).__name__

    def _check_logical(self, node: ast.AST) -> None:
        """Every operand of and/or/not, and the whole expression, must be a comparison."""
        if isinstance(node, ast.BoolOp):
            for n in node.values:
                self._check_logical(n)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self._check_logical(node.operand)
        elif not isinstance(node, ast.Compare):
            raise ConstraintError(f"constraint {self.text!r}: {self._source(node)!r} is not a comparison "
                                  "(write e.g. 'latency<=0.004')")

    def can_check(self, metrics: Mapping[str, Any]) -> bool:
        """True when every metric it reads is present."""
        return self.names <= set(metrics)

    def __call__(self, metrics: Mapping[str, Any]) -> bool:
        """True when satisfied. Missing or non-finite metrics count as violations."""
        try:
            return bool(self._eval(self._tree, metrics))
        except (KeyError, ZeroDivisionError, TypeError, ValueError):
            return False

    def _eval(self, node: ast.AST, m: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.Name):
            v = float(m[node.id])
            if not math.isfinite(v):
                raise ValueError(node.id)
            return v
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.BinOp):
            return _BIN[type(node.op)](self._eval(node.left, m), self._eval(node.right, m))
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, m)
            return (not v) if isinstance(node.op, ast.Not) else (-v if isinstance(node.op, ast.USub) else v)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, m)
            for op, right_node in zip(node.ops, node.comparators):
                right = self._eval(right_node, m)
                if not _CMP[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.BoolOp):
            vals = (self._eval(v, m) for v in node.values)
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.Call):
            return _FUNCS[node.func.id](*(self._eval(a, m) for a in node.args))  # type: ignore[attr-defined]
        raise ValueError(self._source(node))

    def __repr__(self) -> str:
        return f"Constraint({self.text!r})"


def _depth(node: ast.AST) -> int:
    """Height of an expression tree, walked without recursion (deep input must not crash)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        n, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(n))
    return deepest
