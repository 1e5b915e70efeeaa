package dev.athanor.io.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DataLoaderTest {
  @TempDir Path tmp;

  /** A dataset whose token at position i is (i * 7 + 3) % 1000 (distinct enough), split over shards. */
  private TokenDataset data(int n, int... cuts) {
    List<TokenShard> shards = new ArrayList<>();
    int from = 0;
    int k = 0;
    int[] ends = Arrays.copyOf(cuts, cuts.length + 1);
    ends[cuts.length] = n;
    for (int end : ends) {
      int[] ids = new int[end - from];
      for (int i = 0; i < ids.length; i++) ids[i] = tok(from + i);
      shards.add(TokenShard.open(TokenShardTest.write(tmp.resolve("s" + (k++) + ".bin"), 1000, ids)));
      from = end;
    }
    return TokenDataset.of(shards);
  }

  private static int tok(long i) {
    return (int) ((i * 7 + 3) % 1000);
  }

  private static int[] toks(long... positions) {
    int[] a = new int[positions.length];
    for (int i = 0; i < a.length; i++) a[i] = tok(positions[i]);
    return a;
  }

  @Test
  void sequentialByHandWithWrapAround() {
    try (TokenDataset d = data(10, 4, 7)) {
      DataLoader l = new DataLoader(d, 2, 3, false, 0);
      assertEquals(6, l.tokensPerBatch());
      DataLoader.Batch b = l.next();
      assertEquals(2, b.batch());
      assertEquals(3, b.seq());
      assertArrayEquals(toks(0, 1, 2, 3, 4, 5), b.inputs());
      assertArrayEquals(toks(1, 2, 3, 4, 5, 6), b.targets());
      assertEquals(new DataLoader.State(6, 0, 0, 0, false, 2, 3, 10), l.state());
      b = l.next();  // crosses the end: 6 7 8 9 | 0 1 2
      assertArrayEquals(toks(6, 7, 8, 9, 0, 1), b.inputs());
      assertArrayEquals(toks(7, 8, 9, 0, 1, 2), b.targets());
      assertEquals(2, l.state().position());
      assertEquals(1, l.state().epoch());
      b = l.next();
      assertArrayEquals(toks(2, 3, 4, 5, 6, 7), b.inputs());
      assertArrayEquals(toks(3, 4, 5, 6, 7, 8), b.targets());
      b = l.next();
      assertArrayEquals(toks(8, 9, 0, 1, 2, 3), b.inputs());
      assertArrayEquals(toks(9, 0, 1, 2, 3, 4), b.targets());
      assertEquals(new DataLoader.State(4, 2, 0, 0, false, 2, 3, 10), l.state());
    }
  }

  @Test
  void sequentialBatchLargerThanTheData() {
    try (TokenDataset d = data(4)) {
      DataLoader l = new DataLoader(d, 3, 2, false, 0);  // needs 7 tokens of 4: wraps within one batch
      DataLoader.Batch b = l.next();
      assertArrayEquals(toks(0, 1, 2, 3, 0, 1), b.inputs());
      assertArrayEquals(toks(1, 2, 3, 0, 1, 2), b.targets());
      assertEquals(2, l.state().position());
      assertEquals(1, l.state().epoch());
      b = l.next();
      assertArrayEquals(toks(2, 3, 0, 1, 2, 3), b.inputs());
      assertArrayEquals(toks(3, 0, 1, 2, 3, 0), b.targets());
    }
  }

  @Test
  void validation() {
    try (TokenDataset d = data(10)) {
      var e = assertThrows(IllegalArgumentException.class, () -> new DataLoader(d, 1, 10, false, 0));
      assertTrue(e.getMessage().contains("11") && e.getMessage().contains("only 10")
          && e.getMessage().contains("s0.bin"), e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> new DataLoader(d, 0, 3, false, 0));
      assertThrows(IllegalArgumentException.class, () -> new DataLoader(d, 2, -1, true, 0));
      assertThrows(IllegalArgumentException.class, () -> new DataLoader(d, 1 << 20, 1 << 12, false, 0));
      assertThrows(IllegalArgumentException.class, () -> new DataLoader(null, 1, 1, false, 0));
      new DataLoader(d, 1, 9, true, 0).next();  // exactly seq + 1 tokens: one window
    }
  }

  /** The window index of each row (rows start at multiples of T) after checking the row is contiguous. */
  private static List<Integer> windows(DataLoader.Batch b, int seq, long size) {
    List<Integer> w = new ArrayList<>();
    for (int r = 0; r < b.batch(); r++) {
      int first = b.inputs()[r * seq];
      // positions p with tok(p) == first and p % seq == 0: tok is injective on [0, 1000)
      int found = -1;
      for (int p = 0; p + seq < size; p += seq) if (tok(p) == first) found = p;
      assertTrue(found >= 0, "row " + r + " does not start at a window");
      for (int t = 0; t < seq; t++) {
        assertEquals(tok(found + t), b.inputs()[r * seq + t]);
        assertEquals(tok(found + t + 1), b.targets()[r * seq + t]);
      }
      w.add(found / seq);
    }
    return w;
  }

  @Test
  void shuffleVisitsEveryWindowOncePerEpoch() {
    int seq = 10;
    try (TokenDataset d = data(973, 500)) {  // (973 - 1) / 10 = 97 windows; 96 * 10 + 11 = 971 <= 973
      DataLoader l = new DataLoader(d, 3, seq, true, 42);
      List<Integer> rows = new ArrayList<>();
      for (int i = 0; i < 97; i++) rows.addAll(windows(l.next(), seq, d.size()));  // 291 rows = 3 epochs
      List<List<Integer>> epochs = new ArrayList<>();
      for (int e = 0; e < 3; e++) {
        List<Integer> ep = rows.subList(e * 97, (e + 1) * 97);
        List<Integer> sorted = new ArrayList<>(ep);
        sorted.sort(null);
        for (int w = 0; w < 97; w++) assertEquals(w, sorted.get(w), "epoch " + e);
        epochs.add(ep);
      }
      assertNotEquals(epochs.get(0), epochs.get(1));
      assertNotEquals(epochs.get(1), epochs.get(2));
      List<Integer> identity = new ArrayList<>();
      for (int w = 0; w < 97; w++) identity.add(w);
      assertNotEquals(identity, epochs.get(0));
      assertEquals(new DataLoader.State(0, 3, 0, 42, true, 3, seq, 973), l.state());
    }
  }

  @Test
  void shuffleIsDeterministicPerSeedAndDiffersAcrossSeeds() {
    try (TokenDataset d = data(1000)) {
      DataLoader a = new DataLoader(d, 4, 8, true, 7);
      DataLoader b = new DataLoader(d, 4, 8, true, 7);
      DataLoader c = new DataLoader(d, 4, 8, true, 8);
      boolean differs = false;
      for (int i = 0; i < 40; i++) {
        DataLoader.Batch x = a.next();
        DataLoader.Batch y = b.next();
        DataLoader.Batch z = c.next();
        assertArrayEquals(x.inputs(), y.inputs());
        assertArrayEquals(x.targets(), y.targets());
        differs |= !Arrays.equals(x.inputs(), z.inputs());
      }
      assertTrue(differs);
      // the permutation itself: a pure function of (seed, epoch)
      assertArrayEquals(DataLoader.permutation(5, 2, 50), DataLoader.permutation(5, 2, 50));
      assertFalse(Arrays.equals(DataLoader.permutation(5, 2, 50), DataLoader.permutation(5, 3, 50)));
      assertFalse(Arrays.equals(DataLoader.permutation(5, 2, 50), DataLoader.permutation(6, 2, 50)));
      assertArrayEquals(new int[] {0}, DataLoader.permutation(1, 0, 1));
    }
  }

  private static void assertSameNext(DataLoader x, DataLoader y, int n) {
    for (int i = 0; i < n; i++) {
      DataLoader.Batch a = x.next();
      DataLoader.Batch b = y.next();
      assertArrayEquals(a.inputs(), b.inputs(), "batch " + i);
      assertArrayEquals(a.targets(), b.targets(), "batch " + i);
      assertEquals(x.state(), y.state());
    }
  }

  @Test
  void stateRestoreContinuesIdentically() {
    try (TokenDataset d = data(517, 100, 300)) {
      for (boolean shuffle : new boolean[] {false, true}) {
        for (int skip : new int[] {0, 1, 7, 21}) {  // 21 batches of 3 x 8 -> past an epoch boundary (64 windows)
          DataLoader a = new DataLoader(d, 3, 8, shuffle, 99);
          for (int i = 0; i < skip; i++) a.next();
          DataLoader.State s = a.state();
          DataLoader b = new DataLoader(d, 3, 8, shuffle, 99);
          b.restore(s);
          assertEquals(s, b.state());
          assertSameNext(a, b, 20);
          // restoring moves a loader back as well
          a.restore(s);
          DataLoader c = new DataLoader(d, 3, 8, shuffle, 99);
          c.restore(s);
          assertSameNext(a, c, 20);
        }
      }
    }
  }

  @Test
  void restoreRejectsIncompatibleStates() {
    try (TokenDataset d = data(200); TokenDataset other = data(150)) {
      DataLoader l = new DataLoader(d, 2, 8, true, 1);
      DataLoader.State ok = l.state();
      var e = assertThrows(IllegalArgumentException.class,
          () -> new DataLoader(d, 4, 8, false, 1).restore(ok));
      assertTrue(e.getMessage().contains("shuffle true vs false") && e.getMessage().contains("batch 2 vs 4"),
          e.getMessage());
      var e2 = assertThrows(IllegalArgumentException.class, () -> new DataLoader(d, 2, 8, true, 2).restore(ok));
      assertTrue(e2.getMessage().contains("seed 1 vs 2"), e2.getMessage());
      var e3 = assertThrows(IllegalArgumentException.class,
          () -> new DataLoader(other, 2, 8, true, 1).restore(ok));
      assertTrue(e3.getMessage().contains("data size 200 vs 150"), e3.getMessage());
      assertThrows(IllegalArgumentException.class,
          () -> l.restore(new DataLoader.State(0, 0, 24, 1, true, 2, 8, 200)));  // 24 windows: cursor 0..23
      assertThrows(IllegalArgumentException.class,
          () -> l.restore(new DataLoader.State(0, -1, 0, 1, true, 2, 8, 200)));
      DataLoader seq = new DataLoader(d, 2, 8, false, 1);
      assertThrows(IllegalArgumentException.class,
          () -> seq.restore(new DataLoader.State(200, 0, 0, 1, false, 2, 8, 200)));
      assertThrows(IllegalArgumentException.class, () -> seq.restore(null));
      seq.restore(new DataLoader.State(199, 5, 0, 1, false, 2, 8, 200));
      DataLoader.Batch b = seq.next();
      assertEquals(tok(199), b.inputs()[0]);
      assertEquals(tok(0), b.inputs()[1]);
    }
  }
  /** Replicas 0..n-1 read, in turn, exactly the batches of one loader (both modes, across epochs), and end in its state. */
  @Test
  void replicasTakeTheirTurnOfOneStream() {
    for (boolean shuffle : new boolean[] {false, true}) {
      try (TokenDataset d = data(97, 40)) {
        DataLoader one = new DataLoader(d, 3, 5, shuffle, 11);
        DataLoader[] reps = new DataLoader[3];
        for (int r = 0; r < reps.length; r++) {
          reps[r] = new DataLoader(d, 3, 5, shuffle, 11);
          reps[r].setReplica(r, reps.length);
        }
        for (int group = 0; group < 9; group++) {  // 9 x 3 x 15 tokens: several passes over 97
          for (DataLoader rep : reps) {
            DataLoader.Batch want = one.next(), got = rep.next();
            assertArrayEquals(want.inputs(), got.inputs(), "shuffle " + shuffle + " group " + group);
            assertArrayEquals(want.targets(), got.targets());
          }
          for (DataLoader rep : reps) assertEquals(one.state(), rep.state(), "shuffle " + shuffle + " group " + group);
        }
        assertTrue(one.state().epoch() > 1, "the test crosses epochs");
      }
    }
    try (TokenDataset d = data(97)) {
      DataLoader l = new DataLoader(d, 3, 5, false, 1);
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> l.setReplica(2, 2));
      assertTrue(e.getMessage().contains("replica 2 of 2"), e.getMessage());
    }
  }
}
