"""The ``napari-fibsem`` command line: every job a widget starts can also run from here.

The commands live in modules by area (:mod:`.data`, :mod:`.models`, :mod:`.gui`, :mod:`.automation`,
:mod:`.events`) and are all registered here, on the one root app, in the order ``--help`` lists them.
Commands import their core modules inside the function, so ``--help`` stays fast.
"""

from __future__ import annotations

import typer

from napari_fibsem.cli import automation, data, gui, models
from napari_fibsem.cli.events import events_app

app = typer.Typer(
    name="napari-fibsem",
    help="Machine learning on FIB-SEM images: data, models, detection and supervised automation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def version() -> None:
    """Print the package version."""
    from napari_fibsem import __version__

    typer.echo(__version__)


_COMMANDS = (
    ("synth", data.synth),
    ("check", data.check),
    ("train", models.train),
    ("view", gui.view),
    ("demo", gui.demo),
    ("export-onnx", models.export_onnx),
    ("import-dataset", data.import_dataset),
    ("predict", models.predict),
    ("objects", data.objects),
    ("to-nnunet", data.to_nnunet),
    ("detect", automation.detect),
    ("evaluate", automation.evaluate),
    ("closed-loop", automation.closed_loop),
    ("version", version),
)
for _name, _command in _COMMANDS:
    app.command(_name)(_command)
app.add_typer(events_app, name="events")
app.add_typer(automation.engine_app, name="engine")


def main() -> None:
    """The ``napari-fibsem`` console script."""
    app()
