"""The demo behind ``make demo``.

First the offline demo (a CSV file and a SQLite CRM, both ways), then the Microsoft 365
scenarios against the sandbox servers started in this process: Exchange (EWS) contacts <->
SQLite, Exchange Online contacts -> a SharePoint list, and Dynamics 365 accounts -> a
SharePoint list, one way and then both ways.
"""

from l2sync_dagster.demo.customers import _edit, _seed, run_demo

__all__ = ["_edit", "_seed", "run_demo"]
