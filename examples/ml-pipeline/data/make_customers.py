"""Writes customers.csv, the example's data set: a telecom's customers and whether they left.

Deterministic (fixed seed), standard library only, so the file in the repository can be
regenerated exactly: python3 make_customers.py > customers.csv
"""

import csv
import math
import random
import sys

rng = random.Random(20261126)
out = csv.writer(sys.stdout, lineterminator="\n")
out.writerow(["customer_id", "tenure_months", "monthly_charges", "support_calls", "yearly_contract", "churned"])
for i in range(600):
    tenure = rng.randint(1, 72)
    charges = round(rng.uniform(20, 120), 2)
    calls = min(9, int(rng.expovariate(0.6)))
    yearly = 1 if rng.random() < 0.45 else 0
    score = -0.045 * tenure + 0.03 * charges + 0.45 * calls - 1.6 * yearly - 1.2
    churned = 1 if rng.random() < 1 / (1 + math.exp(-score)) else 0
    out.writerow([f"C{i:04d}", tenure, charges, calls, yearly, churned])
