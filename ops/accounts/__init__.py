"""pyinfra owns people: the roster becomes groups, users, pair directories and keys.

model (the roster and inventory as the accounts they ask for) -> snapshot (one pyinfra fact
per host: what is there) -> plan (pure: the changes, as batched commands) -> sync (one
operation per host applies them; the state file keeps names and ids); slurm and budgets
plan each pair's Slurm account the same way; offboard archives before it removes. It must
not configure machines (packages, daemons, files of a role: that is Ansible's, roles/) nor
reach a host any way but ops/ssh.py's.
"""
