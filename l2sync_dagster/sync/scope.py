"""What a read tells about records it did not return, judged before the engine plans.

The engine judges an archived record deleted when a *complete* read misses it or when the read
lists it in ``deleted``. That is only true of a read that can return every record of the entity.
A read restricted by WHERE or TOP (``EntityDescription.scope``), a change feed that never
reported a record the sync created after its cursor was taken, and a crashed run's created
record outside the query's filter all need a second look: the provider's ``lookup`` tells
whether each such record still exists. This module turns a side's read into the read the engine
may trust:

- records it found are added to the frame (a pair whose record left the filter, or was pushed
  out by TOP, stays a pair and keeps syncing: nothing is deleted because a query stopped
  selecting it), except that with ``deletes.out_of_scope: delete`` a record that left a
  *filter* counts as deleted;
- records it did not find are reported deleted;
- without ``lookup`` nothing is judged deleted on the strength of a restricted read, and a
  note says so.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from l2sync_dagster.contract import EntityDescription, Query, ReadResult
from l2sync_dagster.engine.classify import key_array
from l2sync_dagster.providers.base import can_lookup


@dataclass
class ScopeJudgement:
    """The read to plan with, and what the judging found out."""

    result: ReadResult
    #: archived or created records a restricted read missed that still exist
    out_of_scope: int = 0
    #: records a lookup showed gone that the read itself did not report
    gone: int = 0
    notes: list[str] = field(default_factory=list)


def judge_read(
    side: str,
    result: ReadResult,
    description: EntityDescription,
    provider: object,
    query: Query,
    *,
    archived: Sequence[str],
    created_since_cursor: Sequence[str] = (),
    journaled: Sequence[str] = (),
    incremental: bool = False,
    out_of_scope: str = "keep",
) -> ScopeJudgement:
    """Judge the records ``result`` did not return.

    ``archived``: the side's keys in the archive. ``created_since_cursor``: keys the sync created
    on this side after the cursor the read started from (checked on incremental reads only).
    ``journaled``: keys of records crashed runs created or may have created on this side, and
    sources of such inserts (looked up when missing, never judged deleted).
    """
    frame = result.frame
    read_keys = {str(k) for k in frame.index}
    restricted = description.scope != "all"
    reported = [str(k) for k in result.deleted]
    candidates: list[str] = []
    if result.complete:
        candidates = [k for k in archived if k not in read_keys]
    elif result.present_keys is not None:
        present = {str(k) for k in result.present_keys}
        candidates = [k for k in archived if k not in present and k not in read_keys]
    unconfirmed = ([k for k in created_since_cursor if k not in read_keys]
                   if incremental else [])
    extra = [k for k in journaled if k not in read_keys]
    if not restricted and not unconfirmed and not extra:
        return ScopeJudgement(result)

    # deletes the read itself proves: a complete or listed read of the whole entity
    proven: set[str] = set() if restricted else set(candidates) | set(reported)
    to_check = list(dict.fromkeys(
        ([] if not restricted else candidates + reported) + unconfirmed + extra))
    to_check = [k for k in to_check if k not in proven]
    judgement = ScopeJudgement(result)
    if not to_check:
        judgement.result = _rebuilt(result, frame, sorted(proven) if restricted else None)
        return judgement
    if not can_lookup(provider):
        if restricted and (candidates or reported):
            judgement.notes.append(
                f"{side}: {len(set(candidates) | set(reported))} synced records were not "
                f"returned by the restricted read ({description.restriction or 'a filter'}) "
                "and the provider cannot look keys up; no delete was judged for them")
        if unconfirmed:
            judgement.notes.append(
                f"{side}: {len(unconfirmed)} records the sync created were not reported by the "
                "change feed and cannot be looked up; a delete of them shows after --full")
        judgement.result = _rebuilt(result, frame, sorted(proven) if restricted else None)
        return judgement

    found = provider.lookup(query, to_check)  # type: ignore[attr-defined]
    found_keys = {str(k) for k in found.index}
    gone = [k for k in to_check if k not in found_keys]
    judgement.gone = len(gone)
    keep = found
    left_filter: list[str] = []
    if restricted and out_of_scope == "delete" and description.scope == "filtered":
        # records that left the filter count as deleted (the user asked for it); records the
        # sync created outside the filter and journaled records are not "leaving" it
        leaving = set(candidates) | set(reported)
        left_filter = [k for k in found.index.astype(str) if k in leaving]
        keep = found[~found.index.astype(str).isin(left_filter)]
    judgement.out_of_scope = len(keep) if restricted else 0
    if restricted and len(keep):
        judgement.notes.append(
            f"{side}: {len(keep)} synced records are outside "
            f"{description.restriction or 'the query'} but still exist; they stay paired")
    frame = frame if keep.empty else pd.concat([frame, keep[~keep.index.isin(frame.index)]])
    deleted = sorted(proven | set(gone) | set(left_filter)
                     | ({k for k in reported if k not in found_keys} if restricted else set()))
    judgement.result = _rebuilt(result, frame, deleted)
    return judgement


def _rebuilt(result: ReadResult, frame: pd.DataFrame, deleted: list[str] | None
             ) -> ReadResult:
    """``result`` with a new frame; ``deleted`` given: an incremental-style read that lists
    every delete (so the engine judges no other missing record deleted)."""
    if deleted is None:
        return ReadResult(frame, complete=result.complete, deleted=list(result.deleted),
                          cursor=result.cursor, present_keys=result.present_keys)
    return ReadResult(frame, complete=False, deleted=deleted, cursor=result.cursor)


def narrow(result: ReadResult) -> bool:
    """An incremental read that does not list the keys in scope: it says nothing of the
    archived records it did not return (so a run needs only the pairs it touched)."""
    return not result.complete and result.present_keys is None


def touched_keys(result: ReadResult) -> list[str]:
    """The keys a narrow read returned or reported deleted."""
    return [str(k) for k in result.frame.index] + [str(k) for k in result.deleted]


def name_deletes(result: ReadResult, archived: Sequence[str]) -> ReadResult:
    """An incremental read that lists the keys in scope made narrow: the ``archived`` keys of
    its side that it neither lists nor returned are reported deleted, as the engine would judge
    them (a restricted read's are looked up by :func:`judge_read` before anything is
    deleted)."""
    # in Arrow: iterating a million keys of a pandas string index costs seconds
    present = pa.concat_arrays([key_array(result.present_keys), key_array(result.frame.index)])
    keys = pa.array([str(k) for k in archived], type=pa.string())
    gone = keys.filter(pc.invert(pc.is_in(keys, value_set=present))).to_pylist()
    return ReadResult(result.frame, complete=False,
                      deleted=list(dict.fromkeys([*map(str, result.deleted), *gone])),
                      cursor=result.cursor)
