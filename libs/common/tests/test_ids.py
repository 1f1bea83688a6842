import time

from crossmodel_common.ids import new_api_key, new_request_id, new_ulid


def test_request_ids_are_unique_and_sort_by_time() -> None:
    first = new_request_id()
    time.sleep(0.002)
    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(i.startswith("req_") and len(i) == 30 for i in ids)
    assert first < min(ids)


def test_api_keys_have_the_prefix_and_enough_entropy() -> None:
    key = new_api_key()
    assert key.startswith("cm-")
    assert len(key) - 3 >= 32
    assert new_api_key() != key


def test_ulid_is_26_chars() -> None:
    assert len(new_ulid()) == 26
