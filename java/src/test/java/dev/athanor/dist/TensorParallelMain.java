package dev.athanor.dist;

import dev.athanor.nn.Family;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.TensorParallel;
import dev.athanor.nn.Transformer;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.AdamW;
import dev.athanor.train.GradientReducer;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Run by {@link TensorParallelMpiTest} under mpirun: for each family, every rank trains a whole one-process model and its
 * tensor-parallel part from the same seed on the same batches ({@code steps} AdamW steps with clipping; Llama's part with
 * recomputation), and prints the
 * measured differences in one line per family (rank 0): {@code TP family logits=<max |a-b| / max |b| of step 1>
 * loss=<max |loss difference|> weights=<max |w - w_ref| of the gathered final model> replicated=identical|differ
 * bits=<each step's tensor-parallel loss as hex float bits, then a hash of the gathered final model>} (the last for
 * comparing with {@link TensorParallelEmulationTest}'s threads, bit for bit).
 * Throws when the ranks' initial or loaded parts are not cuts of the one-process weights, or gathering them does not give
 * those weights back (bit for bit).
 *
 * <p>Arguments: {@code steps}.
 */
public final class TensorParallelMain {
  static final int BATCH = 2, SEQ = 16;

  public static void main(String[] args) {
    int steps = Integer.parseInt(args[0]);
    try (Communicator c = Communicator.mpi(ReduceMode.DETERMINISTIC)) {
      for (ModelConfig cfg : new ModelConfig[] {TensorParallelSplitTest.GPT2, TensorParallelSplitTest.LLAMA}) {
        String line = compare(c, cfg, steps);
        if (c.rank() == 0) System.out.println(line);
      }
      c.barrier();
    }
  }

  static String compare(Communicator c, ModelConfig cfg, int steps) {
    float lr = 1e-3f;
    try (Transformer ref = Transformer.create(cfg, Device.CPU); Transformer tp = TensorParallelism.create(cfg, Device.CPU, c);
        AdamW refOpt = new AdamW(ref.parameters()); AdamW tpOpt = new AdamW(tp.parameters())) {
      ref.initialize(42);
      tp.initialize(42);
      checkInitialParts(ref, tp);
      checkGatheredBits(c, ref, tp, "initialized");
      try (Transformer loaded = TensorParallelism.create(cfg, Device.CPU, c)) {  // the whole model's weights, cut on loading
        loaded.loadWeights(ref.weights());
        checkInitialParts(ref, loaded);
        checkGatheredBits(c, ref, loaded, "loaded");
      }
      tp.setRecompute(cfg.family() == Family.LLAMA);  // Llama's blocks run their forward again in the backward, with its sums
      TensorParallelism reducer = new TensorParallelism(c, cfg);
      int[][][] data = batches(cfg, steps);
      double logitDiff = 0, lossDiff = 0;
      boolean replicatedSame = true;
      StringBuilder bits = new StringBuilder();
      for (int s = 0; s < steps; s++) {
        int[] in = data[s][0], tg = data[s][1];
        float[][] logits = new float[2][];
        float a = step(ref, refOpt, GradientReducer.NONE, in, tg, lr, logits, 0);
        float b = step(tp, tpOpt, reducer, in, tg, lr, logits, 1);
        bits.append(Integer.toHexString(Float.floatToRawIntBits(b))).append(',');
        lossDiff = Math.max(lossDiff, Math.abs(a - b));
        if (s == 0) logitDiff = relativeDiff(logits[1], logits[0]);
        replicatedSame &= replicatedGradientsIdentical(c, tp);
      }
      Map<String, Tensor> whole = TensorParallelism.gatherWeights(tp, c);
      double weightDiff = 0;
      long hash = 0;
      if (whole != null) {
        Map<String, Tensor> mine = ref.weights();
        for (Map.Entry<String, Tensor> e : whole.entrySet()) {
          float[] x = e.getValue().toFloatArray(), y = mine.get(e.getKey()).toFloatArray();
          for (int i = 0; i < x.length; i++) weightDiff = Math.max(weightDiff, Math.abs(x[i] - y[i]));
          hash = hash(hash, x);
          e.getValue().close();
        }
      }
      return String.format("TP %s logits=%.3e loss=%.3e weights=%.3e replicated=%s bits=%s%x", cfg.family().hfModelType(),
          logitDiff, lossDiff, weightDiff, replicatedSame ? "identical" : "differ", bits, hash);
    }
  }

  /**
   * One training step (clipping at 1.0, as the trainer does) with the reducer's gradient norm; returns the loss and keeps
   * the forward's logits in {@code logits[slot]}.
   */
  static float step(Transformer m, AdamW opt, GradientReducer reducer, int[] in, int[] tg, float lr, float[][] logits, int slot) {
    ParameterStore store = m.parameters();
    if (!store.has(Role.GRAD)) store.allocate(Role.GRAD);
    store.zero(Role.GRAD);
    float loss = m.forward(in, tg, BATCH, SEQ);
    logits[slot] = m.lastLogits();
    m.backward(1f);
    float norm = reducer.gradientNorm(store, Role.GRAD);
    float clip = (float) Math.min(1.0, 1.0 / (norm + 1e-6));
    opt.beginStep();
    opt.update(store.all(), Role.GRAD, lr, 0.9f, 0.95f, 1e-8f, 0.1f, clip);
    return loss;
  }

  /** {@code h} extended by the bits of {@code x}, for comparing models bit for bit. */
  static long hash(long h, float[] x) {
    for (float f : x) h = 31 * h + Float.floatToRawIntBits(f);
    return h;
  }

  /** {@code steps} batches of (inputs, targets) of {@code BATCH x SEQ} random ids, the same for every caller. */
  static int[][][] batches(ModelConfig cfg, int steps) {
    SplittableRandom rnd = new SplittableRandom(7);
    int[][][] data = new int[steps][2][BATCH * SEQ];
    for (int[][] s : data) {
      for (int i = 0; i < BATCH * SEQ; i++) {
        s[0][i] = rnd.nextInt(cfg.vocabSize());
        s[1][i] = rnd.nextInt(cfg.vocabSize());
      }
    }
    return data;
  }

  /** max |a - b| / max |b|. */
  static double relativeDiff(float[] a, float[] b) {
    double d = 0, m = 0;
    for (int i = 0; i < a.length; i++) {
      d = Math.max(d, Math.abs(a[i] - b[i]));
      m = Math.max(m, Math.abs(b[i]));
    }
    return d / m;
  }

  /** Whether every rank's gradients of the replicated parameters have the same bits (a collective). */
  static boolean replicatedGradientsIdentical(Communicator c, Transformer tp) {
    ModelConfig cfg = tp.config();
    long h = 1125899906842597L;
    ParameterStore store = tp.parameters();
    for (ParameterStore.Param p : store.list()) {
      if (!TensorParallel.split(cfg, p.name()).replicated()) continue;
      for (float f : store.view(Role.GRAD, p.index()).toFloatArray()) h = 31 * h + Float.floatToRawIntBits(f);
    }
    try {
      DataParallel.requireSame(c, "replicated gradients", h);
      return true;
    } catch (IllegalArgumentException e) {
      return false;
    }
  }

  /** Gathering the parts to rank 0 gives the one-process model's weights, bit for bit (a collective). */
  static void checkGatheredBits(Communicator c, Transformer ref, Transformer tp, String what) {
    Map<String, Tensor> whole = TensorParallelism.gatherWeights(tp, c);
    if (whole == null) return;
    try {
      Map<String, Tensor> mine = ref.weights();
      if (!whole.keySet().equals(mine.keySet())) throw new IllegalStateException(what + ": gathered " + whole.keySet());
      for (Map.Entry<String, Tensor> e : whole.entrySet()) {
        float[] x = e.getValue().toFloatArray(), y = mine.get(e.getKey()).toFloatArray();
        for (int i = 0; i < x.length; i++) {
          if (Float.floatToRawIntBits(x[i]) != Float.floatToRawIntBits(y[i])) {
            throw new IllegalStateException(what + ": gathered " + e.getKey() + "[" + i + "] = " + x[i] + ", one process has " + y[i]);
          }
        }
      }
    } finally {
      whole.values().forEach(Tensor::close);
    }
  }

  /** Every rank's initial parameters are its cut of the one-process model's, bit for bit. */
  static void checkInitialParts(Transformer ref, Transformer tp) {
    TensorParallel t = tp.tensorParallel();
    Map<String, Tensor> mine = tp.weights();
    for (Map.Entry<String, Tensor> e : ref.weights().entrySet()) {
      Tensor local = mine.get(e.getKey());
      try (Tensor cut = Tensor.empty(local.dtype(), Device.CPU, local.shape())) {
        t.shard(TensorParallel.split(ref.config(), e.getKey()), e.getValue(), cut);
        float[] x = cut.toFloatArray(), y = local.toFloatArray();
        for (int i = 0; i < x.length; i++) {
          if (Float.floatToRawIntBits(x[i]) != Float.floatToRawIntBits(y[i])) {
            throw new IllegalStateException("rank " + t.rank() + ": initial " + e.getKey() + "[" + i + "] = " + y[i]
                + ", the one-process model's part has " + x[i]);
          }
        }
      }
    }
  }
}
