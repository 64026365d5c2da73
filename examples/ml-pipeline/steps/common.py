"""What the steps share: where Gust put their inputs, the CSV and model formats, and the XCom."""

import csv
import json
import math
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


def predict(model, features):
    """The churn probability `model` gives a row's features."""
    z = sum(w * (v - m) / s for w, v, m, s in zip(model["weights"], features, model["mean"], model["std"]))
    return 1 / (1 + math.exp(-(z + model["bias"])))


def add_to_xcom(values):
    """Adds `values` to the step's XCom, beside its outputs' URIs ($GUST_XCOM_FILE)."""
    path = os.environ.get("GUST_XCOM_FILE")
    if not path:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    current = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            current = json.load(f)
    current.update(values)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(current, f)
