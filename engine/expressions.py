"""Conditions (``where``, ``when``) as sandboxed Jinja2 expressions, compiled once.

Marketers write these, so they run in Jinja2's ``ImmutableSandboxedEnvironment``:
no access to Python internals, no mutation, no I/O, and bounded work
(``engine.template_limits``). Names in scope are ``profile``, ``trigger``, ``event``,
``user_id`` and ``now`` (journey-format section 4).

A condition that cannot be evaluated (a missing name or attribute, a type error,
anything the sandbox forbids) is *false*: an author's typo must never start or
move a journey by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine import template_limits as limits

Scope = Mapping[str, Any]


class JourneySandbox(ImmutableSandboxedEnvironment):
    """The sandbox for every piece of marketer-written text.

    ``a.b`` on a dict prefers the key ``b`` over the dict method of that name, so
    ``properties.items`` or ``traits.values`` reach the data the way authors expect.

    Work is bounded (``engine.template_limits``): the operators, calls and filters that
    can build big values are weighed, loops and buffers are counted by the generated
    code, ``range`` is short and ``lipsum`` is gone.
    """

    code_generator_class = limits.LimitedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    # Called by the generated code (LimitedCodeGenerator).
    limited_iter = staticmethod(limits.limited_iter)
    output_buffer = limits.OutputBuffer

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=limits.check_output, **options)
        self.globals["range"] = limits.limited_range
        del self.globals["lipsum"]
        self.filters = {
            name: limits.limited_filter(name, function) for name, function in self.filters.items()
        }

    @staticmethod
    def limited_text(value: Any) -> Any:
        return limits.check_size(value, "the joined text")

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        return limits.binop(operator, left, right, self.binop_table[operator])

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        args = limits.check_call(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, str):
            limits.check_size(result, "the text a call returned")
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        formatter = super().wrap_str_format(value)
        if formatter is None:
            return None
        limits.check_format(value.__self__)

        def checked(*args: Any, **kwargs: Any) -> str:
            return str(limits.check_size(formatter(*args, **kwargs), "the formatted text"))

        return checked

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as one plain dict, not Jinja's ``ChainMap`` over the
        environment's: every render and every condition builds a context from them,
        and walking the chain dominated the cost of that. The environment's globals
        never change after start-up, so a snapshot sees the same names."""
        return {**self.globals, **(d or {})}


def new_context(template: jinja2.Template, scope: Scope) -> Context:
    """A context to render ``template`` in ``scope`` (which it never changes), as
    ``template.new_context(scope)`` makes it, with the template's globals merged in a
    dict display rather than by Jinja's ``dict(globals, **scope)``, which takes twice as
    long (a context per render and per condition)."""
    return template.new_context({**template.globals, **scope}, shared=True)


def make_sandbox(*, autoescape: bool = False) -> JourneySandbox:
    """A sandbox that fails on undefined names (templates) and can autoescape (html)."""
    return JourneySandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=False,
    )


_ENV = make_sandbox()


class ExpressionSyntaxError(ValueError):
    """An expression does not parse; the message says where and why."""


def _expression_template(source: str) -> jinja2.Template:
    """``source`` as the template ``{% set result = <source> %}``, parsed the way
    ``Environment.compile_expression`` does; raises jinja2.TemplateSyntaxError."""
    parser = Parser(_ENV, source, state="variable")
    expression = parser.parse_expression()
    if not parser.stream.eos:
        raise jinja2.TemplateSyntaxError(
            "chunk after expression", parser.stream.current.lineno, None, None
        )
    expression.set_environment(_ENV)
    body = [nodes.Assign(nodes.Name("result", "store"), expression, lineno=1)]
    return _ENV.from_string(nodes.Template(body, lineno=1))


@lru_cache(maxsize=4096)
def compile_condition(source: str) -> Callable[[Scope], bool]:
    """Compile ``source`` once into a predicate; raises ExpressionSyntaxError if it won't parse."""
    try:
        template = _expression_template(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ExpressionSyntaxError(f"invalid expression {source!r}: {exc.message}") from None
    evaluate = template.root_render_func

    def condition(scope: Scope) -> bool:
        try:
            with limits.limited(limits.CONDITION):
                context = new_context(template, scope)
                for _ in evaluate(context):
                    pass
                return bool(context.vars["result"])
        # A condition that raises is false by contract (journey-format sections 4 and 9);
        # the sandbox raises SecurityError (also for going over a limit), StrictUndefined
        # raises UndefinedError, and comparisons raise TypeError: all mean "not met".
        except Exception:
            return False

    return condition


def check_expression(source: object) -> str:
    """Validate that ``source`` is a parsable expression string and return it."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionSyntaxError("an expression must be a non-empty string")
    compile_condition(source)
    return source
