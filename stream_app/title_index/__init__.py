"""The title index every worker holds whole: the dedupe state of all input partitions (:mod:`.index`), its packed
memory (:mod:`.store`), and the follower that loads and replicates it through its compacted topic
(:mod:`.follower`). Whether a title is a copy is decided in :mod:`stream_app.dedupe`."""
