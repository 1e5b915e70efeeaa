package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** The grid's rank mapping (Megatron's order: tp fastest, then dp, then pp) and its groups' colors, without MPI. */
class ParallelGridTest {
  @Test
  void tensorParallelVariesFastestThenDataThenPipeline() {
    ParallelGrid g = new ParallelGrid(2, 2, 2);
    assertEquals(8, g.world());
    assertEquals(new ParallelGrid.Coordinates(0, 0, 0), g.coordinates(0));
    assertEquals(new ParallelGrid.Coordinates(0, 1, 0), g.coordinates(1));
    assertEquals(new ParallelGrid.Coordinates(1, 0, 0), g.coordinates(2));
    assertEquals(new ParallelGrid.Coordinates(1, 1, 0), g.coordinates(3));
    assertEquals(new ParallelGrid.Coordinates(0, 0, 1), g.coordinates(4));
    assertEquals(new ParallelGrid.Coordinates(1, 1, 1), g.coordinates(7));
  }

  @Test
  void coordinatesAndRanksAreInverseOnOddShapes() {
    for (int[] s : new int[][] {{1, 1, 1}, {3, 1, 2}, {2, 3, 1}, {1, 2, 5}, {3, 2, 4}}) {
      ParallelGrid g = new ParallelGrid(s[0], s[1], s[2]);
      Set<ParallelGrid.Coordinates> seen = new HashSet<>();
      for (int r = 0; r < g.world(); r++) {
        ParallelGrid.Coordinates c = g.coordinates(r);
        assertTrue(seen.add(c), g + ": " + c + " twice");
        assertEquals(r, g.rank(c), g + " " + c);
      }
    }
  }

  /** Each group holds the processes that agree in the other two coordinates, and no others. */
  @Test
  void groupColorsSeparateExactlyTheOtherCoordinates() {
    ParallelGrid g = new ParallelGrid(3, 2, 4);
    for (int a = 0; a < g.world(); a++) {
      for (int b = 0; b < g.world(); b++) {
        ParallelGrid.Coordinates x = g.coordinates(a), y = g.coordinates(b);
        assertEquals(x.tp() == y.tp() && x.pp() == y.pp(), g.dpColor(x) == g.dpColor(y), "dp group of " + x + ", " + y);
        assertEquals(x.dp() == y.dp() && x.pp() == y.pp(), g.tpColor(x) == g.tpColor(y), "tp group of " + x + ", " + y);
        assertEquals(x.dp() == y.dp() && x.tp() == y.tp(), g.ppColor(x) == g.ppColor(y), "pp group of " + x + ", " + y);
      }
    }
  }

  @Test
  void badShapesAndRanksAreRefusedByName() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new ParallelGrid(2, 0, 1));
    assertTrue(e.getMessage().contains("tp 0"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> new ParallelGrid(2, 1, 2).coordinates(4));
    assertTrue(e.getMessage().contains("rank 4"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> new ParallelGrid(2, 1, 2).split(Communicator.single()));
    assertTrue(e.getMessage().contains("4 processes") && e.getMessage().contains("has 1"), e.getMessage());
  }

  @Test
  void singleProcessSplitsIntoItself() {
    try (ParallelGrid.Groups g = new ParallelGrid(1, 1, 1).split(Communicator.single())) {
      assertEquals(1, g.dp().size());
      assertEquals(0, g.pp().rank());
    }
  }
}
