"""The HTTP decision service: one engine behind FastAPI, with durable state.

``promobandit serve`` runs it (see README.md in this folder). Modules: ``config`` (the
TOML configuration), ``storage`` (write-ahead log and snapshots), ``journal`` (group
commit), ``runtime`` (``DecisionService``: the engine, logging, recovery, snapshots),
``schemas`` (request models), ``app`` (routes, ``create_app``), ``metrics``, ``cli``.

Nothing is imported here, so that ``promobandit --help`` works without the ``service``
extra (FastAPI, uvicorn, orjson, prometheus-client). This layer imports the engine and
the business layer; nothing there imports it.
"""

from __future__ import annotations
