"""Durable state of the decision service: a write-ahead log of records and engine snapshots.

The service talks to a ``Storage`` (an interface small enough that a shared store, e.g. a
replicated log plus an object store, can replace the local files later):

- ``append(kind, payload) -> seq`` writes one record (not yet durable) and gives it the
  next sequence number; on an error nothing is appended;
- ``sync() -> seq`` makes every appended record durable and returns the last durable seq;
- ``write_snapshot(seq, data, fingerprint)`` stores the engine state that covers every
  record up to ``seq``, atomically, then drops what no kept snapshot needs;
- ``open()`` / ``replay(after)`` give back, after a restart, the snapshots and the records.

``FileStorage`` (the embedded default) keeps a folder::

    wal-<first seq, 20 digits>.log     log segments, appended to
    snapshot-<seq, 20 digits>.snap     engine snapshots (``snapshots_kept`` newest)
    *.corrupt                          what recovery skipped, kept for inspection

Log segment: a 56-byte header ``<8s magic "PBWAL\\0\\0\\0", u32 version, u64 first seq, 32s
config fingerprint, u32 crc32 of the preceding 52 bytes>`` then records, each a 17-byte
header ``<u32 payload length, u32 crc32 (of seq, kind and payload), u64 seq, u8 kind>``
and the payload. A record is valid when it is complete, its checksum matches and its seq
is the one expected next; the first invalid record ends the log.

Snapshot: a 68-byte header ``<8s magic "PBSNAP\\0\\0", u32 version, u64 seq, 32s
fingerprint, u64 payload length, u32 crc32 (of the header's first 60 bytes and the
payload)>`` then the payload (``Engine.to_bytes()``). Written to a temporary file,
fsynced, renamed into place and the folder fsynced: a reader sees the old snapshot or the
new one, never half of one.

Recovery (``open`` + ``replay``): the newest snapshot whose checksum holds is used (a bad
one is renamed ``*.corrupt`` and reported, and the one before it is tried); the log is
replayed from the record after it. A torn or corrupt tail of the *last* segment (a crash
in the middle of a write) is cut off, saved beside it as ``*.corrupt`` and reported: it
was never acknowledged, because acknowledgement waits for the fsync that covers it. A bad
record *before* the last segment's tail, or a gap in sequence numbers, means
acknowledged data is unreadable: ``open`` raises ``StorageCorrupt`` rather than serve a
state that silently lost it.
"""

from __future__ import annotations

import abc
import dataclasses
import errno
import fcntl
import itertools
import logging
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger("promobandit.service.storage")

WAL_MAGIC = b"PBWAL\0\0\0"
SNAPSHOT_MAGIC = b"PBSNAP\0\0"
WAL_VERSION = 1
SNAPSHOT_VERSION = 1
FINGERPRINT_BYTES = 32

_SEG_HEAD = struct.Struct("<8sIQ32s")
_SEG_HEAD_CRC = struct.Struct("<I")
SEGMENT_HEADER_BYTES = _SEG_HEAD.size + _SEG_HEAD_CRC.size
_REC_HEAD = struct.Struct("<IIQB")  # length, crc, seq, kind
_REC_CRC_PART = struct.Struct("<QB")  # the part of the header the checksum covers
RECORD_HEADER_BYTES = _REC_HEAD.size
_SNAP_HEAD = struct.Struct("<8sIQ32sQ")
_SNAP_CRC = struct.Struct("<I")
SNAPSHOT_HEADER_BYTES = _SNAP_HEAD.size + _SNAP_CRC.size

# A power loss can persist a record's first sectors and not the rest, which then read as
# zeros: a whole-looking last record whose bytes are zero from a sector boundary to the
# end of the file (at least ZERO_TAIL_MIN_BYTES of them, more than any one damaged byte
# can make) is taken for such a torn write, not for damage.
SECTOR_BYTES = 512
ZERO_TAIL_MIN_BYTES = 16

# The lock file of a state folder (see FileStorage._take_lock).
LOCK_NAME = "LOCK"

# A record larger than this is taken for garbage in a length field (a request body is
# bounded far below it by server.max_body_bytes).
MAX_RECORD_BYTES = 1 << 30


