"""The course image: spec (image.yml, locks, tags), lock, build, smoke tests, registry.

The Docker SDK owns images here: spec reads images/<variant>/image.yml and its locks,
lock and outdated/update move pins, build makes the tagged image (offline from a
wheelhouse), smoke runs its tests, registry pushes it and records what was pushed, prune
removes tags no job uses. It must not install anything on a host: a GPU server pulls the
pushed image through Ansible (playbooks/images.yml, role course_image).
"""
