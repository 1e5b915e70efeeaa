package dev.athanor.dist;

import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Run by {@link MpiRunTest} under mpirun: splits the world into the groups of a {@code dp tp pp} grid (arguments) and
 * checks each group against the grid's own arithmetic: its size and this rank's place in it, an I32 sum of the
 * members' world ranks, an F32 deterministic sum against the rank-order reference, and a send/recv ring inside the
 * group. Prints one line per rank and exits 0, or throws.
 */
public final class GridMain {
  public static void main(String[] args) {
    ParallelGrid grid = new ParallelGrid(Integer.parseInt(args[0]), Integer.parseInt(args[1]), Integer.parseInt(args[2]));
    int checks = 0;
    try (Communicator world = Communicator.mpi(ReduceMode.DETERMINISTIC)) {
      try (ParallelGrid.Groups g = grid.split(world)) {
        ParallelGrid.Coordinates c = grid.coordinates(world.rank());
        check(g.at().equals(c), "coordinates " + g.at() + " vs " + c);
        checks += group(world, grid, g.dp(), 'd', c.dp(), grid.dp());
        checks += group(world, grid, g.tp(), 't', c.tp(), grid.tp());
        checks += group(world, grid, g.pp(), 'p', c.pp(), grid.pp());
      }
      world.barrier();
      System.out.println("rank " + world.rank() + " of " + world.size() + " in " + grid + ": " + checks + " grid checks passed");
    }
  }

  /** The world ranks of the group of {@code rank} along dimension {@code dim}, in group-rank order. */
  static List<Integer> members(ParallelGrid grid, int rank, char dim) {
    ParallelGrid.Coordinates c = grid.coordinates(rank);
    List<Integer> m = new ArrayList<>();
    int n = dim == 'd' ? grid.dp() : dim == 't' ? grid.tp() : grid.pp();
    for (int i = 0; i < n; i++) {
      m.add(grid.rank(dim == 'd' ? new ParallelGrid.Coordinates(i, c.tp(), c.pp())
          : dim == 't' ? new ParallelGrid.Coordinates(c.dp(), i, c.pp()) : new ParallelGrid.Coordinates(c.dp(), c.tp(), i)));
    }
    return m;
  }

  private static int group(Communicator world, ParallelGrid grid, Communicator g, char dim, int index, int n) {
    check(g.size() == n && g.rank() == index, dim + " group: rank " + g.rank() + " of " + g.size() + ", expected " + index + " of " + n);
    List<Integer> m = members(grid, world.rank(), dim);
    long expected = 0;
    for (int r : m) expected += r;
    try (Tensor t = Tensor.of(new int[] {world.rank()}, 1)) {
      g.allReduceSum(t);
      check(t.getInt(0) == expected, dim + " group sum of world ranks " + t.getInt(0) + ", expected " + expected + " " + m);
    }
    // F32: each member's value depends on its world rank; the deterministic sum adds them in group-rank order
    float ref = 0;
    for (int r : m) ref += value(r);
    try (Tensor t = Tensor.of(new float[] {value(world.rank())}, 1)) {
      g.allReduceSum(t);
      check(Float.floatToIntBits(t.toFloatArray()[0]) == Float.floatToIntBits(ref), dim + " group F32 sum " + t.toFloatArray()[0]
          + ", expected " + ref);
    }
    if (n > 1) {  // a ring: send my world rank to the next, receive the previous one's
      int next = (index + 1) % n, prev = (index + n - 1) % n;
      try (Tensor out = Tensor.of(new int[] {world.rank()}, 1); Tensor in = Tensor.of(new int[] {-1}, 1)) {
        if (index % 2 == 0) {
          g.send(out, next);
          g.recv(in, prev);
        } else {
          g.recv(in, prev);
          g.send(out, next);
        }
        check(in.getInt(0) == m.get(prev), dim + " group ring got " + in.getInt(0) + ", expected " + m.get(prev));
      }
    }
    return 3;
  }

  static float value(int worldRank) {
    return (float) Math.scalb(1.0 + worldRank / 7.0, (worldRank % 3) * 12 - 12);
  }

  private static void check(boolean ok, String what) {
    if (!ok) throw new AssertionError(what);
  }
}
