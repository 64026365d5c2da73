"""Step 2: train a logistic-regression churn model.

With scikit-learn installed it does the fitting; without it, plain gradient descent in the
standard library fits the same model, so the pipeline runs anywhere Python 3 does. Either way
the model is saved as JSON (feature scaling, weights, bias) for the evaluate step.
"""

import json
import math
import os

from common import FEATURES, config, input_dir, output_dir, read_rows

settings = config()
rows = read_rows(os.path.join(input_dir("train"), "train.csv"))
columns = list(zip(*[x for x, _ in rows]))
mean = [sum(c) / len(c) for c in columns]
std = [math.sqrt(sum((v - m) ** 2 for v in c) / len(c)) or 1.0 for c, m in zip(columns, mean)]
xs = [[(v - m) / s for v, m, s in zip(x, mean, std)] for x, _ in rows]
ys = [y for _, y in rows]

try:
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(max_iter=1000).fit(xs, ys)
    weights, bias, trainer = [float(w) for w in fitted.coef_[0]], float(fitted.intercept_[0]), "scikit-learn"
except ImportError:
    weights, bias, trainer = [0.0] * len(FEATURES), 0.0, "python (gradient descent)"
    rate = settings["learning_rate"]
    for _ in range(settings["epochs"]):
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
print(f"trained on {len(rows)} rows with {trainer}: " + ", ".join(f"{n}={w:+.3f}" for n, w in zip(FEATURES, weights)))
