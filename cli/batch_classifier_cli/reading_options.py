"""How to read an input file, as every command that reads one takes it: the options of
:class:`~batch_classifier.pipeline.InputOptions`."""

from __future__ import annotations

import argparse

from batch_classifier.pipeline import InputOptions


def add_reading_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--encoding", help="CSV encoding (default: UTF-8, falling back to cp1252)")
    cmd.add_argument("--delimiter", help="CSV delimiter (default: sniffed from the header)")
    cmd.add_argument("--sheet", help="XLSX sheet to read (default: all sheets)")
    cmd.add_argument("--records-key", help="JSON key holding the list of records")


def reading_options(args: argparse.Namespace) -> InputOptions:
    return InputOptions(
        encoding=args.encoding, delimiter=args.delimiter, sheet=args.sheet, records_key=args.records_key
    )