class StorageError(OSError):
    """Storage cannot take writes (a failed fsync or a failed rollback): the process
    must restart and recover, because what is on disk is no longer known."""


class StorageCorrupt(RuntimeError):
    """Acknowledged data cannot be read back (not a torn tail): recovery refuses to go on."""


class SnapshotInvalid(OSError):
    """A snapshot read back after writing did not verify (checksum, or it does not load):
    it is not installed, and no log segment is deleted."""


class StorageLocked(RuntimeError):
    """Another process holds the state folder's lock (one writer per folder)."""


class FingerprintMismatch(RuntimeError):
    """Log records to replay were written under another engine configuration."""


@dataclasses.dataclass(frozen=True)
class SnapshotRef:
    """A snapshot on storage: the last record seq it covers and its config fingerprint."""

    seq: int
    fingerprint: bytes
    name: str


@dataclasses.dataclass
class Recovery:
    """What ``open`` found: valid-looking snapshots (newest first) and problems met."""

    snapshots: list[SnapshotRef]
    problems: list[str]


def _crc_record(seq: int, kind: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(_REC_CRC_PART.pack(seq, kind)))


def encode_record(seq: int, kind: int, payload: bytes) -> bytes:
    """One log record: header and payload."""
    return _REC_HEAD.pack(len(payload), _crc_record(seq, kind, payload), seq, kind) + payload


class Storage(abc.ABC):
    """Where the service's log and snapshots live (see the module doc)."""

    @abc.abstractmethod
    def open(self, fingerprint: bytes) -> Recovery:
        """Finds the snapshots; must be called once, first. ``fingerprint`` (32 bytes)
        identifies the engine configuration: new log segments carry it, and replay refuses
        records written under another one (FingerprintMismatch)."""

    @abc.abstractmethod
    def read_snapshot(self, ref: SnapshotRef) -> bytes:
        """The payload of a snapshot; raises StorageCorrupt if its checksum fails."""

    @abc.abstractmethod
    def quarantine_snapshot(self, ref: SnapshotRef, why: str) -> None:
        """Moves a snapshot that could not be used out of the way (kept for inspection)."""

    @abc.abstractmethod
    def replay(self, after: int) -> Iterator[tuple[int, int, bytes]]:
        """(seq, kind, payload) of every record with seq > after, in order. Cuts off a torn
        tail (reported in ``problems``). After it, appends continue from the last record."""

    @abc.abstractmethod
    def append(self, kind: int, payload: bytes) -> int:
        """Appends a record and returns its seq; not durable until sync(). Raises OSError
        (e.g. ENOSPC) having appended nothing, or StorageError if that cannot be ensured."""

    @abc.abstractmethod
    def sync(self) -> int:
        """Makes every appended record durable; returns the last durable seq."""

    @abc.abstractmethod
    def write_snapshot(self, seq: int, data: bytes, fingerprint: bytes,
                       verify: Callable[[bytes], None] | None = None) -> None:
        """Stores a snapshot covering records <= seq (atomically), then compacts.
        ``verify(payload)`` (raising ValueError when it does not load) is given the
        payload as read back from storage, before the snapshot is installed and anything
        it covers is deleted; a failure raises SnapshotInvalid and changes nothing."""

    @property
    @abc.abstractmethod
    def last_seq(self) -> int:
        """Seq of the last appended record (0 before any)."""

    @property
    def needs_sync(self) -> bool:
        """False when append is already durable (sync is a no-op)."""
        return True

    def close(self) -> None:  # noqa: B027 - optional for stores that hold no resources
        """Releases files; appended records are synced first."""

    problems: list[str]


# ------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------


