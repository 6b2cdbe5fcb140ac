"""Held-out loss curves of train_real: plot.py CURVES_CSV OUT_PNG."""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    curves = {}
    with open(sys.argv[1], newline="") as f:
        for row in csv.DictReader(f):
            curves.setdefault(row["method"], []).append((int(row["step"]), float(row["heldout_loss"])))
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, pts in curves.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name, linewidth=1.5 if name == "AdamW" else 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("held-out cross-entropy (nats/char)")
    ax.set_title("character LM on /usr/share/common-licenses")
    lo = min(p[1] for pts in curves.values() for p in pts)
    ax.set_ylim(lo - 0.1, lo + 2.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=120)


if __name__ == "__main__":
    main()
