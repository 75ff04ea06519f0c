"""The end-to-end seed plan, one test per step, each against real servers on 127.0.0.1.

1. submit a DSSE envelope: the log index and UUID come back;
2. get the entry by index with every field (UUID, integrated time, inclusion proof);
3. validate its inclusion with the proof builder (from the log's tiles);
4. queue a submission, make the log fail it, see the retry succeed;
5. run the sync service and see it pick up new entries;
6. store a checkpoint and detect divergence (rewritten history, split view);
7. fetch tiles, cache them, serve them through the proxy;
8. persist an entry in DuckDB and read it back with every field intact.
"""

from __future__ import annotations
