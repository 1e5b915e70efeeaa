package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** {@link ParallelGrid}'s rank arithmetic (no MPI: {@code MpiRunTest} splits a real world with {@link GridMain}). */
class ParallelGridTest {
  @Test
  void coordinatesAreABijectionWithTensorParallelFastest() {
    for (int dp = 1; dp <= 3; dp++) {
      for (int tp = 1; tp <= 3; tp++) {
        for (int pp = 1; pp <= 3; pp++) {
          ParallelGrid g = new ParallelGrid(dp, tp, pp);
          Set<ParallelGrid.Coordinates> seen = new HashSet<>();
          for (int r = 0; r < g.size(); r++) {
            ParallelGrid.Coordinates c = g.coordinates(r);
            assertTrue(seen.add(c), g + ": " + c + " twice");
            assertEquals(r, g.rank(c), g + " rank " + r);
          }
          assertEquals(g.size(), seen.size());
        }
      }
    }
    ParallelGrid g = new ParallelGrid(2, 2, 2);
    assertEquals(new ParallelGrid.Coordinates(0, 1, 0), g.coordinates(1), "tp fastest");
    assertEquals(new ParallelGrid.Coordinates(1, 0, 0), g.coordinates(2), "then dp");
    assertEquals(new ParallelGrid.Coordinates(0, 0, 1), g.coordinates(4), "then pp");
  }

  @Test
  void groupsAreTheRanksThatDifferInOneIndex() {
    ParallelGrid g = new ParallelGrid(2, 2, 2);
    assertEquals(List.of(1, 3), GridMain.members(g, 3, 'd'));
    assertEquals(List.of(2, 3), GridMain.members(g, 3, 't'));
    assertEquals(List.of(3, 7), GridMain.members(g, 3, 'p'));
  }

  @Test
  void badGridsAndWorldsAreRefusedWithTheNumbers() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new ParallelGrid(2, 0, 1));
    assertTrue(e.getMessage().contains("tp 0"), e.getMessage());
    IllegalArgumentException w = assertThrows(IllegalArgumentException.class, () -> new ParallelGrid(2, 2, 1).split(Communicator.single()));
    assertTrue(w.getMessage().contains("dp 2 x tp 2 x pp 1 = 4 processes, but the run has 1"), w.getMessage());
    assertThrows(IllegalArgumentException.class, () -> new ParallelGrid(2, 1, 1).coordinates(2));
  }

  @Test
  void oneProcessSplitsIntoOneProcessGroups() {
    try (ParallelGrid.Groups g = new ParallelGrid(1, 1, 1).split(Communicator.single())) {
      assertEquals(1, g.dp().size());
      assertEquals(1, g.tp().size());
      assertEquals(1, g.pp().size());
    }
  }
}
