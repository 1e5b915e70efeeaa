package dev.athanor.dist;

import java.util.Objects;

/**
 * The grid of a hybrid-parallel run: {@code dp × tp × pp} processes, Megatron's layout. World rank {@code w} has
 * tensor-parallel index {@code w mod tp} (tensor-parallel peers are neighbours, so on one machine they share memory
 * bandwidth rather than a network), data-parallel index {@code (w / tp) mod dp}, and pipeline stage {@code w / (tp ×
 * dp)}. Each rank belongs to one group per dimension: the ranks that differ only in that index.
 *
 * @param dp data-parallel replicas, {@code >= 1}
 * @param tp tensor-parallel ranks per replica and stage, {@code >= 1}
 * @param pp pipeline stages, {@code >= 1}
 */
public record ParallelGrid(int dp, int tp, int pp) {
  public ParallelGrid {
    if (dp < 1 || tp < 1 || pp < 1) {
      throw new IllegalArgumentException("grid dp " + dp + " x tp " + tp + " x pp " + pp + ": every dimension must be >= 1");
    }
    if ((long) dp * tp * pp > Integer.MAX_VALUE) throw new IllegalArgumentException("grid dp " + dp + " x tp " + tp + " x pp " + pp + " is too large");
  }

  /** The processes the grid needs. */
  public int size() {
    return dp * tp * pp;
  }

  /** One rank's place in the grid. */
  public record Coordinates(int dp, int tp, int pp) {}

  /** The place of world rank {@code rank}. */
  public Coordinates coordinates(int rank) {
    if (rank < 0 || rank >= size()) throw new IllegalArgumentException("rank " + rank + " outside the grid's " + size() + " processes");
    return new Coordinates((rank / tp) % dp, rank % tp, rank / (tp * dp));
  }

  /** The world rank at {@code c}. */
  public int rank(Coordinates c) {
    Objects.requireNonNull(c, "c");
    if (c.dp() < 0 || c.dp() >= dp || c.tp() < 0 || c.tp() >= tp || c.pp() < 0 || c.pp() >= pp) {
      throw new IllegalArgumentException(c + " outside the grid " + this);
    }
    return (c.pp() * dp + c.dp()) * tp + c.tp();
  }

  /**
   * A rank's three groups, each a communicator of {@link Communicator#split} (closed together, before the world). A
   * dimension of size 1 still gets its one-process group.
   */
  public record Groups(Coordinates at, Communicator dp, Communicator tp, Communicator pp) implements AutoCloseable {
    @Override
    public void close() {
      try {
        pp.close();
      } finally {
        try {
          tp.close();
        } finally {
          dp.close();
        }
      }
    }
  }

  /**
   * Splits {@code world} into this rank's data-, tensor- and pipeline-parallel groups (a collective over the world);
   * group ranks are the indices along their dimension. The world must have exactly {@link #size()} processes.
   */
  public Groups split(Communicator world) {
    Objects.requireNonNull(world, "world");
    if (world.size() != size()) {
      throw new IllegalArgumentException("dp " + dp + " x tp " + tp + " x pp " + pp + " = " + size() + " processes, but the run has "
          + world.size());
    }
    Coordinates c = coordinates(world.rank());
    Communicator d = null, t = null, p = null;
    try {
      d = world.split(c.pp() * tp + c.tp(), c.dp());
      t = world.split(c.pp() * dp + c.dp(), c.tp());
      p = world.split(c.dp() * tp + c.tp(), c.pp());
      return new Groups(c, d, t, p);
    } catch (RuntimeException e) {
      for (Communicator x : new Communicator[] {p, t, d}) if (x != null) x.close();
      throw e;
    }
  }

  @Override
  public String toString() {
    return "dp " + dp + " x tp " + tp + " x pp " + pp;
  }
}
