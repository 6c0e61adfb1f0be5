"""Strict local stand-ins for Microsoft's services (EWS, Graph, Dataverse, Entra tokens).

``l2sync sandbox`` starts every service built so far; tests start it the same way. See
:mod:`l2sync_dagster.sandbox.service` for what a service implements and
:mod:`l2sync_dagster.sandbox.control` for the control API tests use.
"""
