"""Time-varying values: a whitelisted expression compiler and keyframe schedules.

A scene value such as ``translate_x: "10*sin(t)"`` or a prompt weight is compiled once, at load time,
into an :class:`Expr`. Nothing is ever handed to ``eval``: the text is parsed with :mod:`ast`, every node
is checked against a whitelist, and the tree is turned into a chain of small Python closures (constant
sub-trees are folded at compile time). Evaluation is a pure call with explicit inputs,
``expr.evaluate({"t": 1.5, "frame": 18.0, ...})``: there are no globals and no memo.

Grammar (a subset of Python expressions)::

    expr     := number | name | "(" expr ")"
              | expr ("+" | "-" | "*" | "/" | "//" | "%" | "**") expr | ("-" | "+" | "not") expr
              | expr ("<" | "<=" | ">" | ">=" | "==" | "!=") expr      (true = 1.0, false = 0.0)
              | expr "and" expr | expr "or" expr
              | expr "if" expr "else" expr                            (the conditional)
              | function "(" expr { "," expr } ")"
    name     := t | frame | scene_t | scene_frame | fps | <audio band names> | pi | e | tau
    function := sin cos tan asin acos atan atan2 sinh cosh tanh asinh acosh atanh exp expm1 log log2 log10
                log1p sqrt pow hypot floor ceil trunc fabs fmod copysign radians degrees
                abs min max round clamp(x, lo, hi) sign

Variables (all floats):

* ``t``: seconds since the start of the animation, ``t = frame / fps``;
* ``frame``: the 0-based frame number (the first frame, ``frames/000001.png``, has ``frame = 0``);
* ``scene_t`` / ``scene_frame``: the same, counted from the start of the current scene;
* ``fps``: the scene's frame rate.

Keyframe schedules (Deforum / Disco / Parseq style)::

    schedule := keyframe { "," keyframe }
    keyframe := integer ":" "(" expr ")"          e.g.  0:(1.0), 24:(1.5), 48:(1 + 0.1*sin(t))

Keyframe numbers are 0-based frame numbers (the same count as ``frame``). Between two keyframes the value
is blended from the two keyframe values, each evaluated at the *current* frame (so a keyframe may hold a
live expression); before the first keyframe the first value holds, after the last the last one holds.
``t`` inside a keyframe value is still seconds (Deforum's ``t`` is the frame number: write ``frame``).
The blend is chosen per scene with ``keyframe_interpolation``: ``linear`` (default), ``step`` (hold),
``smooth`` (smoothstep ease-in-out) or ``cubic`` (Catmull-Rom through neighbouring keyframes).

Guards: text longer than 2000 characters, more than 500 nodes, numbers or results that overflow (for
instance ``9**9**9`` or ``exp(1000)``), and non-finite results are errors, never hangs or ``inf``.
"""

from __future__ import annotations

import ast
import bisect
import difflib
import math
import operator
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Literal

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from pytti_engine.scene.source import SourceRef, locate

Interpolation = Literal["linear", "step", "smooth", "cubic"]
Env = Mapping[str, float]
_Fn = Callable[[Env], float]

#: Variables every scene expression may use (audio band names are added per scene).
BASE_NAMES: frozenset[str] = frozenset({"t", "frame", "scene_t", "scene_frame", "fps"})

MAX_CHARS = 2000
MAX_NODES = 500
MAX_SCHEDULE_CHARS = 2_000_000  # a Parseq export has one keyframe per frame


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def _sign(x: float) -> float:
    return 1.0 if x > 0 else -1.0 if x < 0 else 0.0


def _pow(a: float, b: float) -> float:
    return math.pow(a, b)


def _round(x: float) -> float:
    return float(round(x))


# name -> (function, min args, max args). An immutable registry built once.
_FUNCTIONS: Mapping[str, tuple[Callable[..., float], int, int]] = MappingProxyType(
    {
        **{
            name: (getattr(math, name), 1, 1)
            for name in (
                "sin cos tan asin acos atan sinh cosh tanh asinh acosh atanh exp expm1 log2 log10 log1p"
                " sqrt floor ceil trunc fabs radians degrees"
            ).split()
        },
        "log": (math.log, 1, 2),
        "atan2": (math.atan2, 2, 2),
        "hypot": (math.hypot, 2, 2),
        "fmod": (math.fmod, 2, 2),
        "copysign": (math.copysign, 2, 2),
        "pow": (_pow, 2, 2),
        "abs": (abs, 1, 1),
        "min": (min, 2, 16),
        "max": (max, 2, 16),
        "round": (_round, 1, 1),
        "clamp": (_clamp, 3, 3),
        "sign": (_sign, 1, 1),
    }
)

