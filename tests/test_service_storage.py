"""The service's storage: log records and segments, torn and corrupt tails, snapshots,
disk full, fsync failure, configuration fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from promobandit.service.storage import (
    RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    FileStorage,
    FingerprintMismatch,
    MemoryStorage,
    StorageCorrupt,
    StorageError,
    encode_record,
)
from tests.test_service_support import FlakyDiskStorage

FP = b"\x01" * 32
OTHER_FP = b"\x02" * 32


def opened(path: Path, cls: type[FileStorage] = FileStorage, fp: bytes = FP,
           **kw: object) -> tuple[FileStorage, list[tuple[int, int, bytes]]]:
    st = cls(path, **kw)  # type: ignore[arg-type]
    rec = st.open(fp)
    after = 0
    for ref in rec.snapshots:
        try:
            st.read_snapshot(ref)
        except StorageCorrupt as exc:
            st.quarantine_snapshot(ref, str(exc))
            continue
        after = ref.seq
        break
    return st, list(st.replay(after))


def payloads(n: int, start: int = 1) -> list[bytes]:
    return [f"record {i} ".encode() * (i % 7 + 1) for i in range(start, start + n)]


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("wal-*.log"))


def test_records_round_trip_and_appends_continue(tmp_path: Path) -> None:
    st, recs = opened(tmp_path)
    assert recs == [] and st.last_seq == 0
    seqs = [st.append(i % 4 + 1, p) for i, p in enumerate(payloads(5))]
    assert seqs == [1, 2, 3, 4, 5]
    assert st.sync() == 5
    st.close()
    st2, recs = opened(tmp_path)
    assert [(s, k, p) for s, k, p in recs] == [(i + 1, i % 4 + 1, p)
                                               for i, p in enumerate(payloads(5))]
    assert st2.append(1, b"six") == 6
    st2.close()
    _, recs = opened(tmp_path)
    assert [s for s, _, _ in recs] == [1, 2, 3, 4, 5, 6] and recs[-1][2] == b"six"
    assert st2.problems == []


@pytest.mark.parametrize("tail", ["half_header", "half_payload", "zeros"])
def test_torn_or_corrupt_tail_is_cut_saved_and_reported(tmp_path: Path, tail: str) -> None:
    st, _ = opened(tmp_path)
    for p in payloads(5):
        st.append(1, p)
    st.sync()
    st.close()
    seg = segments(tmp_path)[-1]
    good_size = seg.stat().st_size
    rec6 = encode_record(6, 3, b"x" * 40)
    garbage = {"half_header": rec6[:RECORD_HEADER_BYTES // 2],
               "half_payload": rec6[:RECORD_HEADER_BYTES + 10],
               "zeros": b"\0" * 100}[tail]
    with open(seg, "ab") as fh:
        fh.write(garbage)
    st2, recs = opened(tmp_path)
    assert [s for s, _, _ in recs] == [1, 2, 3, 4, 5]
    assert len(st2.problems) == 1 and seg.name in st2.problems[0]
    assert f"cut {len(garbage)} bytes" in st2.problems[0]
    assert seg.stat().st_size == good_size
    saved = list(tmp_path.glob("*.corrupt"))
    assert len(saved) == 1 and saved[0].read_bytes() == garbage
    assert st2.append(2, b"after") == 6
    st2.close()
    st3, recs = opened(tmp_path)
    assert [s for s, _, _ in recs] == [1, 2, 3, 4, 5, 6] and st3.problems == []


def test_snapshots_rotate_compact_and_a_corrupt_newest_falls_back(tmp_path: Path) -> None:
    st, _ = opened(tmp_path, snapshots_kept=2)
    for p in payloads(5):
        st.append(1, p)
    st.write_snapshot(5, b"state@5", FP)
    for p in payloads(5, 6):
        st.append(1, p)
    st.write_snapshot(10, b"state@10", FP)
    for p in payloads(2, 11):
        st.append(1, p)
    st.sync()
    # With two snapshots kept, the log before the older one (seq 5) is gone.
    assert [p.name for p in segments(tmp_path)] == ["wal-00000000000000000006.log",
                                                    "wal-00000000000000000011.log"]
    st.write_snapshot(12, b"state@12", FP)
    assert sorted(p.name for p in tmp_path.glob("snapshot-*")) == [
        "snapshot-00000000000000000010.snap", "snapshot-00000000000000000012.snap"]
    for p in payloads(1, 13):
        st.append(1, p)
    st.close()
    # Flip one payload byte of the newest snapshot: the older one and more log replay.
    snap = tmp_path / "snapshot-00000000000000000012.snap"
    blob = bytearray(snap.read_bytes())
    blob[-3] ^= 0x40
    snap.write_bytes(bytes(blob))
    st2 = FileStorage(tmp_path)
    rec = st2.open(FP)
    assert [r.seq for r in rec.snapshots] == [12, 10]
    with pytest.raises(StorageCorrupt, match="checksum"):
        st2.read_snapshot(rec.snapshots[0])
    st2.quarantine_snapshot(rec.snapshots[0], "checksum mismatch")
    assert st2.read_snapshot(rec.snapshots[1]) == b"state@10"
    assert [s for s, _, _ in st2.replay(10)] == [11, 12, 13]
    assert any("snapshot-00000000000000000012.snap" in p for p in st2.problems)
    assert (tmp_path / "snapshot-00000000000000000012.snap.corrupt").exists()


def test_truncated_snapshot_is_detected(tmp_path: Path) -> None:
    st, _ = opened(tmp_path)
    st.append(1, b"a")
    st.write_snapshot(1, b"x" * 1000, FP)
    st.close()
    snap = next(tmp_path.glob("snapshot-*.snap"))
    snap.write_bytes(snap.read_bytes()[:500])
    st2 = FileStorage(tmp_path)
    rec = st2.open(FP)
    with pytest.raises(StorageCorrupt, match="truncated"):
        st2.read_snapshot(rec.snapshots[0])


def test_a_bad_record_before_the_tail_is_refused(tmp_path: Path) -> None:
    st, _ = opened(tmp_path)
    for p in payloads(3):
        st.append(1, p)
    st.write_snapshot(3, b"s", FP)  # rotates: records 4.. go to a new segment
    for p in payloads(3, 4):
        st.append(1, p)
    st.close()
    first = segments(tmp_path)[0]
    blob = bytearray(first.read_bytes())
    blob[SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 2] ^= 0x01  # inside record 1's payload
    first.write_bytes(bytes(blob))
    st2 = FileStorage(tmp_path)
    st2.open(FP)
    # From the snapshot on, only the intact second segment is read.
    assert [s for s, _, _ in st2.replay(3)] == [4, 5, 6]
    st2.close()
    st3 = FileStorage(tmp_path)
    st3.open(FP)
    with pytest.raises(StorageCorrupt, match="acknowledged records cannot be read"):
        list(st3.replay(0))  # without the snapshot, the damaged record is needed


def test_missing_records_are_refused(tmp_path: Path) -> None:
    st, _ = opened(tmp_path)
    for p in payloads(3):
        st.append(1, p)
    st.write_snapshot(3, b"s", FP)
    st.append(1, b"4")
    st.close()
    segments(tmp_path)[0].unlink()
    st2 = FileStorage(tmp_path)
    st2.open(FP)
    with pytest.raises(StorageCorrupt, match="missing"):
        list(st2.replay(0))


def test_disk_full_appends_nothing_and_the_log_stays_valid(tmp_path: Path) -> None:
    st, _ = opened(tmp_path, cls=FlakyDiskStorage)
    assert isinstance(st, FlakyDiskStorage)
    for p in payloads(3):
        st.append(1, p)
    size = segments(tmp_path)[-1].stat().st_size
    st.full = True
    for _ in range(3):
        with pytest.raises(OSError) as info:
            st.append(1, b"y" * 64)
        assert info.value.errno == 28  # ENOSPC
        assert segments(tmp_path)[-1].stat().st_size == size  # the half write was undone
    assert st.last_seq == 3
    with pytest.raises(OSError):
        st.write_snapshot(3, b"snapshot", FP)
    assert not list(tmp_path.glob("snapshot-*")) and not list(tmp_path.glob("*.tmp"))
    st.full = False
    assert st.append(1, b"four") == 4
    st.close()
    st2, recs = opened(tmp_path)
    assert [s for s, _, _ in recs] == [1, 2, 3, 4] and st2.problems == []


def test_failed_fsync_makes_the_storage_refuse_writes(tmp_path: Path) -> None:
    st, _ = opened(tmp_path, cls=FlakyDiskStorage)
    assert isinstance(st, FlakyDiskStorage)
    st.append(1, b"a")
    st.fail_fsync = True
    with pytest.raises(StorageError):
        st.sync()
    with pytest.raises(StorageError, match="fsync"):
        st.append(1, b"b")


def test_replay_refuses_records_of_another_configuration(tmp_path: Path) -> None:
    st, _ = opened(tmp_path)
    st.append(1, b"a")
    st.close()
    st2 = FileStorage(tmp_path)
    st2.open(OTHER_FP)
    with pytest.raises(FingerprintMismatch, match="another engine configuration"):
        list(st2.replay(0))


def test_leftover_temporary_snapshot_is_removed(tmp_path: Path) -> None:
    st, _ = opened(tmp_path)
    st.append(1, b"a")
    st.close()
    (tmp_path / "snapshot-00000000000000000001.snap.tmp").write_bytes(b"half a snapshot")
    _, recs = opened(tmp_path)
    assert not list(tmp_path.glob("*.tmp")) and [s for s, _, _ in recs] == [1]


def test_memory_storage_keeps_records_after_the_older_snapshot() -> None:
    st = MemoryStorage()
    st.open(FP)
    assert list(st.replay(0)) == []
    for p in payloads(4):
        st.append(1, p)
    st.write_snapshot(2, b"s2", FP)
    st.write_snapshot(4, b"s4", FP)
    st.append(1, b"5")
    assert [r.seq for r in st.open(FP).snapshots] == [4, 2]
    assert [s for s, _, _ in st.replay(2)] == [3, 4, 5]
    assert not st.needs_sync and st.sync() == 5


def test_files_are_private(tmp_path: Path) -> None:
    st, _ = opened(tmp_path)
    st.append(1, b"a")
    st.write_snapshot(1, b"s", FP)
    st.close()
    for p in list(tmp_path.glob("wal-*")) + list(tmp_path.glob("snapshot-*")):
        assert os.stat(p).st_mode & 0o077 == 0, p
