package dev.athanor.params;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.memory.Tier;
import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.AdamW;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The flat parameter store: layout, aliasing views, roles, placement, and range updates equal to whole ones. */
class ParameterStoreTest {
  static Map<String, List<ParamSpec>> units() {
    Map<String, List<ParamSpec>> u = new LinkedHashMap<>();
    u.put("embedding", List.of(new ParamSpec("emb", new long[] {13, 7}, true)));
    u.put("block.0", List.of(new ParamSpec("b0.norm", new long[] {7}, false), new ParamSpec("b0.w", new long[] {7, 5}, true),
        new ParamSpec("b0.bias", new long[] {5}, false)));
    u.put("head", List.of(new ParamSpec("head.norm", new long[] {7}, false)));
    return u;
  }

  @Test
  void layoutAlignsEveryParameterAndUnitsAreContiguousRanges() {
    try (ParameterStore s = new ParameterStore(units(), Device.CPU, DType.F32)) {
      assertEquals(5, s.size());
      long expect = 0;
      for (ParameterStore.Param p : s.list()) {
        assertEquals(0, p.range().start() % ParameterStore.ALIGN, p.name());
        assertEquals(expect, p.range().start(), p.name());
        assertEquals(p.spec().numel(), p.range().length());
        expect = (p.range().end() + ParameterStore.ALIGN - 1) / ParameterStore.ALIGN * ParameterStore.ALIGN;
      }
      assertEquals(expect, s.numel());
      assertEquals(91 + 7 + 35 + 5 + 7, s.parameterCount());
      List<Unit> us = s.units();
      assertEquals(List.of("embedding", "block.0", "head"), us.stream().map(Unit::name).toList());
      assertEquals(0, us.get(0).elements().start());
      for (int i = 1; i < us.size(); i++) assertEquals(us.get(i - 1).elements().end(), us.get(i).elements().start());
      assertEquals(s.numel(), us.get(2).elements().end());
      assertEquals(new Range(s.range(1).start(), s.range(4).start()), s.unit("block.0").elements());
      assertThrows(IllegalArgumentException.class, () -> s.get("nope"));
      assertThrows(IllegalArgumentException.class, () -> s.unit("block.9"));
    }
  }

  @Test
  void viewsAliasTheFlatBuffers() {
    try (ParameterStore s = new ParameterStore(units(), Device.CPU, DType.F32)) {
      Tensor flat = s.flat(Role.MASTER);
      ParameterStore.Param w = s.get("b0.w");
      float[] v = new float[35];
      for (int i = 0; i < v.length; i++) v[i] = i + 0.5f;
      w.master().copyFrom(v);
      try (Tensor slice = s.slice(Role.MASTER, w.range())) {
        assertArrayEquals(v, slice.toFloatArray());
      }
      flat.setFloat(-3f, w.range().start() + 6);
      assertEquals(-3f, w.master().getFloat(1, 1));
      // F32 compute: WEIGHT is MASTER's buffer
      assertTrue(s.weightsAreMasters());
      assertSame(s.flat(Role.MASTER), s.flat(Role.WEIGHT));
      assertEquals(-3f, w.compute().getFloat(1, 1));
    }
  }

  @Test
  void rolesAreAllocatedOnDemandAndReleased() {
    try (ParameterStore s = new ParameterStore(units(), Device.CPU, DType.F32)) {
      assertFalse(s.has(Role.GRAD));
      IllegalStateException e = assertThrows(IllegalStateException.class, () -> s.get("emb").grad());
      assertTrue(e.getMessage().contains("GRAD"), e.getMessage());
      int g0 = s.generation();
      s.allocate(Role.GRAD);
      assertNotEquals(g0, s.generation());
      try (Tensor sq = Ops.sumSquares(s.flat(Role.GRAD))) {
        assertEquals(0f, sq.item());
      }
      s.release(Role.GRAD);
      assertFalse(s.has(Role.GRAD));
      assertThrows(IllegalArgumentException.class, () -> s.release(Role.MASTER));
    }
  }

  @Test
  void bf16WeightsFollowTheMastersRoundedToNearestEven() {
    try (ParameterStore s = new ParameterStore(units(), Device.CPU, DType.BF16)) {
      assertFalse(s.weightsAreMasters());
      assertEquals(DType.BF16, s.flat(Role.WEIGHT).dtype());
      Ops.randNormal(s.flat(Role.MASTER), 3, 0, 0f, 1f);
      s.syncWeights(s.unit("block.0").elements());
      for (ParameterStore.Param p : s.list()) {
        float[] m = p.master().toFloatArray(), w = p.compute().toFloatArray();
        boolean inBlock = p.name().startsWith("b0.");
        for (int i = 0; i < m.length; i++) {
          float want = inBlock ? dev.athanor.tensor.HalfFloats.bf16ToFloat(dev.athanor.tensor.HalfFloats.floatToBf16(m[i])) : 0f;
          assertEquals(want, w[i], p.name() + "[" + i + "]");
        }
      }
    }
  }

