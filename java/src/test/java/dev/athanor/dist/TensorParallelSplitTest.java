package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.nn.Footprint;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Stage;
import dev.athanor.nn.TensorParallel;
import dev.athanor.nn.TensorParallel.Split;
import dev.athanor.nn.Transformer;
import dev.athanor.params.ParamSpec;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The tensor-parallel split without MPI: which columns each rank takes, that the parts put back give the same bits, bad tp. */
class TensorParallelSplitTest {
  static final ModelConfig GPT2 = ModelConfig.gpt2(97, 32, 2, 32, 4);                          // C 32, 4 heads, D 8
  static final ModelConfig LLAMA = ModelConfig.llama(97, 32, 2, 32, 4, 2, 48, 10000f, false);  // GQA: 4 heads, 2 kv heads

  /** A tensor of distinct values (bits that would show any misplaced element), including -0.0 and a NaN payload. */
  private static Tensor distinct(long... shape) {
    long n = 1;
    for (long s : shape) n *= s;
    float[] v = new float[(int) n];
    SplittableRandom r = new SplittableRandom(n);
    for (int i = 0; i < n; i++) v[i] = i + (float) r.nextDouble();
    v[0] = -0.0f;
    v[v.length - 1] = Float.intBitsToFloat(0x7fc01234);
    return Tensor.fromFloats(v, DType.F32, Device.CPU, shape);
  }

  private static int[] bits(Tensor t) {
    float[] f = t.toFloatArray();
    int[] b = new int[f.length];
    for (int i = 0; i < f.length; i++) b[i] = Float.floatToRawIntBits(f[i]);
    return b;
  }

  /**
   * Shards {@code full} for every rank of {@code tp}, checks the parts' shapes ({@code localShape}, or null for each
   * rank's own), and that unshard gives the same bits.
   */
  private static List<Tensor> roundTrip(ModelConfig cfg, String name, Tensor full, int tp, long[] localShape) {
    Split split = TensorParallel.split(cfg, name);
    List<Tensor> parts = new ArrayList<>();
    for (int r = 0; r < tp; r++) {
      TensorParallel t = new TensorParallel(tp, r);
      long[] want = localShape != null ? localShape : t.localShape(split, full.shape());  // null: the uneven cut's own
      assertArrayEquals(want, t.localShape(split, full.shape()), name);
      Tensor part = Tensor.empty(DType.F32, Device.CPU, want);
      t.shard(split, full, part);
      parts.add(part);
    }
    try (Tensor back = Tensor.empty(DType.F32, Device.CPU, full.shape())) {
      TensorParallel.unshard(split, parts, back);
      assertArrayEquals(bits(full), bits(back), name + ": shard then unshard over " + tp + " ranks");
    }
    return parts;
  }

  @Test
  void gpt2FusedQkvGivesEachRankItsHeadsQkAndV() {
    long c = GPT2.hidden();
    String name = GPT2.blockPrefix(0) + "attn.c_attn.weight";
    assertEquals(new Split(1, 3), TensorParallel.split(GPT2, name));
    try (Tensor full = distinct(c, 3 * c)) {  // (C, 3C): columns q | k | v, each H heads of D
      List<Tensor> parts = roundTrip(GPT2, name, full, 2, new long[] {c, 3 * c / 2});
      float[] f = full.toFloatArray();
      for (int r = 0; r < 2; r++) {
        float[] p = parts.get(r).toFloatArray();
        long w = 3 * c / 2, half = c / 2;
        for (long row = 0; row < c; row++) {
          for (long j = 0; j < w; j++) {
            long part = j / half, col = part * c + r * half + j % half;  // rank r's heads of q, then k, then v
            assertEquals(Float.floatToRawIntBits(f[(int) (row * 3 * c + col)]), Float.floatToRawIntBits(p[(int) (row * w + j)]),
                "rank " + r + " c_attn[" + row + ", " + j + "]");
          }
        }
        parts.get(r).close();
      }
    }
    try (Tensor bias = distinct(3 * c)) {
      roundTrip(GPT2, GPT2.blockPrefix(1) + "attn.c_attn.bias", bias, 4, new long[] {3 * c / 4}).forEach(Tensor::close);
    }
  }

