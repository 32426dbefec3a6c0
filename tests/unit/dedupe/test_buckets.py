"""The LSH bucket index against a plain dict of lists, through merges, trims and removals."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.dedupe.buckets import BucketIndex

LIMIT = 3
bucket_sets = st.lists(st.integers(0, 2**32 - 1) | st.sampled_from([7, 8, 9]), min_size=1, max_size=4, unique=True)
operations = st.lists(
    st.tuples(st.just("add"), bucket_sets, st.integers(0, 40) | st.integers(0, 2**64 - 1))
    | st.tuples(st.just("remove"), st.just([]), st.integers(0, 40)),
    max_size=200,
)


def tag_of(ref: int) -> int:
    return (ref * 40503) % 65536


def newest(model: dict[int, list[int]], bucket: int) -> list[int]:
    return model.get(bucket, [])


@settings(max_examples=300, deadline=None)
@given(operations, st.booleans())
def test_the_index_holds_the_newest_refs_of_each_bucket(ops: list[tuple[str, list[int], int]], remove: bool) -> None:
    """Refs added again are added with or without a removal first: a ref already in a bucket moves to its newest
    end, and is never held twice (it would take two of a full bucket's places)."""
    index = BucketIndex(LIMIT, merge_every=5)  # merge often: look-ups then span the arrays and pending entries
    model: dict[int, list[int]] = {}
    for op, buckets, ref in ops:
        looked_up = sorted({*buckets, 7, 8, 9})
        located = index.locate(looked_up)  # read before the change: kept only while the arrays are the same
        if op == "add":
            if remove:
                index.remove([ref])
                for refs in model.values():
                    if ref in refs:
                        refs.remove(ref)
            index.add(buckets, ref, tag_of(ref))
            for bucket in buckets:  # a ref pushed out of a full bucket is gone for good
                model[bucket] = [*(r for r in model.get(bucket, []) if r != ref), ref][-LIMIT:]
        else:
            index.remove({ref})
            model = {bucket: [r for r in refs if r != ref] for bucket, refs in model.items()}
        expected = {ref: tag_of(ref) for bucket in looked_up for ref in newest(model, bucket)}
        assert index.candidates(looked_up) == expected
        assert index.candidates(looked_up, located) == expected
        assert index.candidates(looked_up, index.locate(looked_up)) == expected
    assert index.as_dict() == {bucket: newest(model, bucket) for bucket in model if model[bucket]}


def test_an_index_built_from_entries_equals_one_filled_live() -> None:
    rng = np.random.default_rng(1)
    # Four bands, a dozen buckets in each: busy buckets, most past their limit.
    ids = (rng.integers(0, 12, 4000) | np.tile(np.arange(4) << 24, 1000)).astype(np.uint32)
    refs = np.arange(4000, dtype=np.uint64) // 4
    live = BucketIndex(LIMIT, merge_every=64)
    for title in range(1000):
        live.add(ids[4 * title : 4 * title + 4].tolist(), title, tag_of(title))
    built = BucketIndex.from_entries(LIMIT, ids, refs, np.array([tag_of(int(ref)) for ref in refs], np.uint16))
    assert built == live
    assert max(len(refs) for refs in built.as_dict().values()) == LIMIT
    assert built.tagged() == live.tagged()
    assert built.nbytes == 14 * sum(len(refs) for refs in built.as_dict().values())


def test_clear_forgets_every_bucket() -> None:
    index = BucketIndex(LIMIT)
    index.add([1, 2], 5)
    index.clear()
    assert index.candidates([1, 2]) == {} and index.as_dict() == {}
