"""A griffe extension for the API reference: normgrad's docstrings are CS231n style,
plain text with "Inputs:" / "Returns a tuple of:" followed by "- name: ..." lines.
Markdown needs a blank line before a list and four spaces per nested level, so this
adds them (and nothing else) when mkdocstrings loads a docstring."""

from __future__ import annotations

import re

import griffe

_ITEM = re.compile(r"^(\s*)[-*] \S")


def markdown_lists(text: str) -> str:
    """``text`` with a blank line before each list that follows a paragraph line, nested
    items (indented by 2) indented by 4, and a blank line between a line ending in ":" and
    the indented block under it (a code block, as the docstring shows it)."""
    out: list[str] = []
    in_code = in_list = False
    for line in text.splitlines():
        prev = out[-1] if out else ""
        if line.startswith("    ") and not _ITEM.match(line) and not in_code and prev.rstrip().endswith(":") \
                and not prev.startswith(" ") and not _ITEM.match(prev):
            out.append("")  # "...:" then an indented formula: a code block, not a run-on paragraph
            prev = ""
        if line.startswith("    ") and (not prev.strip() or in_code) and not _ITEM.match(line):
            in_code = True  # an indented code block: leave as it is
        elif line.strip():
            in_code = False
        match = _ITEM.match(line) if not in_code else None
        if not match and line.strip() and not line.startswith(" ") and out and out[-1].strip() \
                and (_ITEM.match(out[-1]) or (out[-1].startswith(" ") and in_list)):
            out.append("")  # a paragraph after a list: not a continuation of its last item
        if match:
            in_list = True
        elif line.strip() and not line.startswith(" "):
            in_list = False
        if match:
            indent = len(match.group(1))
            if indent:
                line = " " * (4 * ((indent + 1) // 2)) + line.lstrip()
            prev = out[-1] if out else ""
            if prev.strip() and not _ITEM.match(prev) and not prev.startswith(" ") and not indent:
                out.append("")
        out.append(line)
    return "\n".join(out)


class MarkdownLists(griffe.Extension):
    def on_object(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_lists(obj.docstring.value)
