"""Bedrock Batch Classifier: the shared domain package.

Everything the Lambda functions, the command-line tool and the local runtime know about input files,
classification tasks, Bedrock batch records, labels, metrics and cost lives here. Modules:

- ``formats`` / ``readers`` / ``writers``: files in and out (CSV, XLSX, JSON, JSONL, Parquet), streaming; ``writers``
  builds on ``writer_base`` (targets, the sink interface), ``xlsx_writer`` and ``parquet_writer``.
- ``mapping``: input mapping from a file's columns to canonical records.
- ``tasks`` / ``prompts``: classification tasks (YAML) and prompt rendering.
- ``records`` / ``sharding``: Bedrock batch input lines and their division into jobs.
- ``outputs`` / ``labels``: batch output parsing and label matching.
- ``evaluation`` / ``cost``: metrics against ground truth, token cost.
- ``pipeline``: prepare and collect, the two halves of a run.
"""

__version__ = "0.1.0"
