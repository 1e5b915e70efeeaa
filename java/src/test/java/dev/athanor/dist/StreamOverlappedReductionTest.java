package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.memory.Tier;
import dev.athanor.nn.BlockHooks;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import dev.athanor.train.TrainerTest;
import java.lang.reflect.Proxy;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The GPU variant of the overlapped gradient all-reduce ({@link StreamOverlappedReduction}). On the CPU, with a
 * recording {@link ReductionStreams}: through a real backward, each bucket's reduction is enqueued on the communication
 * stream only after the event recorded behind its last unit (and that unit's accumulation add), in bucket order, and
 * {@link StreamOverlappedReduction#await} makes the compute stream wait once, after the last one; a failed step still
 * orders the compute stream after what was enqueued; a failing enqueue names the rank and the bucket. With the real
 * {@link CommunicationStream} on the CPU (placeholder streams) and on a GPU (skipped without one): training with the
 * overlap equals training without it bit for bit, through a communicator that acts as two identical ranks (each
 * all-reduce doubles its tensor: on the GPU a one-rank NCCL all-gather, or MPI staging, then an add, enqueued on the
 * current stream), so a bucket reduced before its gradient was written, or read by clipping before it was reduced,
 * changes the bits.
 */
class StreamOverlappedReductionTest {
  private static final ModelConfig TINY = ModelConfig.gpt2(97, 32, 2, 32, 2);

  /** A {@link ReductionStreams} that logs each call, and copies the step's gradient when the compute event is recorded. */
  private static final class Recording implements ReductionStreams {
    final List<String> log = new ArrayList<>();
    final List<float[]> atEvent = new ArrayList<>();
    ParameterStore store;
    Role stepGrad;
    boolean onComm;

    @Override
    public void commWaitsForCompute() {
      log.add("comm waits for compute");
      if (store != null) atEvent.add(store.flat(stepGrad).toFloatArray());
    }

    @Override
    public void onComm(Runnable work) {
      log.add("comm {");
      onComm = true;
      try {
        work.run();
      } finally {
        onComm = false;
        log.add("} comm");
      }
    }

    @Override
    public void computeWaitsForComm() {
      log.add("compute waits for comm");
    }

    @Override
    public long waitedNanos() {
      return 0;
    }

    @Override
    public void close() {
      log.add("close");
    }
  }

  /**
   * Rank 0 of 2 whose all-reduce logs the flat range of {@code flat} it was given (and that it ran with the
   * communication stream current) and throws at call {@code failAt} (1-based; 0: never).
   */
  private static Communicator logging(Recording streams, Tensor flat, int failAt) {
    int[] calls = {0};
    return (Communicator) Proxy.newProxyInstance(Communicator.class.getClassLoader(), new Class<?>[] {Communicator.class},
        (proxy, method, args) -> switch (method.getName()) {
          case "rank" -> 0;
          case "size" -> 2;
          case "mode" -> ReduceMode.DETERMINISTIC;
          case "describe" -> "a logging rank";
          case "allReduceSum" -> {
            Tensor t = (Tensor) args[0];
            long start = (t.address() - flat.address()) / t.dtype().byteSize();
            streams.log.add("all-reduce [" + start + ", " + (start + t.numel()) + ")" + (streams.onComm ? "" : " OFF THE COMM STREAM"));
            if (++calls[0] == failAt) throw new CommunicatorException("ncclAllReduce: unhandled system error");
            yield null;
          }
          default -> throw new UnsupportedOperationException(method.getName());
        });
  }

  /** The head and the last block in one bucket, each other unit alone (3 buckets of the tiny model's 4 units). */
  private static long headAndLastBlock(ParameterStore s) {
    List<Unit> us = s.units();
    return 4 * (us.get(us.size() - 1).elements().length() + us.get(us.size() - 2).elements().length());
  }

  /** Adds a hook that logs each unit's completion before the reduction sees it (afterGradients: the second first). */
  private static void logUnits(Transformer m, List<String> log) {
    m.setHooks(BlockHooks.both(m.hooks(), new BlockHooks() {
      @Override
      public void afterGradients(Unit unit) {
        log.add("unit " + unit.index() + " done");
      }
    }));
  }

  /** {@link #TINY} on the CPU, initialized, its gradient allocated. */
  private static Transformer withGradients() {
    Transformer m = Transformer.create(TINY, Device.CPU);
    m.initialize(8);
    m.parameters().allocate(Role.GRAD);
    return m;
  }

  private static void backward(Transformer m, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    int[] in = new int[2 * 16], tg = new int[2 * 16];
    for (int i = 0; i < in.length; i++) {
      in[i] = r.nextInt(97);
      tg[i] = r.nextInt(97);
    }
    m.parameters().zero(Role.GRAD);
    m.forward(in, tg, 2, 16);
    m.backward(1f);
  }

  @Test
  void eachBucketIsReducedAfterTheEventOfItsLastUnitInOrderAndAwaitWaitsForTheLast() {
    try (Transformer m = withGradients()) {
      ParameterStore s = m.parameters();
      s.allocate(Role.GRAD_ACC);
      float[] acc0 = new float[(int) s.numel()];
      for (int i = 0; i < acc0.length; i++) acc0[i] = (i % 13) * 0.25f - 1f;
      s.flat(Role.GRAD_ACC).copyFrom(acc0);
      Recording rec = new Recording();
      StreamOverlappedReduction o = StreamOverlappedReduction.attach(m, logging(rec, s.flat(Role.GRAD_ACC), 0),
          headAndLastBlock(s), rec);
      GradientBuckets plan = o.buckets();
      assertEquals(3, plan.buckets().size());
      logUnits(m, rec.log);
      rec.store = s;
      rec.stepGrad = Role.GRAD_ACC;
      o.arm(Role.GRAD, Role.GRAD_ACC);  // gradient accumulation: each unit's micro-batch gradient is added first
      backward(m, 1);
      assertTrue(o.armed());
      o.await();
      assertFalse(o.armed());

      // the expected calls, from the order the units completed in: after a bucket's last unit, one event, then its
      // reduction with the communication stream current; after the backward, one wait of the compute stream
      List<String> want = new ArrayList<>();
      int[] left = new int[plan.buckets().size()];
      for (GradientBuckets.Bucket b : plan.buckets()) left[b.index()] = b.units();
      List<Integer> done = new ArrayList<>();
      for (String e : rec.log) {
        if (!e.startsWith("unit ")) continue;
        int u = Integer.parseInt(e.split(" ")[1]);
        done.add(u);
        want.add(e);
        GradientBuckets.Bucket b = plan.buckets().get(plan.bucketOf()[u]);
        if (--left[b.index()] == 0) {
          want.addAll(List.of("comm waits for compute", "comm {",
              "all-reduce [" + b.elements().start() + ", " + b.elements().end() + ")", "} comm"));
        }
      }
      want.add("compute waits for comm");
      assertEquals(List.of(3, 2, 1, 0), done, "the backward completes the head first, the embeddings last");
      assertEquals(want, rec.log);

      // each bucket's event came after its units' accumulation: acc + g on its elements (the per-unit add's bits)
      float[] g = s.flat(Role.GRAD).toFloatArray();
      assertEquals(plan.buckets().size(), rec.atEvent.size());
      for (GradientBuckets.Bucket b : plan.buckets()) {
        float[] seen = rec.atEvent.get(b.index());
        for (long i = b.elements().start(); i < b.elements().end(); i++) {
          int k = (int) i;
          if (Float.floatToIntBits(seen[k]) != Float.floatToIntBits(acc0[k] + g[k])) {
            throw new AssertionError("bucket " + b.index() + ": element " + k + " at its event was " + seen[k] + ", not acc + g = "
                + (acc0[k] + g[k]));
          }
        }
      }
      assertEquals(new OverlapStats(0, o.stats().busyNanos(), 3), o.stats());

      rec.log.clear();
      o.close();
      assertEquals(List.of("close"), rec.log, "nothing pending: close only releases the stream");
      assertEquals(BlockHooks.NONE, m.hooks(), "closing puts the model's hooks back");
      assertThrows(IllegalStateException.class, () -> o.arm(Role.GRAD, Role.GRAD), "closed");
    }
  }

  @Test
  void aFailedStepStillOrdersTheComputeStreamAfterWhatWasEnqueued() {
    try (Transformer m = withGradients()) {
      ParameterStore s = m.parameters();
      Recording rec = new Recording();
      try (StreamOverlappedReduction o = StreamOverlappedReduction.attach(m, logging(rec, s.flat(Role.GRAD), 2), 1, rec)) {
        assertEquals(4, o.buckets().buckets().size());
        assertThrows(IllegalStateException.class, o::await, "nothing armed");
        // the second bucket's enqueue fails: thrown from the backward, naming the rank and the bucket
        o.arm(Role.GRAD, Role.GRAD);
        CommunicatorException e = assertThrows(CommunicatorException.class, () -> backward(m, 2));
        assertTrue(e.getMessage().startsWith("rank 0 of 2: the all-reduce of gradient bucket 1 of 4 (block.1, "), e.getMessage());
        assertTrue(e.getMessage().endsWith("could not be enqueued on the communication stream: ncclAllReduce: unhandled system "
            + "error"), e.getMessage());
        rec.log.clear();
        o.discard();
        assertEquals(List.of("compute waits for comm"), rec.log, "the buckets enqueued (the failed one too) are waited for");
        // a backward that stops part-way: await orders the streams, then says which bucket was not reduced
        o.arm(Role.GRAD, Role.GRAD);
        o.afterGradients(s.units().get(3));
        rec.log.clear();
        IllegalStateException x = assertThrows(IllegalStateException.class, o::await);
        assertTrue(x.getMessage().startsWith("the backward did not complete every unit of gradient bucket 1 of 4 (block.1"),
            x.getMessage());
        assertEquals(List.of("compute waits for comm"), rec.log);
        assertFalse(o.armed());
        rec.log.clear();
        o.arm(Role.GRAD, Role.GRAD);
        o.discard();
        assertEquals(List.of(), rec.log, "nothing enqueued: nothing to wait for");
      }
    }
  }

  @Test
  void refusesAModelItCannotTake() {
    try (Transformer m = Transformer.create(TINY, Device.CPU)) {
      assertFalse(StreamOverlappedReduction.supports(m), "a CPU model takes the communication thread");
      var e = assertThrows(IllegalArgumentException.class,
          () -> StreamOverlappedReduction.attach(m, Communicator.single(), 1));
      assertTrue(e.getMessage().contains("needs a CUDA model") && e.getMessage().contains("cpu"), e.getMessage());
      Recording rec = new Recording();
      var g = assertThrows(IllegalArgumentException.class, () -> StreamOverlappedReduction.attach(m, Communicator.single(), 1, rec));
      assertTrue(g.getMessage().endsWith("this model: its gradients not allocated"), g.getMessage());
      m.parameters().allocate(Role.GRAD);
      assertThrows(IllegalArgumentException.class, () -> StreamOverlappedReduction.attach(m, Communicator.single(), 0, rec));
      assertEquals(List.of("close", "close"), rec.log, "a refused attach releases the streams it was given");
      assertEquals(BlockHooks.NONE, m.hooks());
    }
  }

  @Test
  void onTheCpuStreamsOverlapOnEqualsOffBitForBit(@TempDir Path tmp) {
    Path data = TrainerTest.shard(tmp);
    for (int accum : new int[] {1, 2}) {
      Run off = train(data, Device.CPU, Communicator.single(), accum, 0, true);
      Run on = train(data, Device.CPU, Communicator.single(), accum, 1, true);
      assertEquals(4L * 4, on.buckets(), "accum " + accum + ": 4 buckets in each of 4 steps");
      assertEquals(off.steps(), on.steps(), "accum " + accum + ": losses and norms");
      assertArrayEquals(off.weights(), on.weights(), "accum " + accum + ": final weights");
    }
  }

  @Test
  void onAGpuOverlapOnEqualsOffBitForBit(@TempDir Path tmp) {
    assumeTrue(Cuda.isAvailable(), () -> "no CUDA device: " + Cuda.unavailableReason());
    Path data = TrainerTest.shard(tmp);
    Device gpu = Device.cuda(0);
    List<Communicator> inners = new ArrayList<>();
    inners.add(Communicator.staged(Communicator.single()));
    String noNccl = null;
    try {
      inners.add(Communicator.nccl(Communicator.single(), gpu, ReduceMode.DETERMINISTIC));
    } catch (CommunicatorException e) {
      noNccl = e.getMessage();
    }
    try {
      for (Communicator inner : inners) {
        for (int accum : new int[] {1, 2}) {
          String what = inner.describe() + ", accum " + accum;
          Run off = train(data, gpu, inner, accum, 0, false);
          Run on = train(data, gpu, inner, accum, 1, false);
          assertEquals(4L * 4, on.buckets(), what + ": 4 buckets in each of 4 steps");
          assertEquals(off.steps(), on.steps(), what + ": losses and norms");
          assertArrayEquals(off.weights(), on.weights(), what + ": final weights");
        }
      }
    } finally {
      for (Communicator c : inners) c.close();
    }
    assumeTrue(noNccl == null, "staged collectives checked; NCCL not loadable here: " + noNccl);
  }

  /** One run: each step's loss and norm bits, the final masters, the buckets reduced during the backward. */
  private record Run(String steps, float[] weights, long buckets) {}

  /**
   * Four steps of {@link #TINY} on {@code device} under data parallel over {@link #twin}({@code inner}), with buckets of
   * {@code cap} bytes (0: the reduction after the backward); {@code force}: a {@link StreamOverlappedReduction} on the
   * device's {@link CommunicationStream} even on the CPU, else the one {@link DataParallel#attach} chooses (which must
   * be it).
   */
  private static Run train(Path data, Device device, Communicator inner, int accum, long cap, boolean force) {
    TrainConfig tc = new TrainConfig(4, 2, 16, accum, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);
    StringBuilder b = new StringBuilder();
    Communicator comm = twin(inner);
    try (TokenDataset d = TokenDataset.open(data); Transformer m = Transformer.create(TINY, device)) {
      m.initialize(8);
      long buckets = 0;
      try (Trainer t = new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5))) {
        DataParallel dp;
        if (force && cap > 0) {
          dp = DataParallel.attach(t, comm);
          dp.overlapWith(StreamOverlappedReduction.attach(m, comm, cap, new CommunicationStream(device)));
        } else {
          dp = DataParallel.attach(t, comm, cap);
        }
        if (cap > 0) assertInstanceOf(StreamOverlappedReduction.class, dp.overlap());
        while (!t.done()) {
          StepResult r = t.step();
          b.append(Float.floatToIntBits(r.loss())).append('/').append(Float.floatToIntBits(r.gradNorm())).append(' ');
        }
        if (dp.overlap() != null) {
          OverlapStats st = dp.overlap().stats();
          assertTrue(st.waitNanos() >= 0 && st.busyNanos() > 0, st.toString());
          buckets = st.buckets();
        }
      }
      return new Run(b.toString(), m.parameters().flat(Role.MASTER).toFloatArray(), buckets);
    }
  }

  /**
   * Rank 0 of two identical ranks over {@code inner} (one rank): an all-reduce doubles its tensor ({@code x + x}, the
   * copy made by {@code inner}'s all-gather of one rank: NCCL's or staged on a GPU, enqueued on the current stream, then
   * {@link Ops#add} there); an all-gather of host losses repeats them.
   */
  private static Communicator twin(Communicator inner) {
    return (Communicator) Proxy.newProxyInstance(Communicator.class.getClassLoader(), new Class<?>[] {Communicator.class},
        (proxy, method, args) -> switch (method.getName()) {
          case "rank" -> 0;
          case "size" -> 2;
          case "mode" -> ReduceMode.DETERMINISTIC;
          case "describe" -> "two identical ranks over " + inner.describe();
          case "sentBytes" -> 0L;
          case "allReduceSum" -> {
            Tensor x = (Tensor) args[0];
            try (Tensor copy = Tensor.empty(x.dtype(), x.device(), x.device().isCuda() ? Tier.DEVICE : Tier.HOST, x.numel());
                Tensor flat = x.view(x.numel())) {
              inner.allGather(flat, copy);
              Ops.add(flat, copy, flat);
            }
            yield null;
          }
          case "allGather" -> {
            Tensor in = (Tensor) args[0], out = (Tensor) args[1];
            long n = in.numel();
            try (Tensor a = out.slice(0, 0, n); Tensor c = out.slice(0, n, 2 * n)) {
              a.copyFrom(in);
              c.copyFrom(in);
            }
            yield null;
          }
          default -> throw new UnsupportedOperationException(method.getName());
        });
  }
}
