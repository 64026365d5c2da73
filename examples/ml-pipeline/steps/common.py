"""What the three steps share: where Gust put their inputs, and the CSV and model formats."""

import csv
import json
import os

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "yearly_contract"]
LABEL = "churned"


def input_dir(name):
    """The folder Gust downloaded input `name` into (GUST_INPUT_<NAME>)."""
    return os.environ.get(f"GUST_INPUT_{name.upper()}", f"/opt/ml/processing/input/{name}")


def output_dir(name):
    """The folder whose files Gust uploads as output `name` once the step succeeds."""
    path = os.environ.get(f"GUST_OUTPUT_{name.upper()}", f"/opt/ml/processing/output/{name}")
    os.makedirs(path, exist_ok=True)
    return path


def config():
    """The pipeline's settings (the steps' `config` file)."""
    folder = os.environ.get("GUST_INPUT_CONFIG", "/opt/ml/processing/input/config")
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def read_rows(path):
    """Rows of a CSV file as (features, label) pairs."""
    with open(path, newline="", encoding="utf-8") as f:
        return [([float(row[c]) for c in FEATURES], int(row[LABEL])) for row in csv.DictReader(f)]


def write_rows(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(header)
        out.writerows(rows)
