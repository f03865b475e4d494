"""How much work marketer-written templates and conditions may do.

A template is code, and the dispatcher renders it in the API's process: ``{{ 'x' *
10**8 }}`` would build 100 MB before the size of the part is ever checked, nested loops
could run for hours, ``lipsum(10**6)`` writes a book. So the sandbox
(:class:`engine.expressions.JourneySandbox`) bounds the work *while* rendering:

- **Size.** No operation builds text or a list standing for more than ``MAX_TEXT``
  characters (256 Ki, a rendered part's cap): repetition (``*``), ``+``, ``~``,
  ``%``-formatting, the string methods and filters that pad, join or replace. Numbers
  stay under ``MAX_INT_BITS``. Text written into a buffer (a macro, a ``{% set %}``
  block, a ``{% filter %}``) counts against ``MAX_BUFFERED`` per render.
- **Ranges.** ``range()`` yields at most ``MAX_RANGE`` numbers; ``lipsum`` is not offered.
- **Steps and time.** Every loop iteration, call, operator and buffered write is a step;
  a render may take ``RENDER.steps`` steps and ``RENDER.seconds`` of wall time (a
  condition ``CONDITION``). The step count makes the outcome the same on every machine;
  the clock is the backstop.

Going over a limit raises :class:`LimitExceeded` (a sandbox ``SecurityError``): the
message fails with the reason, a condition is false. What can be seen without running
(``lipsum()``, ``range(100000)``, ``'x' * 10**8``) is refused when the template is
compiled, so ``journey validate`` reports it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any, cast

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError

MAX_TEXT = 256 * 1024
MAX_INT_BITS = 4096
MAX_RANGE = 10_000
MAX_BUFFERED = 8 * MAX_TEXT
#: Steps between two looks at the clock.
CLOCK_EVERY = 1024


class LimitExceeded(SecurityError):
    """A template or condition went over a resource limit."""


@dataclass(frozen=True, slots=True)
class Limits:
    steps: int
    seconds: float


RENDER = Limits(steps=250_000, seconds=1.0)
CONDITION = Limits(steps=25_000, seconds=0.25)


class Budget:
    """What one render (or one condition) has left."""

    __slots__ = ("buffered", "deadline", "limits", "steps", "until_clock")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.steps = limits.steps
        self.buffered = MAX_BUFFERED
        self.deadline = time.monotonic() + limits.seconds
        self.until_clock = CLOCK_EVERY

    def spend(self, steps: int = 1) -> None:
        self.steps -= steps
        if self.steps < 0:
            raise LimitExceeded(f"more than {self.limits.steps:,} steps of work")
        self.until_clock -= steps
        if self.until_clock <= 0:
            self.until_clock = CLOCK_EVERY
            if time.monotonic() > self.deadline:
                raise LimitExceeded(f"took longer than {self.limits.seconds:g} s")

    def buffer(self, text: object) -> None:
        size = len(text) if isinstance(text, str) else 1
        self.buffered -= size
        if self.buffered < 0:
            raise LimitExceeded(f"wrote more than {MAX_BUFFERED:,} characters into blocks")
        self.spend(1 + size // 4096)


_BUDGET: ContextVar[Budget | None] = ContextVar("template_budget", default=None)


class limited:
    """``with limited(RENDER): ...`` gives the renders inside it a fresh budget."""

    __slots__ = ("limits", "token")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def __enter__(self) -> Budget:
        budget = Budget(self.limits)
        self.token = _BUDGET.set(budget)
        return budget

    def __exit__(self, *_exc: object) -> None:
        _BUDGET.reset(self.token)


def spend(steps: int = 1) -> None:
    """Count ``steps`` against the current budget (none outside a render: no-op)."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.spend(steps)


# --------------------------------------------------------------------------- sizes