_CONSTANTS: Mapping[str, float] = MappingProxyType({"pi": math.pi, "e": math.e, "tau": math.tau})

_BINOPS: Mapping[type[ast.operator], tuple[Callable[[float, float], float], str]] = MappingProxyType(
    {
        ast.Add: (operator.add, "+"),
        ast.Sub: (operator.sub, "-"),
        ast.Mult: (operator.mul, "*"),
        ast.Div: (operator.truediv, "/"),
        ast.FloorDiv: (operator.floordiv, "//"),
        ast.Mod: (operator.mod, "%"),
        ast.Pow: (_pow, "**"),
    }
)

_CMPOPS: Mapping[type[ast.cmpop], Callable[[float, float], bool]] = MappingProxyType(
    {
        ast.Lt: operator.lt,
        ast.LtE: operator.le,
        ast.Gt: operator.gt,
        ast.GtE: operator.ge,
        ast.Eq: operator.eq,
        ast.NotEq: operator.ne,
    }
)

_FORBIDDEN: Mapping[type[ast.AST], str] = MappingProxyType(
    {
        ast.Attribute: "attribute access ('.name')",
        ast.Subscript: "indexing ('x[...]')",
        ast.Lambda: "lambda",
        ast.ListComp: "comprehensions",
        ast.SetComp: "comprehensions",
        ast.DictComp: "comprehensions",
        ast.GeneratorExp: "comprehensions",
        ast.NamedExpr: "assignment (':=')",
        ast.Starred: "'*' unpacking",
        ast.List: "lists",
        ast.Tuple: "tuples",
        ast.Dict: "dicts",
        ast.Set: "sets",
        ast.JoinedStr: "strings",
        ast.Await: "await",
        ast.Yield: "yield",
    }
)

_KEYFRAME_START = re.compile(r"\s*\(?\s*-?\d+(?:\.\d*)?\s*:\s*\(")


class ExprError(ValueError):
    """A compile-time problem in an expression, at character ``offset`` of the text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class ExprEvalError(ValueError):
    """An expression failed while being evaluated (domain error, division by zero, overflow)."""


class Expr:
    """A compiled scene value: a constant, an expression of time, or a keyframe schedule.

    Build one with :func:`compile_value` (or :meth:`constant`); call :meth:`evaluate` with the inputs.
    Instances are immutable, hashable and picklable (they pickle as their source text).

    Example:
        >>> e = compile_value("2 + sin(t)")
        >>> round(e.evaluate({"t": 0.0, "frame": 0.0}), 3)
        2.0
    """

    __slots__ = ("_eval", "_value", "names", "offset", "ref", "source")

    source: str
    names: frozenset[str]
    offset: int
    ref: SourceRef | None
    _value: float | None
    _eval: Callable[[Env, Interpolation], float] | None

    def __init__(
        self,
        source: str,
        *,
        value: float | None,
        evaluator: Callable[[Env, Interpolation], float] | None,
        names: frozenset[str],
        ref: SourceRef | None = None,
        offset: int = 0,
    ) -> None:
        object.__setattr__(self, "source", str(source))
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_eval", evaluator)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "ref", ref)
        object.__setattr__(self, "offset", offset)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Expr is immutable")

    @classmethod
    def constant(cls, value: float) -> Expr:
        """A constant value (its source is the number's ``repr``)."""
        number = float(value)
        text = repr(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)
        return cls(text, value=number, evaluator=None, names=frozenset())

    @property
    def is_constant(self) -> bool:
        """True when the value does not depend on any input."""
        return self._value is not None

    @property
    def value(self) -> float:
        """The constant value; raises ``ValueError`` for a time-varying expression."""
        if self._value is None:
            raise ValueError(f"expression {self.source!r} is not constant")
        return self._value

    def evaluate(self, env: Env, interpolation: Interpolation = "linear") -> float:
        """Evaluate with the given variables (``t``, ``frame``, ...).

        Args:
            env: variable values; must hold every name in :attr:`names` (``frame`` for keyframes).
            interpolation: how keyframe schedules blend between keyframes.

        Returns:
            A finite float.

        Raises:
            ExprEvalError: on a math domain error, division by zero, overflow or a non-finite result.
        """
        if self._value is not None:
            return self._value
        assert self._eval is not None  # constructor invariant: either a value or an evaluator
        try:
            result = self._eval(env, interpolation)
        except ZeroDivisionError:
            raise ExprEvalError("division by zero") from None
        except OverflowError:
            raise ExprEvalError("result too large") from None
        except (ValueError, TypeError) as e:
            raise ExprEvalError(f"math error ({e})") from None
        if not math.isfinite(result):
            raise ExprEvalError(f"result is not a finite number ({result})")
        return result

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"

    def __str__(self) -> str:
        return self.source

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Expr):
            return NotImplemented
        if self._value is not None and other._value is not None:
            return self._value == other._value
        return self.source.strip() == other.source.strip()

    def __hash__(self) -> int:
        return hash(self._value) if self._value is not None else hash(self.source.strip())

    def __reduce__(self) -> tuple[Any, ...]:
        if self._value is not None:
            return (Expr.constant, (self._value,))
        return (_recompile, (self.source, tuple(sorted(self.names)), self.ref, self.offset))

    def to_json(self) -> float | str:
        """The JSON/YAML form: a number for constants, otherwise the source text."""
        return self._value if self._value is not None else self.source

    # pydantic integration: a field typed ``Expr`` accepts a number or an expression string.
    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            _validate_expr,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda e: e.to_json()),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [
                {"type": "number"},
                {
                    "type": "string",
                    "description": "an expression of t (seconds) / frame, or keyframes '0:(1), 24:(2)'",
                },
            ]
        }


