"""Surgical edits of JSON and JSON-with-comments files: change one value, keep every other byte.

A small parser records where each value sits in the text; an edit splices new text in at those
offsets, so comments, key order, indentation and trailing commas elsewhere stay exactly as the
user left them (the approach of Microsoft's jsonc-parser `modify`, which VS Code uses for its own
settings files). Strict JSON files are parsed without comments or trailing commas, as their
clients read them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\.)*"', re.DOTALL)
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_LITERALS = {"true": True, "false": False, "null": None}
_WHITESPACE = " \t\r\n"


class ParseError(ValueError):
    def __init__(self, message: str, text: str, pos: int) -> None:
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column


class ShapeError(ValueError):
    """The file parses, but a value on the way to ours is not what it should be."""


@dataclass
class Node:
    kind: Literal["object", "array", "value"]
    start: int
    end: int  # one past the last character
    value: Any = None
    members: list[tuple[str, int, Node]] = field(default_factory=list)  # key, key offset, value
    items: list[Node] = field(default_factory=list)
    trailing_comma: bool = False

    def member(self, key: str) -> tuple[str, int, Node] | None:
        found = [m for m in self.members if m[0] == key]
        return found[-1] if found else None  # the last duplicate is the one readers keep


class _Parser:
    def __init__(self, text: str, comments: bool) -> None:
        self.text = text
        self.comments = comments
        self.pos = 0

    def fail(self, message: str, pos: int | None = None) -> ParseError:
        return ParseError(message, self.text, self.pos if pos is None else pos)

    def skip(self) -> None:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in _WHITESPACE:
                self.pos += 1
            elif ch == "/" and text.startswith(("//", "/*"), self.pos):
                if not self.comments:
                    raise self.fail("comments are not allowed in this file")
                if text.startswith("//", self.pos):
                    newline = text.find("\n", self.pos)
                    self.pos = len(text) if newline < 0 else newline
                else:
                    close = text.find("*/", self.pos + 2)
                    if close < 0:
                        raise self.fail("unterminated /* comment")
                    self.pos = close + 2
            else:
                return

    def document(self) -> Node:
        self.skip()
        if self.pos == len(self.text):
            raise self.fail("the file is empty")
        node = self.value()
        self.skip()
        if self.pos != len(self.text):
            raise self.fail("unexpected text after the top-level value")
        return node

    def value(self) -> Node:
        text, start = self.text, self.pos
        if start >= len(text):
            raise self.fail("unexpected end of file")
        ch = text[start]
        if ch == "{":
            return self.container("object")
        if ch == "[":
            return self.container("array")
        if ch == '"':
            text_value = self.string()
            return Node("value", start, self.pos, text_value)
        for word, literal in _LITERALS.items():
            if text.startswith(word, start):
                self.pos = start + len(word)
                return Node("value", start, self.pos, literal)
        match = _NUMBER.match(text, start)
        if match:
            self.pos = match.end()
            return Node("value", start, self.pos, json.loads(match.group()))
        raise self.fail(f"unexpected character {ch!r}")

    def string(self) -> str:
        match = _STRING.match(self.text, self.pos)
        if match is None:
            raise self.fail("unterminated string, or a control character inside one")
        try:
            value: str = json.loads(match.group())
        except json.JSONDecodeError as exc:
            raise self.fail(exc.msg, self.pos + exc.pos) from None
        self.pos = match.end()
        return value

    def container(self, kind: Literal["object", "array"]) -> Node:
        node = Node(kind, self.pos, -1)
        closer = "}" if kind == "object" else "]"
        self.pos += 1
        self.skip()
        expecting_item = True
        while True:
            if self.pos >= len(self.text):
                raise self.fail(f"missing {closer!r}", node.start)
            if self.text[self.pos] == closer:
                if node.trailing_comma and not self.comments:
                    raise self.fail("trailing comma")
                self.pos += 1
                node.end = self.pos
                node.value = (
                    {k: v.value for k, _, v in node.members} if kind == "object" else [i.value for i in node.items]
                )
                return node
            if not expecting_item:
                raise self.fail(f"expected ',' or {closer!r}")
            if kind == "object":
                if self.text[self.pos] != '"':
                    raise self.fail("expected a property name in double quotes")
                key_start = self.pos
                key = self.string()
                self.skip()
                if self.text[self.pos : self.pos + 1] != ":":
                    raise self.fail("expected ':'")
                self.pos += 1
                self.skip()
                node.members.append((key, key_start, self.value()))
            else:
                node.items.append(self.value())
            self.skip()
            node.trailing_comma = False
            expecting_item = False
            if self.text[self.pos : self.pos + 1] == ",":
                self.pos += 1
                node.trailing_comma = expecting_item = True
                self.skip()


def parse(text: str, *, comments: bool) -> Node:
    """The document tree with offsets; raises ParseError with line and column."""
    return _Parser(text, comments).document()


def loads(text: str, *, comments: bool) -> Any:
    return parse(text, comments=comments).value


# --- editing -------------------------------------------------------------------------------------
def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _indent_of(text: str, pos: int) -> str:
    start = _line_start(text, pos)
    line = text[start:pos]
    return line[: len(line) - len(line.lstrip(" \t"))]


def _alone_on_line(text: str, pos: int) -> bool:
    """Only whitespace precedes `pos` on its line."""
    return text[_line_start(text, pos) : pos].strip(" \t") == ""


def _indent_unit(text: str) -> str:
    for line in text.splitlines():
        stripped = line.lstrip(" \t")
        if stripped and len(stripped) < len(line):
            return line[: len(line) - len(stripped)]
    return "  "


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _render(value: Any, indent: str, unit: str, newline: str) -> str:
    rendered = json.dumps(value, indent=unit, ensure_ascii=False)
    return rendered.replace("\n", newline + indent)


def _splice(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def _item_starts(node: Node) -> list[tuple[int, int]]:
    """(start, end) of each member ("key": value) or item."""
    if node.kind == "object":
        return [(key_start, value.end) for _, key_start, value in node.members]
    return [(item.start, item.end) for item in node.items]


def _insert(text: str, container: Node, piece: str) -> str:
    """Add `piece` (a rendered member or item, without indentation) as the container's last entry."""
    unit, newline = _indent_unit(text), _newline(text)
    outer = _indent_of(text, container.start)
    entries = _item_starts(container)
    first_start = entries[0][0] if entries else None
    if first_start is not None and _alone_on_line(text, first_start):
        indent = _indent_of(text, first_start)
    else:
        indent = outer + unit
    piece = piece.replace("\n", newline + indent)
    close = container.end - 1
    if entries and _alone_on_line(text, close) and _line_start(text, close) > entries[-1][1]:
        # The closing bracket has a line of its own: add a line above it, after any comments.
        at = _line_start(text, close)
        new_text = _splice(text, at, at, f"{indent}{piece}{newline}")
    elif not entries and _alone_on_line(text, close) and "\n" in text[container.start : close]:
        at = _line_start(text, close)
        new_text = _splice(text, at, at, f"{indent}{piece}{newline}")
    else:
        # Compact ({} or {"a": 1}): open a line before the closing bracket.
        at = close
        while at > container.start + 1 and text[at - 1] in " \t":
            at -= 1
        new_text = _splice(text, at, close, f"{newline}{indent}{piece}{newline}{outer}")
    if entries and not container.trailing_comma:
        last_end = entries[-1][1]
        new_text = _splice(new_text, last_end, last_end, ",")
    return new_text


