"""issue 16: the operator-level fixture (the real RoseyApp from a rosey.toml), shared with tests/security."""

from tests.security.conftest import launcher, start_rosey  # noqa: F401