class MemoryStorage(Storage):
    """Everything in memory (nothing survives the process): tests, demos, benchmarks."""

    def __init__(self) -> None:
        self._records: list[tuple[int, int, bytes]] = []
        self._snapshots: list[tuple[int, bytes, bytes]] = []
        self._lock = threading.Lock()
        self.problems = []

    def open(self, fingerprint: bytes) -> Recovery:
        refs = [SnapshotRef(s, fp, f"memory-{s}") for s, _, fp in reversed(self._snapshots)]
        return Recovery(refs, self.problems)

    def read_snapshot(self, ref: SnapshotRef) -> bytes:
        for s, data, _ in self._snapshots:
            if s == ref.seq:
                return data
        raise StorageCorrupt(f"{ref.name}: no such snapshot")

    def quarantine_snapshot(self, ref: SnapshotRef, why: str) -> None:
        self._snapshots = [t for t in self._snapshots if t[0] != ref.seq]
        self.problems.append(f"{ref.name}: {why}; skipped")

    def replay(self, after: int) -> Iterator[tuple[int, int, bytes]]:
        for rec in list(self._records):
            if rec[0] > after:
                yield rec

    def append(self, kind: int, payload: bytes) -> int:
        with self._lock:
            seq = self.last_seq + 1
            self._records.append((seq, kind, bytes(payload)))
            return seq

    def sync(self) -> int:
        return self.last_seq

    @property
    def needs_sync(self) -> bool:
        return False

    def write_snapshot(self, seq: int, data: bytes, fingerprint: bytes,
                       verify: Callable[[bytes], None] | None = None) -> None:
        if verify is not None:
            try:
                verify(bytes(data))
            except ValueError as exc:
                raise SnapshotInvalid(errno.EINVAL, f"snapshot {seq}: does not load "
                                      f"({exc}); not installed") from exc
        with self._lock:
            self._snapshots.append((seq, bytes(data), fingerprint))
            self._snapshots = self._snapshots[-2:]
            keep_from = self._snapshots[0][0]
            self._records = [r for r in self._records if r[0] > keep_from]

    @property
    def last_seq(self) -> int:
        return self._records[-1][0] if self._records else (
            self._snapshots[-1][0] if self._snapshots else 0)


# ------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _seg_name(first_seq: int) -> str:
    return f"wal-{first_seq:020d}.log"


def _snap_name(seq: int) -> str:
    return f"snapshot-{seq:020d}.snap"


def _seq_of(name: str, prefix: str, suffix: str) -> int | None:
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    digits = name[len(prefix):-len(suffix)]
    return int(digits) if digits.isdigit() and len(digits) == 20 else None


