"""Step 2, one instance per parameter set: train a logistic-regression churn model.

The parameter set comes in the environment (LEARNING_RATE, EPOCHS; the config's values when
unset). A fifth of the training rows is held out to score the model, and that score goes to the
XCom with the parameters, so the evaluate step can pick the best instance's model.

With scikit-learn installed it does the fitting (EPOCHS bounds its iterations); without it,
plain gradient descent in the standard library fits the same model, so the pipeline runs
anywhere Python 3 does. Either way the model is saved as JSON (feature scaling, weights, bias).
"""

import json
import math
import os

from common import FEATURES, add_to_xcom, config, input_dir, output_dir, predict, read_rows

settings = config()
rate = float(os.environ.get("LEARNING_RATE", settings["learning_rate"]))
epochs = int(os.environ.get("EPOCHS", settings["epochs"]))
rows = read_rows(os.path.join(input_dir("train"), "train.csv"))
held_out = int(len(rows) * settings["validation_fraction"])
rows, validation = rows[held_out:], rows[:held_out]
columns = list(zip(*[x for x, _ in rows]))
mean = [sum(c) / len(c) for c in columns]
std = [math.sqrt(sum((v - m) ** 2 for v in c) / len(c)) or 1.0 for c, m in zip(columns, mean)]
xs = [[(v - m) / s for v, m, s in zip(x, mean, std)] for x, _ in rows]
ys = [y for _, y in rows]

try:
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(max_iter=epochs).fit(xs, ys)
    weights, bias, trainer = [float(w) for w in fitted.coef_[0]], float(fitted.intercept_[0]), "scikit-learn"
except ImportError:
    weights, bias, trainer = [0.0] * len(FEATURES), 0.0, "python (gradient descent)"
    for _ in range(epochs):
        grad_w, grad_b = [0.0] * len(weights), 0.0
        for x, y in zip(xs, ys):
            error = 1 / (1 + math.exp(-(sum(w * v for w, v in zip(weights, x)) + bias))) - y
            grad_w = [g + error * v for g, v in zip(grad_w, x)]
            grad_b += error
        weights = [w - rate * g / len(xs) for w, g in zip(weights, grad_w)]
        bias -= rate * grad_b / len(xs)

model = {"features": FEATURES, "mean": mean, "std": std, "weights": weights, "bias": bias, "trainer": trainer}
with open(os.path.join(output_dir("model"), "model.json"), "w", encoding="utf-8") as f:
    json.dump(model, f, indent=2)
correct = sum(1 for x, y in validation if (predict(model, x) >= 0.5) == bool(y))
score = round(correct / len(validation), 4)
add_to_xcom({"validation_accuracy": score, "learning_rate": rate, "epochs": epochs})
print(
    f"trained on {len(rows)} rows with {trainer} (learning_rate={rate}, epochs={epochs}): "
    + ", ".join(f"{n}={w:+.3f}" for n, w in zip(FEATURES, weights))
    + f"; validation accuracy {score}"
)
