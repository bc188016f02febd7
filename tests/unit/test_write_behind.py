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
