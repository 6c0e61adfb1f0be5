"""Reconcile 1,000,000 records x 20 mapped fields (10 strings, 10 floats) with 1% changed on each
side, 0.1% new and 0.1% deleted: wall time and peak memory, next to the same three-way
classification done in DuckDB in the same run.

Usage: python bench/reconcile_bench.py [--rows N] [--out bench/results/reconcile.json]
"""

import argparse
import gc
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from results_io import save_result

from l2sync_dagster.engine.archive import value_column
from l2sync_dagster.engine.classify import SideInput
from l2sync_dagster.engine.hashing import row_hash
from l2sync_dagster.engine.mapping import FieldMapping, FieldPair
from l2sync_dagster.engine.policy import SyncPolicy
from l2sync_dagster.engine.reconcile import reconcile

N_STR, N_FLT = 10, 10


def rss_kib(field: str = "VmRSS") -> int:
    """Resident (or peak, with VmHWM) memory of this process in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def make_data(n: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    keys = np.char.add("k", np.arange(n).astype(str))
    cols: dict[str, object] = {}
    for i in range(N_STR):
        words = np.char.add(f"s{i}-", rng.integers(0, 10**9, n).astype(str))
        cols[f"s{i}"] = pd.array(words, dtype=pd.ArrowDtype(pa.string()))
    for i in range(N_FLT):
        cols[f"f{i}"] = rng.normal(size=n).round(6)
    base = pd.DataFrame(cols, index=pd.Index(keys, name="_key"))
    names = list(cols)
    mapping = FieldMapping(tuple(
        FieldPair(c, c, c, "string" if c.startswith("s") else "float") for c in names))

    # archive: every record synced, same key on both sides
    canon = [pa.array(base[c].array) if c.startswith("s") else pa.array(base[c].to_numpy())
             for c in names]
    canon = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in canon]
    h = row_hash(canon, n)
    archive = pd.DataFrame({
        "pair_id": keys.astype(object), "left_key": keys.astype(object),
        "right_key": keys.astype(object), "left_hash": h, "right_hash": h,
        "left_dirty": np.zeros(n, bool), "right_dirty": np.zeros(n, bool),
        "left_version": None, "right_version": None,
    })
    for c, a in zip(names, canon, strict=True):
        archive[value_column(c)] = pd.arrays.ArrowExtensionArray(a)

    def side(offset: int) -> pd.DataFrame:
        df = base.copy()
        changed = rng.choice(n, n // 100, replace=False)
        df.iloc[changed, df.columns.get_loc("f0")] = df["f0"].to_numpy()[changed] + 1.0
        deleted = rng.choice(n, n // 1000, replace=False)
        df = df.drop(df.index[deleted])
        new_n = n // 1000
        new = base.iloc[:new_n].copy()
        new.index = pd.Index([f"new{offset}-{i}" for i in range(new_n)], name="_key")
        return pd.concat([df, new])

    return base, side(1), side(2), archive, mapping


def frames_bytes(*frames: pd.DataFrame) -> int:
    return sum(int(f.memory_usage(deep=True, index=True).sum()) for f in frames)


def bench_engine(left, right, archive, mapping):
    gc.collect()
    base_rss = rss_kib()
    reset_peak()
    t0 = time.perf_counter()
    plan, _ = reconcile("bench", SideInput(left, key_field="_key"),
                        SideInput(right, key_field="_key"), archive, mapping,
                        SyncPolicy(conflict="left_wins", propagate_deletes=True,
                                   max_delete_fraction=1.0))
    secs = time.perf_counter() - t0
    peak = rss_kib("VmHWM") - base_rss
    return secs, peak * 1024, plan


def bench_classification(left, right, archive, mapping):
    """Only the part DuckDB does: canonical values, key alignment, new/changed/deleted."""
    from l2sync_dagster.engine import reconcile as r

    gc.collect()
    t0 = time.perf_counter()
    values = r._archive_values(archive, mapping)
    for side, frame in (("left", left), ("right", right)):
        inp = SideInput(frame, key_field="_key")
        canon = r.canonicalize(inp, mapping, side)
        _, pos = r._classify(canon, inp, archive, side, values, mapping.names)
        r._new_positions(canon, pos)
    return time.perf_counter() - t0


def bench_duckdb(base, left, right, archive, names):
    """The same classification in DuckDB: its archive holds DuckDB's own row hashes."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 2")
    cols = ", ".join(names)
    con.register("b", base.reset_index())
    con.register("l", left.reset_index())
    con.register("r", right.reset_index())
    con.execute(f"CREATE TABLE ah AS SELECT _key AS left_key, _key AS right_key, "
                f"hash({cols}) AS h FROM b")
    t0 = time.perf_counter()
    res = con.execute(f"""
        WITH lh AS (SELECT _key, hash({cols}) AS h FROM l),
             rh AS (SELECT _key, hash({cols}) AS h FROM r)
        SELECT
          count(*) FILTER (WHERE lh._key IS NOT NULL AND lh.h <> ah.h),
          count(*) FILTER (WHERE rh._key IS NOT NULL AND rh.h <> ah.h),
          count(*) FILTER (WHERE lh._key IS NULL),
          count(*) FILTER (WHERE rh._key IS NULL),
          (SELECT count(*) FROM lh ANTI JOIN ah ON lh._key = ah.left_key),
          (SELECT count(*) FROM rh ANTI JOIN ah ON rh._key = ah.right_key)
        FROM ah LEFT JOIN lh ON lh._key = ah.left_key LEFT JOIN rh ON rh._key = ah.right_key
    """).fetchall()
    return time.perf_counter() - t0, res[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", default="bench/results/reconcile.json")
    args = ap.parse_args()
    base, left, right, archive, mapping = make_data(args.rows)
    inputs = frames_bytes(left, right, archive)
    secs, peak, plan = bench_engine(left, right, archive, mapping)
    c = plan.counts()
    csecs = bench_classification(left, right, archive, mapping)
    dsecs, dres = bench_duckdb(base, left, right, archive, mapping.names)
    result = {
        "rows": args.rows, "fields": len(mapping.names),
        "engine_seconds": round(secs, 3),
        "engine_classification_only_seconds": round(csecs, 3),
        "duckdb_seconds": round(dsecs, 3),
        "input_frames_bytes": inputs,
        "engine_peak_extra_bytes": peak,
        "peak_total_over_inputs": round((inputs + peak) / inputs, 2),
        "engine_counts": {"left_changed": c["left"]["changed"], "right_changed":
                          c["right"]["changed"], "left_new": c["left"]["new"],
                          "left_deleted": c["left"]["deleted"], "conflicts": c["conflicts"]},
        "duckdb_counts": {"left_changed": dres[0], "right_changed": dres[1],
                          "left_deleted": dres[2], "right_deleted": dres[3],
                          "left_new": dres[4], "right_new": dres[5]},
    }
    save_result(result, args.out, "python bench/reconcile_bench.py")


if __name__ == "__main__":
    main()
