package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.nn.BlockHooks;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.Range;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.train.Schedule;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import dev.athanor.train.TrainerTest;
import java.lang.reflect.Proxy;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The overlapped gradient all-reduce without MPI: the bucket plan (consecutive units in backward order up to the cap);
 * dp 2 as two threads of this JVM ({@link ThreadRanks}) with overlap on equals overlap off bit for bit (GPT-2 and
 * Llama, accum 1 and 2, ZeRO 0 and 1, and ZeRO 2's unit folds on the communication thread; the mpirun runs are in
 * {@link MpiRunTest}); a failing all-reduce on the
 * communication thread is thrown by the step on the training thread, naming the rank and the bucket; closing the
 * trainer stops the thread and puts the model's hooks back.
 */
class OverlappedReductionTest {
  @Test
  void bucketsAreConsecutiveUnitsInBackwardOrderUpToTheCap() {
    try (Transformer m = Transformer.create(ModelConfig.gpt2(97, 32, 2, 32, 2), Device.CPU)) {
      List<Unit> us = m.parameters().units();  // embeddings, block 0, block 1, head
      assertEquals(4, us.size());
      GradientBuckets one = GradientBuckets.of(us, 4, 1);
      assertEquals(4, one.buckets().size(), "a unit larger than the cap is a bucket of its own");
      assertEquals(3, one.buckets().get(0).firstUnit(), "the head's backward ends first");
      assertEquals(0, one.buckets().get(3).firstUnit(), "the embeddings' last");
      GradientBuckets all = GradientBuckets.of(us, 4, Long.MAX_VALUE / 8);
      assertEquals(1, all.buckets().size());
      assertEquals(m.parameters().all(), all.buckets().get(0).elements());
      long head = 4 * us.get(3).elements().length(), block = 4 * us.get(2).elements().length();
      GradientBuckets two = GradientBuckets.of(us, 4, head + block);  // the head and block 1 fit together, nothing else
      assertEquals(3, two.buckets().size());
      assertEquals(new Range(us.get(2).elements().start(), us.get(3).elements().end()), two.buckets().get(0).elements());
      assertArrayEquals(new int[] {2, 1, 0, 0}, two.bucketOf());
      GradientBuckets under = GradientBuckets.of(us, 4, head + block - 1);
      assertEquals(4, under.buckets().size(), "one byte less: the head alone");
      long covered = 0;
      for (GradientBuckets.Bucket b : two.buckets()) covered += b.elements().length();
      assertEquals(m.parameters().numel(), covered, "the buckets cover the flat gradient");
      assertThrows(IllegalArgumentException.class, () -> GradientBuckets.of(us, 4, 0));
      assertThrows(IllegalArgumentException.class, () -> GradientBuckets.of(List.of(us.get(0), us.get(2)), 4, 1));
    }
  }

  @Test
  void dpTwoAsThreadsEqualsOverlapOffBitForBit(@TempDir Path tmp) throws Exception {
    Path data = dev.athanor.train.checkpoint.TrainFixture.create(tmp).data;
    for (ModelConfig mc : OverlapMain.MODELS) {
      for (int accum : new int[] {1, 2}) {
        List<OverlapMain.Run> off = ranks(data, mc, accum, 0, 0);
        for (long[] v : new long[][] {{0, 1}, {1, -1}}) {
          List<OverlapMain.Run> on = ranks(data, mc, accum, (int) v[0], v[1]);
          String what = mc.family().hfModelType() + " accum " + accum + " ZeRO " + v[0] + (v[1] < 0 ? ", grouped buckets" : "");
          for (int r = 0; r < 2; r++) {
            assertTrue(on.get(r).plan() > 1 && on.get(r).buckets() == 4L * on.get(r).plan(), what + ": " + on.get(r));
            assertEquals(off.get(r).steps(), on.get(r).steps(), what + ", rank " + r + ": losses and norms");
            assertArrayEquals(off.get(r).weights(), on.get(r).weights(), what + ", rank " + r + ": final weights");
          }
        }
        // ZeRO 2: each unit's fold on the communication thread against on the training thread (and plain dp at accum 1)
        List<OverlapMain.Run> foldOff = ranks(data, mc, accum, 2, 0), foldOn = ranks(data, mc, accum, 2, 1);
        String what = mc.family().hfModelType() + " accum " + accum + " ZeRO 2";
        for (int r = 0; r < 2; r++) {
          assertEquals(0, foldOff.get(r).buckets(), what + ", overlap off: no fold on the communication thread");
          assertEquals(4L * accum * foldOn.get(r).plan(), foldOn.get(r).buckets(), what + ": every unit of every micro-batch");
          assertEquals(foldOff.get(r).steps(), foldOn.get(r).steps(), what + ", rank " + r + ": losses and norms");
          assertArrayEquals(foldOff.get(r).weights(), foldOn.get(r).weights(), what + ", rank " + r + ": final weights");
          if (accum == 1) assertEquals(off.get(r).steps(), foldOn.get(r).steps(), what + ", rank " + r + " vs plain dp");
        }
      }
    }
  }

