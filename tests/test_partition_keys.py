from collections import Counter

from goalcraft.data.partition_keys import partition_keys, partition_of


def test_keys_are_sortable_and_sized_for_count():
    assert partition_keys(4) == ["p0000", "p0001", "p0002", "p0003"]
    assert partition_keys(20000)[-1] == "p19999"


def test_assignment_is_stable_and_spread():
    # Known answer: sha1-based, independent of process hash salt and of other ids.
    assert partition_of("crafter-0-v00", 256) == partition_of("crafter-0-v00", 256)
    counts = Counter(partition_of(f"video{i}", 16) for i in range(16000))
    assert set(counts) == set(partition_keys(16))
    assert max(counts.values()) < 1.15 * 1000 and min(counts.values()) > 0.85 * 1000


def test_known_bucket():
    import hashlib

    expected = int.from_bytes(hashlib.sha1(b"abc").digest()[:8], "big") % 7
    assert partition_of("abc", 7) == f"p{expected:04d}"


def test_a_730k_video_corpus_splits_into_a_few_hundred_even_partitions():
    counts = Counter(partition_of(f"yt{i:011d}", 256) for i in range(730_000))
    assert len(counts) == 256
    # ~2,852 videos each; sha1 buckets stay within a few percent of even.
    assert 2600 < min(counts.values()) <= max(counts.values()) < 3100
