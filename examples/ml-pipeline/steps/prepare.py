"""Step 1: split the raw customer table into a training set and a held-out test set."""

import csv
import os
import random

from common import FEATURES, LABEL, config, input_dir, output_dir, write_rows

settings = config()
with open(os.path.join(input_dir("raw"), "customers.csv"), newline="", encoding="utf-8") as f:
    rows = [row for row in csv.DictReader(f)]
print(f"read {len(rows)} customers")

random.Random(settings["seed"]).shuffle(rows)
cut = int(len(rows) * (1 - settings["test_fraction"]))
header = FEATURES + [LABEL]
for name, part in (("train", rows[:cut]), ("test", rows[cut:])):
    write_rows(os.path.join(output_dir(name), f"{name}.csv"), header, [[r[c] for c in header] for r in part])
    churn = sum(int(r[LABEL]) for r in part) / len(part)
    print(f"{name}: {len(part)} rows, churn rate {churn:.3f}")
