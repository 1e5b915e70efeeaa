package dev.athanor.dist;

import dev.athanor.tensor.Tensor;
import java.util.Arrays;

/**
 * Run by {@link MpiRunTest} under mpirun with 4 processes: splits the world by the grid {@code dp 2 × tp 1 × pp 2} and
 * {@code dp 1 × tp 2 × pp 2}, and checks in every group its size, this process's rank in it (its coordinate), that an
 * all-gather of the members' world ranks lists exactly the ranks the grid puts there in coordinate order, and that
 * point-to-point traffic inside a group reaches the grid's neighbour. Prints one line per rank and exits 0, or throws.
 */
public final class GroupsMain {
  public static void main(String[] args) {
    int checks = 0;
    try (Communicator world = Communicator.mpi(ReduceMode.DETERMINISTIC)) {
      for (ParallelGrid g : new ParallelGrid[] {new ParallelGrid(2, 1, 2), new ParallelGrid(1, 2, 2)}) {
        try (ParallelGrid.Groups groups = g.split(world)) {
          ParallelGrid.Coordinates at = groups.at();
          check(g.rank(at) == world.rank(), g + ": coordinates " + at + " map back to " + g.rank(at));
          checks += members(world.rank(), groups.dp(), at.dp(), g.dp(), i -> g.rank(new ParallelGrid.Coordinates(i, at.tp(), at.pp())));
          checks += members(world.rank(), groups.tp(), at.tp(), g.tp(), i -> g.rank(new ParallelGrid.Coordinates(at.dp(), i, at.pp())));
          checks += members(world.rank(), groups.pp(), at.pp(), g.pp(), i -> g.rank(new ParallelGrid.Coordinates(at.dp(), at.tp(), i)));
          // the pipeline's neighbours: stage 0 sends its world rank to stage 1
          try (Tensor t = Tensor.of(new int[] {world.rank()}, 1)) {
            if (at.pp() == 0) {
              groups.pp().send(t, 1);
            } else {
              groups.pp().recv(t, 0);
              int want = g.rank(new ParallelGrid.Coordinates(at.dp(), at.tp(), 0));
              check(t.getInt(0) == want, g + ": stage 1 at " + at + " received from world rank " + t.getInt(0) + ", expected " + want);
            }
            checks++;
          }
        }
      }
      world.barrier();
      System.out.println("rank " + world.rank() + " of " + world.size() + ": " + checks + " group checks passed");
    }
  }

  private static int members(int self, Communicator group, int coordinate, int size, java.util.function.IntUnaryOperator rankAt) {
    check(group.size() == size, "group size " + group.size() + ", expected " + size);
    check(group.rank() == coordinate, "rank in group " + group.rank() + ", expected the coordinate " + coordinate);
    int[] got;
    try (Tensor in = Tensor.of(new int[] {self}, 1); Tensor out = Tensor.empty(dev.athanor.tensor.DType.I32,
        dev.athanor.runtime.Device.CPU, size)) {
      group.allGather(in, out);
      got = out.toIntArray();
    }
    int[] want = new int[size];
    for (int i = 0; i < size; i++) want[i] = rankAt.applyAsInt(i);
    check(Arrays.equals(got, want), "members " + Arrays.toString(got) + ", expected " + Arrays.toString(want));
    return 3;
  }

  private static void check(boolean ok, String what) {
    if (!ok) throw new AssertionError(what);
  }
}
