"""``batch-classifier``: the command-line tool — main() and the parser; the commands live beside it.

``prepare`` (input file → Bedrock batch job files), ``collect`` (batch outputs → classified file, summary and
report), ``report`` (a run's HTML report, made again from its summary), ``evaluate`` (metrics of a results file
against its ground-truth column), ``estimate`` (tokens and cost before a run) and ``tasks`` (the bundled tasks) are
in manual_commands.py; the local runtime's ``run`` (run_command.py), ``executions``, ``show``, ``redrive``,
``serve``, ``console`` and ``query`` in local_commands.py, with the runtime's discovery and settings in runtimes.py;
``sample``, ``compare`` and ``review`` in labelling_commands.py; ``merge-reviews`` and ``export-training`` in
review_commands.py; ``faults`` in fault_commands.py. Errors end the
command with one sentence and a non-zero exit code; ``--debug`` shows the traceback. Output cut short by its
reader (``| head``) ends the command quietly, with the status a shell gives a command stopped by SIGPIPE.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from batch_classifier import __version__
from batch_classifier.errors import BatchClassifierError

from .fault_commands import add_commands as add_fault_commands
from .labelling_commands import add_commands as add_labelling_commands
from .local_commands import add_commands
from .manual_commands import _collect, _estimate, _evaluate, _prepare, _print_summary, _report, _tasks
from .reading_options import add_reading_options
from .review_commands import add_commands as add_review_commands

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a command stopped by SIGPIPE (as `seq 1e6 | head` gives)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        result: int = args.run(args)
        sys.stdout.flush()  # a reader that went away is found here, not at exit
        return result
    except BrokenPipeError:
        # The reader of our output closed it (`| head`): stop quietly. Python flushes stdout again at exit, which
        # would fail the same way, so point stdout at devnull first.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (BatchClassifierError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {_sentence(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file descriptor (captured, or already closed)
        pass


def _sentence(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or 'cannot open'}: {exc.filename}."
    return str(exc)


# --- arguments -------------------------------------------------------------------------------------------


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="the file to classify: .csv .tsv .xlsx .json .jsonl .ndjson .parquet")
    parser.add_argument("--task", default="travel", help="a bundled task name or a task file (default: travel)")
    parser.add_argument("--text-column", action="append", help="the column to classify (repeat to join several)")
    parser.add_argument("--id-column", help="the column holding each row's id (default: the task's, else row numbers)")
    parser.add_argument("--label-column", help="a ground-truth column to evaluate against")
    add_reading_options(parser)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch-classifier",
        description="Classify large volumes of text with Amazon Bedrock batch inference.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    cmd = commands.add_parser("prepare", help="write Bedrock batch job files for an input file")
    _add_input_options(cmd)
    cmd.add_argument(
        "--out",
        required=True,
        help="the folder to write (jobs/, on-demand/, records, plan.json); one written by an earlier prepare is "
        "replaced only once this one succeeds",
    )
    cmd.set_defaults(run=_prepare)

    cmd = commands.add_parser("collect", help="join batch outputs with a prepared folder into a results file")
    cmd.add_argument("folder", help="the folder written by prepare")
    cmd.add_argument("--outputs", required=True, help="the folder holding the *.out files (any depth)")
    cmd.add_argument(
        "--out",
        required=True,
        help="the results file: .csv .json .jsonl .xlsx .parquet (summary.json and report.html go beside it)",
    )
    cmd.add_argument(
        "--review",
        action="store_true",
        help="add review_label, verdict and review_note columns with drop-downs for a reviewer (.xlsx only)",
    )
    cmd.set_defaults(run=_collect)

    cmd = commands.add_parser("report", help="write a run's HTML report from its summary.json")
    cmd.add_argument("target", metavar="RUN_FOLDER_OR_SUMMARY", help="a run's output folder, or its summary.json")
    cmd.add_argument("--out", help="the page to write (default: report.html beside the summary)")
    cmd.set_defaults(run=_report)

    cmd = commands.add_parser("evaluate", help="metrics of a results file against its ground-truth column")
    cmd.add_argument("results", help="a results file written by collect")
    cmd.add_argument(
        "--label-column",
        required=True,
        help="the ground-truth column; review_label scores a review workbook (its verdict where no label was given)",
    )
    cmd.add_argument("--prediction-column", default="class", help="the predicted column (default: class)")
    cmd.add_argument("--task", help="order classes as this task lists them")
    cmd.add_argument("--json", action="store_true", help="print the metrics as JSON")
    cmd.set_defaults(run=_evaluate)

    cmd = commands.add_parser("estimate", help="records, tokens and cost of classifying a file")
    _add_input_options(cmd)
    cmd.set_defaults(run=_estimate)

    add_commands(commands, _print_summary)
    add_fault_commands(commands)
    add_labelling_commands(commands)
    add_review_commands(commands)

    cmd = commands.add_parser("tasks", help="list the bundled tasks, or show one")
    cmd.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    cmd.add_argument("name", nargs="?")
    cmd.set_defaults(run=_tasks)
    return parser


if __name__ == "__main__":
    sys.exit(main())
