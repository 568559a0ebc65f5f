"""tests/images/ holds images for the tests, not tests: their own tests run inside them."""

collect_ignore_glob = ["*"]
