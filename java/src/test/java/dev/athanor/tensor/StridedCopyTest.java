package dev.athanor.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Storage;
import dev.athanor.memory.Tier;
import dev.athanor.ops.Ops;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import java.util.Arrays;
import java.util.List;
import java.util.function.Function;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Strided copies of every kind of view (transpose, permute, slice, select, stride-0 broadcast, every-other
 * element, rank 0, rank 8, rank 10), every dtype, in both directions and view to view, against a plain Java
 * reference: on the CPU (ath_cpu_copy) and on CUDA (ath_cuda_copy, no host staging between device views; and
 * host views to device views through one transfer). Plus overlapping copies and memset zeros.
 */
class StridedCopyTest {
  /** A view of a contiguous base tensor; {@code writable}: may be a copy destination (no stride 0). */
  record View(String name, long[] base, Function<Tensor, Tensor> make, boolean writable) {
    @Override
    public String toString() {
      return name;
    }
  }

  static final List<View> VIEWS = List.of(
      new View("contiguous", new long[] {3, 5}, t -> t.view(3, 5), true),
      new View("transpose", new long[] {5, 7}, t -> t.transpose(0, 1), true),
      new View("permute", new long[] {3, 4, 5, 2}, t -> t.permute(2, 0, 3, 1), true),
      new View("slice", new long[] {6, 9}, t -> t.slice(1, 2, 7).slice(0, 1, 5), true),
      new View("select", new long[] {4, 5, 6}, t -> t.select(1, 3), true),
      new View("transposed slice", new long[] {8, 6}, t -> t.slice(0, 1, 7).transpose(0, 1).slice(1, 2, 5), true),
      new View("every other", new long[] {24}, t -> Tensor.wrap(t.storage(), t.dtype(), new long[] {3, 4},
          new long[] {8, 2}, t.offset() + 1), true),
      new View("broadcast rows", new long[] {1, 6}, t -> Tensor.wrap(t.storage(), t.dtype(), new long[] {4, 6},
          new long[] {0, 1}, t.offset()), false),
      new View("broadcast scalar", new long[] {1}, t -> Tensor.wrap(t.storage(), t.dtype(), new long[] {3, 2},
          new long[] {0, 0}, t.offset()), false),
      new View("rank 0", new long[] {7}, t -> t.select(0, 3), true),
      new View("rank 8", new long[] {2, 3, 2, 2, 1, 2, 3, 2}, t -> t.permute(7, 6, 5, 4, 3, 2, 1, 0), true),
      new View("rank 10", new long[] {2, 2, 2, 2, 2, 2, 2, 2, 2, 3}, t -> t.transpose(0, 9).transpose(3, 5), true),
      new View("unsqueezed", new long[] {4, 3}, t -> t.transpose(0, 1).unsqueeze(1).unsqueeze(0), true));

  static Stream<Arguments> cases() {
    return Stream.of(Device.CPU, Device.cuda(0)).flatMap(d -> Arrays.stream(DType.values()).map(t -> Arguments.of(d, t)));
  }

  private static void need(Device d) {
    if (d.isCuda()) assumeTrue(Cuda.isAvailable(), Cuda.unavailableReason());
  }

  /** Element i of a base: small integers, exact in every dtype. */
  private static float value(long i) {
    return (i % 251) - 125;
  }

  private static Tensor base(DType dtype, Device device, long[] shape, boolean ramp) {
    int n = (int) Tensor.product(shape);
    float[] v = new float[n];
    for (int i = 0; i < n; i++) v[i] = ramp ? value(i) : -1000;
    return Tensor.fromFloats(v, dtype, device, shape);
  }

  private static float[] values(Tensor t) {
    if (t.dtype() != DType.I32) return t.toFloatArray();
    int[] ints = t.toIntArray();
    float[] f = new float[ints.length];
    for (int i = 0; i < f.length; i++) f[i] = ints[i];
    return f;
  }

