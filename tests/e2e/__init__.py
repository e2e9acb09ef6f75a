"""The end-to-end test: notifier run as its users run it, checked against a model of its docs.

Real processes (a redis-server, ``notifier serve`` x2, ``notifier worker`` x2, optionally a
Cassandra node), driven only through the documented HTTP API and websocket protocol by a seeded
random world (tests/e2e/world.py). In the middle of the run one web process is restarted as a
deploy does it (docs/operations.md, "Deploys"): a replacement starts, HTTP traffic and new
connections move to it, the old process gets SIGTERM, and its clients, told ``1012 restart;
retry in N ms``, come back to a live process after N ms and resume, while operations go on. At
the end every websocket client's view, an HTTP read of the same range, and a reference model
written from docs/concepts.md (tests/e2e/model.py) must agree, with no 5xx, no 1011 close and
no ERROR line in any log (the stopped process's too); every client of the restarted process
must have had its 1012, with a delay in the window, and be back.

- ``model.py``    the reference model (imports nothing from notifier)
- ``world.py``    the feed groups, the seeded world and its operations, phase by phase
- ``client.py``   a websocket client keeping a widget's state by the protocol's rules
- ``api.py``      the HTTP side of the driver (records every 5xx)
- ``checks.py``   client vs HTTP vs model, at quiet points and at the end
- ``report.py``   options, findings (their kinds say who differs) and the report
- ``cluster.py``  the processes, their config and logs
- ``deploy.py``   the rolling restart of one web process, and what its clients saw
- ``driver.py``   runs a world against a cluster, phase by phase
- ``soak.py``     ``scripts/soak``: the driver for N minutes, sampling RSS and connections

Run: ``.venv/bin/pytest tests/e2e -k redis`` (about a minute), ``NOTIFIER_TEST_CASSANDRA=start
.venv/bin/pytest tests/e2e -k cassandra``, ``scripts/soak --minutes 30``. Every report starts
with its seed; ``NOTIFIER_E2E_SEED=<seed>`` replays that world (its operations; the timing of
concurrent work differs from run to run).
"""
