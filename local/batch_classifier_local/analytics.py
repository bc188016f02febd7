"""SQL over every run's results with DuckDB: the local stand-in for Athena.

The analytics dataset (``analytics/results/dt=<day>/<run>.parquet`` in the internal bucket, the Glue table's
location) is mirrored into a local folder and exposed under the Glue table's name, with ``dt`` read from the
Hive-style partition folders, so the Athena named queries of the template run here unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PREFIX = "analytics/results/"


def mirror(s3: Any, bucket: str, folder: Path) -> list[Path]:
    """Download the dataset's files that are new or changed; returns every local file."""
    files = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX):
        for item in page.get("Contents", []):
            local = folder / item["Key"]
            if not local.exists() or local.stat().st_size != item["Size"]:
                local.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(local))
            files.append(local)
    return files


#: DuckDB's types of the analytics table's columns (Arrow types of ``ANALYTICS_SCHEMA``).
_SQL_TYPES = {"string": "VARCHAR", "bool": "BOOLEAN", "double": "DOUBLE", "int64": "BIGINT"}


def query(files: list[Path], sql: str, table: str = "results") -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` with ``table`` as a view over the files; returns the column names and rows. Every column of the
    Glue table (``ANALYTICS_SCHEMA``) is there: files written before a column was added read it as NULL, as Athena
    reads them, even when no file has it yet."""
    import duckdb  # noqa: PLC0415 - only the local runtime's query command needs it

    from batch_classifier.analytics import ANALYTICS_SCHEMA  # noqa: PLC0415

    connection = duckdb.connect()
    # Athena's date_format (the named queries' dt filters); its %Y-%m-%d is strftime's too.
    connection.execute("CREATE MACRO date_format(value, format) AS strftime(value, format)")
    paths = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
    # dt is a string, as the Glue table declares it (DuckDB would make a date of it).
    options = "hive_partitioning = true, hive_types_autocast = false, union_by_name = true"
    files_view = f"{table}__files"
    connection.execute(f'CREATE VIEW "{files_view}" AS SELECT * FROM read_parquet([{paths}], {options})')
    present = {row[0] for row in connection.execute(f'DESCRIBE "{files_view}"').fetchall()}
    missing = [
        f'CAST(NULL AS {_SQL_TYPES.get(str(field.type), "VARCHAR")}) AS "{field.name}"'
        for field in ANALYTICS_SCHEMA
        if field.name not in present
    ]
    extra = "".join(f", {column}" for column in missing)
    connection.execute(f'CREATE VIEW "{table}" AS SELECT *{extra} FROM "{files_view}"')
    result = connection.execute(sql)
    columns = [d[0] for d in result.description or []]
    return columns, result.fetchall()


def format_rows(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    widths = [max([len(str(c)), *(len(str(r[i])) for r in rows)]) for i, c in enumerate(columns)]
    lines = ["  ".join(f"{c:<{w}}" for c, w in zip(columns, widths, strict=True))]
    lines.extend("  ".join(f"{v!s:<{w}}" for v, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(lines)
