"""Train the example VAE (model.py) on the first 1500 digits for 50 epochs (10-20 s on one CPU
thread; longer training overfits: the held-out ELBO falls after ~40 epochs), and write its weights
(vae.pt) and the data (digits.npy, all 1797 digits as (N, 1, 8, 8) grey levels 0..16).

    python examples/digits_categorical/train.py            # 50 epochs
    python examples/digits_categorical/train.py --quick    # 3 epochs (CI)
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from model import DigitsVAE, digits  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE), help="folder for vae.pt and digits.npy")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="3 epochs (CI)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = digits()
    train = x[:1500]
    model = DigitsVAE()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    epochs = 3 if args.quick else args.epochs
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for batch in train[torch.randperm(len(train))].split(100):
            loss = -model.elbo(batch).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 10 == 0 or args.quick:
            with torch.no_grad():
                print(f"epoch {epoch}: train ELBO {model.elbo(train).mean():.2f}, "
                      f"held-out ELBO {model.elbo(x[1500:]).mean():.2f} nats", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "vae.pt")
    np.save(out / "digits.npy", x.numpy())
    print(f"{epochs} epochs in {time.perf_counter() - t0:.0f} s; wrote {out / 'vae.pt'} and {out / 'digits.npy'}")


if __name__ == "__main__":
    main()
