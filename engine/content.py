"""What a ``send`` step says: its channels, and the templates or inline parts for each.

The journey compiler hands every ``send`` to :class:`SendCompiler`, which checks the
channels (known, none tried twice), the templates (a default-locale file per channel,
fallbacks included; every locale variant parses and has the channel's parts) and
inline content, and reports each problem through the compiler's ``error``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2

from engine import spec
from engine.channels import ChannelSpec, channel_names, get_channel
from engine.errors import Diagnostic
from engine.graph import ChannelAttempt, InlineContent, TemplateContent
from engine.rendering import (
    MessageParts,
    PartSource,
    TemplateStore,
    compile_inline_part,
)
from engine.source import DataPath

_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*(/[A-Za-z0-9_][A-Za-z0-9_\-]*)*$")
ReportError = Callable[..., None]


@dataclass
class TemplateChecker:
    """Checks each (template, channel) once per directory, remembering file-level problems."""

    store: TemplateStore
    checked: dict[tuple[str, str], bool] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    digests: dict[tuple[str, str], str] = field(default_factory=dict)

    def check(self, name: str, channel: ChannelSpec) -> bool:
        """Whether a usable default-locale template exists; file problems are recorded once."""
        key = (name, channel.name)
        if key in self.checked:
            return self.checked[key]
        variants = self.store.variants(name, channel.name)
        has_default = any(locale is None for locale, _ in variants)
        digest = hashlib.sha256()
        ok = has_default
        for locale, path in variants:
            text = self.store.files[path]
            shown = self.store.display(path)
            digest.update(path.encode() + b"\0" + text.encode() + b"\0")
            try:
                # Compiled once: the store keeps what is checked here for rendering.
                _parts, problems = self.store.compile(name, channel, locale)
            except jinja2.TemplateSyntaxError as exc:
                self.diagnostics.append(
                    Diagnostic(shown, exc.lineno or 1, 1, f"template syntax error: {exc.message}")
                )
                ok = False
                continue
            for problem in problems:
                self.diagnostics.append(Diagnostic(shown, 1, 1, problem))
                ok = False
        self.digests[key] = digest.hexdigest()
        self.checked[key] = ok
        return ok


class SendCompiler:
    """Compiles the content of ``send`` steps for one journey file."""

    def __init__(self, templates: TemplateChecker, error: ReportError, file: str) -> None:
        self.templates = templates
        self.error = error
        self.file = file
        #: (template, channel) pairs the journey uses: part of its version.
        self.template_keys: set[tuple[str, str]] = set()

    def attempts(self, at: DataPath, send: spec.SendSpec) -> tuple[ChannelAttempt, ...] | None:
        channels: list[tuple[DataPath, str]] = [((*at, "send", "channel"), send.channel)]
        channels += [((*at, "send", "fallback", i), ch) for i, ch in enumerate(send.fallback)]
        ok = True
        seen: set[str] = set()
        specs: list[ChannelSpec] = []
        for path, name in channels:
            channel = get_channel(name)
            if channel is None:
                self.error(
                    path, f"unknown channel {name!r}; known channels: {', '.join(channel_names())}"
                )
                ok = False
            elif name in seen:
                self.error(path, f"channel {name!r} is tried twice in one send")
                ok = False
            else:
                specs.append(channel)
            seen.add(name)
        if not ok:
            return None
        if send.template is not None:
            return self._template_attempts(at, send.template, specs)
        assert send.content is not None
        return self._inline_attempts(at, send.content, specs, bool(send.fallback))

    def _template_attempts(
        self, at: DataPath, name: str, channels: list[ChannelSpec]
    ) -> tuple[ChannelAttempt, ...] | None:
        path = (*at, "send", "template")
        if not _TEMPLATE_NAME.match(name):
            self.error(
                path, f"invalid template name {name!r}: use a path like 'cart_abandon/nudge'"
            )
            return None
        ok = True
        for channel in channels:
            self.template_keys.add((name, channel.name))
            store = self.templates.store
            expected = store.path_for(name, channel.name)
            if not store.exists(expected):
                self.error(
                    path,
                    f"no {channel.name} template {name!r}: expected file {store.display(expected)}",
                )
                ok = False
            elif not self.templates.check(name, channel):
                ok = False
        if not ok:
            return None
        content = TemplateContent(name, self.templates.store)
        return tuple(ChannelAttempt(channel, content) for channel in channels)

    def _inline_attempts(
        self,
        at: DataPath,
        content: Mapping[str, Any],
        channels: list[ChannelSpec],
        has_fallback: bool,
    ) -> tuple[ChannelAttempt, ...] | None:
        path = (*at, "send", "content")
        per_channel = all(isinstance(v, dict) for v in content.values())
        flat = all(isinstance(v, str) for v in content.values())
        if not (per_channel or flat):
            self.error(path, "content is either {part: text} or {channel: {part: text}}, not a mix")
            return None
        if flat and has_fallback:
            self.error(
                path,
                "with fallback, content maps each channel to its parts: "
                "{" + ", ".join(f"{c.name}: {{...}}" for c in channels) + "}",
            )
            return None
        by_channel: dict[str, tuple[DataPath, Mapping[str, str]]] = (
            {name: ((*path, name), parts) for name, parts in content.items()}
            if per_channel
            else {channels[0].name: (path, content)}
        )
        ok = True
        for name in by_channel:
            if name not in {c.name for c in channels}:
                self.error(
                    (*path, name), f"content for {name!r}, which this send does not use", key=True
                )
                ok = False
        attempts = []
        for channel in channels:
            if channel.name not in by_channel:
                self.error(path, f"content gives no parts for channel {channel.name!r}")
                ok = False
                continue
            parts_path, parts = by_channel[channel.name]
            compiled = self._inline_parts(parts_path, parts, channel)
            if compiled is None:
                ok = False
                continue
            attempts.append(ChannelAttempt(channel, InlineContent(compiled)))
        return tuple(attempts) if ok else None

    def _inline_parts(
        self, path: DataPath, parts: Mapping[str, str], channel: ChannelSpec
    ) -> MessageParts | None:
        ok = True
        renderers: dict[str, PartSource] = {}
        for part, text in parts.items():
            if part not in channel.parts:
                self.error(
                    (*path, part),
                    f"{channel.name} has no part {part!r}; its parts: {', '.join(channel.parts)}",
                    key=True,
                )
                ok = False
                continue
            try:
                renderers[part] = compile_inline_part(text, part)
            except jinja2.TemplateSyntaxError as exc:
                self.error((*path, part), f"template syntax error: {exc.message}")
                ok = False
        missing = [p for p in channel.required_parts if p not in parts]
        if missing:
            self.error(path, f"{channel.name} content needs {', '.join(missing)}")
            ok = False
        ordered = {p: renderers[p] for p in channel.parts if p in renderers}
        return MessageParts(f"{self.file}:{'.'.join(map(str, path))}", ordered) if ok else None
