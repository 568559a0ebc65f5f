"""pyinfra owns people: the roster becomes groups, users, pair directories and keys."""
