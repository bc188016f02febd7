"""WriteBehind: a file written from a thread of its own keeps every byte, in order, and reports a failed write."""

import io

import pytest

from batch_classifier.write_behind import WriteBehind


def test_every_write_arrives_in_order_and_the_file_is_closed():
    out = io.BytesIO()
    closed = []
    out.close = lambda: closed.append(True)  # type: ignore[method-assign]
    pieces = [b"%d\n" % n * (n % 7) for n in range(5000)]
    with WriteBehind(out, piece=64, depth=2) as writer:
        for piece in pieces:
            assert writer.write(piece) == len(piece)
    assert out.getvalue() == b"".join(pieces)
    assert closed == [True]
    writer.close()  # a second close does nothing
    assert closed == [True]


def test_lists_of_pieces_are_handed_over_about_a_piece_at_a_time():
    class Recording(io.BytesIO):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        def write(self, data) -> int:
            self.sizes.append(len(data))
            return super().write(data)

        def close(self) -> None:
            """Kept open, to be read."""

    out = Recording()
    lists = [[b"x" * ((n * 13 + m) % 50) for m in range(n % 40)] for n in range(300)]  # empty lists and pieces too
    with WriteBehind(out, piece=100, depth=2) as writer:
        writer.write(b"first")
        for pieces in lists:
            writer.writelines(pieces)
    assert out.getvalue() == b"first" + b"".join(piece for pieces in lists for piece in pieces)
    assert len(out.sizes) > 100
    assert all(100 <= size < 150 for size in out.sizes[:-1])  # a piece, and at most the list item that filled it


class Failing(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(28, "No space left on device")


def test_a_failed_write_is_raised_in_the_callers_thread():
    writer = WriteBehind(Failing(), piece=1, depth=1)
    with pytest.raises(OSError, match="No space left"):
        for _ in range(100):
            writer.write(b"x")
        writer.close()
    with pytest.raises(OSError, match="No space left"):
        writer.close()


class Upload(io.BytesIO):
    """An upload's shape: abort drops what was written, close publishes it."""

    def __init__(self) -> None:
        super().__init__()
        self.ended: list[str] = []

    def close(self) -> None:
        self.ended.append("published")

    def abort(self) -> None:
        self.ended.append("aborted")


def test_an_upload_left_by_an_exception_is_aborted_not_published():
    upload = Upload()
    with pytest.raises(RuntimeError), WriteBehind(upload) as writer:
        writer.write(b"half a file")
        raise RuntimeError("the conversion failed")
    assert upload.ended == ["aborted"]
    done = Upload()
    with WriteBehind(done) as writer:
        writer.write(b"a whole file")
    assert done.ended == ["published"] and done.getvalue() == b"a whole file"


def test_the_thread_stops_when_the_last_hand_over_fails() -> None:
    writer = WriteBehind(io.BytesIO())
    writer.write(b"pending")

    def fail() -> None:
        raise MemoryError("no room for the last piece")

    writer._hand_over = fail  # type: ignore[method-assign]
    with pytest.raises(MemoryError):
        writer.close()
    assert not writer._thread.is_alive()
