"""Step 1: split the raw customer table into a training set and a held-out test set, and list
the parameter sets to train a model with (one `train` instance each)."""

import csv
import itertools
import os
import random

from common import FEATURES, LABEL, add_to_xcom, config, input_dir, output_dir, write_rows

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

# Every combination of the grid's values, as the environment each training instance gets.
grid = settings["param_grid"]
names = sorted(grid)
param_sets = [
    {name.upper(): str(value) for name, value in zip(names, values)}
    for values in itertools.product(*(grid[name] for name in names))
]
add_to_xcom({"param_sets": param_sets})
print(f"{len(param_sets)} parameter sets to train with: {param_sets}")
