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

  /**
   * ZeRO 1 and 2 with offload: shards whose moments (one or both) are on DISK in files of the shard's elements only,
   * streamed in chunks of 3 elements (cutting tensors, a unit and the shard's ends), update exactly as the same shards in
   * memory, from the store's gradient ({@link AdamW#update}) and from a shard's own ({@link AdamW#updateShard}); their
   * moments read and set through DISK views as a checkpoint does; closing deletes the files.
   */
  @Test
  void shardsWithTheirMomentsOnDiskUpdateExactlyAsInMemory(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
    long cut = 50;
    for (boolean ownGradient : new boolean[] {false, true}) {
      try (ParameterStore a = new ParameterStore(units(), Device.CPU, DType.F32);
          ParameterStore b = new ParameterStore(units(), Device.CPU, DType.F32)) {
        init(a);
        init(b);
        Range[] shards = {new Range(0, cut), new Range(cut, b.numel())};
        dev.athanor.offload.OffloadConfig both = new dev.athanor.offload.OffloadConfig(java.util.EnumSet.of(Role.ADAM_M, Role.ADAM_V),
            dir, 12), first = new dev.athanor.offload.OffloadConfig(java.util.Set.of(Role.ADAM_M), dir, 12);
        try (AdamW m0 = new AdamW(a, shards[0]); AdamW m1 = new AdamW(a, shards[1]);
            AdamW d0 = new AdamW(b, shards[0], both); AdamW d1 = new AdamW(b, shards[1], first)) {
          assertFalse(b.has(Role.ADAM_M) || b.has(Role.ADAM_V), "the shards' moments are not in the store");
          assertEquals(true, d0.onDisk(Role.ADAM_V) && d1.onDisk(Role.ADAM_M) && !d1.onDisk(Role.ADAM_V));
          long bytes;
          try (var files = java.nio.file.Files.walk(d0.offloadFiles().directory())) {
            bytes = files.filter(java.nio.file.Files::isRegularFile).mapToLong(f -> f.toFile().length()).sum();
          }
          assertEquals(2 * 4 * cut, bytes, "d0's files hold its shard's two moments only");
          for (int step = 0; step < 3; step++) {
            for (ParameterStore s : List.of(a, b)) {
              for (ParameterStore.Param p : s.list()) Ops.randNormal(p.grad(), 10 + step, p.range().start(), 0f, 0.1f);
            }
            AdamW[][] pairs = {{m0, d0}, {m1, d1}};
            for (AdamW[] pair : pairs) {
              for (int k = 0; k < 2; k++) {
                AdamW o = pair[k];
                ParameterStore s = k == 0 ? a : b;
                o.beginStep();
                if (!ownGradient) {
                  o.update(s.all(), Role.GRAD, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f);
                  continue;
                }
                try (Tensor g = s.flat(Role.GRAD).slice(0, o.shard().start(), o.shard().end()).contiguous()) {
                  o.updateShard(g, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f);
                }
              }
            }
          }
          assertArrayEquals(a.flat(Role.MASTER).toFloatArray(), b.flat(Role.MASTER).toFloatArray(), "masters");
          for (int i = 0; i < b.size(); i++) {  // as a checkpoint reads them, and sets them back
            Range r = b.range(i);
            long[] shape = b.list().get(i).spec().shape();
            try (Tensor mm = Tensor.zeros(DType.F32, Device.CPU, shape); Tensor mv = Tensor.zeros(DType.F32, Device.CPU, shape);
                Tensor dm = Tensor.zeros(DType.F32, Device.CPU, shape); Tensor dv = Tensor.zeros(DType.F32, Device.CPU, shape)) {
              for (AdamW o : List.of(m0, m1)) o.getShardMoments(r, mm, mv);
              for (AdamW o : List.of(d0, d1)) o.getShardMoments(r, dm, dv);
              assertArrayEquals(mm.toFloatArray(), dm.toFloatArray(), "first moments of parameter " + i);
              assertArrayEquals(mv.toFloatArray(), dv.toFloatArray(), "second moments of parameter " + i);
              Ops.scale(mm, 2f, mm);
              for (AdamW o : List.of(d0, d1)) o.setShardMoments(r, mm, mv);
              for (AdamW o : List.of(d0, d1)) o.getShardMoments(r, dm, dv);
              assertArrayEquals(mm.toFloatArray(), dm.toFloatArray(), "first moments set on DISK, parameter " + i);
            }
          }
          java.nio.file.Path files = d0.offloadFiles().directory();
          d0.close();
          assertFalse(java.nio.file.Files.exists(files), "closing deletes the shard's files");
        }
      }
    }
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> {
      try (ParameterStore s = new ParameterStore(units(), Device.CPU, DType.F32)) {
        new AdamW(s, new Range(0, cut), dev.athanor.offload.OffloadConfig.allOnDisk(dir)).close();
      }
    });
    assertEquals(true, e.getMessage().contains("keeps only AdamW's moments on DISK"), e.getMessage());
  }

  @Test
  void aShardOutsideTheStoreIsRefused() {
    try (ParameterStore s = new ParameterStore(units(), Device.CPU, DType.F32)) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new AdamW(s, new Range(0, s.numel() + 1)));
      assertEquals(true, e.getMessage().contains("outside the store"), e.getMessage());
    }
  }
}
