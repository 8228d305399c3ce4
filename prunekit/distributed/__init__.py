"""Several ranks for one run: torch.distributed's launcher starts them (``distributed.nproc=N``), or a cluster's
scheduler does (submitit on SLURM); DDP trains, and rank 0 alone writes files and the console.

- :mod:`prunekit.distributed.world`: where this process stands (its rank, its share of every batch) and the
  collectives the stages and methods use (sums, score reductions, the masks' agreement check);
- :mod:`prunekit.distributed.parallel`: the DDP wrapper a training stage trains through;
- :mod:`prunekit.distributed.launch`: starting the ranks from a Hydra job, and what their ending means.
"""
