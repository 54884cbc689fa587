"""Griffe extension for the API pages (mkdocs.yml, mkdocstrings ``extensions``; not a page).

vtg-rl's docstrings are written in a light reStructuredText style: Sphinx roles (``:func:`x```),
``::`` literal blocks and ``>>>`` doctests. mkdocstrings renders docstrings as Markdown, so before rendering
this turns doctests and literal blocks into fenced code and a role into plain inline code. The docstrings
in the code stay as they are.
"""

from __future__ import annotations

import re

from griffe import Extension

_ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|obj|exc|const|ref):`(~?)([^`]+)`")


def _role(match: re.Match) -> str:
    name = match.group(2)
    if match.group(1):
        name = name.rsplit(".", 1)[-1]
    return f"`{name}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def to_markdown(text: str) -> str:
    """Doctests and ``::`` literal blocks to fenced code, Sphinx roles to inline code."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        pad = line[: _indent(line)]
        if stripped.startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(pad):] if lines[i].startswith(pad) else lines[i].strip())
                i += 1
            out += [pad + "```pycon", *[pad + b for b in block], pad + "```"]
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j < len(lines) and _indent(lines[j]) > len(pad):
                lead = line.rstrip()[:-2].rstrip()
                if lead.strip():
                    out.append(lead if lead.endswith(":") else lead + ":")
                depth = _indent(lines[j])
                k, block = j, []
                while k < len(lines) and (not lines[k].strip() or _indent(lines[k]) >= depth):
                    block.append(lines[k][depth:])
                    k += 1
                while block and not block[-1].strip():
                    block.pop()
                out += ["", pad + "```", *[pad + b if b else "" for b in block], pad + "```", ""]
                i = k
                continue
        out.append(line)
        i += 1
    return _ROLE.sub(_role, "\n".join(out))


class RstToMarkdown(Extension):
    """Apply :func:`to_markdown` to every loaded object's docstring."""

    def on_instance(self, *, node, obj, agent, **kwargs) -> None:
        if obj.docstring is not None and obj.docstring.value:
            obj.docstring.value = to_markdown(obj.docstring.value)
