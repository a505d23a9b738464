"""Flow control: rate limits, per-key limits, concurrency caps and unique tasks.

``limits`` reads and checks what a task declares; ``store_*`` keep buckets, slot leases and
unique locks in the broker (Redis, SQLite) or, for the memory broker, in this process;
``gate`` is the worker's one check before a task begins (run it, or park it broker-side);
``unique`` is the client's check before a message is sent; ``runtime`` holds the limits
changed at run time and what ``inspect stats`` shows.
"""