def reserved_names() -> frozenset[str]:
    """Names a scene cannot give its own variables (audio bands): the base variables, functions, constants."""
    return BASE_NAMES | frozenset(_FUNCTIONS) | frozenset(_CONSTANTS)


def _recompile(source: str, names: tuple[str, ...], ref: SourceRef | None, offset: int) -> Expr:
    return compile_value(source, names=BASE_NAMES | frozenset(names), ref=ref, offset=offset)


def scene_names(context: Mapping[str, Any] | None) -> frozenset[str]:
    """The variable names available to expressions under a validation context."""
    extra = (context or {}).get("names", ())
    return BASE_NAMES | frozenset(extra)


def _validate_expr(value: Any, info: core_schema.ValidationInfo) -> Expr:
    if isinstance(value, Expr):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PydanticCustomError(
            "expr_type",
            "expected a number or an expression string, got {kind}",
            {"kind": type(value).__name__},
        )
    if not isinstance(value, str):
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite:
            shown = str(value) if len(str(value)) <= 40 else str(value)[:37] + "..."
            raise PydanticCustomError("expr_value", "expected a finite number, got {value}", {"value": shown})
        return Expr.constant(value)
    try:
        return compile_value(value, names=scene_names(info.context), ref=locate(value, 0))
    except ExprError as e:
        raise expr_error_to_pydantic(e, value) from None


def expr_error_to_pydantic(error: ExprError, text: str, base: int = 0) -> PydanticCustomError:
    """A pydantic error carrying the exact source position of ``error`` (for the loader's report)."""
    ref = locate(text, base + error.offset)
    ctx: dict[str, Any] = {"message": error.message}
    if ref is not None:
        ctx.update(path=ref.path, line=ref.line, col=ref.col)
    return PydanticCustomError("scene_value", "{message}", ctx)


def compile_value(
    text: str,
    *,
    names: Iterable[str] = BASE_NAMES,
    ref: SourceRef | None = None,
    offset: int = 0,
) -> Expr:
    """Compile a number, expression or keyframe schedule.

    Args:
        text: the source, e.g. ``"2 + sin(t)"`` or ``"0:(1.0), 24:(1.5)"``.
        names: the variable names that may appear.
        ref: where ``text`` starts in the scene source (kept for errors found while planning).
        offset: where ``text`` starts inside the field's string (prompt weights sit inside a prompt).

    Returns:
        The compiled :class:`Expr`.

    Raises:
        ExprError: with the offset (inside ``text``) of the offending part.
    """
    allowed = frozenset(names)
    source = str(text)
    if _KEYFRAME_START.match(source):
        if len(source) > MAX_SCHEDULE_CHARS:
            raise ExprError(
                f"keyframe schedule is too long ({len(source)} characters, at most {MAX_SCHEDULE_CHARS})"
            )
        return _compile_keyframes(source, allowed, ref, offset)
    if len(source) > MAX_CHARS:
        raise ExprError(f"expression is too long ({len(source)} characters, at most {MAX_CHARS})")
    fn, used = compile_expression(source, allowed)
    if isinstance(fn, float):
        return Expr(source, value=fn, evaluator=None, names=frozenset(), ref=ref, offset=offset)
    compiled = fn
    return Expr(
        source, value=None, evaluator=lambda env, _i: compiled(env), names=used, ref=ref, offset=offset
    )