def weight(value: Any, limit: int = MAX_TEXT) -> int:
    """How many characters ``value`` stands for written out (text, and the text inside
    lists and dicts), counted up to just past ``limit``."""
    if type(value) is str:  # most of what is weighed: one look, no steps
        return len(value)
    total = 0
    stack = [value]
    visited = 0
    while stack and total <= limit:
        item = stack.pop()
        visited += 1
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            total += len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            total += 1
    if visited >= 64:
        spend(visited // 64)
    return total


def check_size(value: Any, what: str) -> Any:
    """``value``, unless it stands for more than ``MAX_TEXT`` characters."""
    if weight(value) > MAX_TEXT:
        raise LimitExceeded(f"{what} would be over the limit of {MAX_TEXT:,} characters")
    return value


def _sequence(value: Any) -> bool:
    return isinstance(value, str | bytes | list | tuple)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_FIELD = re.compile(r"\{[^{}]*\}")


#: Format templates found harmless: templates repeat (``"%.2f" | format(price)``), and
#: the verdict depends on the text alone. Short ones only, and only so many.
_HARMLESS_FORMATS: set[str] = set()
_HARMLESS_KEPT = 1024
_HARMLESS_LENGTH = 256


def check_format(template: str) -> None:
    """Refuse a ``%`` or ``str.format`` template that pads to a huge width or takes its
    width from an argument (``'%*d'``, ``'{:>{}}'``)."""
    if template in _HARMLESS_FORMATS:
        return
    _check_format(template)
    if len(template) <= _HARMLESS_LENGTH and len(_HARMLESS_FORMATS) < _HARMLESS_KEPT:
        _HARMLESS_FORMATS.add(template)


def _check_format(template: str) -> None:
    for found in _PERCENT_FIELD.finditer(template):
        for number in found.groups():
            if number == "*" or (number and int(number) > MAX_TEXT):
                raise LimitExceeded(f"the format {found.group()!r} pads beyond the limit")
    for found in _BRACE_FIELD.finditer(template):
        spec = found.group().partition(":")[2]
        if "{" in spec or any(int(n) > MAX_TEXT for n in re.findall(r"\d+", spec)):
            raise LimitExceeded(f"the format {found.group()!r} pads beyond the limit")


def binop(operator: str, left: Any, right: Any, apply: Callable[[Any, Any], Any]) -> Any:
    """``apply(left, right)`` for the operators a template may use to build big values."""
    spend()
    if operator == "*":
        if _integer(left) and _integer(right):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise LimitExceeded(f"a product over {MAX_INT_BITS} bits")
        elif _integer(right) or _integer(left):
            sequence, count = (left, right) if _integer(right) else (right, left)
            if _sequence(sequence) and count > 0 and weight(sequence) * count > MAX_TEXT:
                raise LimitExceeded(
                    f"repeating {type(sequence).__name__} {count:,} times would be over "
                    f"the limit of {MAX_TEXT:,} characters"
                )
    elif operator == "**":
        big = _integer(left) and _integer(right) and right > 0 and abs(left) > 1
        if big and abs(left).bit_length() * right > MAX_INT_BITS:
            raise LimitExceeded(f"a power over {MAX_INT_BITS} bits")
    elif operator == "+":
        if _sequence(left) and _sequence(right):
            check_size((left, right), "the sum")
    elif operator == "%" and isinstance(left, str):
        check_format(left)
        return check_size(apply(left, right), "the formatted text")
    return apply(left, right)


def limited_range(*args: int) -> range:
    """``range()`` in templates: at most ``MAX_RANGE`` numbers."""
    spend()
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise LimitExceeded(f"range of {len(numbers):,} numbers, over the limit of {MAX_RANGE:,}")
    return numbers


def limited_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    """What a ``{% for %}`` loops over: one step for the loop, one per item."""
    budget = _BUDGET.get()
    if budget is None:
        yield from iterable
        return
    budget.spend()
    for item in iterable:
        budget.spend()
        yield item


class OutputBuffer(list[Any]):
    """The list a macro, ``{% set %}`` block or ``{% filter %}`` writes its text into."""

    def append(self, text: Any) -> None:
        budget = _BUDGET.get()
        if budget is not None:
            budget.buffer(text)
        super().append(text)

    def extend(self, texts: Iterable[Any]) -> None:
        for text in texts:
            self.append(text)


# --------------------------------------------------------------------------- calls


_PADDING = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def check_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Refuse a call of a string method that would build too much; returns the arguments
    to call with (an iterator given to ``join`` is read once, here)."""
    spend()
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str):
        return args
    name = getattr(obj, "__name__", "")
    if name in _PADDING and any(_integer(a) and a > MAX_TEXT for a in (*args, *kwargs.values())):
        raise LimitExceeded(f"{name}() pads beyond the limit of {MAX_TEXT:,} characters")
    if name == "replace" and len(args) >= 2:
        check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else -1)
    if name == "join" and args:
        items = list(args[0])
        _refuse_over(weight(items) + len(owner) * max(len(items) - 1, 0), "the joined text")
        return (items, *args[1:])
    return args


def check_replace(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    found = text.count(old) if old else len(text) + 1
    if _integer(count) and count >= 0:
        found = min(found, count)
    if len(text) + found * (len(new) - len(old)) > MAX_TEXT:
        raise LimitExceeded(f"replace() would be over the limit of {MAX_TEXT:,} characters")


#: Filters that write their input out as text: the input is weighed first.
_TEXT_FILTERS = frozenset(
    {
        *("capitalize", "center", "e", "escape", "forceescape", "format", "indent", "join"),
        *("lower", "pprint", "replace", "safe", "string", "striptags", "title", "tojson"),
        *("trim", "upper", "urlencode", "urlize", "wordwrap", "xmlattr"),
    }
)
#: Filters whose number arguments are widths of the text they write.
_WIDTH_FILTERS = frozenset({"center", "indent"})


def _refuse_over(size: int, what: str) -> None:
    if size > MAX_TEXT:
        raise LimitExceeded(f"{what} would be over the limit of {MAX_TEXT:,} characters")


def limited_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (the filter ``name``) with its inputs and result weighed."""
    skip = 1 if hasattr(function, "jinja_pass_arg") else 0  # context/environment first
    # Worked out once: a template calls its filters on every render.
    widths, text = name in _WIDTH_FILTERS, name in _TEXT_FILTERS
    given, made = f"the text given to the {name} filter", f"the {name} filter's result"

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        spend()
        if widths or text:
            values = args[skip:]
            if widths and any(
                _integer(a) and a > MAX_TEXT for a in (*values[1:], *kwargs.values())
            ):
                raise LimitExceeded(f"the {name} filter pads beyond {MAX_TEXT:,} characters")
            if values and text:
                value = values[0]
                if name == "join" and not isinstance(value, str):
                    value = list(value)  # read an iterator once, then weigh it
                    args = (*args[:skip], value, *values[1:])
                    separator = kwargs.get("d", values[1] if len(values) > 1 else "")
                    spread = len(separator) * len(value) if isinstance(separator, str) else 0
                    _refuse_over(weight(value) + spread, "the joined text")
                else:
                    check_size(value, given)
                _check_filter_arguments(name, value, values, kwargs)
        result = function(*args, **kwargs)
        if isinstance(result, str | list | tuple):
            check_size(result, made)
        return result

    return wrapper


def _check_filter_arguments(
    name: str, value: Any, values: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> None:
    if name == "replace" and len(values) >= 3:
        check_replace(values[0], values[1], values[2], values[3] if len(values) > 3 else -1)
    elif name == "format" and isinstance(value, str):
        check_format(value)
    elif name == "indent" and isinstance(value, str):
        width = kwargs.get("width", values[1] if len(values) > 1 else 4)
        pad = len(width) if isinstance(width, str) else width if _integer(width) else 0
        _refuse_over(len(value) + pad * (value.count("\n") + 1), "the indented text")
    elif name == "wordwrap" and isinstance(value, str):
        wrap = kwargs.get("wrapstring", values[3] if len(values) > 3 else None)
        if isinstance(wrap, str):
            _refuse_over(len(value) * (len(wrap) + 1), "the wrapped text")


_WRITTEN_AS_IS = frozenset({str, int, float, bool, type(None)})


def check_output(value: Any) -> Any:
    """What ``{{ value }}`` writes (the sandbox's ``finalize``): a list or dict is weighed
    before it is turned into text."""
    if type(value) not in _WRITTEN_AS_IS and isinstance(value, list | tuple | dict | set):
        check_size(value, "the value written")
    return value


# --------------------------------------------------------------------------- compiling


def _internal(name: str) -> nodes.InternalName:
    """A name written into the generated code as is (how Jinja's parser makes them)."""
    node = object.__new__(nodes.InternalName)
    nodes.Node.__init__(node, name)
    return node


#: What a ``{% for %}`` loops over goes through this: a step per item.
_COUNTER = "environment.limited_iter"


class LimitedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with every loop counted, every buffer measured, every
    ``~`` weighed, and what breaks a limit visibly refused at compile time."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for found in node.find_all((nodes.Call, nodes.BinExpr, nodes.Filter, nodes.Concat)):
            problem = static_problem(found, self.environment)
            if problem is not None:
                self.fail(f"over the template limits: {problem}", found.lineno)
        super().visit_Template(node, frame)

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # The loop runs over environment.limited_iter(<what it names>): a step per item.
        counter = _internal(_COUNTER)
        counted_iter = nodes.Call(counter, [node.iter], [], None, None, lineno=node.lineno)
        counted = nodes.For(
            node.target,
            counted_iter,
            node.body,
            node.else_,
            node.test,
            node.recursive,
            lineno=node.lineno,
        )
        counted.set_environment(self.environment)
        super().visit_For(counted, frame)

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        counter = node.node
        if isinstance(counter, nodes.InternalName) and counter.name == _COUNTER:
            # Called directly: through the sandbox's call() it cost a tenth of a render.
            self.write(f"{_COUNTER}(")
            self.visit(node.args[0], frame)
            self.write(")")
            return
        super().visit_Call(node, frame, forward_caller=forward_caller)

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.limited_text(")
        super().visit_Concat(node, frame)
        self.write(")")


class _NotStatic(Exception):
    pass


def static_problem(node: nodes.Node, environment: Any) -> str | None:
    """Why ``node``, if its value is known at compile time, is over a limit (else None)."""
    if (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "lipsum"
    ):
        return "lipsum() is not available in templates"
    try:
        static_value(node, environment)
    except LimitExceeded as exc:
        return str(exc)
    except Exception:  # not known before rendering, or fails for another reason then
        return None
    return None


def static_value(node: nodes.Node, environment: Any) -> Any:
    """The value of a constant expression, computed under the limits."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Tuple | nodes.List):
        items = [static_value(item, environment) for item in node.items]
        return tuple(items) if isinstance(node, nodes.Tuple) else items
    if isinstance(node, nodes.Neg | nodes.Pos):
        value = static_value(node.node, environment)
        return -value if isinstance(node, nodes.Neg) else +value
    if isinstance(node, nodes.BinExpr):
        left, right = static_value(node.left, environment), static_value(node.right, environment)
        return binop(node.operator, left, right, environment.binop_table[node.operator])
    if isinstance(node, nodes.Concat):
        parts = [static_value(part, environment) for part in node.nodes]
        return check_size("".join(map(str, parts)), "the joined text")
    if (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "range"
        and not (node.kwargs or node.dyn_args or node.dyn_kwargs)
    ):
        return limited_range(*(static_value(arg, environment) for arg in node.args))
    if isinstance(node, nodes.Filter) and node.node is not None:
        function = environment.filters.get(node.name)
        if function is None or node.dyn_args or node.dyn_kwargs:
            raise _NotStatic
        args = [static_value(node.node, environment)]
        args += [static_value(arg, environment) for arg in node.args]
        keywords = [cast(nodes.Keyword, kw) for kw in node.kwargs]
        kwargs = {kw.key: static_value(kw.value, environment) for kw in keywords}
        passed = getattr(function, "jinja_pass_arg", None)
        if passed is not None:
            if passed.name == "context":
                raise _NotStatic
            first = environment if passed.name == "environment" else nodes.EvalContext(environment)
            args.insert(0, first)
        return function(*args, **kwargs)
    raise _NotStatic
