"""One dlt run of the peer benchmark: SQLite ``customers`` -> PostgreSQL, in bench/peers/.venv.

``initial``: the whole table, ``write_disposition="replace"``. ``incremental``: the rows whose
``updated_at`` is past the last run's, merged on ``id``. ``range_start="open"`` because every
source row starts with the same ``updated_at``: dlt's default closed range would re-read the
whole table at the boundary value and de-duplicate it.

The destination comes from the environment (``DESTINATION__POSTGRES__CREDENTIALS``).
Usage: bench/peers/.venv/bin/python bench/peers/dlt_load.py SQLITE PIPELINES_DIR MODE
"""

import sys

import dlt
from dlt.sources.sql_database import sql_table


def main() -> None:
    sqlite_path, pipelines_dir, mode = sys.argv[1:4]
    if mode not in ("initial", "incremental"):
        raise SystemExit(f"mode must be initial or incremental, not {mode!r}")
    table = sql_table(
        credentials=f"sqlite:///{sqlite_path}",
        table="customers",
        backend="pyarrow",
        incremental=dlt.sources.incremental("updated_at", range_start="open"),
    )
    pipeline = dlt.pipeline(pipeline_name="peers", destination="postgres", dataset_name="peers",
                            pipelines_dir=pipelines_dir)
    info = pipeline.run(table, write_disposition="replace" if mode == "initial" else "merge",
                        primary_key="id")
    print(info)
    print("rows normalized:", pipeline.last_trace.last_normalize_info.row_counts)


if __name__ == "__main__":
    main()
