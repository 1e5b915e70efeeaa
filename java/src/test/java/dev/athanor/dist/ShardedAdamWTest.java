package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.athanor.ops.Ops;
import dev.athanor.params.ParamSpec;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.AdamW;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * ZeRO 1 without MPI: optimizers that each keep the moments of one shard (cut inside a tensor) and update only it,
 * applied one after the other to one store, equal one optimizer over everything bit for bit; each leaves the rest
 * untouched, and none allocates the store's moment buffers; their moments put together (and set from whole ones, as a
 * checkpoint restores them) are the whole optimizer's.
 */
class ShardedAdamWTest {
  static Map<String, List<ParamSpec>> units() {
    Map<String, List<ParamSpec>> u = new LinkedHashMap<>();
    u.put("embedding", List.of(new ParamSpec("emb", new long[] {13, 7}, true)));
    u.put("block.0", List.of(new ParamSpec("b0.norm", new long[] {7}, false), new ParamSpec("b0.w", new long[] {7, 5}, true)));
    return u;
  }

  private static void init(ParameterStore s) {
    for (ParameterStore.Param p : s.list()) Ops.randNormal(p.master(), 1, p.range().start(), 0f, 1f);
    s.allocate(Role.GRAD);
  }

  @Test
  void shardsUpdatedInTurnEqualOneWholeUpdate() {
    try (ParameterStore a = new ParameterStore(units(), Device.CPU, DType.F32);
        ParameterStore b = new ParameterStore(units(), Device.CPU, DType.F32)) {
      init(a);
      init(b);
      long cut = 50;  // inside "emb" (91 elements)
      try (AdamW whole = new AdamW(a); AdamW lo = new AdamW(b, new Range(0, cut)); AdamW hi = new AdamW(b, new Range(cut, b.numel()))) {
        assertFalse(b.has(Role.ADAM_M), "a sharded optimizer keeps its moments outside the store");
        assertThrows(IllegalStateException.class, lo::firstMoments);
        for (int step = 0; step < 3; step++) {
          for (ParameterStore s : List.of(a, b)) {
            for (ParameterStore.Param p : s.list()) Ops.randNormal(p.grad(), 10 + step, p.range().start(), 0f, 0.1f);
          }
          whole.beginStep();
          whole.update(a.all(), Role.GRAD, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f);
          float[] before = b.flat(Role.MASTER).toFloatArray();
          lo.beginStep();
          lo.update(b.all(), Role.GRAD, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f);
          float[] afterLo = b.flat(Role.MASTER).toFloatArray();
          for (int i = (int) cut; i < before.length; i++) assertEquals(before[i], afterLo[i], "element " + i + " is not lo's");
          hi.beginStep();
          hi.update(b.all(), Role.GRAD, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f);
        }
        assertArrayEquals(a.flat(Role.MASTER).toFloatArray(), b.flat(Role.MASTER).toFloatArray());

        // as a checkpoint sees them: the shards' moments put together are the whole optimizer's, and shards set from
        // the whole moments (re-cut on load) each keep their part
        try (AdamW lo2 = new AdamW(b, new Range(0, cut)); AdamW hi2 = new AdamW(b, new Range(cut, b.numel()))) {
          for (int i = 0; i < b.size(); i++) {
            Range r = b.range(i);
            Tensor wm = whole.firstMoments().get(i), wv = whole.secondMoments().get(i);
            lo2.setShardMoments(r, wm, wv);
            hi2.setShardMoments(r, wm, wv);
            for (AdamW[] pair : new AdamW[][] {{lo, hi}, {lo2, hi2}}) {
              try (Tensor m = Tensor.zeros(DType.F32, Device.CPU, wm.shape()); Tensor v = Tensor.zeros(DType.F32, Device.CPU, wm.shape())) {
                pair[0].getShardMoments(r, m, v);
                pair[1].getShardMoments(r, m, v);
                assertArrayEquals(wm.toFloatArray(), m.toFloatArray(), "first moments of parameter " + i);
                assertArrayEquals(wv.toFloatArray(), v.toFloatArray(), "second moments of parameter " + i);
              }
            }
          }
          assertThrows(IllegalStateException.class, () -> whole.shardMoments(Role.ADAM_M, new Range(0, 1)));
          assertThrows(IllegalArgumentException.class, () -> lo.shardMoments(Role.ADAM_M, new Range(0, cut + 1)));
        }
      }
    }
  }

  @Test
  void aShardOutsideTheStoreIsRefused() {
    try (ParameterStore s = new ParameterStore(units(), Device.CPU, DType.F32)) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new AdamW(s, new Range(0, s.numel() + 1)));
      assertEquals(true, e.getMessage().contains("outside the store"), e.getMessage());
    }
  }
}