  @Test
  void gpt2RowAndColumnParallelLayersRoundTrip() {
    long c = GPT2.hidden(), f = GPT2.intermediate();
    String b = GPT2.blockPrefix(0);
    try (Tensor proj = distinct(c, c); Tensor fc = distinct(c, f); Tensor down = distinct(f, c); Tensor ln = distinct(c)) {
      roundTrip(GPT2, b + "attn.c_proj.weight", proj, 2, new long[] {c / 2, c}).forEach(Tensor::close);
      roundTrip(GPT2, b + "mlp.c_fc.weight", fc, 2, new long[] {c, f / 2}).forEach(Tensor::close);
      roundTrip(GPT2, b + "mlp.c_proj.weight", down, 4, new long[] {f / 4, c}).forEach(Tensor::close);
      List<Tensor> rep = roundTrip(GPT2, b + "mlp.c_proj.bias", ln, 2, new long[] {c});  // replicated: whole on every rank
      for (Tensor t : rep) {
        assertArrayEquals(bits(ln), bits(t));
        t.close();
      }
    }
  }

  @Test
  void llamaGqaGivesEachRankItsQueryAndKeyValueHeads() {
    long c = LLAMA.hidden(), kv = LLAMA.kvDim(), d = LLAMA.headDim();
    String b = LLAMA.blockPrefix(1);
    try (Tensor q = distinct(c, c); Tensor k = distinct(kv, c); Tensor v = distinct(kv, c); Tensor o = distinct(c, c)) {
      roundTrip(LLAMA, b + "self_attn.q_proj.weight", q, 2, new long[] {c / 2, c}).forEach(Tensor::close);
      List<Tensor> kp = roundTrip(LLAMA, b + "self_attn.k_proj.weight", k, 2, new long[] {kv / 2, c});
      // 2 kv heads over 2 ranks: rank r holds key head r, rows [r D, (r+1) D) of k_proj (nn.Linear: (out, in))
      float[] kf = k.toFloatArray();
      for (int r = 0; r < 2; r++) {
        float[] p = kp.get(r).toFloatArray();
        for (int i = 0; i < p.length; i++) assertEquals(kf[(int) (r * d * c) + i], p[i], "rank " + r + " k_proj element " + i);
        kp.get(r).close();
      }
      roundTrip(LLAMA, b + "self_attn.v_proj.weight", v, 2, new long[] {kv / 2, c}).forEach(Tensor::close);
      roundTrip(LLAMA, b + "self_attn.o_proj.weight", o, 2, new long[] {c, c / 2}).forEach(Tensor::close);
    }
    try (Tensor up = distinct(LLAMA.intermediate(), c); Tensor down = distinct(c, LLAMA.intermediate())) {
      roundTrip(LLAMA, b + "mlp.up_proj.weight", up, 2, new long[] {LLAMA.intermediate() / 2, c}).forEach(Tensor::close);
      roundTrip(LLAMA, b + "mlp.down_proj.weight", down, 2, new long[] {c, LLAMA.intermediate() / 2}).forEach(Tensor::close);
    }
  }

  @Test
  void localStoreHoldsThePartsAndReplicatesTheRest() {
    TensorParallel tp = new TensorParallel(2, 1);
    long whole = 0, local = 0;
    for (Map.Entry<String, List<ParamSpec>> u : tp.localUnits(LLAMA, Stage.whole(LLAMA)).entrySet()) {
      for (ParamSpec s : u.getValue()) local += s.numel();
    }
    for (ParamSpec s : LLAMA.parameterSpecs()) {
      whole += s.numel();
      if (s.name().contains("norm")) assertTrue(TensorParallel.split(LLAMA, s.name()).replicated(), s.name());
      if (s.name().contains("embed") || s.name().startsWith("lm_head")) {
        assertEquals(new Split(0, 1), TensorParallel.split(LLAMA, s.name()), s.name() + " is vocabulary-parallel");
      }
    }
    long blocks = LLAMA.layers() * LLAMA.blockSpecs(0).stream().mapToLong(ParamSpec::numel).sum();
    long norms = 2L * LLAMA.layers() * LLAMA.hidden();
    long vocab = 2L * LLAMA.vocabSize() * LLAMA.hidden(), rank1Vocab = 2L * (97 - 48) * LLAMA.hidden();  // embedding, head
    assertEquals(whole - (blocks - norms) / 2 - vocab + rank1Vocab, local,
        "the split block weights are halved, rank 1 holds vocabulary rows [48, 97), the norms whole");
  }

