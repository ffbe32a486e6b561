"""Observability: Prometheus metrics, ``/v1/health``, the JSON request log, the event log,
alert rules and their sinks, provider status pages, the dashboard and the operator controls.

``routing`` publishes events and health state; everything here reads them (``routing``
never imports ``observe``). The server calls ``install_observability``; an embedded
``Gateway`` can run ``Observability`` itself.

Modules: ``metrics`` (Prometheus), ``health`` (the ``/v1/health`` view), ``logs`` (request
log, JSON logging), ``eventlog`` (SQLite audit trail), ``alerts`` (rules and sinks),
``status`` (status pages), ``admin`` (operator controls API), ``redact`` (secrets out of
everything written), ``hub`` (``Observability``), ``routes`` (the aiohttp wiring),
``cli`` (``hedgerow events`` and ``hedgerow admin``), ``dashboard/`` (static assets).
"""

from hedgerow.observe.hub import Observability
from hedgerow.observe.routes import OBSERVE_KEY, install_observability

__all__ = ["OBSERVE_KEY", "Observability", "install_observability"]
