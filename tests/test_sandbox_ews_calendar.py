"""EWS sandbox calendar fidelity: recurring series as Exchange reports them (the master's
FirstOccurrence/LastOccurrence and IsRecurring, occurrences expanded by a CalendarView with
their own ItemIds, reachable by index or id), recurrence dates with their offset, all-day
events rounded to midnight, UIDs, and recurring tasks (IsRecurring, ChangeCount, completed
occurrences split off)."""

import datetime as dt
import zoneinfo

import pytest
from exchangelib import CalendarItem, Task
from exchangelib.errors import ErrorInvalidOperation, ErrorItemNotFound
from exchangelib.recurrence import DailyPattern, Recurrence, TaskRecurrence
from sandbox_process import SandboxProcess
from test_sandbox_ews import account, ews  # noqa: F401  (ews is a fixture)

from l2sync_dagster.sandbox.control import SandboxControl

UTC = zoneinfo.ZoneInfo("UTC")
START = dt.datetime(2016, 1, 1, 8, tzinfo=UTC)
END = dt.datetime(2016, 1, 1, 10, tzinfo=UTC)


def _series(acc, **extra) -> CalendarItem:  # noqa: ANN001
    return CalendarItem(folder=acc.calendar, start=START, end=END, subject="daily",
                        recurrence=Recurrence(pattern=DailyPattern(interval=1),
                                              start=START.date(), number=4), **extra).save()


def test_master_reports_its_occurrences(sandbox: SandboxProcess,
                                        ews: SandboxControl) -> None:  # noqa: F811
    acc = account(sandbox, "sync@sandbox.test")
    master = _series(acc)
    master.refresh()
    assert (master.is_recurring, master.type) == (False, "RecurringMaster")
    assert (master.first_occurrence.start, master.first_occurrence.end) == (START, END)
    assert master.last_occurrence.start == START + dt.timedelta(days=3)
    assert master.recurrence.boundary.start == START.date()  # StartDate comes back a date
    assert master.uid and master.uid == acc.calendar.get(id=master.id).uid


def test_calendar_view_expands_occurrences(sandbox: SandboxProcess,
                                           ews: SandboxControl) -> None:  # noqa: F811
    acc = account(sandbox, "sync@sandbox.test")
    master = _series(acc)
    master.refresh()
    shown = list(acc.calendar.view(start=START, end=END + dt.timedelta(days=3)))
    assert [(o.type, o.is_recurring, o.start) for o in shown] == [
        ("Occurrence", True, START + dt.timedelta(days=d)) for d in range(4)]
    assert shown[0].id == master.first_occurrence.id
    assert shown[3].id == master.last_occurrence.id
    assert {o.uid for o in shown} == {master.uid}
    # an item ending exactly at the view's start is shown, one starting at its end is not
    assert len(list(acc.calendar.view(start=END, end=START + dt.timedelta(days=1)))) == 1
    with pytest.raises(ErrorInvalidOperation):
        acc.calendar.view(start=START, end=END).filter(subject="daily").count()

    second = shown[1]
    second.start += dt.timedelta(hours=1)
    second.end += dt.timedelta(hours=1)
    second.save()  # UpdateItem of the occurrence's own ItemId, every field sent
    master.refresh()
    (changed,) = master.modified_occurrences
    assert changed.id == second.id and changed.start == START + dt.timedelta(days=1, hours=1)
    again = list(acc.calendar.view(start=START, end=END + dt.timedelta(days=3)))
    assert (again[1].type, again[1].original_start) == ("Exception",
                                                        START + dt.timedelta(days=1))
    shown[2].delete()  # DeleteItem of an occurrence's ItemId
    assert len(list(acc.calendar.view(start=START, end=END + dt.timedelta(days=3)))) == 3


def test_occurrence_by_index_and_its_master(sandbox: SandboxProcess,
                                            ews: SandboxControl) -> None:  # noqa: F811
    acc = account(sandbox, "sync@sandbox.test")
    master = _series(acc)
    third = master.occurrence(index=3)
    third.refresh()  # GetItem of an OccurrenceItemId
    assert (third.subject, third.start) == ("daily", START + dt.timedelta(days=2))
    found = master.occurrence(index=3).recurring_master()
    found.refresh()  # GetItem of a RecurringMasterItemId
    assert found.id == master.id
    found.delete()
    with pytest.raises(ErrorItemNotFound):
        third.delete()  # its series is gone


def test_all_day_rounded_to_midnight(sandbox: SandboxProcess,
                                     ews: SandboxControl) -> None:  # noqa: F811
    acc = account(sandbox, "sync@sandbox.test")
    item = CalendarItem(folder=acc.calendar, subject="all day", is_all_day=True,
                        start=dt.datetime(2016, 3, 1, 9, 30, tzinfo=UTC),
                        end=dt.datetime(2016, 3, 2, 15, tzinfo=UTC)).save()
    got = acc.calendar.all().only("is_all_day", "start", "end").get(id=item.id)
    # Exchange moves the start back and the end forward to midnight; exchangelib reads the
    # end back as the last day of the event
    assert (got.start, got.end) == (dt.date(2016, 3, 1), dt.date(2016, 3, 2))


def test_recurring_task_splits_off_completed_occurrences(sandbox: SandboxProcess,
                                                        ews: SandboxControl) -> None:  # noqa: F811
    """A recurring task is due on its first occurrence; completing it keeps that occurrence
    as a one-off task and moves the series on (ChangeCount counts these steps)."""
    acc = account(sandbox, "sync@sandbox.test")
    task = Task(folder=acc.tasks, subject="repeat",
                recurrence=TaskRecurrence(pattern=DailyPattern(interval=1),
                                          start=dt.date(2016, 1, 1), number=4)).save()
    task.refresh()
    assert (task.is_recurring, task.change_count, task.due_date) == (True, 1,
                                                                      dt.date(2016, 1, 1))
    task.subject = "repeat again"
    task.save(update_fields=["subject"])
    task.refresh()
    assert task.change_count == 1  # an edit is no new version of the series
    series_id = task.id
    task.status = Task.COMPLETED
    done = task.save()  # answers the one-off task split off
    assert done.id != series_id
    done.refresh()
    assert (done.is_recurring, done.status, done.due_date) == (False, Task.COMPLETED,
                                                                dt.date(2016, 1, 1))
    series = acc.tasks.get(id=series_id)
    assert (series.change_count, series.due_date, series.status) == (
        2, dt.date(2016, 1, 2), Task.NOT_STARTED)
    assert series.recurrence.boundary.number == 3
