"""The labelling loop's commands: ``sample`` draws the rows a subject-matter expert reviews."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from batch_classifier.formats import format_from_name
from batch_classifier.sampling import draw_sample
from batch_classifier.writers import write_table


def cmd_sample(args: argparse.Namespace) -> int:
    source = Path(args.input)
    out = Path(args.out) if args.out else source.with_name(f"{source.stem}-sample-{args.n}{source.suffix}")
    format_from_name(out.name)  # an unknown extension is refused before the file is read
    options = {
        k: v
        for k, v in (
            ("encoding", args.encoding),
            ("delimiter", args.delimiter),
            ("sheet", args.sheet),
            ("records_key", args.records_key),
        )
        if v is not None
    }
    drawn = draw_sample(source, args.n, seed=args.seed, stratify=args.stratify, **options)
    written = write_table(out, drawn.columns, (row.values for row in drawn.rows))
    whole = " (the whole file)" if written == drawn.total else ""
    print(
        f"wrote {written:,} of {drawn.total:,} rows{whole} to {out} "
        f"(seed {args.seed}: the same seed draws the same rows)"
    )
    if drawn.strata:
        width = max(len(value) for value in drawn.strata)
        print(f"stratified by {args.stratify!r}:")
        for value, (rows, kept) in drawn.strata.items():
            print(f"  {value:<{width}}  {kept:>5,} of {rows:,}")
    return 0


def add_commands(commands: Any) -> None:
    cmd = commands.add_parser(
        "sample",
        help="a reproducible random (or stratified) sample of a file, in its format, for review",
        description="Draw N rows of FILE at random (reservoir sampling, one pass), or in proportion to the values "
        "of a column (--stratify, every value at least once when N allows), and write them in file order.",
    )
    cmd.add_argument("input", help="the file to sample: .csv .tsv .xlsx .json .jsonl .ndjson .parquet")
    cmd.add_argument("--n", type=int, default=150, help="rows to draw (default: 150)")
    cmd.add_argument("--stratify", metavar="COLUMN", help="draw in proportion to this column's values")
    cmd.add_argument("--seed", type=int, default=1, help="the random seed (default: 1); the same seed, the same rows")
    cmd.add_argument("--out", help="where to write the sample (default: <file>-sample-<n>.<ext> beside it)")
    cmd.add_argument("--encoding", help="CSV encoding (default: UTF-8, falling back to cp1252)")
    cmd.add_argument("--delimiter", help="CSV delimiter (default: sniffed from the header)")
    cmd.add_argument("--sheet", help="XLSX sheet to read (default: all sheets)")
    cmd.add_argument("--records-key", help="JSON key holding the list of records")
    cmd.set_defaults(run=cmd_sample)
