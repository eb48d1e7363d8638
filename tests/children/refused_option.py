"""The check the options_* children share: setting a refused option raises ValueError naming it and leaves it 0."""

from pymimalloc import options


def assert_refused(name: str) -> None:
    assert options[name] == 0
    try:
        options[name] = 1
    except ValueError as exc:
        assert name in str(exc), str(exc)
    else:
        raise AssertionError(f"options[{name!r}] = 1 did not raise ValueError")
    assert options[name] == 0