  /** The elements of view {@code v} (row-major) read from the base values {@code base} by index arithmetic. */
  private static float[] reference(Tensor v, float[] base) {
    long[] shape = v.shape(), strides = v.strides();
    float[] out = new float[(int) v.numel()];
    long[] idx = new long[shape.length];
    for (int e = 0; e < out.length; e++) {
      long off = v.offset();
      for (int d = 0; d < shape.length; d++) off += idx[d] * strides[d];
      out[e] = base[(int) off];
      for (int d = shape.length - 1; d >= 0; d--) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
    return out;
  }

  /** The base after writing {@code src} (row-major) through view {@code v} into {@code base}. */
  private static float[] written(Tensor v, float[] base, float[] src) {
    float[] out = base.clone();
    long[] shape = v.shape(), strides = v.strides();
    long[] idx = new long[shape.length];
    for (int e = 0; e < src.length; e++) {
      long off = v.offset();
      for (int d = 0; d < shape.length; d++) off += idx[d] * strides[d];
      out[(int) off] = src[e];
      for (int d = shape.length - 1; d >= 0; d--) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
    return out;
  }

  @ParameterizedTest
  @MethodSource("cases")
  void everyViewShapeCopiesBothWaysAndViewToView(Device device, DType dtype) {
    need(device);
    for (View view : VIEWS) {
      try (Scope scope = Scope.open()) {
        assertEquals(scope, Scope.current());
        Tensor src = base(dtype, device, view.base(), true);
        float[] srcValues = values(src);
        Tensor v = view.make().apply(src);
        float[] want = reference(v, srcValues);
        // view -> contiguous
        Tensor c = v.contiguous();
        assertEquals(device, c.device());
        assertArrayEquals(want, values(c), view + " " + dtype + " on " + device + ": view -> contiguous");
        if (device.isCuda()) {
          try (Tensor hostView = view.make().apply(src.to(Device.CPU))) {
            assertArrayEquals(values(hostView.contiguous()), values(c), view + ": CUDA against the CPU");
          }
        }
        if (!view.writable()) continue;
        // contiguous -> view, and view -> view (the source strided too)
        for (Tensor from : new Tensor[] {c, v}) {
          Tensor dst = base(dtype, device, view.base(), false);
          float[] before = values(dst);
          Tensor dv = view.make().apply(dst);
          dv.copyFrom(from);
          assertArrayEquals(written(dv, before, want), values(dst),
              view + " " + dtype + " on " + device + ": " + (from == c ? "contiguous" : "view") + " -> view");
        }
        if (device.isCuda()) { // host view -> device view and device view -> host view: one transfer each
          Tensor hostSrc = base(dtype, Device.CPU, view.base(), true);
          Tensor dst = base(dtype, device, view.base(), false);
          float[] before = values(dst);
          Tensor dv = view.make().apply(dst);
          dv.copyFrom(view.make().apply(hostSrc));
          assertArrayEquals(written(dv, before, want), values(dst), view + ": host view -> device view");
          Tensor hostDst = base(dtype, Device.CPU, view.base(), false);
          view.make().apply(hostDst).copyFrom(v);
          assertArrayEquals(written(dv, before, want), values(hostDst), view + ": device view -> host view");
        }
      }
    }
  }

  @ParameterizedTest
  @MethodSource("cases")
  void overlappingCopiesWithinOneStorage(Device device, DType dtype) {
    need(device);
    try (Scope scope = Scope.open()) {
      assertEquals(scope, Scope.current());
      Tensor t = base(dtype, device, new long[] {12}, true);
      float[] before = values(t);
      t.slice(0, 0, 9).copyFrom(t.slice(0, 3, 12)); // shifts left by 3, like memmove
      float[] after = values(t);
      for (int i = 0; i < 9; i++) assertEquals(before[i + 3], after[i], "element " + i);
      for (int i = 9; i < 12; i++) assertEquals(before[i], after[i], "element " + i);
      Tensor m = base(dtype, device, new long[] {4, 4}, true);
      float[] mv = values(m);
      m.slice(0, 1, 4).transpose(0, 1).slice(0, 0, 3).copyFrom(m.slice(0, 0, 3).slice(1, 0, 3)); // overlapping, strided
      float[] want = written(m.slice(0, 1, 4).transpose(0, 1).slice(0, 0, 3), mv,
          reference(m.slice(0, 0, 3).slice(1, 0, 3), mv));
      assertArrayEquals(want, values(m));
    }
  }

  @ParameterizedTest
  @MethodSource("cases")
  void zerosAreZeroEvenInReusedMemory(Device device, DType dtype) {
    need(device);
    long n = 100_003;
    for (int round = 0; round < 2; round++) {
      try (Tensor dirty = Tensor.empty(dtype, device, n)) {
        if (dtype.isFloating()) {
          Ops.fill(dirty, 3f);
        } else {
          int[] sevens = new int[(int) n];
          Arrays.fill(sevens, 7);
          dirty.copyFrom(sevens);
        }
      }
      try (Tensor z = Tensor.zeros(dtype, device, n)) {
        float[] v = values(z);
        for (int i = 0; i < v.length; i++) {
          if (v[i] != 0f) assertEquals(0f, v[i], "element " + i + " of zeros on " + device);
        }
      }
    }
  }

  @ParameterizedTest
  @MethodSource("cases")
  void pinnedStagingIsCachedAcrossCopies(Device device, DType dtype) {
    need(device);
    assumeTrue(device.isCuda() || dtype == DType.F32, "one CPU case is enough");
    MemoryManager mm = MemoryManager.global();
    long[] counts = new long[4];
    try (Scope scope = Scope.open()) {
      assertEquals(scope, Scope.current());
      Tensor hostSrc = base(dtype, Device.CPU, new long[] {64, 48}, true);
      Tensor dst = base(dtype, device, new long[] {48, 64}, false);
      for (int round = 0; round < 3; round++) {
        dst.copyFrom(hostSrc.transpose(0, 1)); // a strided host source: packed into pinned staging on CUDA
        Tensor back = Tensor.zeros(dtype, Device.CPU, 64, 48);
        back.transpose(0, 1).copyFrom(dst);
        assertArrayEquals(values(hostSrc), values(back));
        back.close();
        if (round == 0) {
          counts[0] = mm.nativeAllocations(Tier.HOST_PINNED);
          counts[1] = mm.nativeAllocations(Tier.DEVICE);
        }
      }
      counts[2] = mm.nativeAllocations(Tier.HOST_PINNED);
      counts[3] = mm.nativeAllocations(Tier.DEVICE);
    }
    assertEquals(counts[0], counts[2], "pinned staging reused: " + mm.report());
    assertEquals(counts[1], counts[3], "device temporaries reused: " + mm.report());
    Storage s = Storage.allocate(Tier.HOST_PINNED, 1000);
    s.close();
    long cached = mm.cachedBytes(Tier.HOST_PINNED);
    assertTrue(cached >= 1024, "a freed pinned block stays cached: " + mm.report());
  }
}
