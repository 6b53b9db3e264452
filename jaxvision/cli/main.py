"""Entry point of the ``jaxvision`` command: one subcommand per module in ``jaxvision.cli``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jaxvision.cli import augment_preview as augment_preview_command
from jaxvision.cli import evaluate as evaluate_command
from jaxvision.cli import export as export_command
from jaxvision.cli import kernels as kernels_command
from jaxvision.cli import predict as predict_command
from jaxvision.cli import summary as summary_command
from jaxvision.cli import sweep as sweep_command
from jaxvision.cli import train as train_command
from jaxvision.cli import visualize as visualize_command
from jaxvision.cli import weights as weights_command
from jaxvision.backends.process import prepare_training_process

# Each module has add_parser(subparsers), which registers a subcommand whose ``func`` runs it.
_COMMANDS = (train_command, sweep_command, summary_command, augment_preview_command, kernels_command, export_command,
             predict_command, evaluate_command, visualize_command, weights_command)
_TRAINING_COMMANDS = ("train", "sweep")


class _OneLineErrorParser(argparse.ArgumentParser):
    """Reports a bad argument as one line and exit status 2, without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(prog="jaxvision", description="Train and inspect vision models in JAX.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineErrorParser)
    for command in _COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status.

    ``argv`` None means the process's own command line (the ``jaxvision`` script). The training
    commands on a CPU platform, unless ``--kernels reference``, set XLA:CPU's training flag and (only
    for the process's own command line) restart with huge pages for XLA:CPU's buffers
    (``jaxvision.backends.process``); a caller passing ``argv`` keeps its process as it is.
    """
    args = build_parser().parse_args(argv)
    if args.command in _TRAINING_COMMANDS and args.kernels != "reference":
        prepare_training_process(restart=argv is None)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        # Ctrl-C outside the training loop (which saves and stops by itself): loading data, compiling.
        print(f"jaxvision {args.command}: interrupted before training started; nothing was saved", file=sys.stderr)
        return 130
    except ValueError as error:
        # Invalid names and values are reported as one line; JAXVISION_DEBUG=1 shows the traceback.
        if os.environ.get("JAXVISION_DEBUG"):
            raise
        print(f"jaxvision {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
