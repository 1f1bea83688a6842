from crossmodel_router.domain.breaker import Breakers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_then_lets_one_probe_through() -> None:
    clock = Clock()
    b = Breakers(failures=2, open_seconds=10, clock=clock)
    b.failure("a")
    assert b.available("a")
    b.failure("a")
    assert b.is_open("a")
    assert not b.available("a")
    clock.now += 10
    assert b.available("a")  # the probe
    assert not b.available("a")  # only one probe at a time
    b.success("a")
    assert b.available("a")
    assert not b.is_open("a")


def test_a_success_resets_the_count() -> None:
    b = Breakers(failures=2, open_seconds=10, clock=Clock())
    b.failure("a")
    b.success("a")
    b.failure("a")
    assert b.available("a")


def test_order_puts_open_deployments_last_but_keeps_them() -> None:
    b = Breakers(failures=1, open_seconds=10, clock=Clock())
    b.failure("a")
    assert b.order(["a", "b", "c"], lambda n: n) == ["b", "c", "a"]