def _replace(text: str, node: Node, value: Any, line_pos: int) -> str:
    indent = _indent_of(text, line_pos)
    return _splice(text, node.start, node.end, _render(value, indent, _indent_unit(text), _newline(text)))


def _nest(keys: tuple[str, ...], value: Any) -> Any:
    for key in reversed(keys):
        value = {key: value}
    return value


def _root(text: str, comments: bool) -> Node | None:
    if not text.strip(_WHITESPACE):
        return None
    root = parse(text, comments=comments)
    if root.kind != "object":
        raise ShapeError("the top-level value is not a JSON object")
    return root


def _new_document(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def set_value(text: str, keys: tuple[str, ...], value: Any, *, comments: bool) -> str:
    """`text` with the value at `keys` (object keys from the top) set to `value`.

    Missing objects on the way are created; everything outside the changed value is kept.
    """
    root = _root(text, comments)
    if root is None:
        return _new_document(_nest(keys, value))
    node = root
    for depth, key in enumerate(keys):
        found = node.member(key)
        if found is None:
            rest = _nest(keys[depth + 1 :], value)
            piece = (
                json.dumps(key, ensure_ascii=False)
                + ": "
                + json.dumps(rest, indent=_indent_unit(text), ensure_ascii=False)
            )
            return _insert(text, node, piece)
        _, key_start, child = found
        if depth == len(keys) - 1:
            return _replace(text, child, value, key_start)
        if child.kind != "object":
            raise ShapeError(f"“{'.'.join(keys[: depth + 1])}” is not an object")
        node = child
    raise AssertionError("keys must not be empty")


def upsert_item(text: str, key: str, match: tuple[str, Any], value: Any, *, comments: bool) -> str:
    """`text` with `value` in the top-level array `key`: replacing the object whose `match` field
    equals `match`'s value, or appended (the array is created if missing)."""
    root = _root(text, comments)
    if root is None:
        return _new_document({key: [value]})
    found = root.member(key)
    if found is None:
        return set_value(text, (key,), [value], comments=comments)
    array = found[2]
    if array.kind != "array":
        raise ShapeError(f"“{key}” is not an array")
    field_name, wanted = match
    for item in array.items:
        if item.kind == "object" and isinstance(item.value, dict) and item.value.get(field_name) == wanted:
            return _replace(text, item, value, item.start)
    return _insert(text, array, json.dumps(value, indent=_indent_unit(text), ensure_ascii=False))
