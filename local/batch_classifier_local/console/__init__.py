"""The local console: the executions, one execution (its state machine drawn with what happened, its history, a
Redrive button) and one run (its status table record, shards, report and files) in a browser, served by
``batch-classifier serve`` over the same APIs the command line and the AWS CLI use.

:mod:`.server` is the HTTP server, :mod:`.views` what each page shows (read from Step Functions, the status
table and S3), :mod:`.pages` the HTML, :mod:`.graph` the state machine's layout and SVG, :mod:`.history` the event
history with its poll loops collapsed; ``static/`` holds the page frame, its script and its style.
"""

from __future__ import annotations

from .server import ConsoleServer

__all__ = ["ConsoleServer"]
