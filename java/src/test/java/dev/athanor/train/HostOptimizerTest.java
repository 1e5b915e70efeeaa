package dev.athanor.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
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
    compare(steps, diskMoments, dir, late, false);
  }

  /**
   * The same; with {@code stream} the gradients stream through the host optimizer's hooks as a backward would call
   * them, unit by unit in reverse (for the last step only some units, the others copied by the update).
   */
  static void compare(int steps, Set<Role> diskMoments, Path dir, boolean late, boolean stream) {
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
          float clip = step == 1 ? 0.5f : 1f;
          oa.beginStep();
          oa.update(a.all(), Role.GRAD, LR, B1, B2, EPS, WD, clip);
          ob.beginStep();
          host.update(Role.GRAD, LR, B1, B2, EPS, WD, clip);
          List<int[]> sa = state(a, oa), sb = state(b, ob);
          for (int i = 0; i < sa.size(); i++) assertArrayEquals(sa.get(i), sb.get(i), "step " + step + ", state part " + i);
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
    compare(3, Set.of(), null, true, true);
    compare(3, Set.of(), null, false, true);
    compare(2, Set.of(Role.ADAM_M, Role.ADAM_V), dir, true, true);
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

  /** Copies that run only when awaited (or closed): as late as a device's copy stream may run them. */
  static final class LateCopies implements UnitCopies {
    private final Map<Long, Runnable> pending = new LinkedHashMap<>();
    private long next, down, up;

    @Override
    public long toHost(Tensor dst, Tensor src) {
      down += src.byteSize();
      return defer(dst, src);
    }

    @Override
    public long toDevice(Tensor dst, Tensor src) {
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
    public void await(long ticket) {
      Runnable r = pending.remove(ticket);
      if (r != null) r.run();
    }

    @Override
    public long bytesToHost() {
      return down;
    }

    @Override
    public long bytesToDevice() {
      return up;
    }

    @Override
    public void close() {
      for (Long t : List.copyOf(pending.keySet())) await(t);
    }
  }
}