  @Test
  void placingARoleMovesItsContentsAndRebindsItsViews() {
    try (ParameterStore s = new ParameterStore(units(), Device.CPU, DType.F32)) {
      Ops.randUniform(s.flat(Role.MASTER), 5, 0, -1f, 1f);
      float[] before = s.flat(Role.MASTER).toFloatArray();
      int g = s.generation();
      s.place(Role.MASTER, new Placement(Device.CPU, Tier.HOST_PINNED));
      assertNotEquals(g, s.generation());
      assertEquals(Tier.HOST_PINNED, s.flat(Role.MASTER).tier());
      assertEquals(Tier.HOST_PINNED, s.get("b0.w").master().tier());
      assertArrayEquals(before, s.flat(Role.MASTER).toFloatArray());
      // the F32 weights stayed behind: their own buffer now, same values
      assertFalse(s.weightsAreMasters());
      assertEquals(Tier.HOST, s.flat(Role.WEIGHT).tier());
      assertArrayEquals(before, s.flat(Role.WEIGHT).toFloatArray());
      // and share again once placed together
      s.place(Role.WEIGHT, new Placement(Device.CPU, Tier.HOST_PINNED));
      assertTrue(s.weightsAreMasters());
      assertSame(s.flat(Role.MASTER), s.flat(Role.WEIGHT));
      // a role placed before it exists is allocated there
      s.place(Role.ADAM_M, new Placement(Device.CPU, Tier.DISK));
      s.allocate(Role.ADAM_M);
      assertEquals(Tier.DISK, s.flat(Role.ADAM_M).tier());
      assertThrows(IllegalArgumentException.class, () -> new Placement(Device.CPU, Tier.DEVICE));
    }
  }

  @Test
  void adamwOverRangesEqualsOneWholeUpdateBitForBit() {
    for (DType dt : new DType[] {DType.F32, DType.BF16}) {
      try (ParameterStore a = new ParameterStore(units(), Device.CPU, dt);
          ParameterStore b = new ParameterStore(units(), Device.CPU, dt)) {
        for (ParameterStore s : List.of(a, b)) {
          for (ParameterStore.Param p : s.list()) Ops.randNormal(p.master(), 1, p.range().start(), 0f, 1f);
          s.syncWeights();
          s.allocate(Role.GRAD);
        }
        AdamW oa = new AdamW(a), ob = new AdamW(b);
        Random r = new Random(2);
        for (int step = 0; step < 3; step++) {
          for (ParameterStore s : List.of(a, b)) {
            for (ParameterStore.Param p : s.list()) Ops.randNormal(p.grad(), 10 + step, p.range().start(), 0f, 0.1f);
          }
          oa.beginStep();
          oa.update(a.all(), Role.GRAD, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f);
          // b: the same update in pieces cut at random points, mid-tensor included
          ob.beginStep();
          long at = 0;
          while (at < b.numel()) {
            long end = Math.min(b.numel(), at + 1 + r.nextInt(40));
            ob.update(new Range(at, end), Role.GRAD, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f);
            at = end;
          }
        }
        for (Role role : new Role[] {Role.MASTER, Role.WEIGHT, Role.ADAM_M, Role.ADAM_V}) {
          try (Tensor fa = Ops.convert(a.flat(role), DType.F32); Tensor fb = Ops.convert(b.flat(role), DType.F32)) {
            assertArrayEquals(fa.toFloatArray(), fb.toFloatArray(), dt + " " + role);
          }
        }
        // padding between parameters stays zero
        float[] m = a.flat(Role.MASTER).toFloatArray();
        for (int i = (int) a.range(0).end(); i < a.range(1).start(); i++) assertEquals(0f, m[i]);
      }
    }
  }

  @Test
  void normPartialsDependOnlyOnTheirChunk() {
    // a buffer split at chunk boundaries gives the same partials as the whole buffer
    long chunk = Ops.NORM_CHUNK;
    try (Tensor x = Tensor.empty(DType.F32, Device.CPU, 2 * chunk + 1234)) {
      Ops.randNormal(x, 4, 0, 0f, 1f);
      float[] whole = Ops.sumSquaresPartials(x);
      assertEquals(3, whole.length);
      try (Tensor a = x.slice(0, 0, chunk); Tensor b = x.slice(0, chunk, x.numel())) {
        float[] pa = Ops.sumSquaresPartials(a), pb = Ops.sumSquaresPartials(b);
        assertArrayEquals(whole, new float[] {pa[0], pb[0], pb[1]});
      }
      double sum = 0;
      for (float p : whole) sum += p;
      assertEquals((float) Math.sqrt(sum), Ops.globalNorm(List.of(x)));
    }
  }
}
