"""Peer task queues on the workloads our own server is measured on: BullMQ, RedisHuey, SqliteHuey.

    python -m benchmarks.peers [--tasks 20000] [--procs 2] [--concurrency 2] [--pickups 300]
                               [--only bullmq,redis-huey,sqlite-huey] [--json OUT.json]

From Python (e.g. a script that races the peers against our server in the same run)::

    from benchmarks.peers.harness import run_peers_async

    rows = await run_peers_async(tasks=20_000, procs=2, concurrency=2, pickups=300, only=None)

``only`` is ``None`` (every peer) or a sequence of keys among ``bullmq``, ``redis-huey`` and
``sqlite-huey``. Each call returns one dict per peer, in that order::

    {"name": "BullMQ 6.7.0 (Redis 7, AOF everysec)", "key": "bullmq",
     "w1_rate": float, "w1_enqueue_rate": float, "w2_wall_s": float, "w2_join_lag_ms": float,
     "w3_p50_ms": float, "w3_p99_ms": float, "broker_cpu_ms_per_task": float | None,
     "workers_cpu_ms_per_task": float, "errors": [str, ...]}

A figure whose workload failed is ``None`` and the reason is in ``errors`` (also printed to
stderr); ``broker_cpu_ms_per_task`` is ``None`` for SqliteHuey (no broker process).

Setup, for every peer and every workload afresh
-----------------------------------------------
* Brokers: a private ``redis-server`` (found on PATH) on a free port of 127.0.0.1 in a fresh
  temp dir, ``--appendonly yes --appendfsync everysec --save ""``, killed at the end of the
  workload; SqliteHuey gets a fresh ``SqliteHuey`` file in a fresh temp dir (default options:
  WAL, SQLite's default synchronous, which is FULL).
* Workers: ``--procs`` processes of ``--concurrency`` each, no-op tasks.

  - BullMQ: ``node bullmq/worker.js``, one ``new Worker(queue, processor, {connection,
    concurrency})`` per process (ioredis client, BullMQ's other options default); jobs are
    added by ``bullmq/driver.js`` with a ``Queue``.
  - Huey: ``python -m huey.bin.huey_consumer benchmarks.peers.huey_app.huey -w CONCURRENCY -k
    thread`` (other consumer options default, so its INFO log of two lines per task goes to a
    file); tasks are enqueued by ``python -m benchmarks.peers.huey_driver``, which calls the
    task functions as a Huey user does.

  A worker process reports on stdout (JSON lines, read by this harness): ``ready`` once
  connected, ``progress`` (counts per task kind and the W1 figures below) every 50 ms while
  they change, and one event per pickup / join / warm-up task. A ``failed`` task, a worker
  that dies, or a wait that runs out fails the workload loudly, saying what is missing.

W1, throughput
--------------
``--tasks`` no-op tasks are enqueued with no worker running: BullMQ with ``queue.addBulk`` in
batches of 1,000; Huey one call per task (it has no bulk enqueue: ``group`` enqueues one by
one). ``w1_enqueue_rate`` = tasks / seconds of that enqueueing, timed in the driver. Then the
workers start; each process keeps the wall-clock time of its first ``execute`` start and of
its last ``execute`` end (Python ``time.time()``; node ``performance.timeOrigin +
performance.now()``) and its own CPU time at those two moments (``time.process_time()`` /
``process.cpuUsage()``). ``w1_rate`` = tasks / (latest end - earliest start). The run counts
only if the processes' counts add up to exactly ``--tasks``.
``broker_cpu_ms_per_task``: redis-server's utime + stime (``/proc/PID/stat``, 10 ms ticks)
from the moment the workers are launched to the moment the harness sees the last count (so it
includes the workers' connection set-up and at most ~50 ms of idling), / tasks, in ms.
``workers_cpu_ms_per_task``: the sum over worker processes of their CPU between their first
start and last end (interpreter start-up excluded), / tasks, in ms.

W2, a 1,102-task DAG
--------------------
root -> enqueues 100 children (BullMQ: one ``addBulk``) -> each enqueues 10 grandchildren
(BullMQ: one ``addBulk``) -> one join. Neither product has this fan-in in a simple form, so
each grandchild, as its last step, increments a counter atomically: BullMQ with Redis ``INCR``
(its own ioredis client); Huey with its own storage counter ``huey.storage.incr`` (the one
its chords use: Redis ``INCR`` + ``EXPIRE`` in one MULTI round trip for RedisHuey, an
exclusive-transaction upsert in the queue's SQLite file for SqliteHuey). The grandchild that
reaches 1,000 notes ``time.time()`` and then enqueues the join; the join notes ``time.time()``
as its first line. Three runs on the same workers (fresh counter key each run, after a few
warm-up tasks); ``w2_wall_s`` = join start - the time just before the root's enqueue call,
best of 3; ``w2_join_lag_ms`` = join start - last grandchild's increment, from that best run.
Each run checks that exactly 1 root, 100 children, 1,000 grandchildren and 1 join ran.

W3, pickup latency with idle workers
------------------------------------
20 warm-up tasks, then ``--pickups`` tasks, each enqueued alone carrying its index; the driver
notes the time just before the enqueue call; the worker notes the time at the first line of
``execute``. After each enqueue returns the harness sleeps 2 ms and, if the task has not been
seen starting yet, waits for it (bounded) before the next, so every task meets idle workers
(this only matters for a polling consumer, i.e. SqliteHuey). ``w3_p50_ms`` / ``w3_p99_ms``:
percentiles (``crew_aio.bench.procs.pct``, as crew-aio bench takes them) of execute start -
enqueue call start, in ms. Same machine, same clock.
"""
