"""Model checkpoints on this machine and on the hubs: finding and downloading them."""
