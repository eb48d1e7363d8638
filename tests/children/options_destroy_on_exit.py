"""Setting destroy_on_exit raises ValueError naming it and leaves it 0."""

from refused_option import assert_refused

assert_refused("destroy_on_exit")
