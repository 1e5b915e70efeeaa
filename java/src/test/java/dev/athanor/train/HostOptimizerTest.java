package dev.athanor.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.memory.Tier;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.offload.StreamCopies;
import dev.athanor.offload.UnitCopies;
import dev.athanor.ops.Ops;
import dev.athanor.params.ParamSpec;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The optimizer on the host of a model computing in BF16 ({@link HostOptimizer}), run on the CPU: a BF16 store whose
 * masters and moments are in HOST_PINNED memory (or the moments on DISK), updated unit by unit through staging slots,
 * against {@link AdamW#update} in place on a twin store with the same values: the masters, moments and BF16 weights
 * bit for bit, over several steps. The copies are the real {@link StreamCopies} (synchronous on the CPU) and {@link
 * LateCopies}, which runs a copy only when it is awaited, as a device's copy stream may: bit-identical results with it
 * show the optimizer reads no slot before its copy has filled it and overwrites none before its copy has read it.
 */
class HostOptimizerTest {
  static final float LR = 1e-2f, B1 = 0.9f, B2 = 0.95f, EPS = 1e-8f, WD = 0.1f;

  /** Units of awkward sizes; the embedding (9100 elements) is cut by a 1000-element chunk. */
  static Map<String, List<ParamSpec>> units() {
    Map<String, List<ParamSpec>> u = new LinkedHashMap<>();
    u.put("embedding", List.of(new ParamSpec("emb", new long[] {130, 70}, true)));
    for (int b = 0; b < 3; b++) {
      u.put("block." + b, List.of(new ParamSpec("b" + b + ".norm", new long[] {70}, false),
          new ParamSpec("b" + b + ".w", new long[] {70, 33}, true), new ParamSpec("b" + b + ".bias", new long[] {33}, false)));
    }
    u.put("head", List.of(new ParamSpec("head.norm", new long[] {70}, false)));
    return u;
  }

  static void init(ParameterStore s) {
    for (ParameterStore.Param p : s.list()) Ops.randNormal(p.master(), 1, p.range().start(), 0f, 1f);
    s.syncWeights();
    s.allocate(Role.GRAD);
  }

  static void gradients(ParameterStore s, int step) {
    for (ParameterStore.Param p : s.list()) Ops.randNormal(p.grad(), 10 + step, p.range().start(), 0f, 0.1f);
  }

  static int[] bits(Tensor t) {
    try (Tensor h = t.to(Tier.HOST)) {
      float[] f = h.toFloatArray();
      int[] out = new int[f.length];
      for (int i = 0; i < f.length; i++) out[i] = Float.floatToRawIntBits(f[i]);
      return out;
    }
  }

  static List<int[]> state(ParameterStore s, AdamW opt) {
    List<int[]> out = new ArrayList<>();
    out.add(bits(s.flat(Role.MASTER)));
    out.add(bits(s.flat(Role.WEIGHT)));
    for (Tensor m : opt.firstMoments()) out.add(bits(m));
    for (Tensor v : opt.secondMoments()) out.add(bits(v));
    return out;
  }

  /** {@code steps} steps of the in-place update and of the host optimizer, with {@code diskMoments} on DISK there. */
  static void compare(int steps, Set<Role> diskMoments, Path dir, boolean late) {
    compare(steps, diskMoments, dir, late, false, false);
  }

  /**
   * The same; with {@code stream} the gradients stream through the host optimizer's hooks as a backward would call
   * them, unit by unit in reverse (for the last step only some units, the others copied by the update); with {@code
   * defer} each update is deferred ({@link HostOptimizer#defer}) and the next forward's hooks read every unit's weights,
   * which must then be the updated ones, before the update is finished.
   */
  static void compare(int steps, Set<Role> diskMoments, Path dir, boolean late, boolean stream, boolean defer) {
    OffloadConfig off = diskMoments.isEmpty() ? OffloadConfig.NONE : new OffloadConfig(EnumSet.copyOf(diskMoments), dir, 4000);
    try (ParameterStore a = new ParameterStore(units(), Device.CPU, DType.BF16);
        ParameterStore b = new ParameterStore(units(), Device.CPU, DType.BF16)) {
      init(a);
      init(b);
      HostOptimizer.placeState(b, off);
      assertEquals(Tier.HOST_PINNED, b.placement(Role.MASTER).tier());
      assertEquals(Tier.HOST, b.placement(Role.WEIGHT).tier());
      try (AdamW oa = new AdamW(a); AdamW ob = new AdamW(b, off);
          HostOptimizer host = new HostOptimizer(b, ob, late ? new LateCopies() : new StreamCopies(Device.CPU), stream)) {
        for (Role r : List.of(Role.ADAM_M, Role.ADAM_V)) {
          assertEquals(off.onDisk(r), ob.onDisk(r), r + " on DISK");
          if (!off.onDisk(r)) assertEquals(Tier.HOST_PINNED, b.flat(r).tier(), r + " pinned");
        }
        for (int step = 0; step < steps; step++) {
          gradients(a, step);
          if (stream) {  // an earlier micro-batch's gradient streamed first: the step's must replace it
            for (dev.athanor.params.Unit u : b.units()) host.hooks().afterGradients(u);
            host.beginMicroBatch();
          }
          gradients(b, step);
          if (stream) {
            List<dev.athanor.params.Unit> units = new ArrayList<>(b.units());
            java.util.Collections.reverse(units);
            for (dev.athanor.params.Unit u : step == steps - 1 ? units.subList(0, 2) : units) host.hooks().afterGradients(u);
          }
          updateBoth(a, oa, b, ob, host, Role.GRAD, step, defer);
        }
        long n = b.numel();
        long extra = stream ? steps * n * 4 : 0;  // the earlier micro-batch's gradients, streamed and not used
        assertEquals(steps * n * (4 + 2) + extra, host.bytesMoved(), "each step: the F32 gradient down and the BF16 weights up");
        long largest = b.unit("embedding").elements().length();  // 130 x 70, padded to the alignment
        assertEquals(ParameterStore.layoutNumel(units().get("embedding")), largest);
        assertEquals((stream ? n * 4 : 2 * largest * 4) + 2 * largest * 2, host.stagingBytes(),
            "two F32 slots of the largest unit or the whole gradient, two BF16 slots");
      }
    }
  }

  /**
   * Step {@code step}'s update of the twin store {@code a} in place and of {@code b} by the host optimizer, both from
   * {@code grad} (step 1 clipped by half); with {@code defer} the host's deferred and the next forward's hooks reading
   * every unit's weights, which must be the updated ones, before the next micro-batch finishes it. Then the masters,
   * moments and weights bit for bit.
   */
  static void updateBoth(ParameterStore a, AdamW oa, ParameterStore b, AdamW ob, HostOptimizer host, Role grad, int step,
      boolean defer) {
    float clip = step == 1 ? 0.5f : 1f;
    oa.beginStep();
    oa.update(a.all(), grad, LR, B1, B2, EPS, WD, clip);
    ob.beginStep();
    if (defer) {
      host.defer(grad, LR, B1, B2, EPS, WD, clip);
      assertTrue(host.updatePending());
      for (dev.athanor.params.Unit u : b.units()) {  // the next forward: each unit's weights as it reads them
        host.hooks().beforeWeights(u, dev.athanor.nn.BlockHooks.Pass.FORWARD);
        try (Tensor wa = a.slice(Role.WEIGHT, u.elements()); Tensor wb = b.slice(Role.WEIGHT, u.elements())) {
          assertArrayEquals(bits(wa), bits(wb), "step " + step + ": " + u.name() + "'s weights as the forward reads them");
        }
      }
      host.beginMicroBatch();  // the next backward: the update finished
      assertFalse(host.updatePending());
    } else {
      host.update(grad, LR, B1, B2, EPS, WD, clip);
    }
    List<int[]> sa = state(a, oa), sb = state(b, ob);
    for (int i = 0; i < sa.size(); i++) assertArrayEquals(sa.get(i), sb.get(i), "step " + step + ", state part " + i);
  }

  /**
   * {@code steps} steps of {@code accum} micro-batches: the in-place update from the step's sum formed in GRAD_ACC
   * ({@code acc + g_i}, as the trainer forms it) against the host optimizer summing on the host ({@link
   * HostOptimizer.Gradients#SUMMED}), each micro-batch's gradient written into GRAD and its units handed to the hooks in
   * the backward's order (in the last step's last micro-batch only two, the others left to the collection): the host sum
   * and its norm, then the masters, moments and weights, bit for bit. With {@link LateCopies} (copies run only when
   * awaited) a slot added before its copy ran, or a micro-batch's gradient overwritten before its copies read it, would
   * give other bits. With {@code defer} each update is deferred and the next forward's hooks read every unit's weights.
   */
  static void compareSummed(int steps, int accum, Set<Role> diskMoments, Path dir, boolean late, boolean defer) {
    OffloadConfig off = diskMoments.isEmpty() ? OffloadConfig.NONE : new OffloadConfig(EnumSet.copyOf(diskMoments), dir, 4000);
    try (ParameterStore a = new ParameterStore(units(), Device.CPU, DType.BF16);
        ParameterStore b = new ParameterStore(units(), Device.CPU, DType.BF16)) {
      init(a);
      init(b);
      a.allocate(Role.GRAD_ACC);
      HostOptimizer.placeState(b, off);
      LateCopies lateCopies = late ? new LateCopies() : null;
      try (AdamW oa = new AdamW(a); AdamW ob = new AdamW(b, off); HostOptimizer host = new HostOptimizer(b, ob,
          late ? lateCopies : new StreamCopies(Device.CPU), HostOptimizer.Gradients.SUMMED)) {
        assertEquals(HostOptimizer.Gradients.SUMMED, host.gradients());
        for (int step = 0; step < steps; step++) {
          for (int i = 0; i < accum; i++) {
            gradients(a, 10 * step + i);
            if (i == 0) {
              a.flat(Role.GRAD_ACC).copyFrom(a.flat(Role.GRAD));
            } else {
              Ops.add(a.flat(Role.GRAD_ACC), a.flat(Role.GRAD), a.flat(Role.GRAD_ACC));
            }
            host.beginMicroBatch(i);
            gradients(b, 10 * step + i);
            List<dev.athanor.params.Unit> units = new ArrayList<>(b.units());
            java.util.Collections.reverse(units);
            boolean some = step == steps - 1 && i == accum - 1;
            for (dev.athanor.params.Unit u : some ? units.subList(0, 2) : units) host.hooks().afterGradients(u);
          }
          Tensor sum = host.collectGradient(false);
          assertArrayEquals(bits(a.flat(Role.GRAD_ACC)), bits(sum), "step " + step + ": the sum on the host");
          assertEquals(Float.floatToRawIntBits(Ops.globalNorm(List.of(a.flat(Role.GRAD_ACC)))),
              Float.floatToRawIntBits(Ops.globalNorm(List.of(sum))), "step " + step + ": its norm");
          updateBoth(a, oa, b, ob, host, Role.GRAD_ACC, step, defer);
        }
        assertFalse(b.has(Role.GRAD_ACC), "no step sum where the model computes");
        long n = b.numel();
        assertEquals(steps * n * (4L * accum + 2), host.bytesMoved(), "each micro-batch's F32 gradient down, BF16 weights up");
        long largest = b.unit("embedding").elements().length();
        assertEquals(n * 4 + 2 * largest * 4 + 2 * largest * 2, host.stagingBytes(), "the sum, two F32 and two BF16 slots");
        if (late) {
          assertTrue(lateCopies.idle(), "every copy awaited when the last step returned");
        }
      }
    }
  }

  @Test
  void theStepsSumFormedOnTheHostGivesTheSameBits(@TempDir Path dir) {
    for (int accum : new int[] {2, 3}) {
      for (boolean late : new boolean[] {true, false}) {
        for (boolean defer : new boolean[] {false, true}) compareSummed(3, accum, Set.of(), null, late, defer);
      }
      compareSummed(2, accum, Set.of(Role.ADAM_M, Role.ADAM_V), dir.resolve("a" + accum), true, true);
    }
  }

  /**
   * The sum's micro-batches numbered in order: a micro-batch skipped is refused; a unit handed to the hooks twice in a
   * micro-batch is refused (it would be added twice).
   */
  @Test
  void theSumRefusesMicroBatchesOutOfOrderAndUnitsTwice() {
    try (ParameterStore b = new ParameterStore(units(), Device.CPU, DType.BF16)) {
      init(b);
      HostOptimizer.placeState(b, OffloadConfig.NONE);
      try (AdamW ob = new AdamW(b);
          HostOptimizer host = new HostOptimizer(b, ob, new LateCopies(), HostOptimizer.Gradients.SUMMED)) {
        host.beginMicroBatch(0);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> host.beginMicroBatch(2));
        assertTrue(e.getMessage().contains("micro-batch 2 begins after micro-batch 0"), e.getMessage());
        host.beginMicroBatch(1);
        dev.athanor.params.Unit u = b.unit("block.1");
        host.hooks().afterGradients(u);
        e = assertThrows(IllegalStateException.class, () -> host.hooks().afterGradients(u));
        assertTrue(e.getMessage().contains("block.1's gradient is already in the sum of micro-batch 1"), e.getMessage());
      }
    }
  }

  @Test
  void hostUpdateEqualsInPlaceUpdateBitForBit() {
    compare(3, Set.of(), null, false);
  }

  @Test
  void copiesThatRunLateGiveTheSameBits() {
    compare(3, Set.of(), null, true);
  }

  @Test
  void gradientsStreamedDuringTheBackwardGiveTheSameBits(@TempDir Path dir) {
    compare(3, Set.of(), null, true, true, false);
    compare(3, Set.of(), null, false, true, false);
    compare(2, Set.of(Role.ADAM_M, Role.ADAM_V), dir, true, true, false);
  }

  @Test
  void deferredUpdatesGiveTheSameBits(@TempDir Path dir) {
    for (boolean late : new boolean[] {false, true}) {
      for (boolean stream : new boolean[] {false, true}) compare(3, Set.of(), null, late, stream, true);
    }
    compare(3, Set.of(Role.ADAM_M, Role.ADAM_V), dir, true, false, true);
    compare(2, Set.of(Role.ADAM_V), dir, true, true, true);
  }

  /**
   * A deferred update's worker held until the forward asks for each unit ({@link GatedCopies}, whose copies run only
   * when awaited): every unit's weights the forward reads are the updated ones, so the forward's hook waited for the
   * unit's update and made the computation wait for its copy; the worker goes in the forward's order, the embedding
   * first; the update is pending when {@code defer} returns.
   */
  @Test
  void theForwardReadsEachUnitOnlyAfterItsUpdateAndCopy() {
    try (ParameterStore a = new ParameterStore(units(), Device.CPU, DType.BF16);
        ParameterStore b = new ParameterStore(units(), Device.CPU, DType.BF16)) {
      init(a);
      init(b);
      HostOptimizer.placeState(b, OffloadConfig.NONE);
      GatedCopies gated = new GatedCopies(b);
      List<String> names = b.units().stream().map(dev.athanor.params.Unit::name).toList();
      assertEquals("embedding", names.get(0));
      try (AdamW oa = new AdamW(a); AdamW ob = new AdamW(b); HostOptimizer host = new HostOptimizer(b, ob, gated, false)) {
        for (int step = 0; step < 3; step++) {
          gradients(a, step);
          gradients(b, step);
          oa.beginStep();
          oa.update(a.all(), Role.GRAD, LR, B1, B2, EPS, WD, 1f);
          ob.beginStep();
          gated.nextPass();
          host.defer(Role.GRAD, LR, B1, B2, EPS, WD, 1f);
          assertTrue(host.updatePending(), "step " + step + ": pending when defer returns");
          for (dev.athanor.params.Unit u : b.units()) {
            gated.announce(u.name());
            host.hooks().beforeWeights(u, dev.athanor.nn.BlockHooks.Pass.FORWARD);
            try (Tensor wa = a.slice(Role.WEIGHT, u.elements()); Tensor wb = b.slice(Role.WEIGHT, u.elements())) {
              assertArrayEquals(bits(wa), bits(wb), "step " + step + ": " + u.name() + " read before its update and copy");
            }
          }
          host.finishPending();
          List<int[]> sa = state(a, oa), sb = state(b, ob);
          for (int i = 0; i < sa.size(); i++) assertArrayEquals(sa.get(i), sb.get(i), "step " + step + ", state part " + i);
        }
        assertEquals(List.of(), gated.overdue, "the worker waited for no unit the forward had not reached");
        List<String> order = new ArrayList<>();
        for (int step = 0; step < 3; step++) order.addAll(names);
        assertEquals(order, gated.enqueued, "each step's units in the forward's order");
        assertTrue(host.transfers().waitNanos() > 0, "the training thread waited for the units");
        assertEquals(host.bytesMoved(), host.transfers().hostToDevice() + host.transfers().deviceToHost());
      }
    }
  }

  /**
   * A deferred update failing at a unit (its weights' copy refused): the units before it reach the forward, the failing
   * unit's read throws the failure, finishing the update throws it once and then that the update failed part-way; the
   * optimizer still closes.
   */
  @Test
  void aDeferredUpdateFailingAtAUnitSurfacesWhereTheForwardReadsIt() {
    try (ParameterStore b = new ParameterStore(units(), Device.CPU, DType.BF16)) {
      init(b);
      HostOptimizer.placeState(b, OffloadConfig.NONE);
      dev.athanor.params.Unit broken = b.unit("block.1");
      long brokenAt;
      try (Tensor w = b.slice(Role.WEIGHT, broken.elements())) {
        brokenAt = w.address();
      }
      LateCopies failing = new LateCopies() {
        @Override
        public synchronized long queueToDevice(Tensor dst, Tensor src) {
          if (dst.address() == brokenAt) throw new IllegalStateException("copy of block.1 refused");
          return super.queueToDevice(dst, src);
        }
      };
      try (AdamW ob = new AdamW(b); HostOptimizer host = new HostOptimizer(b, ob, failing, false)) {
        gradients(b, 0);
        ob.beginStep();
        host.defer(Role.GRAD, LR, B1, B2, EPS, WD, 1f);
        for (String ok : List.of("embedding", "block.0")) {
          host.hooks().beforeWeights(b.unit(ok), dev.athanor.nn.BlockHooks.Pass.FORWARD);
        }
        IllegalStateException e = assertThrows(IllegalStateException.class,
            () -> host.hooks().beforeWeights(broken, dev.athanor.nn.BlockHooks.Pass.FORWARD));
        assertEquals("copy of block.1 refused", e.getMessage());
        assertTrue(host.updatePending());
        IllegalStateException again = assertThrows(IllegalStateException.class, host::finishPending);
        assertEquals("copy of block.1 refused", again.getMessage());
        IllegalStateException later = assertThrows(IllegalStateException.class, host::finishPending);
        assertTrue(later.getMessage().contains("failed part-way"), later.getMessage());
        assertThrows(IllegalStateException.class, () -> host.defer(Role.GRAD, LR, B1, B2, EPS, WD, 1f), "one at a time");
      }
    }
  }

  @Test
  void momentsOnDiskStreamedInChunksGiveTheSameBits(@TempDir Path dir) {
    compare(3, Set.of(Role.ADAM_M, Role.ADAM_V), dir, true);
    compare(2, Set.of(Role.ADAM_V), dir, false);
  }

  @Test
  void lateCopiesAreLate() {  // the fake that checks the ordering really delays the copies
    try (LateCopies c = new LateCopies(); Tensor src = Tensor.of(new float[] {1, 2, 3}, 3);
        Tensor dst = Tensor.zeros(DType.F32, Device.CPU, 3)) {
      long t = c.toHost(dst, src);
      assertArrayEquals(new float[] {0, 0, 0}, dst.toFloatArray());
      c.await(t);
      assertArrayEquals(new float[] {1, 2, 3}, dst.toFloatArray());
    }
  }

  @Test
  void streamCopiesOnTheCpuCopyAtOnceCountAndClose() {
    StreamCopies c = new StreamCopies(Device.CPU);
    try (Tensor src = Tensor.of(new float[] {1, 2, 3}, 3); Tensor dst = Tensor.zeros(DType.F32, Device.CPU, Tier.HOST_PINNED, 3)) {
      long t = c.toHost(dst, src);
      assertArrayEquals(new float[] {1, 2, 3}, dst.toFloatArray(), "a CPU stream copies before returning");
      c.await(t);
      c.await(t);  // awaiting twice, or a ticket never issued, returns at once
      c.await(12345);
      long u = c.toDevice(src, dst);
      assertTrue(u > t);
      assertEquals(12, c.bytesToHost());
      assertEquals(12, c.bytesToDevice());
      c.afterCompute();
      try (Tensor x = Tensor.of(new float[] {4, 5, 6}, 3)) {
        src.copyFrom(x);
      }
      long v = c.queueToHost(dst, src);
      assertArrayEquals(new float[] {4, 5, 6}, dst.toFloatArray(), "enqueued behind the others: on the CPU at once");
      c.computeWaits(v);  // before it is awaited, after, and a ticket never issued: nothing to wait for on the CPU
      c.await(v);
      c.computeWaits(v);
      c.computeWaits(12345);
      c.queueToDevice(src, dst);
      assertEquals(24, c.bytesToHost());
      assertEquals(24, c.bytesToDevice());
      c.close();
      c.close();
      assertThrows(IllegalStateException.class, () -> c.toHost(dst, src));
    }
  }

  @Test
  void refusesWhatItCannotUpdate(@TempDir Path dir) {
    try (ParameterStore f32 = new ParameterStore(units(), Device.CPU, DType.F32);
        ParameterStore b = new ParameterStore(units(), Device.CPU, DType.BF16)) {
      init(f32);
      init(b);
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> HostOptimizer.placeState(b, new OffloadConfig(Set.of(Role.MASTER), dir, 4000)));
      assertTrue(e.getMessage().contains("only AdamW's moments can be on DISK, not MASTER"), e.getMessage());
      try (AdamW o = new AdamW(b)) {  // masters still where the store computes (not placed on the host)
        HostOptimizer.placeState(b, OffloadConfig.NONE);
      }
      try (AdamW o = new AdamW(f32)) {
        e = assertThrows(IllegalArgumentException.class, () -> new HostOptimizer(f32, o, new LateCopies()));
        assertTrue(e.getMessage().contains("low-precision"), e.getMessage());
      }
    }
  }

  /**
   * Copies that run only when awaited by the host, when the compute stream is made to wait for them ({@link
   * UnitCopies#computeWaits}), or when closed: as late as a device's copy stream may run them. Safe for a worker thread
   * and the training thread.
   */
  static class LateCopies implements UnitCopies {
    private final Map<Long, Runnable> pending = new LinkedHashMap<>();
    private long next, down, up;

    @Override
    public long toHost(Tensor dst, Tensor src) {
      return queueToHost(dst, src);
    }

    @Override
    public long toDevice(Tensor dst, Tensor src) {
      return queueToDevice(dst, src);  // the compute stream waits for it: see computeWaits
    }

    @Override
    public void afterCompute() {}

    @Override
    public synchronized long queueToHost(Tensor dst, Tensor src) {
      down += src.byteSize();
      return defer(dst, src);
    }

    @Override
    public synchronized long queueToDevice(Tensor dst, Tensor src) {
      up += src.byteSize();
      return defer(dst, src);
    }

    private long defer(Tensor dst, Tensor src) {
      Tensor d = dst.view(dst.numel()), s = src.view(src.numel());  // the callers may close theirs first
      pending.put(next, () -> {
        try (d; s) {
          d.copyFrom(s);
        }
      });
      return next++;
    }

    @Override
    public void computeWaits(long ticket) {
      await(ticket);  // the computation that follows reads what the copy writes: it must have run
    }

    @Override
    public synchronized void await(long ticket) {
      Runnable r = pending.remove(ticket);
      if (r != null) r.run();
    }

    /** Whether every copy enqueued has run. */
    synchronized boolean idle() {
      return pending.isEmpty();
    }

    /** Whether the copy of {@code ticket} was enqueued and has not run. */
    synchronized boolean waiting(long ticket) {
      return pending.containsKey(ticket);
    }

    @Override
    public synchronized long bytesToHost() {
      return down;
    }

    @Override
    public synchronized long bytesToDevice() {
      return up;
    }

    @Override
    public synchronized void close() {
      for (Long t : List.copyOf(pending.keySet())) await(t);
    }
  }

  /**
   * {@link LateCopies} whose copies of new weights to the device hold the thread enqueueing them (a deferred update's
   * worker) until the test has announced that the forward needs that unit ({@link #announce}): the worker runs as far
   * behind the forward as it can, so a unit's weights read without waiting for its update and copy are stale, every
   * time. Records the units in the order their weights were enqueued; a worker held longer than {@link #PATIENCE_S}
   * goes on and the unit is recorded in {@link #overdue}.
   */
  static final class GatedCopies extends LateCopies {
    static final long PATIENCE_S = 10;
    private final Map<Long, String> unitAt = new java.util.HashMap<>();  // WEIGHT address of each unit's start
    private final Set<String> announced = new java.util.HashSet<>();
    final List<String> enqueued = java.util.Collections.synchronizedList(new ArrayList<>());
    final List<String> overdue = java.util.Collections.synchronizedList(new ArrayList<>());

    GatedCopies(ParameterStore s) {
      for (dev.athanor.params.Unit u : s.units()) {
        try (Tensor w = s.slice(Role.WEIGHT, u.elements())) {
          unitAt.put(w.address(), u.name());
        }
      }
    }

    /** The forward is about to read {@code unit}'s weights: its copy may be enqueued now. */
    synchronized void announce(String unit) {
      announced.add(unit);
      notifyAll();
    }

    /** Forgets the announcements (a new step's forward). */
    synchronized void nextPass() {
      announced.clear();
    }

    @Override
    public long queueToDevice(Tensor dst, Tensor src) {
      String unit = unitAt.get(dst.address());
      if (unit != null) {
        enqueued.add(unit);
        synchronized (this) {
          long until = System.nanoTime() + PATIENCE_S * 1_000_000_000L;
          try {
            while (!announced.contains(unit) && System.nanoTime() < until) wait(100);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
          }
          if (!announced.contains(unit)) overdue.add(unit);
        }
      }
      return super.queueToDevice(dst, src);
    }
  }
}