  /** Both ranks' runs of {@link OverlapMain#train}, as threads. */
  private static List<OverlapMain.Run> ranks(Path data, ModelConfig mc, int accum, int zero, long bucketBytes)
      throws Exception {
    ThreadRanks group = new ThreadRanks(2);
    ExecutorService pool = Executors.newFixedThreadPool(2);
    try (TokenDataset d = TokenDataset.open(data)) {
      List<Future<OverlapMain.Run>> fs = new ArrayList<>();
      for (int r = 0; r < 2; r++) {
        Communicator c = group.member(r);
        fs.add(pool.submit(() -> OverlapMain.train(c, d, mc, accum, zero, bucketBytes)));
      }
      List<OverlapMain.Run> runs = new ArrayList<>();
      for (Future<OverlapMain.Run> f : fs) runs.add(f.get(300, TimeUnit.SECONDS));
      return runs;
    } finally {
      pool.shutdownNow();
    }
  }

  /**
   * Rank 1 of 2 whose collective {@code collective} does nothing but record its thread's name in {@code threads} and
   * count itself in {@code calls}, and fails its second call ("MPI_Alltoallv: the peer is gone"); any other collective
   * is unsupported.
   */
  static Communicator failingSecond(String collective, AtomicInteger calls, List<String> threads, String... passing) {
    return (Communicator) Proxy.newProxyInstance(Communicator.class.getClassLoader(),
        new Class<?>[] {Communicator.class}, (proxy, method, args) -> {
          String name = method.getName();
          if (List.of(passing).contains(name)) {  // contributes nothing: a gather's output is zeros (not left unwritten)
            if (name.equals("allGatherV")) dev.athanor.ops.Ops.fill((dev.athanor.tensor.Tensor) args[1], 0f);
            return null;
          }
          if (name.equals(collective)) {
            synchronized (threads) {
              threads.add(Thread.currentThread().getName());
            }
            if (calls.incrementAndGet() == 2) throw new CommunicatorException("MPI_Alltoallv: the peer is gone");
            return null;
          }
          return switch (name) {
            case "rank" -> 1;
            case "size" -> 2;
            case "mode" -> ReduceMode.DETERMINISTIC;
            case "describe" -> "a peer that fails its second " + collective;
            default -> throw new UnsupportedOperationException(name);
          };
        });
  }

  @Test
  void aFailedBucketIsThrownOnTheTrainingThreadNamingTheRank(@TempDir Path tmp) {
    AtomicInteger calls = new AtomicInteger();
    List<String> threads = new ArrayList<>();
    Communicator failing = failingSecond("allReduceSum", calls, threads);
    TrainConfig tc = new TrainConfig(2, 2, 16, 1, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);
    try (TokenDataset d = TokenDataset.open(TrainerTest.shard(tmp));
        Transformer m = Transformer.create(ModelConfig.gpt2(97, 32, 2, 32, 2), Device.CPU)) {
      m.initialize(8);
      Trainer t = new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5));
      DataParallel dp = DataParallel.attach(t, failing, 1);
      assertNotNull(dp.overlap());
      CommunicatorException e = assertThrows(CommunicatorException.class, t::step);
      assertTrue(e.getMessage().startsWith("rank 1 of 2: the all-reduce of gradient bucket 1 of 4 (block.1"), e.getMessage());
      assertTrue(e.getMessage().endsWith("failed: MPI_Alltoallv: the peer is gone"), e.getMessage());
      assertEquals(List.of("athanor-comm-rank-1", "athanor-comm-rank-1"), threads.subList(0, 2),
          "the buckets are reduced on the communication thread");
      assertTrue(calls.get() <= 4, "the buckets behind the failed one may be cancelled: " + calls.get());
      t.close();
      assertEquals(BlockHooks.NONE, m.hooks(), "closed with the trainer, the overlap leaves the model's hooks");
      assertThrows(IllegalStateException.class, () -> dp.overlap().arm(dev.athanor.params.Role.GRAD,
          dev.athanor.params.Role.GRAD), "closed");
    }
  }

  @Test
  void overlapStaysOffWhereItDoesNotApply(@TempDir Path tmp) {
    TrainConfig tc = new TrainConfig(1, 2, 16, 1, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);
    try (TokenDataset d = TokenDataset.open(TrainerTest.shard(tmp));
        Transformer m = Transformer.create(ModelConfig.gpt2(97, 32, 2, 32, 2), Device.CPU);
        Trainer t = new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5))) {
      assertNull(DataParallel.attach(t, Communicator.single(), 1).overlap(), "one process: nothing to reduce");
      assertNull(DataParallel.attach(t, new ThreadRanks(2).member(0), 0).overlap(), "bucket size 0: off");
      assertEquals(BlockHooks.NONE, m.hooks());
      assertThrows(IllegalArgumentException.class, () -> OverlappedReduction.attach(m, Communicator.single(), 0));
    }
  }
}
