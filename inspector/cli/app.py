"""The ``inspector`` Typer application and its command groups."""

from __future__ import annotations

import inspect
import re

import typer

app = typer.Typer(
    name="inspector",
    help="Battery-cell anomaly inspection: build model bundles, inspect images, run the line.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: rich's panels label every flag "<bool>"
    context_settings={"max_content_width": 1000},  # wrap to the terminal, not to 80 columns
)
bundle_app = typer.Typer(
    help="Create, update and show model bundles.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(bundle_app, name="bundle")


def reflow(text: str) -> str:
    """A docstring's paragraphs each on one line: the help screen wraps them to the terminal
    (Typer keeps the source's line breaks, which cut sentences in the middle)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(re.sub(r"\s*\n\s*", " ", p.strip()) for p in paragraphs)


def reflow_help(group: typer.Typer) -> None:
    """Give every command of ``group`` and of its sub-groups reflowed help text."""
    for command in group.registered_commands:
        text = command.help or (command.callback.__doc__ if command.callback else None)
        if text:
            command.help = reflow(text)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            reflow_help(sub.typer_instance)
