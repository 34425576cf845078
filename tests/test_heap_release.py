"""spacy_binder.memory: free heap pages go back to the system only when the
process has grown by more than the limit beyond what the caller keeps."""
import platform

import pytest

from spacy_binder import memory


@pytest.fixture
def fake_process(monkeypatch):
    resident = {"bytes": 1000}
    released = []
    monkeypatch.setattr(memory, "resident_bytes", lambda: resident["bytes"])
    monkeypatch.setattr(memory, "release_free_memory", lambda: released.append(resident["bytes"]) or True)
    return resident, released


def test_released_only_beyond_the_limit_and_what_is_kept(fake_process):
    resident, released = fake_process
    limit = memory.HeapGrowthLimit(100)
    resident["bytes"] = 1150
    assert limit.check(kept_bytes=50) is False  # grown 150 = 50 kept + 100 allowed
    resident["bytes"] = 1151
    assert limit.check(kept_bytes=50) is True
    assert limit.check(kept_bytes=60) is False  # more of it is kept output
    assert released == [1151]


def test_nothing_is_done_where_the_resident_size_is_unknown(monkeypatch):
    monkeypatch.setattr(memory, "resident_bytes", lambda: None)
    monkeypatch.setattr(memory, "release_free_memory", lambda: pytest.fail("released without a measure"))
    assert memory.HeapGrowthLimit(0).check(kept_bytes=0) is False


def test_the_c_library_is_used_where_it_can_trim():
    # glibc (Linux CI) has malloc_trim; elsewhere the call is a no-op
    assert memory.release_free_memory() is (platform.libc_ver()[0] == "glibc")
    if platform.system() == "Linux":
        assert memory.resident_bytes() > 10 * 2**20  # this process, with torch loaded
