"""MkDocs hook: the command-line reference is generated from gankit's own parsers at every build,
so it cannot go stale. A page holding the marker below gets the help of every command there."""
from __future__ import annotations

import argparse

MARKER = "<!-- gankit-cli-reference -->"


def cli_reference() -> str:
    from gankit.cli import build_parser  # (imported at build time: the docs describe the installed gankit)

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, path + (name,))

    parts = []
    for path, parser in walk(build_parser(), ("gankit",)):
        if len(path) > 1 and not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            parts.append(f"## `{' '.join(path)}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        elif len(path) > 1:
            parts.append(f"## `{' '.join(path)}`\n\n{parser.description or ''}\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown
