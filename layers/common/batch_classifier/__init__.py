"""Bedrock Batch Classifier: the shared domain package.

Everything the Lambda functions, the command-line tool and the local runtime know about input files,
classification tasks, Bedrock batch records, labels, metrics and cost lives here. Modules:

- ``formats`` / ``readers`` / ``writers``: files in and out (CSV, XLSX, JSON, JSONL, Parquet), streaming; ``writers``
  builds on ``writer_base`` (targets, the sink interface), ``xlsx_writer`` (on ``xlsx_file``) and ``parquet_writer``.
- ``mapping``: input mapping from a file's columns to canonical records.
- ``tasks`` / ``prompts`` / ``packing``: classification tasks (YAML), prompt rendering, several texts a request.
- ``records`` / ``sharding``: Bedrock batch input lines and their division into jobs.
- ``outputs`` / ``labels`` / ``results``: batch output parsing, label matching, the verdict of each text.
- ``evaluation`` / ``cost`` / ``spending``: metrics against ground truth, token cost, the pre-flight spend cap.
- ``confidence`` / ``review_queue`` / ``training``: the review queue and the labelled files made from reviews.
- ``controls``: labelled control rows mixed into every run.
- ``pipeline``: prepare and collect, the two halves of a manual run; ``sampling`` and ``compare`` for the
  labelling loop.
- ``run_intake`` / ``run_results`` / ``finalize`` / ``analytics`` / ``report``: the workflow's steps, its outputs,
  its analytics table and its report (``runs`` re-exports the steps for the handlers).
"""

__version__ = "0.1.0"
