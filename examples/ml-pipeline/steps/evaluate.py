"""Step 3, the reduce: of every trained model, the one with the best validation accuracy was
downloaded as input `model`; score it on the held-out customers and report its metrics."""

import json
import os

from common import config, input_dir, output_dir, predict, read_rows

settings = config()
with open(os.path.join(input_dir("model"), "model.json"), encoding="utf-8") as f:
    model = json.load(f)
rows = read_rows(os.path.join(input_dir("test"), "test.csv"))
# What every training instance reported (train's XCom, a list in map-index order).
candidates = json.loads(os.environ.get("CANDIDATES", "[]"))
for index, candidate in enumerate(candidates):
    print(
        f"candidate {index}: learning_rate={candidate.get('learning_rate')} epochs={candidate.get('epochs')} "
        f"validation accuracy {candidate.get('validation_accuracy')}"
    )
best = max(candidates, key=lambda c: c.get("validation_accuracy", 0), default={})

scored = [(predict(model, x), y) for x, y in rows]
predicted = [(p >= 0.5, y) for p, y in scored]
true_pos = sum(1 for p, y in predicted if p and y)
positives = sum(1 for _, y in predicted if y)
flagged = sum(1 for p, _ in predicted if p)
ranked = sorted(scored)
# AUC: the chance that a random churned customer scores above a random staying one.
pairs = wins = 0
for i, (p, y) in enumerate(ranked):
    if y:
        wins += sum(1 for q, z in ranked[:i] if not z and q < p)
        pairs += sum(1 for _, z in ranked if not z)
metrics = {
    "rows": len(rows),
    "accuracy": round(sum(1 for p, y in predicted if p == bool(y)) / len(rows), 4),
    "precision": round(true_pos / flagged, 4) if flagged else 0.0,
    "recall": round(true_pos / positives, 4) if positives else 0.0,
    "auc": round(wins / pairs, 4) if pairs else 0.0,
    "trainer": model["trainer"],
    "candidates": len(candidates),
    "chosen": {k: best.get(k) for k in ("learning_rate", "epochs", "validation_accuracy")},
}
with open(os.path.join(output_dir("metrics"), "metrics.json"), "w", encoding="utf-8") as f:
    json.dump(metrics, f, indent=2)
print("metrics: " + json.dumps(metrics))
if metrics["accuracy"] < settings["min_accuracy"]:
    raise SystemExit(f"accuracy {metrics['accuracy']} is below min_accuracy {settings['min_accuracy']}")