def compile_expression(text: str, names: frozenset[str]) -> tuple[_Fn | float, frozenset[str]]:
    """Compile one expression (no keyframes) to a float or a closure of the environment.

    Returns:
        ``(value_or_closure, names_used)``.

    Raises:
        ExprError: with the offset (inside ``text``) of the offending part.
    """
    stripped = text.lstrip()
    lead = len(text) - len(stripped)
    if not stripped.strip():
        raise ExprError("empty expression", 0)
    tree = _parse(stripped.replace("\n", " ").replace("\r", " ").replace("\t", " "), lead)
    compiler = _Compiler(stripped, lead, names)
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise ExprError(f"expression is too complex ({count} parts, at most {MAX_NODES})", lead)
    return compiler.compile(tree.body), frozenset(compiler.used)


def _parse(text: str, lead: int) -> ast.Expression:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for "1 is 1" or a bad escape in a string
            return ast.parse(text, mode="eval")
    except SyntaxError as e:
        # ast reports a 1-based byte column; 0 or None means "at the end of the text".
        col = _char_offset(text, e.offset - 1) if e.offset and (e.lineno or 1) == 1 else len(text)
        message = (e.msg or "invalid syntax").split(" (")[0]
        raise ExprError(f"invalid expression: {message}", lead + min(col, len(text))) from None
    except (RecursionError, MemoryError):
        raise ExprError("invalid expression: too deeply nested", lead) from None
    except ValueError as e:  # e.g. a NUL character
        raise ExprError(f"invalid expression: {e}", lead) from None


def _char_offset(text: str, byte_col: int) -> int:
    """ast column offsets count UTF-8 bytes; turn one into a character offset."""
    return len(text.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))