  @Test
  void vocabularyIsCutIntoUnevenRowRangesAndPutBackBitForBit() {
    String wte = GPT2.embeddingName();
    assertEquals(new Split(0, 1), TensorParallel.split(GPT2, wte));
    assertTrue(TensorParallel.split(GPT2, "transformer.wpe.weight").replicated(), "position embeddings stay whole");
    long v = GPT2.vocabSize(), c = GPT2.hidden();  // 97 ids: not a multiple of 2 or 4
    try (Tensor full = distinct(v, c)) {
      List<Tensor> parts = roundTrip(GPT2, wte, full, 4, null);
      float[] f = full.toFloatArray();
      long start = 0;
      for (int r = 0; r < 4; r++) {
        TensorParallel t = new TensorParallel(4, r);
        assertEquals(start, t.vocabStart(GPT2), "rank " + r + " starts where rank " + (r - 1) + " ended");
        assertEquals(v * (r + 1) / 4, t.vocabEnd(GPT2));
        float[] p = parts.get(r).toFloatArray();
        assertEquals((t.vocabEnd(GPT2) - start) * c, p.length, "rank " + r + "'s rows");
        for (int i = 0; i < p.length; i++) {
          assertEquals(Float.floatToRawIntBits(f[(int) (start * c) + i]), Float.floatToRawIntBits(p[i]), "rank " + r + " element " + i);
        }
        start = t.vocabEnd(GPT2);
        parts.get(r).close();
      }
      assertEquals(v, start, "the ranks' rows cover the vocabulary");
    }
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> new TensorParallel(4, 0).check(ModelConfig.llama(3, 32, 2, 32, 4, 4, 48, 10000f, true)));
    assertTrue(e.getMessage().contains("--tp 4") && e.getMessage().contains("vocabulary 3"), e.getMessage());
  }

  /** The slices a checkpoint writes for each rank are its rows of an uneven vocabulary cut and tile the vocabulary. */
  @Test
  void checkpointSlicesFollowTheUnevenVocabularyCut() {
    long[] full = {97, 8};
    long at = 0;
    for (int r = 0; r < 4; r++) {
      TensorParallel tp = new TensorParallel(4, r);
      List<long[]> s = tp.slices(new Split(0, 1), full);
      assertEquals(1, s.size());
      assertEquals(at, s.get(0)[0], "rank " + r + " starts where rank " + (r - 1) + " ended");
      assertEquals(tp.localShape(new Split(0, 1), full)[0], s.get(0)[1] - s.get(0)[0], "rank " + r + "'s rows");
      at = s.get(0)[1];
    }
    assertEquals(97, at, "the four slices cover the vocabulary");
  }

  @Test
  void aRankSizesOnlyItsVocabularyPartOfTheLogits() {
    int b = 4, t = 16;
    long n = (long) b * t, v = GPT2.vocabSize(), c = GPT2.hidden();
    long one = Footprint.stageBufferBytes(GPT2, Stage.whole(GPT2), Device.CPU, DType.F32, b, t);
    long two = Footprint.stageBufferBytes(GPT2, Stage.whole(GPT2), Device.CPU, DType.F32, b, t, 2);
    // the busiest rank's logits: (N, 49 + the cross-entropy's dummy column) instead of (N, 97); the embedding's mask
    // (N, C) and local ids (N) added
    long want = one - 4 * n * v + 4 * n * (v - v / 2 + 1) + 4 * n * c + 4 * n;
    assertTrue(Math.abs(two - want) <= 3 * 4096, "tp 2: " + two + " bytes of buffers, want about " + want + " (one process: "
        + one + ")");
    assertTrue(two < one, "tp 2: " + two + " >= one process's " + one);
  }

  @Test
  void tpThatDoesNotDivideTheModelIsRefusedNamingTheNumbers() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> new Transformer(GPT2, Device.CPU, DType.F32, new TensorParallel(3, 0), TensorParallel.AllReduce.NONE));
    assertTrue(e.getMessage().contains("--tp 3") && e.getMessage().contains("4 attention heads"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> new TensorParallel(4, 0).check(LLAMA));
    assertTrue(e.getMessage().contains("--tp 4") && e.getMessage().contains("2 key/value heads"), e.getMessage());
    ModelConfig oddMlp = ModelConfig.llama(97, 32, 2, 32, 4, 4, 50, 10000f, true);
    e = assertThrows(IllegalArgumentException.class, () -> new TensorParallel(4, 0).check(oddMlp));
    assertTrue(e.getMessage().contains("--tp 4") && e.getMessage().contains("50"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> new TensorParallel(2, 2));
    assertTrue(e.getMessage().contains("rank 2"), e.getMessage());
  }
}