class FileStorage(Storage):
    """The write-ahead log and snapshots in a local folder (see the module doc).

    path: the folder (created). fsync: fdatasync the log in ``sync`` and fsync snapshots
    (False: durable against a process crash, not against a power loss).
    snapshots_kept: snapshots kept (>= 1); log segments are kept back to the oldest.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True,
                 snapshots_kept: int = 2, accept_log_loss: bool = False) -> None:
        if snapshots_kept < 1:
            raise ValueError(f"snapshots_kept: expected an integer >= 1, got {snapshots_kept}")
        self.path = Path(path)
        self.fsync = fsync
        self.snapshots_kept = snapshots_kept
        self.accept_log_loss = accept_log_loss
        self.problems = []
        self.data_loss: list[str] = []  # damage accepted with accept_log_loss (reported)
        self._lock_fd = -1
        self.fingerprint = b"\0" * FINGERPRINT_BYTES
        self._lock = threading.Lock()  # appends and the segment switch
        self._sync_lock = threading.Lock()  # one fsync at a time; the fd stays open during it
        self._fd = -1
        self._size = 0
        self._seg_first = 1
        self._last = 0
        self._synced = 0
        self._broken: str | None = None
        self._opened = False

    # --- low-level writes (a test double overrides these to simulate a full disk) ----------
    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def _write_file(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self._write_all(fd, data)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _datasync(self, fd: int) -> None:
        os.fdatasync(fd)

    # --- opening ------------------------------------------------------------------------
    def _segments(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.path.iterdir():
            s = _seq_of(p.name, "wal-", ".log")
            if s is not None:
                out.append((s, p))
        return sorted(out)

    def _snapshot_files(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.path.iterdir():
            s = _seq_of(p.name, "snapshot-", ".snap")
            if s is not None:
                out.append((s, p))
        return sorted(out)

    def _quarantine(self, path: Path, why: str) -> None:
        target = path.with_name(path.name + ".corrupt")
        n = 1
        while target.exists():
            target = path.with_name(f"{path.name}.{n}.corrupt")
            n += 1
        os.replace(path, target)
        msg = f"{path.name}: {why}; moved to {target.name}"
        self.problems.append(msg)
        log.error("storage: %s", msg)

    def open(self, fingerprint: bytes) -> Recovery:
        if self._opened:
            raise RuntimeError("storage: open() was already called")
        if len(fingerprint) != FINGERPRINT_BYTES:
            raise ValueError(f"fingerprint: expected {FINGERPRINT_BYTES} bytes")
        self.path.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self.fingerprint = fingerprint
        self._opened = True
        for p in self.path.glob("*.tmp"):  # a snapshot being written when the process died
            p.unlink()
        refs = []
        for seq, p in reversed(self._snapshot_files()):
            try:
                with open(p, "rb") as fh:
                    head = fh.read(SNAPSHOT_HEADER_BYTES)
                magic, version, hseq, fp, _ = _SNAP_HEAD.unpack_from(head)
            except (OSError, struct.error) as exc:
                self._quarantine(p, f"unreadable snapshot header ({exc})")
                continue
            if magic != SNAPSHOT_MAGIC or version != SNAPSHOT_VERSION or hseq != seq:
                self._quarantine(p, f"not a version-{SNAPSHOT_VERSION} snapshot for seq {seq}")
                continue
            refs.append(SnapshotRef(seq, fp, p.name))
        return Recovery(refs, self.problems)

    def _take_lock(self) -> None:
        """One writer per folder: an exclusive flock on ``LOCK``, held until close() (the
        kernel releases it when the process dies, kill -9 included). The file says who
        holds it, so that a refused process can name the holder."""
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            try:
                holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise StorageLocked(
                f"{self.path / LOCK_NAME}: the state folder is in use by another process "
                f"({holder}); one process serves one folder ({exc.strerror})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the last descriptor releases the flock
            self._lock_fd = -1

    def read_snapshot(self, ref: SnapshotRef) -> bytes:
        p = self.path / ref.name
        with open(p, "rb") as fh:
            blob = fh.read()
        if len(blob) < SNAPSHOT_HEADER_BYTES:
            raise StorageCorrupt(f"{ref.name}: truncated header ({len(blob)} bytes)")
        _, _, _, _, length = _SNAP_HEAD.unpack_from(blob)
        (crc,) = _SNAP_CRC.unpack_from(blob, _SNAP_HEAD.size)
        payload = memoryview(blob)[SNAPSHOT_HEADER_BYTES:]
        if len(payload) != length:
            raise StorageCorrupt(f"{ref.name}: truncated (payload {len(payload)} of "
                                 f"{length} bytes)")
        if zlib.crc32(payload, zlib.crc32(blob[:_SNAP_HEAD.size])) != crc:
            raise StorageCorrupt(f"{ref.name}: checksum mismatch")
        return bytes(payload)

    def quarantine_snapshot(self, ref: SnapshotRef, why: str) -> None:
        self._quarantine(self.path / ref.name, why)

    def _read_segment_header(self, fh: object, p: Path) -> tuple[int, bytes]:
        head = fh.read(SEGMENT_HEADER_BYTES)  # type: ignore[attr-defined]
        if len(head) < SEGMENT_HEADER_BYTES:
            raise StorageCorrupt(f"{p.name}: truncated segment header")
        magic, version, first, fp = _SEG_HEAD.unpack_from(head)
        (crc,) = _SEG_HEAD_CRC.unpack_from(head, _SEG_HEAD.size)
        if magic != WAL_MAGIC or version != WAL_VERSION or zlib.crc32(head[:_SEG_HEAD.size]) != crc:
            raise StorageCorrupt(f"{p.name}: bad segment header")
        if _seg_name(first) != p.name:
            raise StorageCorrupt(f"{p.name}: header says first seq {first}")
        return first, fp

    def _damage(self, msg: str) -> None:
        """Acknowledged records cannot be read: refuse (StorageCorrupt), or, when the
        operator accepted the loss, report it (``data_loss``, ``problems``) and go on."""
        if not self.accept_log_loss:
            raise StorageCorrupt(f"{msg}: acknowledged records cannot be read; restore the "
                                 "folder from a backup, or start with --accept-log-loss "
                                 "to serve without them (the loss is then reported)")
        msg = f"DATA LOSS accepted: {msg}"
        self.data_loss.append(msg)
        self.problems.append(msg)
        log.critical("storage: %s", msg)

    @staticmethod
    def _valid_record_after(data: bytes, start: int, min_seq: int) -> int | None:
        """The offset of the first complete record with a matching checksum and a seq >=
        min_seq at or after `start`, or None: a crash tears only the end of the log, so
        a valid record after a bad one means the bad one is damage, not a torn tail."""
        end = len(data)
        max_seq = min_seq + (end - start) // RECORD_HEADER_BYTES + 1
        for pos in range(start, end - RECORD_HEADER_BYTES + 1):
            length, crc, seq, kind = _REC_HEAD.unpack_from(data, pos)
            if not min_seq <= seq <= max_seq or length > end - pos - RECORD_HEADER_BYTES:
                continue
            body = pos + RECORD_HEADER_BYTES
            if _crc_record(seq, kind, data[body:body + length]) == crc:
                return pos
        return None

    @staticmethod
    def _damaged_not_torn(data: bytes, pos: int, seq_next: int) -> bool:
        """Whether the bad record at `pos` (the last thing in the newest segment) is a
        whole record that was damaged rather than one a crash tore. A crash leaves a
        record shorter than its length field, or (power loss) zeros/garbage whose seq is
        not the next one; a record whose bytes are all there is damage when its seq is the
        expected one, or when its payload checks out under a corrected length or seq."""
        end = len(data)
        if end - pos < RECORD_HEADER_BYTES:
            return False
        length, crc, seq, kind = _REC_HEAD.unpack_from(data, pos)
        body = pos + RECORD_HEADER_BYTES
        sector = -(-body // SECTOR_BYTES) * SECTOR_BYTES
        if end - sector >= ZERO_TAIL_MIN_BYTES and data.count(0, sector, end) == end - sector:
            return False  # zeros from a sector boundary on: a write a power loss tore
        if seq == seq_next and length <= end - body:
            return True  # complete, the expected seq: a checksum failure is damage
        rest = data[body:end]
        if _crc_record(seq_next, kind, rest) == crc:
            return True  # complete with a damaged length or seq field
        if length <= end - body and _crc_record(seq_next, kind, data[body:body + length]) == crc:
            return True
        return False

    def replay(self, after: int) -> Iterator[tuple[int, int, bytes]]:
        if not self._opened:
            raise RuntimeError("storage: call open() first")
        segs = self._segments()
        if after > 0 and not any(first > after for first, _ in segs):
            # A snapshot at `after` is written only once the segment that follows it
            # exists (write_snapshot switches segments first), and compaction never
            # deletes the newest: that segment was removed.
            self._damage(f"log: no segment starts after the snapshot at seq {after} (the "
                         "newest log segment was deleted)")
        # Start at the segment holding record after+1; those before are covered by the snapshot.
        start = 0
        for i, (first, _) in enumerate(segs):
            if first <= after + 1:
                start = i
        if segs and segs[start][0] > after + 1:
            self._damage(f"log: records {after + 1}..{segs[start][0] - 1} are missing "
                         f"(the oldest segment is {segs[start][1].name}, the snapshot "
                         f"covers up to {after})")
            after = segs[start][0] - 1
        expected = after + 1
        tail: tuple[int, Path, int, int] | None = None  # (first, path, end, last seq in it)
        for i in range(start, len(segs)):
            first, p = segs[i]
            is_last = i == len(segs) - 1
            with open(p, "rb") as fh:
                data = fh.read()
            try:
                _, fp = self._read_segment_header(_BytesReader(data), p)
            except StorageCorrupt as exc:
                if is_last and len(data) <= SEGMENT_HEADER_BYTES:
                    # Segments are created whole (temporary file, rename); a damaged
                    # header with no record after it lost nothing.
                    self._quarantine(p, f"{exc}")
                    _fsync_dir(self.path)
                    break
                self._damage(f"{exc} (byte 0 of {len(data)})")
                self._quarantine_rest(segs[i:], "not replayed: after accepted damage")
                break
            if first > expected:
                self._damage(f"{p.name}: records {expected}..{first - 1} are missing")
                self._quarantine_rest(segs[i:], "not replayed: after accepted damage")
                break
            pos, seq_next, end = SEGMENT_HEADER_BYTES, first, len(data)
            bad: str | None = None
            while pos < end:
                if end - pos < RECORD_HEADER_BYTES:
                    bad = f"torn record header at byte {pos}"
                    break
                length, crc, seq, kind = _REC_HEAD.unpack_from(data, pos)
                if length > MAX_RECORD_BYTES or end - pos - RECORD_HEADER_BYTES < length:
                    bad = f"torn record at byte {pos} (length {length})"
                    break
                body = pos + RECORD_HEADER_BYTES
                payload = data[body:body + length]
                if seq != seq_next or _crc_record(seq, kind, payload) != crc:
                    bad = f"corrupt record at byte {pos} (checksum or sequence mismatch)"
                    break
                pos = body + length
                seq_next += 1
                if seq >= expected:
                    if fp != self.fingerprint:
                        raise FingerprintMismatch(
                            f"{p.name}: written by a service with another engine "
                            "configuration (catalogue, policy or engine settings); replaying "
                            "it under this one would not reproduce what was acknowledged. "
                            "Start with the configuration that wrote it and stop cleanly "
                            "(a clean stop snapshots and empties the log), then change it")
                    expected = seq + 1
                    yield seq, kind, payload
            if bad is not None:
                if not is_last:
                    self._damage(f"{p.name}: {bad}, in a segment followed by others")
                    self._cut_tail(p, pos, end - pos, bad, lost=True)
                    self._quarantine_rest(segs[i + 1:], "not replayed: after accepted damage")
                    tail = (first, p, pos, seq_next - 1)
                    break
                later = self._valid_record_after(data, pos + 1, seq_next)
                if later is not None:
                    self._damage(f"{p.name}: {bad}, followed by a valid record at byte "
                                 f"{later}")
                    self._cut_tail(p, pos, end - pos, bad, lost=True)
                elif self._damaged_not_torn(data, pos, seq_next):
                    self._damage(f"{p.name}: {bad}: a whole record that was damaged, not "
                                 "a torn write")
                    self._cut_tail(p, pos, end - pos, bad, lost=True)
                else:
                    self._cut_tail(p, pos, end - pos, bad)
            tail = (first, p, pos, seq_next - 1)
        self._last = expected - 1
        if tail is not None and tail[3] == self._last:
            self._fd = os.open(tail[1], os.O_WRONLY | os.O_APPEND)
            self._seg_first, self._size = tail[0], tail[2]
        else:
            self._new_segment(self._last + 1)
        self._synced = self._last

    def _quarantine_rest(self, segs: list[tuple[int, Path]], why: str) -> None:
        for _, p in segs:
            self._quarantine(p, why)
        if segs:
            _fsync_dir(self.path)

    def _cut_tail(self, p: Path, pos: int, n: int, why: str, lost: bool = False) -> None:
        with open(p, "rb") as fh:
            fh.seek(pos)
            tail = fh.read()
        target = p.with_name(f"{p.name}.tail-{pos}.corrupt")
        target.write_bytes(tail)
        with open(p, "r+b") as fh:
            fh.truncate(pos)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(self.path)
        what = "bytes (accepted loss)" if lost else "bytes of unacknowledged tail"
        msg = f"{p.name}: {why}; cut {n} {what} (saved as {target.name})"
        self.problems.append(msg)
        log.error("storage: %s", msg)

    def _new_segment(self, first: int) -> None:
        p = self.path / _seg_name(first)
        head = _SEG_HEAD.pack(WAL_MAGIC, WAL_VERSION, first, self.fingerprint)
        head += _SEG_HEAD_CRC.pack(zlib.crc32(head))
        tmp = p.with_name(p.name + ".tmp")
        try:
            self._write_file(tmp, head)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, p)
        if self.fsync:
            _fsync_dir(self.path)
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._seg_first, self._size = fd, first, len(head)

    # --- writing ------------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        return self._last

    @property
    def needs_sync(self) -> bool:
        return self.fsync

    def append(self, kind: int, payload: bytes) -> int:
        with self._lock:
            if self._broken is not None:
                raise StorageError(errno.EIO, f"storage: {self._broken}")
            if self._fd < 0:
                raise RuntimeError("storage: replay() must run before append()")
            seq = self._last + 1
            rec = encode_record(seq, kind, payload)
            try:
                self._write_all(self._fd, rec)
            except OSError:
                # Undo a partial write, so that the next record follows a whole one.
                try:
                    os.ftruncate(self._fd, self._size)
                except OSError as exc2:
                    self._broken = f"could not roll back a failed log write ({exc2})"
                    raise StorageError(errno.EIO, f"storage: {self._broken}") from exc2
                raise
            self._size += len(rec)
            self._last = seq
            return seq

    def sync(self) -> int:
        with self._sync_lock:
            with self._lock:
                fd, target = self._fd, self._last
            if target <= self._synced:
                return self._synced
            if self.fsync:
                try:
                    self._datasync(fd)
                except OSError as exc:
                    # After a failed fsync the kernel may have dropped the dirty pages: what
                    # is on disk is unknown, so no further write may be acknowledged.
                    with self._lock:
                        self._broken = f"fsync of the log failed ({exc})"
                    raise StorageError(errno.EIO, f"storage: {self._broken}") from exc
            self._synced = target
            return target

    @property
    def synced_seq(self) -> int:
        return self._synced

    def write_snapshot(self, seq: int, data: bytes, fingerprint: bytes,
                       verify: Callable[[bytes], None] | None = None) -> None:
        if len(fingerprint) != FINGERPRINT_BYTES:
            raise ValueError(f"fingerprint: expected {FINGERPRINT_BYTES} bytes")
        # Start a new segment, so that the older ones can be deleted once covered.
        with self._sync_lock, self._lock:
            if self._broken is not None:
                raise StorageError(errno.EIO, f"storage: {self._broken}")
            if self._last + 1 != self._seg_first:
                if self.fsync:
                    self._datasync(self._fd)
                    self._synced = self._last
                self._new_segment(self._last + 1)
        head = _SNAP_HEAD.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, seq, fingerprint, len(data))
        crc = zlib.crc32(data, zlib.crc32(head))
        final = self.path / _snap_name(seq)
        tmp = final.with_name(final.name + ".tmp")
        try:
            self._write_file(tmp, head + _SNAP_CRC.pack(crc) + data)
            # Read back what is on disk and check it loads before it replaces anything.
            with open(tmp, "rb") as fh:
                blob = fh.read()
            payload = blob[SNAPSHOT_HEADER_BYTES:]
            if (len(payload) != len(data)
                    or zlib.crc32(payload, zlib.crc32(blob[:_SNAP_HEAD.size])) != crc):
                raise SnapshotInvalid(errno.EIO, f"{final.name}: read back with a checksum "
                                      "mismatch; not installed")
            if verify is not None:
                try:
                    verify(payload)
                except ValueError as exc:
                    raise SnapshotInvalid(errno.EINVAL, f"{final.name}: does not load "
                                          f"({exc}); not installed") from exc
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, final)
        if self.fsync:
            _fsync_dir(self.path)
        self._compact()

    def _compact(self) -> None:
        snaps = self._snapshot_files()
        for _, p in snaps[:-self.snapshots_kept]:
            p.unlink()
        kept = snaps[-self.snapshots_kept:]
        if len(kept) < self.snapshots_kept:
            # Until there are as many snapshots as are kept, the whole log stays: a corrupt
            # newest snapshot then falls back on the log from the beginning.
            return
        oldest = kept[0][0]
        segs = self._segments()
        for (_, p), (next_first, _) in itertools.pairwise(segs):
            if next_first - 1 <= oldest and next_first <= self._seg_first:
                p.unlink()
        if self.fsync:
            _fsync_dir(self.path)

    def close(self) -> None:
        if self._fd >= 0:
            try:
                if self._broken is None:
                    self.sync()
            finally:
                os.close(self._fd)
                self._fd = -1
                self._release_lock()
        else:
            self._release_lock()


class _BytesReader:
    """A read() over bytes (so the header check works on a file or on data in memory)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, n: int) -> bytes:
        return self._data[:n]


__all__ = ["FileStorage", "FingerprintMismatch", "MemoryStorage", "Recovery", "SnapshotRef", "Storage",
           "StorageCorrupt", "StorageError", "encode_record"]
