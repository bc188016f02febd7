"""The ``batch-classifier`` command-line tool."""
