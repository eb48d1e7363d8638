"""Setting destroy_on_exit raises ValueError naming it and leaves it 0."""

from pymimalloc import options

assert options["destroy_on_exit"] == 0
try:
    options["destroy_on_exit"] = 1
except ValueError as exc:
    assert "destroy_on_exit" in str(exc), str(exc)
else:
    raise AssertionError("options['destroy_on_exit'] = 1 did not raise ValueError")
assert options["destroy_on_exit"] == 0
