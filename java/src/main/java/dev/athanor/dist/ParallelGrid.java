package dev.athanor.dist;

/**
 * A data × tensor × pipeline parallel layout of {@code world = dp × tp × pp} processes, in Megatron's order: the
 * tensor-parallel coordinate varies fastest, then the data-parallel one, then the pipeline stage, i.e. world rank
 * {@code r = (pp_i × dp + dp_i) × tp + tp_i}. Tensor-parallel peers are thus neighbours (the most traffic on the
 * closest link), and a pipeline stage's processes form a contiguous block of {@code dp × tp} ranks.
 *
 * @param dp data-parallel replicas
 * @param tp tensor-parallel ranks per replica and stage
 * @param pp pipeline stages
 */
public record ParallelGrid(int dp, int tp, int pp) {
  public ParallelGrid {
    if (dp < 1 || tp < 1 || pp < 1) {
      throw new IllegalArgumentException("parallel grid dp " + dp + " x tp " + tp + " x pp " + pp + ": each must be >= 1");
    }
    if ((long) dp * tp * pp > Integer.MAX_VALUE) {
      throw new IllegalArgumentException("parallel grid dp " + dp + " x tp " + tp + " x pp " + pp + " has too many processes");
    }
  }

  /** A process's place in the grid. */
  public record Coordinates(int dp, int tp, int pp) {}

  /** The number of processes, {@code dp × tp × pp}. */
  public int world() {
    return dp * tp * pp;
  }

  /** The coordinates of world rank {@code rank}. */
  public Coordinates coordinates(int rank) {
    checkRank(rank);
    return new Coordinates(rank / tp % dp, rank % tp, rank / (tp * dp));
  }

  /** The world rank at {@code c}. */
  public int rank(Coordinates c) {
    if (c.dp() < 0 || c.dp() >= dp || c.tp() < 0 || c.tp() >= tp || c.pp() < 0 || c.pp() >= pp) {
      throw new IllegalArgumentException(c + " is outside the grid " + this);
    }
    return (c.pp() * dp + c.dp()) * tp + c.tp();
  }

  private void checkRank(int rank) {
    if (rank < 0 || rank >= world()) throw new IllegalArgumentException("rank " + rank + " is outside [0, " + world() + ") of " + this);
  }

  /** The data-parallel group's color of {@code rank}: the processes with its tp and pp coordinates (ranked by dp). */
  int dpColor(Coordinates c) {
    return c.pp() * tp + c.tp();
  }

  /** The tensor-parallel group's color: the processes with its dp and pp coordinates (ranked by tp). */
  int tpColor(Coordinates c) {
    return c.pp() * dp + c.dp();
  }

  /** The pipeline group's color: the processes with its dp and tp coordinates (ranked by stage). */
  int ppColor(Coordinates c) {
    return c.dp() * tp + c.tp();
  }

  /**
   * Splits {@code world} (of {@link #world()} processes; a collective over it) into this process's data-parallel,
   * tensor-parallel and pipeline groups; each group's rank is the process's coordinate along its dimension.
   */
  public Groups split(Communicator world) {
    if (world.size() != world()) {
      throw new IllegalArgumentException("the grid dp " + dp + " x tp " + tp + " x pp " + pp + " = " + world()
          + " processes, but the communicator has " + world.size());
    }
    Coordinates c = coordinates(world.rank());
    Communicator d = world.split(dpColor(c), c.dp());
    Communicator t = null;
    try {
      t = world.split(tpColor(c), c.tp());
      Communicator p = world.split(ppColor(c), c.pp());
      return new Groups(this, c, d, t, p);
    } catch (RuntimeException e) {
      if (t != null) t.close();
      d.close();
      throw e;
    }
  }

  /** A process's groups along the three dimensions; closing frees them (collectives over each group). */
  public record Groups(ParallelGrid grid, Coordinates at, Communicator dp, Communicator tp, Communicator pp)
      implements AutoCloseable {
    @Override
    public void close() {
      pp.close();
      tp.close();
      dp.close();
    }
  }
}
