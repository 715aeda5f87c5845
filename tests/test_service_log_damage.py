"""Issue 11, items 2 and 3: one writer per state folder, and log damage is never silent.

The acknowledged-ledger check: every record appended and synced is acknowledged; after
damaging one byte anywhere in the newest segment, recovery either gives back every
acknowledged record, or refuses to start naming the file (StorageCorrupt); with
``accept_log_loss`` it starts and reports the loss in ``data_loss``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from promobandit.service.storage import (
    SEGMENT_HEADER_BYTES,
    FileStorage,
    StorageCorrupt,
    StorageLocked,
    encode_record,
)

FP = b"\x01" * 32


def _payloads(n: int, start: int = 1) -> list[bytes]:
    return [f"record {i} ".encode() * (i % 5 + 1) for i in range(start, start + n)]


def _write(path: Path, n: int, *, snapshot_at: int | None = None) -> list[tuple[int, int, bytes]]:
    """n acknowledged (synced) records; a snapshot after `snapshot_at` of them."""
    st = FileStorage(path)
    st.open(FP)
    list(st.replay(0))
    acked = []
    for i, p in enumerate(_payloads(n)):
        seq = st.append(i % 4 + 1, p)
        acked.append((seq, i % 4 + 1, p))
        if snapshot_at is not None and seq == snapshot_at:
            st.sync()
            st.write_snapshot(seq, b"state", FP)
    st.sync()
    st.close()
    return acked


def _recover(path: Path, after: int = 0, **kw: object) -> tuple[FileStorage, list]:
    st = FileStorage(path, **kw)  # type: ignore[arg-type]
    st.open(FP)
    try:
        recs = list(st.replay(after))
    except BaseException:
        st.close()
        raise
    return st, recs


# --- one writer ---------------------------------------------------------------------------
def test_a_second_storage_on_the_same_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    st = FileStorage(tmp_path)
    st.open(FP)
    list(st.replay(0))
    with pytest.raises(StorageLocked, match=rf"pid {os.getpid()} on "):
        FileStorage(tmp_path).open(FP)
    st.close()
    st2 = FileStorage(tmp_path)  # released at close: a new writer may start
    st2.open(FP)
    list(st2.replay(0))
    st2.close()


def test_a_lock_held_by_another_process_refuses_and_dies_with_it(tmp_path: Path) -> None:
    code = ("import sys, time\nfrom promobandit.service.storage import FileStorage\n"
            f"st = FileStorage({str(tmp_path)!r}); st.open(b'\\x01' * 32); list(st.replay(0))\n"
            "print('locked', flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(StorageLocked, match=rf"pid {proc.pid} on .*one process serves"):
            FileStorage(tmp_path).open(FP)
    finally:
        proc.kill()  # SIGKILL: the kernel releases the flock
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    st = FileStorage(tmp_path)
    st.open(FP)
    list(st.replay(0))
    st.close()


# --- damage in the newest segment -----------------------------------------------------------
def test_a_whole_record_with_a_bad_checksum_is_damage_not_a_tail(tmp_path: Path) -> None:
    _write(tmp_path, 5)
    seg = sorted(tmp_path.glob("wal-*.log"))[-1]
    blob = bytearray(seg.read_bytes())
    blob[-1] ^= 0xFF  # the last acknowledged record, complete, checksum now wrong
    seg.write_bytes(bytes(blob))
    with pytest.raises(StorageCorrupt, match=rf"{seg.name}: corrupt record at byte \d+"):
        _recover(tmp_path)
    assert seg.read_bytes() == bytes(blob)  # refusing changed nothing
    st, recs = _recover(tmp_path, accept_log_loss=True)
    assert [r[0] for r in recs] == [1, 2, 3, 4] and len(st.data_loss) == 1
    assert "DATA LOSS accepted" in st.data_loss[0] and seg.name in st.data_loss[0]
    st.close()


def test_damage_followed_by_valid_records_refuses_naming_file_and_offset(tmp_path: Path) -> None:
    _write(tmp_path, 6)
    seg = sorted(tmp_path.glob("wal-*.log"))[-1]
    blob = bytearray(seg.read_bytes())
    blob[SEGMENT_HEADER_BYTES + 20] ^= 0x10  # record 1's payload
    seg.write_bytes(bytes(blob))
    with pytest.raises(StorageCorrupt,
                       match=rf"{seg.name}: corrupt record at byte {SEGMENT_HEADER_BYTES} .*"
                             r"followed by a valid record at byte \d+"):
        _recover(tmp_path)


def _ledger_check(path: Path, acked: list, seg: Path, offsets: list[int], after: int) -> None:
    original = seg.read_bytes()
    want = [r for r in acked if r[0] > after]
    outcomes = {"recovered": 0, "refused": 0}
    for off in offsets:
        for flip in (0x01, 0xFF):
            for f in path.iterdir():
                if f.name.endswith(".corrupt"):
                    f.unlink()
            blob = bytearray(original)
            blob[off] ^= flip
            seg.write_bytes(bytes(blob))
            try:
                st, recs = _recover(path, after)
            except StorageCorrupt as exc:
                assert seg.name in str(exc), (off, flip, str(exc))
                outcomes["refused"] += 1
                continue
            st.close()
            assert recs == want, f"silent loss: byte {off} ^ {flip:#x}"
            outcomes["recovered"] += 1
    seg.write_bytes(original)
    assert outcomes["refused"] > 0  # the check could fail: damage was seen


def test_one_damaged_byte_anywhere_in_the_newest_segment_is_never_a_silent_loss(
        tmp_path: Path) -> None:
    acked = _write(tmp_path, 6)
    seg = sorted(tmp_path.glob("wal-*.log"))[-1]
    _ledger_check(tmp_path, acked, seg, list(range(seg.stat().st_size)), after=0)


def test_one_damaged_byte_after_a_snapshot_is_never_a_silent_loss(tmp_path: Path) -> None:
    acked = _write(tmp_path, 8, snapshot_at=3)
    seg = sorted(tmp_path.glob("wal-*.log"))[-1]
    assert seg.name != "wal-00000000000000000001.log"
    _ledger_check(tmp_path, acked, seg, list(range(seg.stat().st_size)), after=3)


def test_a_deleted_newest_segment_is_detected(tmp_path: Path) -> None:
    _write(tmp_path, 6, snapshot_at=3)
    segs = sorted(tmp_path.glob("wal-*.log"))
    assert len(segs) == 2
    segs[-1].unlink()
    with pytest.raises(StorageCorrupt, match="no segment starts after the snapshot at seq 3"):
        _recover(tmp_path, after=3)
    st, recs = _recover(tmp_path, after=3, accept_log_loss=True)
    assert recs == [] and st.data_loss and st.last_seq == 3
    assert st.append(1, b"next") == 4
    st.close()


def test_accepted_damage_in_an_older_segment_keeps_what_precedes_it(tmp_path: Path) -> None:
    acked = _write(tmp_path, 6, snapshot_at=3)
    first = sorted(tmp_path.glob("wal-*.log"))[0]
    blob = bytearray(first.read_bytes())
    blob[SEGMENT_HEADER_BYTES + 2 * 0 + 20] ^= 0x01  # record 1
    first.write_bytes(bytes(blob))
    with pytest.raises(StorageCorrupt, match="in a segment followed by others"):
        _recover(tmp_path)
    st, recs = _recover(tmp_path, accept_log_loss=True)
    assert recs == [] and st.data_loss and st.last_seq == 0
    assert any(p.name.endswith(".corrupt") for p in tmp_path.iterdir())
    st.close()
    assert acked  # the records are saved beside it as *.corrupt for inspection


def test_a_torn_tail_is_still_cut_without_the_flag(tmp_path: Path) -> None:
    acked = _write(tmp_path, 4)
    seg = sorted(tmp_path.glob("wal-*.log"))[-1]
    with open(seg, "ab") as fh:
        fh.write(encode_record(5, 1, b"y" * 50)[:30])  # a crash in the middle of a write
    st, recs = _recover(tmp_path)
    assert recs == acked and st.data_loss == [] and len(st.problems) == 1
    st.close()


def test_the_service_never_starts_without_an_acknowledged_record(tmp_path: Path) -> None:
    """The ledger check through the service: decisions and purchases acknowledged, one
    byte of the newest segment damaged at sampled offsets, then a start: it refuses
    naming the file, or every acknowledged decision and purchase is there."""
    import random
    import shutil

    from promobandit.service.runtime import DecisionService
    from promobandit.service.schemas import build_schemas
    from tests.test_service_support import basket, make_config

    state = tmp_path / "state"
    cfg = make_config(state)
    svc = DecisionService(cfg)
    svc.start()
    s = build_schemas(cfg.limits, None)
    acked: list[str] = []
    for i in range(12):
        d, seq = svc.apply_decide(svc.prepare_decide(s.DecideRequest.model_validate(
            {"user": f"u{i}", "basket": basket()})))
        assert svc.journal.wait_durable(seq, 30)
        acked.append(d.id)
        if i % 3 == 0:
            _, seq = svc.apply_feedback(svc.prepare_feedback(s.FeedbackRequest.model_validate(
                {"decision_id": d.id, "event_id": f"e{i}", "purchased": True})))
            assert svc.journal.wait_durable(seq, 30)
    purchases = svc.engine.stats["purchases"]
    svc.stop(snapshot=False)
    pristine = tmp_path / "pristine"
    shutil.copytree(state, pristine)
    seg_name = sorted(pristine.glob("wal-*.log"))[-1].name
    size = (pristine / seg_name).stat().st_size
    rs = random.Random(11)
    refused = recovered = 0
    for off in sorted(rs.sample(range(size), 120)):
        shutil.rmtree(state)
        shutil.copytree(pristine, state)
        blob = bytearray((state / seg_name).read_bytes())
        blob[off] ^= 1 << rs.randrange(8)
        (state / seg_name).write_bytes(bytes(blob))
        svc = DecisionService(cfg)
        try:
            svc.recover()
        except StorageCorrupt as exc:
            assert seg_name in str(exc)
            refused += 1
            continue
        try:
            missing = [d for d in acked if svc.engine.pending_created_at(d) is None
                       and d not in svc.engine._finalised]
            assert missing == [] and svc.engine.stats["purchases"] == purchases, off
            recovered += 1
        finally:
            svc.stop(snapshot=False)
    assert refused > 0


def test_a_last_record_zeroed_from_a_sector_on_is_a_torn_write(tmp_path: Path) -> None:
    """A power loss can persist a record's first sectors and leave the rest as zeros: that
    record was never acknowledged (its fsync did not return), so it is cut, not refused."""
    from promobandit.service.storage import SECTOR_BYTES

    acked = _write(tmp_path, 3)
    seg = sorted(tmp_path.glob("wal-*.log"))[-1]
    size = seg.stat().st_size
    rec = encode_record(4, 1, b"p" * (2 * SECTOR_BYTES))
    boundary = -(-(size + 17) // SECTOR_BYTES) * SECTOR_BYTES
    torn = rec[:boundary - size] + bytes(len(rec) - (boundary - size))
    with open(seg, "ab") as fh:
        fh.write(torn)
    st, recs = _recover(tmp_path)
    assert recs == acked and st.data_loss == [] and "unacknowledged tail" in st.problems[0]
    st.close()
