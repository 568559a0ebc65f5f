"""The course image: spec (image.yml, locks, tags), lock, build, smoke tests, registry."""