class _Compiler:
    """Turns a whitelisted ast into closures, folding constants; records the names it reads."""

    def __init__(self, text: str, lead: int, names: frozenset[str]) -> None:
        self.text = text
        self.lead = lead
        self.names = names
        self.used: set[str] = set()

    def where(self, node: ast.AST) -> int:
        return self.lead + _char_offset(self.text, getattr(node, "col_offset", 0))

    def fail(self, node: ast.AST, message: str) -> ExprError:
        return ExprError(message, self.where(node))

    def compile(self, node: ast.AST) -> _Fn | float:
        """Dispatch on the node type; anything not handled here is rejected."""
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.BoolOp):
            return self.boolop(node)
        if isinstance(node, ast.IfExp):
            return self.ifexp(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        what = _FORBIDDEN.get(type(node), type(node).__name__)
        return self._reject(node, f"{what} not allowed in expressions")

    def _reject(self, node: ast.AST, message: str) -> _Fn | float:
        raise self.fail(node, message)

    def fold(self, node: ast.AST, fn: Callable[..., float], *args: float) -> float:
        """Evaluate a constant sub-tree now, turning math failures into compile errors."""
        try:
            value = float(fn(*args))
        except ZeroDivisionError:
            raise self.fail(node, "division by zero") from None
        except OverflowError:
            raise self.fail(node, "number too large") from None
        except (ValueError, TypeError) as e:
            raise self.fail(node, f"math error ({e})") from None
        if not math.isfinite(value):
            raise self.fail(node, "number too large")
        return value

    def constant(self, node: ast.Constant) -> float:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(node, f"only numbers are allowed, not {type(value).__name__} {value!r}")
        return self.fold(node, float, value)

    def name(self, node: ast.Name) -> _Fn | float:
        if node.id in self.names:
            self.used.add(node.id)
            return operator.itemgetter(node.id)
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id in _FUNCTIONS:
            raise self.fail(node, f"'{node.id}' is a function: call it, e.g. {node.id}(t)")
        known = sorted(self.names | set(_CONSTANTS))
        close = difflib.get_close_matches(node.id, known + sorted(_FUNCTIONS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise self.fail(node, f"unknown name '{node.id}'{hint}; available: {', '.join(known)}")

    def binop(self, node: ast.BinOp) -> _Fn | float:
        entry = _BINOPS.get(type(node.op))
        if entry is None:
            raise self.fail(node, f"operator {type(node.op).__name__} not allowed in expressions")
        op = entry[0]
        left, right = self.compile(node.left), self.compile(node.right)
        if isinstance(left, float) and isinstance(right, float):
            return self.fold(node, op, left, right)
        return _lift2(op, left, right)

    def unary(self, node: ast.UnaryOp) -> _Fn | float:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.USub):
            op: Callable[[float], float] = operator.neg
        elif isinstance(node.op, ast.UAdd):
            op = operator.pos
        elif isinstance(node.op, ast.Not):
            op = _not
        else:
            raise self.fail(node, "operator '~' not allowed in expressions")
        if isinstance(operand, float):
            return self.fold(node, op, operand)
        inner = operand
        return lambda env: op(inner(env))

    def compare(self, node: ast.Compare) -> _Fn | float:
        ops = []
        for op in node.ops:
            fn = _CMPOPS.get(type(op))
            if fn is None:
                raise self.fail(node, f"comparison {type(op).__name__} not allowed in expressions")
            ops.append(fn)
        parts = [self.compile(node.left), *(self.compile(c) for c in node.comparators)]
        if all(isinstance(p, float) for p in parts):
            return 1.0 if _chain(ops, [_const(p)({}) for p in parts]) else 0.0
        fns = [_const(p) for p in parts]
        return lambda env: 1.0 if _chain(ops, [f(env) for f in fns]) else 0.0

    def boolop(self, node: ast.BoolOp) -> _Fn | float:
        fns = [_const(self.compile(v)) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda env: _and(fns, env)
        return lambda env: _or(fns, env)

    def ifexp(self, node: ast.IfExp) -> _Fn | float:
        test, body, orelse = self.compile(node.test), self.compile(node.body), self.compile(node.orelse)
        if isinstance(test, float):
            return body if test else orelse
        t, b, o = test, _const(body), _const(orelse)
        return lambda env: b(env) if t(env) else o(env)

    def call(self, node: ast.Call) -> _Fn | float:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, "only calls of named math functions are allowed, e.g. sin(t)")
        entry = _FUNCTIONS.get(node.func.id)
        if entry is None:
            close = difflib.get_close_matches(node.func.id, sorted(_FUNCTIONS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise self.fail(node, f"unknown function '{node.func.id}'{hint}")
        fn, lo, hi = entry
        if node.keywords:
            raise self.fail(node, f"{node.func.id}() takes no keyword arguments")
        if not lo <= len(node.args) <= hi:
            count = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise self.fail(node, f"{node.func.id}() takes {count} arguments, got {len(node.args)}")
        args = [self.compile(a) for a in node.args]
        if all(isinstance(a, float) for a in args):
            return self.fold(node, fn, *(_const(a)({}) for a in args))
        return _lift_call(fn, [_const(a) for a in args])


def _const(value: _Fn | float) -> _Fn:
    if isinstance(value, float):
        v = value
        return lambda env: v
    return value


def _lift2(op: Callable[[float, float], float], left: _Fn | float, right: _Fn | float) -> _Fn:
    if isinstance(left, float):
        lv, rf = left, _const(right)
        return lambda env: op(lv, rf(env))
    if isinstance(right, float):
        lf, rv = left, right
        return lambda env: op(lf(env), rv)
    lf2, rf2 = left, right
    return lambda env: op(lf2(env), rf2(env))


def _lift_call(fn: Callable[..., float], args: list[_Fn]) -> _Fn:
    if len(args) == 1:
        a = args[0]
        return lambda env: float(fn(a(env)))
    return lambda env: float(fn(*[a(env) for a in args]))


def _not(x: float) -> float:
    return 0.0 if x else 1.0


def _chain(ops: list[Callable[[float, float], bool]], values: list[float]) -> bool:
    return all(op(values[i], values[i + 1]) for i, op in enumerate(ops))


def _and(fns: list[_Fn], env: Env) -> float:
    value = 0.0
    for f in fns:
        value = f(env)
        if not value:
            return value
    return value


def _or(fns: list[_Fn], env: Env) -> float:
    value = 0.0
    for f in fns:
        value = f(env)
        if value:
            return value
    return value


# --- keyframes -------------------------------------------------------------------------------------------

_KEY = re.compile(r"\s*(-?\d+(?:\.\d*)?)\s*:\s*")
_SEPARATOR = re.compile(r"\s*(,?)\s*")


def _compile_keyframes(source: str, names: frozenset[str], ref: SourceRef | None, offset: int) -> Expr:
    body, base = _strip_outer_parens(source)
    frames: list[float] = []
    values: list[_Fn] = []
    used: set[str] = set()
    pos = 0
    while True:
        frame, key_at, value_start, value_end = _next_keyframe(body, pos, base)
        try:
            fn, names_used = compile_expression(body[value_start:value_end], names)
        except ExprError as e:
            raise _wrap_value_error(e, base + value_start) from None
        used |= names_used | {"frame"}
        if frames and frame <= frames[-1]:
            message = "keyframe numbers must increase" if frame < frames[-1] else "duplicate keyframe"
            raise ExprError(f"{message} ({int(frame)} after {int(frames[-1])})", base + key_at)
        frames.append(frame)
        values.append(_const(fn))
        separator = _SEPARATOR.match(body, value_end + 1)
        assert separator is not None  # the pattern matches the empty string
        if separator.end() == len(body):
            break  # the end (a trailing comma is fine, as in Deforum)
        if not separator.group(1):
            raise ExprError("expected ',' between keyframes", base + separator.start(1))
        pos = separator.end()
    evaluator = _keyframe_evaluator(tuple(frames), tuple(values))
    return Expr(source, value=None, evaluator=evaluator, names=frozenset(used), ref=ref, offset=offset)


def _wrap_value_error(error: ExprError, base: int) -> ExprError:
    return ExprError(error.message, base + error.offset)


def _strip_outer_parens(source: str) -> tuple[str, int]:
    """``"(0:(1), 9:(2))"`` is accepted as ``"0:(1), 9:(2)"`` (prompt weights need the parentheses)."""
    stripped = source.strip()
    lead = len(source) - len(source.lstrip())
    if (
        stripped.startswith("(")
        and stripped.endswith(")")
        and _matching_paren(stripped, 0) == len(stripped) - 1
    ):
        return stripped[1:-1], lead + 1
    return source, 0


def _matching_paren(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _next_keyframe(body: str, pos: int, base: int) -> tuple[float, int, int, int]:
    """Parse ``N:(expr)`` at ``pos``; returns the frame, where its number starts and the span of ``expr``."""
    match = _KEY.match(body, pos)
    if match is None:
        raise ExprError("expected a keyframe 'FRAME:(VALUE)'", base + pos)
    number = float(match.group(1))
    if number < 0 or not number.is_integer():
        raise ExprError(
            f"keyframe numbers are frame numbers >= 0, got {match.group(1)}", base + match.start(1)
        )
    open_at = match.end()
    if open_at >= len(body) or body[open_at] != "(":
        raise ExprError("expected '(' after 'FRAME:'", base + open_at)
    close_at = _matching_paren(body, open_at)
    if close_at < 0:
        raise ExprError("unclosed '(' in keyframe", base + open_at)
    return number, match.start(1), open_at + 1, close_at


def _keyframe_evaluator(
    frames: tuple[float, ...], values: tuple[_Fn, ...]
) -> Callable[[Env, Interpolation], float]:
    last = len(frames) - 1

    def evaluate(env: Env, interpolation: Interpolation) -> float:
        frame = env["frame"]
        i = bisect.bisect_right(frames, frame) - 1
        if i < 0:
            return values[0](env)
        if i >= last or frame == frames[i] or interpolation == "step":
            return values[i](env)
        u = (frame - frames[i]) / (frames[i + 1] - frames[i])
        a, b = values[i](env), values[i + 1](env)
        if interpolation == "cubic":
            p0 = values[i - 1](env) if i > 0 else a
            p3 = values[i + 2](env) if i + 2 <= last else b
            return _catmull_rom(p0, a, b, p3, u)
        if interpolation == "smooth":
            u = u * u * (3.0 - 2.0 * u)
        return a + (b - a) * u

    return evaluate


def _catmull_rom(p0: float, p1: float, p2: float, p3: float, u: float) -> float:
    """Uniform Catmull-Rom spline between ``p1`` and ``p2`` (Catmull & Rom 1974)."""
    u2, u3 = u * u, u * u * u
    return 0.5 * (
        2 * p1 + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u2 + (-p0 + 3 * p1 - 3 * p2 + p3) * u3
    )
