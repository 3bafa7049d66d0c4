"""The surgical JSON/JSONC editor: one value changes, every other byte stays."""

from __future__ import annotations

import json

import pytest

from app.connect import jsonc

ENTRY = {"url": "https://engram.example.com/mcp"}
KEYS = ("mcpServers", "engram")


def test_parses_jsonc_with_comments_and_trailing_commas() -> None:
    text = '// head\n{\n  "a": [1, 2,], /* x */ "b": {"c": "d // not a comment"},\n}\n'
    assert jsonc.loads(text, comments=True) == {"a": [1, 2], "b": {"c": "d // not a comment"}}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"a": 1,}', "line 1, column 9: trailing comma"),
        ('{"a": 1} // note', "line 1, column 10: comments are not allowed"),
        ('{\n  "a": 1\n  "b": 2\n}', "line 3, column 3: expected ','"),
        ('{"a": tru}', "line 1, column 7: unexpected character"),
        ('{"a": "x}', "line 1, column 7: unterminated string"),
        ('{"a": "\\x"}', "line 1, column 8: Invalid \\\\escape"),
        ('{"a": "tab\there"}', "line 1, column 7: unterminated string, or a control character"),
        ("", "the file is empty"),
    ],
)
def test_strict_json_errors_say_where(text: str, where: str) -> None:
    with pytest.raises(jsonc.ParseError, match=where):
        jsonc.parse(text, comments=False)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": [true, false, null, -1.5e3, "\\u00e9\\n"], "c": {}}',
        '{"q\\"uote": "back\\\\slash", "s": "//not a comment"}',
        "[]",
        '"x"',
        "  {\n}\n",
    ],
)
def test_agrees_with_the_json_module(text: str) -> None:
    assert jsonc.loads(text, comments=False) == json.loads(text)


def test_adds_to_a_file_with_comments_and_keeps_them() -> None:
    before = (
        "// top\n"
        "{\n"
        "  /* servers */\n"
        '  "mcpServers": {\n'
        '    "other": {"command": "x"} // keep\n'
        "  },\n"
        '  "theme": "dark", // trailing comma next\n'
        "}\n"
    )
    after = jsonc.set_value(before, KEYS, ENTRY, comments=True)
    assert after == (
        "// top\n"
        "{\n"
        "  /* servers */\n"
        '  "mcpServers": {\n'
        '    "other": {"command": "x"}, // keep\n'
        '    "engram": {\n'
        '      "url": "https://engram.example.com/mcp"\n'
        "    }\n"
        "  },\n"
        '  "theme": "dark", // trailing comma next\n'
        "}\n"
    )


def test_replaces_our_entry_only() -> None:
    before = '{\n\t"mcpServers": {\n\t\t"engram": {"url": "old"}, // ours\n\t\t"b": {}\n\t}\n}\n'
    after = jsonc.set_value(before, KEYS, ENTRY, comments=True)
    assert after == (
        '{\n\t"mcpServers": {\n\t\t"engram": {\n\t\t\t"url": "https://engram.example.com/mcp"\n\t\t}, // ours\n'
        '\t\t"b": {}\n\t}\n}\n'
    )


def test_creates_the_container_and_follows_the_files_indentation() -> None:
    before = '{\n    "theme": "dark"\n}\n'
    after = jsonc.set_value(before, KEYS, ENTRY, comments=False)
    assert after == (
        '{\n    "theme": "dark",\n    "mcpServers": {\n        "engram": {\n'
        '            "url": "https://engram.example.com/mcp"\n        }\n    }\n}\n'
    )


@pytest.mark.parametrize("before", ["{}", "{ }", "{}\n", '{"mcpServers": {}}', '{"a": 1}', "\n\n"])
def test_compact_and_empty_files(before: str) -> None:
    after = jsonc.set_value(before, KEYS, ENTRY, comments=False)
    value = json.loads(after)
    assert value["mcpServers"]["engram"] == ENTRY
    if before.strip() == '{"a": 1}':
        assert value["a"] == 1


def test_keeps_windows_line_endings() -> None:
    before = '{\r\n  "mcpServers": {\r\n    "x": {}\r\n  }\r\n}\r\n'
    after = jsonc.set_value(before, KEYS, ENTRY, comments=False)
    assert "\n" not in after.replace("\r\n", "")
    assert json.loads(after)["mcpServers"] == {"x": {}, "engram": ENTRY}


def test_an_empty_object_with_a_comment_inside() -> None:
    before = '{\n  "mcpServers": {\n    // nothing yet\n  }\n}\n'
    after = jsonc.set_value(before, KEYS, ENTRY, comments=True)
    assert "// nothing yet" in after
    assert jsonc.loads(after, comments=True) == {"mcpServers": {"engram": ENTRY}}


def test_shape_errors() -> None:
    with pytest.raises(jsonc.ShapeError, match="top-level value is not a JSON object"):
        jsonc.set_value("[1]", KEYS, ENTRY, comments=False)
    with pytest.raises(jsonc.ShapeError, match="“mcpServers” is not an object"):
        jsonc.set_value('{"mcpServers": []}', KEYS, ENTRY, comments=False)
    with pytest.raises(jsonc.ShapeError, match="“inputs” is not an array"):
        jsonc.upsert_item('{"inputs": {}}', "inputs", ("id", "x"), {"id": "x"}, comments=True)


def test_upserts_an_array_item_by_id() -> None:
    item = {"type": "promptString", "id": "engram-token", "password": True}
    before = '{\n  "inputs": [\n    {"id": "gh"}, // theirs\n    {"id": "engram-token", "old": 1}\n  ]\n}\n'
    after = jsonc.upsert_item(before, "inputs", ("id", "engram-token"), item, comments=True)
    assert '{"id": "gh"}, // theirs' in after
    assert jsonc.loads(after, comments=True)["inputs"] == [{"id": "gh"}, item]
    added = jsonc.upsert_item(
        '{\n  "inputs": [\n    {"id": "gh"}\n  ]\n}', "inputs", ("id", "engram-token"), item, comments=True
    )
    assert jsonc.loads(added, comments=True)["inputs"] == [{"id": "gh"}, item]
    created = jsonc.upsert_item('{"servers": {}}', "inputs", ("id", "engram-token"), item, comments=True)
    assert jsonc.loads(created, comments=True) == {"servers": {}, "inputs": [item]}


def test_the_last_duplicate_key_is_the_one_changed() -> None:
    before = '{"mcpServers": {"engram": {"url": "a"}, "engram": {"url": "b"}}}'
    after = jsonc.set_value(before, KEYS, ENTRY, comments=False)
    assert after.startswith('{"mcpServers": {"engram": {"url": "a"}, "engram": {')
    assert json.loads(after)["mcpServers"]["engram"] == ENTRY


def test_non_ascii_text_is_kept() -> None:
    before = '{"name": "Zoë — ☃", "mcpServers": {}}'
    after = jsonc.set_value(before, KEYS, {"url": "https://例え.jp/mcp"}, comments=False)
    assert after.startswith('{"name": "Zoë — ☃"')
    assert json.loads(after)["mcpServers"]["engram"]["url"] == "https://例え.jp/mcp"
