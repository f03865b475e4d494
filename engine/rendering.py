"""Message content: templates and inline parts, rendered in the sandbox.

A channel's message has named parts (``text``; ``subject``/``html``/``text``;
``content``; ``title``/``body``/``url``). A template file defines them as Jinja2
blocks named after the part; a one-part channel may use the whole file instead.

``template: cart_abandon/nudge`` on ``sms`` is ``templates/cart_abandon/nudge.sms.j2``.
A locale variant ``templates/<locale>/cart_abandon/nudge.sms.j2`` wins when the
profile's ``locale`` trait matches: ``zh-CN``, then ``zh``, then the default.

Only the ``html`` part is autoescaped: it is compiled by a second, autoescaping
sandbox. Undefined names fail the render (``StrictUndefined``), and every part is
capped in size so a runaway loop cannot exhaust memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from engine.channels import ChannelSpec
from engine.errors import RenderError
from engine.expressions import make_sandbox, new_context
from engine.template_limits import RENDER, limited

MAX_PART_CHARS = 256 * 1024
HTML_PARTS = frozenset({"html"})

_TEXT_ENV = make_sandbox(autoescape=False)
_HTML_ENV = make_sandbox(autoescape=True)


def _env_for(part: str) -> jinja2.Environment:
    return _HTML_ENV if part in HTML_PARTS else _TEXT_ENV


#: Chunks taken from a template at a time: a Python step per chunk dominated rendering.
_BATCH = 64


def _too_long(part: str) -> RenderError:
    return RenderError(f"part {part!r} is longer than {MAX_PART_CHARS} characters")


def _capped(chunks: Iterator[str], part: str) -> str:
    """The text of ``chunks``, or RenderError once it passes MAX_PART_CHARS.

    The outcome is that of checking after every chunk: the cap, if it was passed
    before any chunk failed, else the chunk's error.
    """
    out: list[str] = []
    size = 0
    try:
        while True:
            done = len(out)
            out.extend(islice(chunks, _BATCH))  # keeps what came before a failing chunk
            size += sum(map(len, islice(out, done, None)))
            if size > MAX_PART_CHARS:
                raise _too_long(part)
            if len(out) - done < _BATCH:
                return "".join(out)
    except RenderError:
        raise
    except Exception:
        if sum(map(len, out)) > MAX_PART_CHARS:
            raise _too_long(part) from None
        raise


def _describe(exc: Exception) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined: {exc.message}"
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"forbidden by the sandbox: {exc}"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True, slots=True)
class PartSource:
    """Where one part comes from: a whole template, or one block of it."""

    template: jinja2.Template
    block: str | None = None
    #: The template defines macros or variables at its top level, which blocks may use.
    has_definitions: bool = False
    #: The names the template reads from the render scope (None: any of them).
    reads: frozenset[str] | None = None

    def render_function(self) -> Callable[[jinja2.runtime.Context], Iterator[str]]:
        if self.block is None:
            return self.template.root_render_func
        return self.template.blocks[self.block]


@dataclass(frozen=True)
class MessageParts:
    """Compiled parts of one message for one channel and locale."""

    source: str
    parts: Mapping[str, PartSource]
    _plan: tuple[tuple[str, PartSource, Callable[[jinja2.runtime.Context], Iterator[str]]], ...] = (
        field(init=False, repr=False, compare=False)
    )
    _reads: frozenset[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        plan = tuple(
            (part, source, source.render_function()) for part, source in self.parts.items()
        )
        object.__setattr__(self, "_plan", plan)
        sources = self.parts.values()
        names: frozenset[str] | None = None
        if all(source.reads is not None for source in sources):
            names = frozenset().union(*(source.reads or () for source in sources))
        object.__setattr__(self, "_reads", names)

    def reads(self, name: str) -> bool:
        """Whether some part may read ``name`` from the scope (so it must be worked out)."""
        return self._reads is None or name in self._reads

    def render(self, scope: Mapping[str, Any]) -> dict[str, str]:
        """Render every part; raises RenderError naming the part and the cause."""
        rendered: dict[str, str] = {}
        # Parts from one template share one context: building contexts dominated rendering.
        contexts: dict[int, jinja2.runtime.Context] = {}
        with limited(RENDER):  # one budget of steps and time for the whole message
            for part, source, render_part in self._plan:
                try:
                    context = contexts.get(id(source.template))
                    if context is None:
                        context = contexts[id(source.template)] = _context(source, scope)
                    rendered[part] = _capped(render_part(context), part)
                except RenderError as exc:
                    raise RenderError(f"{self.source}: {exc}") from None
                # Marketer-written text can fail in many ways (undefined names, type errors,
                # sandbox refusals, limits); each becomes a failed message, never a crash.
                except Exception as exc:
                    raise RenderError(f"{self.source}: part {part!r}: {_describe(exc)}") from None
        return rendered


def _context(source: PartSource, scope: Mapping[str, Any]) -> jinja2.runtime.Context:
    if not source.has_definitions:
        return new_context(source.template, scope)
    # A block rendered on its own does not run the template's top level, where
    # macros and {% set %} live; run it once and hand its exports to the blocks.
    names = dict(scope)
    module = source.template.make_module(dict(scope))
    names.update((k, v) for k, v in vars(module).items() if not k.startswith("_"))
    return new_context(source.template, names)


_DEFINITIONS = (
    jinja2.nodes.Macro,
    jinja2.nodes.Assign,
    jinja2.nodes.AssignBlock,
    jinja2.nodes.Import,
    jinja2.nodes.FromImport,
)


def _has_definitions(source: str) -> bool:
    return any(isinstance(node, _DEFINITIONS) for node in _TEXT_ENV.parse(source).body)


def compile_template_parts(
    source: str, origin: str, channel: ChannelSpec
) -> tuple[MessageParts, list[str]]:
    """Compile a template file's text for ``channel``: (parts, problems).

    Raises jinja2.TemplateSyntaxError when the text does not parse.
    """
    text_template = _TEXT_ENV.from_string(source)
    blocks = set(text_template.blocks)
    parts: dict[str, PartSource] = {}
    problems: list[str] = []
    reads = _reads(source)
    if not blocks and channel.single_part:
        parts[channel.single_part] = PartSource(text_template, reads=reads)
        return MessageParts(origin, parts), problems
    html_template = _HTML_ENV.from_string(source) if blocks & HTML_PARTS else None
    definitions = _has_definitions(source)
    for part in channel.parts:
        if part not in blocks:
            if part in channel.required_parts:
                problems.append(
                    f"template has no '{{% block {part} %}}' (channel {channel.name} needs "
                    f"{', '.join(channel.required_parts)})"
                )
            continue
        template = html_template if part in HTML_PARTS and html_template else text_template
        parts[part] = PartSource(template, part, definitions, reads)
    return MessageParts(origin, parts), problems


def compile_inline_part(source: str, part: str) -> PartSource:
    """Compile one inline part (journey-file text). Raises jinja2.TemplateSyntaxError."""
    return PartSource(_env_for(part).from_string(source), reads=_reads(source))


def _reads(source: str) -> frozenset[str]:
    """The names a template reads from its scope. Exact: a template includes no other
    (there is no loader), and no name can be looked up by a computed string."""
    return frozenset(jinja2.meta.find_undeclared_variables(_TEXT_ENV.parse(source)))


def locale_chain(locale: object) -> tuple[str, ...]:
    """``zh_CN`` / ``zh-CN`` -> ``("zh-CN", "zh")``; anything else -> ``()``."""
    if not isinstance(locale, str) or not locale.strip():
        return ()
    tag = locale.strip().replace("_", "-")
    pieces = tag.split("-")
    chain = [tag]
    if len(pieces) > 1:
        chain.append(pieces[0])
    return tuple(chain)


TEMPLATE_SUFFIX = ".j2"
MAX_TEMPLATE_BYTES = 1024 * 1024
MAX_RESOLVED = 10_000


@dataclass
class TemplateStore:
    """Template files by path relative to the templates directory, compiled on first use.

    The files are held as text (read from a directory, or from a stored deployment),
    so a deployed version renders the same whatever happens to the directory later.
    """

    files: Mapping[str, str]
    label: str = "templates"
    _cache: dict[tuple[str, str, str], MessageParts | None] = field(default_factory=dict)
    _locale_dirs: dict[str, str] = field(default_factory=dict)
    #: (name, channel, locale trait) -> what :meth:`resolve` found, for the usual locales.
    _resolved: dict[tuple[str, str, str | None], MessageParts | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for path in self.files:
            top = path.split("/", 1)[0]
            if "/" in path:
                self._locale_dirs.setdefault(top.lower(), top)

    @classmethod
    def from_directory(cls, root: Path) -> TemplateStore:
        """Every ``*.j2`` file under ``root`` (none if it does not exist)."""
        files: dict[str, str] = {}
        if root.is_dir():
            for path in sorted(root.rglob(f"*{TEMPLATE_SUFFIX}")):
                if path.is_file() and path.stat().st_size <= MAX_TEMPLATE_BYTES:
                    files[path.relative_to(root).as_posix()] = path.read_text("utf-8")
        return cls(files, str(root))

    def path_for(self, name: str, channel: str, locale: str | None = None) -> str:
        """The relative path that would hold ``name`` for ``channel`` in ``locale``."""
        return (
            f"{locale}/{name}.{channel}{TEMPLATE_SUFFIX}"
            if locale
            else f"{name}.{channel}{TEMPLATE_SUFFIX}"
        )

    def display(self, path: str) -> str:
        """A path as authors see it, for diagnostics."""
        return f"{self.label}/{path}"

    def exists(self, path: str) -> bool:
        return path in self.files

    def variants(self, name: str, channel: str) -> list[tuple[str | None, str]]:
        """Every existing file for ``name`` on ``channel``: the default first, then locales."""
        found: list[tuple[str | None, str]] = []
        default = self.path_for(name, channel)
        if default in self.files:
            found.append((None, default))
        for directory in sorted(set(self._locale_dirs.values())):
            candidate = self.path_for(name, channel, directory)
            if candidate in self.files:
                found.append((directory, candidate))
        return found

    def resolve(self, name: str, channel: ChannelSpec, locale: object) -> MessageParts | None:
        """The compiled parts for the best locale match, or None when no file exists."""
        key = (name, channel.name, locale if isinstance(locale, str) else None)
        try:
            return self._resolved[key]
        except KeyError:
            pass
        found = self._resolve(name, channel, locale)
        if len(self._resolved) < MAX_RESOLVED:  # locale traits are free text
            self._resolved[key] = found
        return found

    def _resolve(self, name: str, channel: ChannelSpec, locale: object) -> MessageParts | None:
        for tag in (*locale_chain(locale), ""):
            directory = self._locale_dirs.get(tag.lower()) if tag else ""
            if directory is None:
                continue
            key = (name, channel.name, directory)
            if key not in self._cache:
                self._cache[key] = self._load(name, channel, directory or None)
            parts = self._cache[key]
            if parts is not None:
                return parts
        return None

    def _load(self, name: str, channel: ChannelSpec, locale: str | None) -> MessageParts | None:
        if not self.exists(self.path_for(name, channel.name, locale)):
            return None
        parts, _problems = self.compile(name, channel, locale)
        return parts

    def compile(
        self, name: str, channel: ChannelSpec, locale: str | None
    ) -> tuple[MessageParts, list[str]]:
        """Compile the file of ``name`` on ``channel`` in ``locale`` (a directory, None for
        the default) and keep it for rendering: (parts, problems). The file must exist.
        Raises jinja2.TemplateSyntaxError when it does not parse."""
        path = self.path_for(name, channel.name, locale)
        parts, problems = compile_template_parts(self.files[path], self.display(path), channel)
        self._cache[(name, channel.name, locale or "")] = parts
        return parts, problems
