"""A made-up class of students, for the lab's sample roster, tests and benchmarks."""

from __future__ import annotations

import base64
import csv
import io
import random
import struct

FIRST = [
    "Dana",
    "Noa",
    "Yonatan",
    "Maya",
    "Omer",
    "Tamar",
    "Itai",
    "Shira",
    "Amit",
    "Lior",
    "Zoë",
    "José",
    "Chloé",
    "Björn",
    "Ahmad",
    "Lina",
    "Yousef",
    "Rania",
    "Wei",
    "Priya",
    "דנה",
    "יונתן",
    "מיכל",
    "אורי",
    "محمد",
    "ليلى",
    "Ángel",
    "Søren",
    "Élodie",
    "Kenji",
]
LAST = [
    "Cohen",
    "Levi",
    "Mizrahi",
    "Peretz",
    "Biton",
    "Friedman",
    "Azulay",
    "Katz",
    "Müller",
    "García",
    "Nguyen",
    "Haddad",
    "Khalil",
    "Øster",
    "Dubois",
    "Tanaka",
    "כהן",
    "לוי",
    "אברהם",
    "حداد",
    "خليل",
    "Núñez",
    "Schäfer",
    "O'Brien",
    "Smith",
]


def fake_ed25519_key(rng: random.Random, comment: str) -> str:
    """A syntactically valid OpenSSH ed25519 public key (random bytes; no private key)."""
    kind = b"ssh-ed25519"
    blob = struct.pack(">I", len(kind)) + kind + struct.pack(">I", 32) + rng.randbytes(32)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


def make_class(n_pairs: int, n_singles: int = 0, seed: int = 236781, keys: bool = True) -> str:
    """A roster CSV with ``n_pairs`` pairs and ``n_singles`` singles."""
    rng = random.Random(seed)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student_id", "first_name", "last_name", "email", "pair", "ssh_public_key"])
    sid = 300000000
    sizes = [2] * n_pairs + [1] * n_singles
    rng.shuffle(sizes)
    for group, size in enumerate(sizes, 1):
        for _ in range(size):
            sid += rng.randint(1, 997)
            first, last = rng.choice(FIRST), rng.choice(LAST)
            key = fake_ed25519_key(rng, f"s{sid}@laptop") if keys and rng.random() < 0.8 else ""
            w.writerow([sid, first, last, f"s{sid}@campus.example.ac.il", group, key])
    return buf.getvalue()
